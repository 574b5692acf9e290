"""A plan in the engineers' vocabulary: data / tensor (column or row) / sequence (Megatron SP) /
context / expert / pipeline parallel with degrees, e.g. ``DP 64 x TP 8 (column-row) x PP 16``.

Owns the translation from per-operator splits to those names, per machine level, per layer and
for the whole plan (:func:`describe`). Nothing here prices anything: the names are read from the
plan's strategies alone.

**The role of a split.** At each prime cut of the stage machine, each compute operator splits
one dimension (or none); the dimension's role says what kind of parallelism it is:

* the batch (the dimension :meth:`OperatorGraph.batch_dims` traces) -> *data*;
* a linear layer's weight dimension: the contracted one -> *row*, the output one -> *column*, a
  leading expert axis of a stacked expert weight (rank 3 or more) -> *expert*;
* an embedding table's rows (a gather's vocabulary) -> *vocabulary* (Megatron's
  vocabulary-parallel embedding, part of tensor parallelism);
* an attention product's batched dimensions other than the batch -> *heads*;
* a sequence (a linear layer's rows other than the batch; an attention product's query or key
  positions) -> *sequence*;
* none -> *replicated* (ignored for an operator that has no batch to split).

**A cut's name.** Only *data* (with *expert* on the expert layers: expert parallelism inside
the data-parallel ranks, as Megatron-LM counts it) -> DP (and EP); only *column*, *row*, *heads*,
*vocabulary* with at least one column or row (some operators may be replicated there, as
Megatron replicates the K and V projections when the KV heads are fewer than the ranks) -> TP,
followed by the order of its linear layers (``column-row`` when every row-parallel layer follows
a column-parallel one, as Megatron pairs them; ``column`` or ``row`` when all are; ``mixed``
otherwise) and ``+ SP`` when the normalisations between them are split on the sequence
(Megatron's sequence parallelism); only *sequence* -> CP; anything else fits no name and is
listed by its dimensions' roles (``DP 4 x hybrid 2 (batch / hidden) over gpu``). Degrees multiply
over the cuts of a level and over the levels; pipeline stages come from the schedule (``PP 16``,
``PP 4 (interleave 2)``).

**Exceptions (FLOP-weighted).** A cut is named after the kind of split (data, tensor, sequence,
replicated) that carries most of its FLOPs; the operators split otherwise are *exceptions* when
together they carry at most ``EXCEPTION_SHARE`` (10%) of the cut's FLOPs, and are named after
the plan (``DP 512; embeddings.word split by hidden 256 over node x gpu``: an embedding gathers,
it does no FLOPs, whatever its share of the weights). Above that share the cut is truly hybrid.
The command line, the plan JSON (``parallelism``), the report and the app all read
:func:`describe`; the Overview's sentence leaves the exceptions out as the name does.

**Layers.** Operators named like ``layer12.attn.qkv`` (a family with at least two indices) are
grouped per layer, consecutive layers with the same name collapsed (``layers 0-11``); the
operators outside them (embeddings, the head) form one more group.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable

from planner.cost.result import PlanResult
from planner.model.graph import OpKind

GATHERS = ("Gather", "GatherND", "GatherElements")
NORMS = ("LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization")
#: the words a hybrid cut is described with, in this order
ROLE_WORDS = {"data": "batch", "sequence": "sequence", "column": "hidden", "row": "hidden", "heads": "heads",
              "vocabulary": "vocabulary", "expert": "experts", "replicated": "replicated"}
TENSOR_ROLES = frozenset({"column", "row", "heads", "vocabulary", "hidden"})  # hidden: an embedding table's columns
KIND_ORDER = ("DP", "TP", "PP", "EP", "CP", "replicated")
#: operators outside a cut's main kind of split are named as exceptions up to this share of its FLOPs
EXCEPTION_SHARE = 0.10
_LAYER_RE = re.compile(r"^(?P<family>.*?\D)(?P<index>\d+)(?P<rest>[./_:\-].+)$")


def split_role(result: PlanResult, name: str, dim: str | None, batch: dict[str, str | None]) -> str | None:
    """The role (module docstring) of splitting ``dim`` of operator ``name``; None when the
    operator is replicated and has no batch to split (it does not count)."""
    cm = result.cost_model
    op = cm.graph.operators[name]
    if dim is None:
        return "replicated" if batch.get(name) else None
    if dim == batch.get(name) or dim.endswith("~b"):
        return "data"
    uses = cm.info[name].uses
    weights = [op.inputs[i] for i, u in enumerate(uses[:len(op.inputs)]) if u.is_parameter]
    if weights and op.op_type in GATHERS:
        return "vocabulary" if dim in weights[0].axes[0] else ("hidden" if dim in weights[0].dims() else "sequence")
    if weights:
        w = weights[0]
        if dim not in w.dims():
            return "sequence"
        if len(w.axes) >= 3 and dim in w.axes[0]:
            return "expert"
        return "row" if dim in op.reduction_dims else "column"
    return _weight_free_role(op, dim)


def _weight_free_role(op, dim: str) -> str:
    """An attention product (or another weight-free compute operator): dimensions every tensor
    shares are heads; a dimension as long as the query positions is a sequence; others hidden."""
    if all(dim in u.dims() for u in op.uses()):
        return "heads"
    seq = op.dims.get("m")
    return "sequence" if dim == "m" or (seq is not None and op.dims[dim] == seq) else "hidden"


def _cut_roles(result: PlanResult, names: Iterable[str], cut: int, batch) -> list[tuple[str, str]]:
    """(operator, role) of every compute operator of ``names`` that counts at cut ``cut``."""
    strategies = result.plan.strategies
    graph = result.cost_model.graph
    out = []
    for n in names:
        if graph.operators[n].kind is not OpKind.COMPUTE or n not in strategies:
            continue
        role = split_role(result, n, strategies[n][cut], batch)
        if role is not None:
            out.append((n, role))
    return out


def _tensor_order(roles: list[tuple[str, str]]) -> str:
    """column-row, column, row or mixed: the linear layers' roles in topological order."""
    seq = [r for _, r in roles if r in ("column", "row")]
    if all(r == "column" for r in seq):
        return "column"
    if all(r == "row" for r in seq):
        return "row"
    paired = seq[0] == "column" and all(not (a == "row" and b == "row") for a, b in zip(seq, seq[1:]))
    return "column-row" if paired else "mixed"


