"""The URL: what a shared link carries (model, bound dimensions, machine, options, the hand-made
configuration), encoded and decoded, every bad parameter reported and replaced by its default.

A link is input from whoever wrote it: a parameter may be 100 KB long or bind dimensions the
model does not have. Over-long values are dropped with a short warning (quoting at most
:data:`planner.limits.QUOTE_CHARS` characters), and binding names the model lacks are reported.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from explorer.options import AUTO, DEFAULT_OPTIONS, MODES, option_text
from explorer.sources import DEFAULT_BINDINGS, DEFAULT_MACHINE, DEFAULT_SAMPLE, ModelSource, sample_paths
from planner.api import ALGORITHMS, PlanOptions
from planner.options import OPTIMIZERS, PRECISION_BYTES, RECOMPUTE, ZERO_STAGES, OptionsError, check_bucket_mb
from planner.limits import MAX_URL_VALUE_CHARS, check_binding_product, quote
from planner.machine.tree import Machine, MachineError, preset_paths
from planner.bindings import URL_SEPARATOR, BindingTextError, binding_value, format_bindings, parse_binding
from planner.search.hand_made import HandMade


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


def encode_bindings(bindings: dict[str, int]) -> str:
    return ",".join(format_bindings(bindings, URL_SEPARATOR))


def decode_bindings(text: str) -> dict[str, int]:
    """``"batch:32,seq:128"`` -> dict; raises ValueError with a fix-it message."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        try:
            name, value = parse_binding(part, URL_SEPARATOR)
        except BindingTextError as exc:
            if exc.name is None:
                raise ValueError(f"bind={quote(text)}: write NAME:VALUE pairs separated by commas, "
                                 "e.g. batch:32,seq:128") from None
            raise ValueError(f"bind={quote(text)}: {quote(exc.name, 40)[1:-1]} {exc}, e.g. batch:32") from None
        out[name] = value
    check_binding_product(out, "bind=")
    return out


@dataclass
class UrlState:
    """What the URL can carry: enough to rebuild a view on another browser."""

    model: str = DEFAULT_SAMPLE  # sample name, or "upload:<file name>"
    bindings: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_BINDINGS))
    machine_preset: str | None = DEFAULT_MACHINE
    machine: dict | None = None  # a custom machine (to_dict form) when not a preset
    options: PlanOptions = field(default_factory=PlanOptions)
    hand_made: HandMade | None = None  # the sidebar's hand-made configuration, when one is set


#: The pipeline and memory options in the URL (written only when they differ from the
#: defaults): parameter -> PlanOptions field.
PIPELINE_URL_PARAMS = {"stages": "pipeline_stages", "micro_batches": "micro_batches", "interleave": "interleave",
                       "recompute": "recompute", "zero": "zero", "overlap": "overlap_gradient_sync",
                       "bucket_mb": "bucket_mb", "prefetch": "prefetch_parameters",
                       "overlap_sends": "overlap_pipeline_sends", "sp": "sequence_parallel"}


#: The hand-made configuration in the URL: parameter -> HandMade field (``hm_tp``, ``hm_pp`` and
#: ``hm_dp`` always written when one is set, the others when not 1).
HAND_MADE_URL_PARAMS = {"hm_tp": "tp", "hm_pp": "pp", "hm_dp": "dp", "hm_ep": "ep", "hm_cp": "cp",
                        "hm_mbs": "micro_batch_size", "hm_interleave": "interleave"}


def encode_hand_made(config: HandMade | None) -> dict[str, str]:
    if config is None:
        return {}
    return {param: str(getattr(config, name)) for param, name in HAND_MADE_URL_PARAMS.items()
            if param in ("hm_tp", "hm_pp", "hm_dp") or getattr(config, name) != 1}


def decode_hand_made(params: Mapping, problems: list[str]) -> HandMade | None:
    """The link's hand-made configuration (None when it has none, or a value is not a whole number
    >= 1: then reported, and no hand-made configuration is used)."""
    given = {param: _last(params, param) for param in HAND_MADE_URL_PARAMS if _last(params, param) is not None}
    if not given:
        return None
    values = {}
    for param, text in given.items():
        try:
            values[HAND_MADE_URL_PARAMS[param]] = binding_value(text)
        except ValueError:
            problems.append(f"{param}={quote(text)} is not a whole number >= 1; the link's hand-made configuration "
                            "is not used")
            return None
    return HandMade(**values)


