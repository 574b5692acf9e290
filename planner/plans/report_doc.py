"""The plan report as a document: what the HTML, PDF and Markdown reports say, as text and numbers
already formatted (``planner.units``), so that the three renderers (``report_html``,
``report_md``, ``report_pdf``) and the app's Report page say the same thing.

Contents: the stamp (tool version, model and its sha256, bindings, machine, options), the
headline, the configuration, the parallelism per machine level, the cost breakdown (terms,
levels, stages), the memory per device, three bar charts (as data: ``report_svg`` draws them),
the formulas of the five costliest operators, the costliest operators, the machine YAML and the
command that reproduces the plan. Everything here is plain text: escaping is the renderers'.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner import __version__
from planner.cost import formula_text as ft
from planner.cost.result import PlanResult
from planner.machine.tree import Machine, load_preset, preset_paths
from planner.model.graph import OpKind
from planner.options import PlanOptions
from planner.plans.parallelism import describe
from planner.plans.report import op_cuts
from planner.units import (format_bytes, format_flop_count, format_number, format_seconds, format_seconds_in,
                           format_speedup, seconds_unit)

#: Operators whose formulas the report writes out, and rows of the costliest-operators table.
FORMULA_OPERATORS = 5
TABLE_OPERATORS = 25
#: The charts' colours per part (the explorer's palette).
COLORS = {"compute": "#4C78A8", "communication": "#F58518", "redistribution": "#E45756",
          "parameters": "#4C78A8", "gradients": "#72B7B2", "optimizer state": "#EECA3B", "activations": "#F58518"}


@dataclass(frozen=True)
class ReportSource:
    """Where a plan comes from, as the report's stamp and reproduce command name it."""

    model_label: str  # the name shown
    model_path: str  # the file the command names (sample_models/x.onnx, or the file given)
    model_sha256: str | None
    bindings: dict[str, int]
    machine_label: str  # a preset's name, or the machine's
    search_seconds: float | None = None  # the search's time, when the result is a plan file re-priced


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Bar:
    label: str
    parts: tuple[tuple[str, float], ...]  # (part, value in the chart's unit: seconds or bytes)


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str  # "s" or "B"
    bars: tuple[Bar, ...]
    capacity: float | None = None  # the memory chart's device capacity (bytes)


@dataclass(frozen=True)
class Formula:
    name: str
    op_type: str
    split: str
    sizes: str  # the dimensions' sizes on one device's share
    symbolic: str  # the cost in the machine's symbols and the operator's dimensions
    terms: tuple[tuple[str, float], ...]  # the cost on this machine, term by term (seconds)
    seconds: float
    alike: int = 0  # other operators with the same type, sizes, split and time


@dataclass(frozen=True)
class Report:
    title: str
    stamp: Table
    headline: Table
    summary: str
    parallelism: tuple[str, ...]
    cost: Table
    levels: Table
    stages: Table | None
    memory: Table
    charts: tuple[Chart, ...]
    formulas: tuple[Formula, ...]
    symbols: str
    operators: Table
    command: str
    machine_yaml: str
    notes: tuple[str, ...]


def build_report(result: PlanResult, source: ReportSource) -> Report:
    """The report of one plan."""
    return Report(
        title=f"Parallel plan: {source.model_label} on {result.machine.name}",
        stamp=Table(("field", "value"), tuple(stamp_rows(result, source))),
        headline=Table(("figure", "value"), tuple(headline_rows(result, source.search_seconds))),
        summary=summary_sentence(result, source.model_label),
        parallelism=tuple(parallelism_lines(result)),
        cost=Table(("term", "time"), tuple(cost_rows(result))),
        levels=level_table(result), stages=stage_table(result) if result.schedule.stages > 1 else None,
        memory=Table(("part", "per device"), tuple(memory_rows(result))),
        charts=charts(result), formulas=tuple(formulas(result)), symbols=symbols_legend(result),
        operators=operator_table(result), command=reproduce_command(result, source),
        machine_yaml=result.machine.to_yaml().rstrip(), notes=tuple(result.notes),
    )