def _sequence_parallel(result: PlanResult, names: Iterable[str], cut: int, batch) -> bool:
    from planner.cost.sequence_parallel import sequence_dim

    graph = result.cost_model.graph
    norms = [n for n in names if graph.operators[n].op_type in NORMS and n in result.plan.strategies]
    return bool(norms) and all(
        result.plan.strategies[n][cut] is not None
        and result.plan.strategies[n][cut] == sequence_dim(graph.operators[n], batch.get(n)) for n in norms)


def name_cut(result: PlanResult, names: list[str], cut: int, batch) -> tuple[str, str]:
    """(kind, detail) of one cut: ``("DP", "")``, ``("TP", "column-row + SP")``, ``("CP", "")``,
    ``("DP+EP", "")``, ``("replicated", "")`` or ``("hybrid", "batch x hidden")``; the exceptions
    (:func:`cut_name`) left out."""
    return cut_name(result, names, cut, batch)[:2]


def _role_class(role: str) -> str:
    return {"expert": "data", "sequence": "sequence", "replicated": "replicated", "data": "data"}.get(role, "tensor")


def _main_roles(result: PlanResult, roles: list[tuple[str, str]]) -> tuple[list, list]:
    """(main, exceptions): the operators outside the kind of split that carries most of the cut's
    FLOPs are exceptions when together they carry at most ``EXCEPTION_SHARE`` of them (by count
    when the cut has no FLOPs); otherwise nothing is an exception (the cut is truly hybrid)."""
    ops = result.cost_model.graph.operators
    weight: dict[str, float] = {}
    for n, r in roles:
        weight[_role_class(r)] = weight.get(_role_class(r), 0.0) + ops[n].flops
    if not any(weight.values()):
        weight = {}
        for _, r in roles:
            weight[_role_class(r)] = weight.get(_role_class(r), 0.0) + 1.0
    main = max(weight, key=weight.get)
    if sum(w for c, w in weight.items() if c != main) > EXCEPTION_SHARE * sum(weight.values()):
        return roles, []
    return [(n, r) for n, r in roles if _role_class(r) == main], [(n, r) for n, r in roles if _role_class(r) != main]