def encode_url_state(model: ModelSource, bindings: dict[str, int], machine: Machine, machine_preset: str | None,
                     options: PlanOptions, hand_made: HandMade | None = None) -> dict[str, str]:
    params = {
        "model": model.label if model.kind == "sample" else f"upload:{model.label}",
        "bind": encode_bindings(bindings),
        "mode": options.mode,
        "algorithm": options.algorithm,
        "precision": options.precision or "model",
        "optimizer": options.optimizer,
    }
    for param, name in PIPELINE_URL_PARAMS.items():
        value = getattr(options, name)
        if value != getattr(DEFAULT_OPTIONS, name):
            params[param] = option_text(value)
    if machine_preset is not None:
        params["machine"] = machine_preset
    else:
        params["machine_json"] = json.dumps(machine.to_dict(), separators=(",", ":"))
    return {**params, **encode_hand_made(hand_made)}


def parse_pipeline_option(param: str, text: str):
    """A pipeline or memory option from the URL; ValueError says what it may be."""
    name = PIPELINE_URL_PARAMS[param]
    default = getattr(DEFAULT_OPTIONS, name)
    if text == AUTO and default is None:
        return None
    if name == "recompute":
        if text in RECOMPUTE:
            return text
        allowed = f"one of {AUTO}, {', '.join(RECOMPUTE)}"
    elif name == "zero":
        if text in {str(z) for z in ZERO_STAGES}:
            return int(text)
        allowed = f"one of {AUTO}, {', '.join(map(str, ZERO_STAGES))}"
    elif isinstance(default, bool):
        if text in ("true", "false"):
            return text == "true"
        allowed = "true or false"
    elif name == "bucket_mb":
        try:
            return check_bucket_mb(float(text))
        except (ValueError, OptionsError):
            allowed = "a number of megabytes >= 0 (0: one all-reduce per gradient tensor)"
    else:
        try:
            return binding_value(text)
        except ValueError:
            allowed = ("auto or " if default is None else "") + "a whole number >= 1"
    raise ValueError(f"{param}={quote(text)} is not {allowed}; using {option_text(default)}")


def _last(params: Mapping, key: str) -> str | None:
    value = params.get(key)
    return value if isinstance(value, str) else (value or [None])[-1]


def _decode_model(state: UrlState, model: str | None, problems: list[str]) -> None:
    if not model:
        return
    if model.startswith("upload:"):
        problems.append(f"the link was made with an uploaded model ({quote(model[7:])}); uploads are not part of a "
                        f"link: upload it again on the Model page. Showing the sample {DEFAULT_SAMPLE} meanwhile")
    elif model in sample_paths():
        state.model = model
    else:
        problems.append(f"model={quote(model)} is not a sample ({', '.join(sample_paths())}); showing {DEFAULT_SAMPLE}")


def _decode_machine(state: UrlState, preset: str | None, machine_json: str | None, problems: list[str]) -> None:
    if machine_json:
        try:
            state.machine = Machine.from_json(machine_json).to_dict()
            state.machine_preset = None
        except MachineError as exc:
            problems.append(f"machine_json in the link is not a valid machine: {exc}")
    elif preset:
        if preset in preset_paths():
            state.machine_preset = preset
        else:
            problems.append(f"machine={quote(preset)} is not a preset ({', '.join(preset_paths())}); "
                            f"showing {DEFAULT_MACHINE}")


def _decode_options(params: Mapping, problems: list[str]) -> PlanOptions:
    opts = {}
    for key, allowed in (("mode", MODES), ("algorithm", tuple(ALGORITHMS)), ("optimizer", tuple(OPTIMIZERS))):
        value = _last(params, key)
        if value is None:
            continue
        if value in allowed:
            opts[key] = value
        else:
            problems.append(f"{key}={quote(value)} is not one of {', '.join(allowed)}; using the default")
    precision = _last(params, "precision")
    if precision and precision != "model":
        if precision in PRECISION_BYTES:
            opts["precision"] = precision
        else:
            problems.append(f"precision={quote(precision)} is not one of model, {', '.join(PRECISION_BYTES)}; "
                            "using the model's")
    pipeline = {}
    for param, name in PIPELINE_URL_PARAMS.items():
        value = _last(params, param)
        if value is not None:
            try:
                pipeline[name] = parse_pipeline_option(param, value)
            except ValueError as exc:
                problems.append(str(exc))
    try:
        return PlanOptions(**opts, **pipeline)
    except OptionsError as exc:  # each is valid alone, not together (stages with mode=infer)
        problems.append(f"{exc}: the link's pipeline and memory options are not used")
        return PlanOptions(**opts)


def decode_url_state(params: dict[str, str]) -> tuple[UrlState, list[str]]:
    """Read the query parameters; every bad one is reported and replaced by the default."""
    state = UrlState()
    params, problems = bounded_url_params(params)
    _decode_model(state, _last(params, "model"), problems)
    bind = _last(params, "bind")
    if bind:
        try:
            state.bindings = decode_bindings(bind)
        except ValueError as exc:
            problems.append(str(exc))
    _decode_machine(state, _last(params, "machine"), _last(params, "machine_json"), problems)
    state.options = _decode_options(params, problems)
    state.hand_made = decode_hand_made(params, problems)
    return state, problems