# ---- the stamp and the command -----------------------------------------------------------------

def machine_file(machine: Machine, label: str) -> str:
    """``machines/<preset>.yaml`` when the machine is that preset, else ``<name>.yaml`` (the app's
    Machine page and ``plan --json`` give its YAML)."""
    if label in preset_paths() and load_preset(label) == machine:
        return f"machines/{label}.yaml"
    return f"{machine.name}.yaml"


def machine_label(machine: Machine) -> str:
    """The name of the preset the machine is, else the machine's own name."""
    return next((name for name in preset_paths() if load_preset(name) == machine), machine.name)


def reproduce_command(result: PlanResult, source: ReportSource) -> str:
    """``python -m planner plan ...`` with every option the plan used (the configuration search's
    choices included, so that the command prices this plan without searching them again)."""
    o = result.options
    parts = ["python -m planner plan", source.model_path,
             f"--machine {machine_file(result.machine, source.machine_label)}"]
    parts += [f"--bind {k}={v}" for k, v in source.bindings.items()]
    parts += [f"--mode {o.mode}", f"--algorithm {o.algorithm}", f"--optimizer {o.optimizer}"]
    if o.precision:
        parts.append(f"--precision {o.precision}")
    for flag, value in (("--pipeline-stages", o.pipeline_stages), ("--micro-batches", o.micro_batches),
                        ("--recompute", o.recompute), ("--zero", o.zero)):
        if value is not None:
            parts.append(f"{flag} {value}")
    if o.interleave > 1:
        parts.append(f"--interleave {o.interleave}")
    if o.overlap_gradient_sync:
        parts.append("--overlap-gradient-sync")
    if o.bucket_mb != PlanOptions().bucket_mb:
        parts.append(f"--bucket-mb {o.bucket_mb:g}")
    return " ".join(parts)


def configuration_text(result: PlanResult) -> str:
    """``2 pipeline stages x 4 micro-batches of 8 · recomputation none · ZeRO 0``."""
    sched, o = result.schedule, result.options
    stages = f"{sched.stages} pipeline stages" if sched.stages > 1 else "1 stage"
    if sched.interleave > 1:
        stages += f" ({sched.interleave} chunks per device)"
    size = f" of {sched.micro_batch_size:,}" if sched.micro_batch_size else ""
    parts = [f"{stages} x {sched.micro_batches:,} micro-batch{'es' if sched.micro_batches > 1 else ''}{size}"]
    if o.mode == "train":
        parts += [f"recomputation {sched.recompute}", f"ZeRO {sched.zero}"]
        if o.overlap_gradient_sync:
            parts.append("gradient sync overlapped")
    return " · ".join(parts)


def stamp_rows(result: PlanResult, source: ReportSource) -> list[tuple[str, str]]:
    o = result.options
    bindings = ", ".join(f"{k}={v:,}" for k, v in source.bindings.items()) or "none"
    return [("tool version", __version__), ("model", source.model_label),
            ("model sha256", source.model_sha256 or "not recorded"), ("bound dimensions", bindings),
            ("machine", f"{source.machine_label}: {result.machine.summary()}"), ("mode", o.mode),
            ("algorithm", result.plan.algorithm), ("precision", o.precision or "as in the model"),
            ("optimizer", o.optimizer if o.mode == "train" else "none (inference)"),
            ("configuration", configuration_text(result)), ("parallelism", describe(result)["name"])]


# ---- the headline ------------------------------------------------------------------------------

