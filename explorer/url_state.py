"""Bounds on what a shared link's query parameters may carry, checked before they are decoded.

A link is input from whoever wrote it: a parameter may be 100 KB long or bind dimensions the
model does not have. Over-long values are dropped with a short warning (quoting at most
:data:`planner.limits.QUOTE_CHARS` characters), and binding names the model lacks are reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from planner.limits import MAX_URL_VALUE_CHARS, quote


def bounded_url_params(params: Mapping[str, object]) -> tuple[dict[str, str], list[str]]:
    """``params`` (a value may be a list of repeats; the last counts) as {name: text}, without the
    values longer than MAX_URL_VALUE_CHARS, and one warning for each of those."""
    out, problems = {}, []
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            value = value[-1] if value else None
        if value is None:
            continue
        value = str(value)
        shown = quote(str(name), 40)
        if len(str(name)) > MAX_URL_VALUE_CHARS or len(value) > MAX_URL_VALUE_CHARS:
            problems.append(f"{shown[1:-1]} in the link is {len(value):,} characters, more than the "
                            f"{MAX_URL_VALUE_CHARS:,} a link parameter may carry; ignored ({quote(value)})")
            continue
        out[str(name)] = value
    return out, problems


def unknown_bindings_message(link_bindings: Mapping[str, int], dims: Iterable[str]) -> str | None:
    """A warning when the link binds dimensions the model does not have, else None."""
    dims = list(dims)
    unknown = [name for name in link_bindings if name not in dims]
    if not unknown:
        return None
    names = ", ".join(quote(n, 40) for n in unknown[:5]) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
    have = ", ".join(dims) if dims else "none"
    return (f"bind= in the link names {names}, which the model does not have (its symbolic dimensions: {have}); "
            "those values are not used")