def cut_name(result: PlanResult, names: list[str], cut: int, batch) -> tuple[str, str, list[tuple[str, str]]]:
    """(kind, detail, exceptions) of one cut: named by the operators that carry most of its FLOPs
    (:func:`_main_roles`); ``exceptions`` are the other operators and their roles."""
    roles = _cut_roles(result, names, cut, batch)
    kind, detail = _kind(result, roles, names, cut, batch)
    if kind != "hybrid":
        return kind, detail, []
    main, exceptions = _main_roles(result, roles)
    if not exceptions:
        return kind, detail, []
    kind, detail = _kind(result, main, names, cut, batch)
    return kind, detail, exceptions


def _kind(result: PlanResult, roles: list[tuple[str, str]], names: list[str], cut: int, batch) -> tuple[str, str]:
    kinds = {r for _, r in roles}
    if not kinds or kinds == {"replicated"}:
        return "replicated", ""
    if kinds == {"data"}:
        return "DP", ""
    if kinds == {"data", "expert"} or kinds == {"expert"}:
        return "DP+EP", ""
    if kinds - {"replicated"} <= TENSOR_ROLES and kinds & {"column", "row"}:  # GQA's K/V may be replicated
        sp = " + SP" if _sequence_parallel(result, names, cut, batch) else ""
        return "TP", _tensor_order(roles) + sp
    if kinds == {"sequence"}:
        return "CP", ""
    words = sorted({ROLE_WORDS.get(k, k) for k in kinds}, key=list(ROLE_WORDS.values()).index)
    return "hybrid", " x ".join(words)


def _level_parts(result: PlanResult, names: list[str], batch) -> list[dict]:
    """Per level of the stage machine: its degrees per kind, TP detail and hybrid words."""
    cm = result.cost_model
    levels = []
    for li, level in enumerate(cm.machine.levels):
        degrees: dict[str, int] = {}
        details: list[str] = []
        hybrid: list[str] = []
        exceptions: list[tuple[str, str, int]] = []
        for t, cut in enumerate(cm.cuts):
            if cut.level != li:
                continue
            kind, detail, odd = cut_name(result, names, t, batch)
            exceptions += [(n, r, cut.factor) for n, r in odd]
            for k in kind.split("+"):
                degrees[k] = degrees.get(k, 1) * cut.factor
            if kind == "TP" and detail not in details:
                details.append(detail)
            if kind == "hybrid":
                hybrid += [w for w in detail.split(" x ") if w not in hybrid]
        if level.arity > 1:
            levels.append({"level": level.name, "arity": level.arity, "degrees": degrees,
                           "tensor": details[0] if len(details) == 1 else ("mixed" if details else ""),
                           "hybrid": hybrid, "exceptions": exceptions})
    return _context_levels(levels, getattr(result.plan, "context_parallel", 1))


def _context_levels(levels: list[dict], context: int) -> list[dict]:
    """A context-parallel configuration (:mod:`planner.search.context_parallel`) is priced as data
    parallelism over the ``D x C`` ranks of the sequence's ``s / C`` share: its ``C`` ranks are the
    innermost data-parallel ones, named CP here."""
    for lv in reversed(levels):
        dp = lv["degrees"].get("DP", 1)
        if context == 1 or dp == 1:
            continue
        take = context if dp % context == 0 else dp
        lv["degrees"]["DP"], lv["degrees"]["CP"] = dp // take, take
        context //= take
    return levels