def headline_rows(result: PlanResult, search_seconds: float | None = None) -> list[tuple[str, str]]:
    sched, mem = result.schedule, result.memory
    flops = sched.tflops_per_device()
    dp = format_seconds(result.data_parallel_seconds)
    if result.data_parallel_memory is not None and not result.data_parallel_memory.fits:
        dp += f" (does not fit: {format_bytes(result.data_parallel_memory.peak)} per device)"
    where = " (the fullest stage)" if sched.stages > 1 else ""
    fits = "fits" if mem.fits else f"does NOT fit: {format_bytes(mem.shortfall_bytes)} short"
    return [("devices", f"{result.machine.num_devices:,}"),
            ("predicted iteration", format_seconds(result.total_seconds)),
            ("pure data parallel", dp),
            ("speed-up over pure data parallel", format_speedup(result.speedup_over_data_parallel)),
            ("TFLOP/s per device (model / hardware)", f"{format_number(flops['model'])} / {format_number(flops['hardware'])}"),
            ("memory per device" + where, f"{format_bytes(mem.peak)} of {format_bytes(mem.capacity)} ({fits})"),
            ("search time", format_seconds(result.plan.search_seconds if search_seconds is None else search_seconds))]


def summary_sentence(result: PlanResult, model_label: str) -> str:
    mode = "training iteration" if result.options.mode == "train" else "inference pass"
    return (f"{model_label} on {result.machine.num_devices:,} devices of {result.machine.name}: one {mode} is "
            f"predicted at {format_seconds(result.total_seconds)}, "
            f"{format_speedup(result.speedup_over_data_parallel)} the speed of pure data parallelism "
            f"({format_seconds(result.data_parallel_seconds)}), with {format_bytes(result.memory.peak)} per device. "
            "Predictions come from a symbolic cost model of the machine, not from measurements.")


def parallelism_lines(result: PlanResult) -> list[str]:
    """The parallelism per level: pipeline stages, then for each level of a stage how much of the
    compute (by FLOPs) splits the batch there (data parallelism) and how much splits another
    dimension (model parallelism), with those dimensions."""
    graph, cm, sched = result.graph, result.cost_model, result.schedule
    lines = []
    if sched.stages > 1:
        levels = ", ".join(dict.fromkeys(sched.boundary_levels)) or "the outermost"
        lines.append(f"pipeline parallelism: {sched.stages} stages over the {levels} level, "
                     f"{sched.micro_batches:,} micro-batch{'es' if sched.micro_batches > 1 else ''}, each stage on {result.split.stage_machine.num_devices:,} devices")
    batch = graph.batch_dims()
    heavy = [n for n in cm.planned if graph.operators[n].kind is OpKind.COMPUTE]
    total = sum(graph.operators[n].flops for n in heavy) or 1.0
    for li, lv in enumerate(cm.machine.levels):
        cuts = [t for t, c in enumerate(cm.cuts) if c.level == li]
        if not cuts:
            continue
        data, model, dims = 0.0, 0.0, {}
        for n in heavy:
            w = graph.operators[n].flops / total
            split = {result.plan.strategies[n][t] for t in cuts} - {None}
            data += w if batch.get(n) in split else 0.0
            if split - {batch.get(n)}:
                model += w
                for d in split - {batch.get(n)}:
                    dims[d] = dims.get(d, 0.0) + w
        words = [f"data parallel (the batch split) on {data:.0%} of the FLOPs"] if data >= 0.005 else []
        if model >= 0.005:
            top = ", ".join(d for d, _ in sorted(dims.items(), key=lambda kv: -kv[1])[:4])
            words.append(f"model parallel on {model:.0%} (dimensions {top})")
        lines.append(f"{lv.name} level ({lv.arity} per parent): " + ("; ".join(words) or "replicated"))
    return lines or ["one device: no parallelism"]


# ---- cost and memory ---------------------------------------------------------------------------

def cost_rows(result: PlanResult) -> list[tuple[str, str]]:
    s, sched = result.cost.seconds(), result.schedule
    per = " (one micro-batch, one stage)" if result.pipelined else ""
    rows = [(f"compute{per}", format_seconds(s["compute"])),
            (f"communication inside operators{per}", format_seconds(s["communication"])),
            (f"redistribution between operators{per}", format_seconds(s["redistribution"]))]
    hidden = s["total"] - result.total_seconds  # the communication the compute hides (as the CLI prints it)
    if not result.pipelined and hidden > 1e-9 * s["total"]:
        rows.append(("hidden behind compute (overlap)", "- " + format_seconds(hidden)))
    if result.pipelined:
        rows += [("micro-batches x slowest stage", f"{sched.micro_batches:,} x {format_seconds(max(sched.stage_seconds))}"),
                 ("pipeline bubble", format_seconds(sched.bubble_seconds))]
        if result.options.mode == "train":
            rows.append(("gradient sync (exposed)", format_seconds(max(sched.gradient_sync_seconds))))
    return rows + [("iteration", format_seconds(result.total_seconds))]