def _label(kind: str, degree: int, tensor: str) -> str:
    if kind == "TP" and tensor:
        main, _, sp = tensor.partition(" + ")
        return f"TP {degree} ({main})" + (f" + {sp}" if sp else "")
    return f"{kind} {degree}"


def _name(levels: list[dict], stages: int, interleave: int) -> str:
    """The whole plan's name from its levels (see the module docstring), then its exceptions."""
    exceptions = _exceptions_text(levels)
    return _main_name(levels, stages, interleave) + (f"; {exceptions}" if exceptions else "")


def _main_name(levels: list[dict], stages: int, interleave: int) -> str:
    pipeline = [f"PP {stages}" + (f" (interleave {interleave})" if interleave > 1 else "")] if stages > 1 else []
    if any(lv["hybrid"] or "hybrid" in lv["degrees"] for lv in levels):
        parts = []
        for lv in levels:
            words = set(lv["hybrid"])
            named = []
            for k, d in _ordered(lv["degrees"]):
                if k == "replicated" and words:
                    words.add("replicated")
                elif k != "hybrid":
                    named.append(_label(k, d, lv["tensor"]))
            order = list(ROLE_WORDS.values())
            if words:  # some operators split one dimension there, others another
                named.append(f"hybrid {lv['degrees'].get('hybrid', 1)} ({' / '.join(sorted(words, key=order.index))})")
            parts.append(f"{' x '.join(named)} over {lv['level']}")
        return "; ".join(parts + pipeline)
    total: dict[str, int] = {}
    tensor = {lv["tensor"] for lv in levels if lv["tensor"]}
    for lv in levels:
        for k, d in lv["degrees"].items():
            total[k] = total.get(k, 1) * d
    detail = tensor.pop() if len(tensor) == 1 else "mixed" if tensor else ""
    named = [_label(k, d, detail) for k, d in _ordered(total)]
    if stages > 1:
        named.insert(_pp_position(named), pipeline[0])
    return " x ".join(named) or "single device"


def _exceptions_text(levels: list[dict], most: int = 3) -> str:
    """``embeddings.word split by hidden 256 over node x gpu``: the operators split otherwise than
    the kind carrying most of a cut's FLOPs, with their degree and levels; operators of every
    layer (``layer3.attn.k``) as one (``layer*.attn.k``); the first ``most``, then a count."""
    found: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for lv in levels:
        for n, role, factor in lv.get("exceptions", []):
            m = _LAYER_RE.match(n)
            label = f"{m.group('family')}*{m.group('rest')}" if m else n
            per_op = found.setdefault((label, ROLE_WORDS.get(role, role)), {}).setdefault(n, {})
            per_op[lv["level"]] = per_op.get(lv["level"], 1) * factor
    phrases = []
    for (label, word), ops in found.items():
        where = next(iter(ops.values()))
        how = "replicated" if word == "replicated" else f"split by {word}"
        phrases.append(f"{label} {how} {math.prod(where.values())} over {' x '.join(where)}")
    more = f"; and {len(phrases) - most} more" if len(phrases) > most else ""
    return "; ".join(phrases[:most]) + more


def _ordered(degrees: dict[str, int]) -> list[tuple[str, int]]:
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(((k, d) for k, d in degrees.items() if d > 1 or k == "hybrid"),
                  key=lambda kd: order.get(kd[0], len(order)))


def _pp_position(named: list[str]) -> int:
    """PP goes after DP and TP and before EP and CP, as in ``DP 64 x TP 8 x PP 16 x EP 8``."""
    return sum(1 for n in named if n.startswith(("DP", "TP")))