def level_table(result: PlanResult) -> Table:
    rows = tuple((lv, format_seconds(v["communication"]), format_seconds(v["redistribution"]))
                 for lv, v in result.cost.by_level().items())
    return Table(("level", "communication", "redistribution"), rows)


def stage_table(result: PlanResult) -> Table:
    sched = result.schedule
    rows = []
    for s in range(sched.stages):
        ops = sum(1 for st in sched.stage_of_op.values() if st == s)
        rows.append((str(s), f"{ops:,}", format_seconds(sched.stage_seconds[s]), format_seconds(sched.send_seconds[s]),
                     format_bytes(sched.memory[s].peak)))
    return Table(("stage", "operators", "per micro-batch", "of which sends", "memory per device"), tuple(rows))


def memory_parts(result: PlanResult) -> list[tuple[str, float]]:
    """The parts of the memory per device (bytes): parameters, gradients, optimizer state and
    activations in training; parameters and activations in inference, which keeps no gradients
    and no optimizer state."""
    mem = result.memory
    parts = [("parameters", mem.parameters), ("gradients", mem.gradients), ("optimizer state", mem.optimizer_state),
             ("activations", mem.activations)]
    if result.options.mode != "train":
        parts = [(label, v) for label, v in parts if label in ("parameters", "activations")]
    return parts


def memory_rows(result: PlanResult) -> list[tuple[str, str]]:
    mem = result.memory
    return [(label, format_bytes(v)) for label, v in memory_parts(result)] + [
        ("peak", format_bytes(mem.peak)), ("capacity", format_bytes(mem.capacity))]


def charts(result: PlanResult, top: int = 15) -> tuple[Chart, ...]:
    cost, mem = result.cost, result.memory
    per = "per micro-batch" if result.pipelined else "per iteration"
    parts = {n: ft.operator_parts(result, n) for n in ft.costliest(result)[:top]}
    ops = tuple(Bar(n, tuple((t, p[t]) for t in ("compute", "communication", "redistribution"))) for n, p in parts.items())
    s = cost.seconds()
    levels = (Bar("devices (compute)", (("compute", s["compute"]),)),) + tuple(
        Bar(f"{lv} level", (("communication", v["communication"]), ("redistribution", v["redistribution"])))
        for lv, v in cost.by_level().items())
    memory = (Bar("per device", tuple(memory_parts(result))),)
    return (Chart(f"The {len(ops)} costliest operators ({per})", "s", ops),
            Chart(f"Cost per machine level ({per})", "s", levels),
            Chart("Memory per device" + (" (the fullest stage)" if result.schedule.stages > 1 else ""), "B", memory,
                  capacity=mem.capacity))


# ---- formulas ----------------------------------------------------------------------------------

def formulas(result: PlanResult, top: int = FORMULA_OPERATORS) -> list[Formula]:
    """The cost formulas of the ``top`` costliest operators as the plan splits them, one per kind:
    operators of the same type, sizes, split and time (the same layer repeated) share one, which
    names how many operators it stands for."""
    cm = result.cost_model
    flops = cm.basis.symbols[0]
    constants = ft.memory_constants(cm.flops_per_memory_byte, flops)
    groups: dict[tuple, list[str]] = {}
    for name in ft.costliest(result):
        op = cm.graph.operators[name]
        key = (op.op_type, tuple(op.dims.items()), tuple(result.plan.strategies[name]),
               round(ft.operator_parts(result, name)["total"], 15))
        groups.setdefault(key, []).append(name)
    out = []
    for names in list(groups.values())[:top]:
        name = names[0]
        strategy = tuple(result.plan.strategies[name])
        op = cm.graph.operators[name]
        sizes = ", ".join(f"{d}={v:,}" for d, v in op.dims.items())
        parts = ft.operator_parts(result, name)
        out.append(Formula(name, op.op_type, split_text(result, name), sizes,
                           ft.plain_text(cm.op_formula(name, strategy, symbolic_dims=True), constants, flops,
                                         cm.bucket_bytes),
                           tuple(ft.card_terms(cm, name, strategy, parts["redistribution"])), parts["total"],
                           len(names) - 1))
    return out