def layer_groups(names: list[str]) -> list[tuple[str, list[str]]]:
    """Operators grouped per layer (``layer12.attn.qkv`` -> ``layer12``), in order of first
    appearance, plus ``outside the layers`` for the rest; one group when no family repeats."""
    families: dict[str, dict[str, int]] = {}
    for n in names:
        m = _LAYER_RE.match(n)
        if m:
            families.setdefault(m.group("family"), {})[n] = int(m.group("index"))
    best = max(families, key=lambda f: len(set(families[f].values())), default=None)
    if best is None or len(set(families[best].values())) < 2:
        return [("all operators", list(names))]
    groups: dict[str, list[str]] = {}
    for n in names:
        i = families[best].get(n)
        groups.setdefault(f"{best}{i}" if i is not None else "outside the layers", []).append(n)
    return list(groups.items())


_CACHE: dict[int, tuple[PlanResult, dict]] = {}  # the last few results described (the app asks per page)


def describe(result: PlanResult) -> dict:
    """The plan in the engineers' vocabulary: ``name`` (the whole plan), ``levels`` (per level of
    the stage machine: its name and ``name``) and ``layers`` (per group of consecutive layers with
    the same name). A fresh copy each time; the last 16 results' descriptions are remembered."""
    hit = _CACHE.get(id(result))
    if hit is None or hit[0] is not result:
        if len(_CACHE) >= 16:
            _CACHE.clear()
        hit = _CACHE[id(result)] = (result, _describe(result))
    return copy.deepcopy(hit[1])


def _describe(result: PlanResult) -> dict:
    cm = result.cost_model
    batch = cm.graph.batch_dims()
    stages, interleave = result.schedule.stages, result.schedule.interleave
    names = list(cm.planned)
    levels = _level_parts(result, names, batch)
    layers: list[dict] = []
    for label, members in layer_groups(names):
        layer_name = _name(_level_parts(result, members, batch), 1, 1)
        if layers and layers[-1]["name"] == layer_name and label != "outside the layers" \
                and layers[-1]["last"] != "outside the layers":
            layers[-1]["last"] = label
            continue
        layers.append({"first": label, "last": label, "name": layer_name})
    return {"name": _name(levels, stages, interleave), "pipeline_stages": stages, "interleave": interleave,
            "levels": [{"level": lv["level"], "arity": lv["arity"], "name": _name([lv], 1, 1),
                        "exceptions": sorted({n for n, _, _ in lv["exceptions"]})} for lv in levels],
            "exceptions": _exceptions_text(levels, most=len(names)).split("; ") if _exceptions_text(levels) else [],
            "layers": [{"layers": _span(lv["first"], lv["last"]), "name": lv["name"]} for lv in layers]}


def _span(first: str, last: str) -> str:
    """``layer0`` .. ``layer11`` -> ``layer0-11``."""
    if first == last:
        return first
    m = re.match(r"^(.*?)(\d+)$", last)
    return f"{first}-{m.group(2)}" if m and first.startswith(m.group(1)) else f"{first}-{last}"


def summary_lines(description: dict) -> list[str]:
    """The description as the command line and the reports print it: the name, then the levels
    and the layers when they say more than the name."""
    lines = [description["name"]]
    levels = description["levels"]
    if len(levels) > 1:
        where = "per level of a stage" if description["pipeline_stages"] > 1 else "per level"
        lines.append(f"{where}: " + ", ".join(f"{lv['level']} ({lv['arity']}) {lv['name']}" for lv in levels))
    layers = description["layers"]
    if len({lv["name"] for lv in layers}) > 1:
        lines.append("per layer: " + "; ".join(f"{lv['layers']}: {lv['name']}" for lv in layers))
    return lines


def recorded_name(data: dict) -> str | None:
    """The name a plan file records under ``parallelism`` (None when absent or malformed: the
    key is an output, read back only to compare)."""
    value = data.get("parallelism")
    name = value.get("name") if isinstance(value, dict) else None
    return name if isinstance(name, str) and len(name) <= 400 else None