def terms_text(formula: Formula) -> str:
    """``= 25.5 µs (compute) + 92.9 µs (node bytes) + ... - 17 µs (hidden behind backward compute)
    = 168 µs``: the terms of one formula in the unit of its total, which they add up to (``= 6.94 µs
    (compute)`` for one term)."""
    unit = seconds_unit(formula.seconds)
    parts = []
    for k, (label, v) in enumerate(formula.terms):
        sign = ("-" if v < 0 else "") if k == 0 else (" - " if v < 0 else " + ")
        parts.append(f"{sign}{format_seconds_in(abs(v), unit)} ({label})")
    if len(parts) == 1:  # one term is the total already
        return f"= {parts[0]}"
    return f"= {''.join(parts)} = {format_seconds_in(formula.seconds, unit)}"


def split_text(result: PlanResult, name: str) -> str:
    """``b0 x8 over gpu; n x4 over node`` (the prime cuts of one level and dimension multiplied),
    or ``replicated``."""
    merged: dict[tuple[str, str], int] = {}
    for level, dim, factor in op_cuts(result, name):
        if dim is not None:
            merged[(level, dim)] = merged.get((level, dim), 1) * factor
    return "; ".join(f"{dim} x{f} over {level}" for (level, dim), f in merged.items()) or "replicated"


def symbols_legend(result: PlanResult) -> str:
    levels = ", ".join(lv.name for lv in result.cost_model.machine.levels) or "none"
    memory = (" and B_mem its memory bandwidth (the roofline: max(FLOPs/F, bytes moved/B_mem))"
              if result.cost_model.flops_per_memory_byte else "")
    return (f"F is the device's FLOP/s{memory}; g_level the seconds per byte of a level's links (1 / bandwidth) and "
            f"L_level its latency (levels: {levels}); the other letters are the operator's dimensions, whose sizes "
            "follow the formula. "
            + (f"min(1, bytes/{ft.BUCKET_TEXT}) is the share of a gradient bucket ({ft.BUCKET_TEXT} = "
               f"{format_number(result.cost_model.bucket_bytes / 1e6)} MB) that a weight's gradient fills: it pays that share of "
               "the bucket's all-reduce latency. " if result.cost_model.bucket_bytes > 0 else "")
            + "The terms on this machine add up to the operator's time"
            + (" per micro-batch" if result.pipelined else " per iteration")
            + ": its compute and communication, less what the overlaps hide behind compute (and, with micro-batches, "
              "the gradient sync they share), plus its redistribution with its neighbours. " + RANKING)


#: How the report ranks operators (its formulas and its table), said under the formulas.
RANKING = ("Operators are ranked by that time, the sum shown (the operator's own time, overlaps taken off, "
           "plus its redistribution).")


def operator_table(result: PlanResult, top: int = TABLE_OPERATORS) -> Table:
    rows = []
    for n in ft.costliest(result)[:top]:
        op = result.graph.operators[n]
        s = ft.operator_parts(result, n)
        rows.append((n, op.op_type, split_text(result, n), format_flop_count(op.flops), format_seconds(s["compute"]),
                     format_seconds(s["communication"]), format_seconds(s["redistribution"])))
    return Table(("operator", "type", "split", "FLOPs (forward)", "compute", "communication (exposed)", "redistribution"),
                 tuple(rows))
