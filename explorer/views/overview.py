"""The Overview page: the plan's headline figures and the paragraph that explains them."""

from __future__ import annotations

from collections.abc import Callable

from explorer.safe_markdown import md_text, plain
from explorer.views.pipeline import configuration_label, fullest_stage, stage_work_seconds
from explorer.views.splits import distinct_workers, level_roles, weights_split_by_model
from planner.api import PlanResult
from planner.plans.parallelism import describe, summary_lines
from planner.units import (format_bytes, format_bytes_like, format_count, format_percent, format_seconds,
                           format_speedup, plural)


def headline(result: PlanResult) -> dict:
    """The Overview's figures, as numbers and as text. The iteration is the whole batch; compute,
    communication and redistribution are one micro-batch's (the whole iteration without a
    pipeline or micro-batches)."""
    s = result.cost.seconds()
    mem = result.memory
    sched = result.schedule
    flops = sched.tflops_per_device()
    if result.pipelined:
        breakdown = (f"{plural(sched.micro_batches, 'micro-batch')} x slowest stage "
                     f"{format_seconds(max(sched.stage_seconds))} + bubble {format_seconds(sched.bubble_seconds)}"
                     + (f" + gradient sync {format_seconds(max(sched.gradient_sync_seconds))}"
                        if result.options.mode == "train" else ""))
    else:
        breakdown = (f"compute {format_seconds(s['compute'])} + communication {format_seconds(s['communication'])} "
                     f"+ redistribution {format_seconds(s['redistribution'])}")
    return {
        "devices": result.machine.num_devices,
        "iteration_seconds": result.total_seconds,
        "iteration": format_seconds(result.total_seconds),
        "breakdown": breakdown,
        "configuration": configuration_label(result),
        "parallelism_lines": summary_lines(describe(result)),  # the engineers' terms; [0] names the plan
        "tflops_model": flops["model"],
        "tflops_hardware": flops["hardware"],
        "fullest_stage": fullest_stage(result),
        "speedup": format_speedup(result.speedup_over_data_parallel),
        "data_parallel": format_seconds(result.data_parallel_seconds) + (
            f" (does not fit: {format_bytes(result.data_parallel_memory.peak)} per device)"
            if result.data_parallel_memory is not None and not result.data_parallel_memory.fits else ""),
        "memory": f"{format_bytes_like(mem.peak, mem.capacity)} / {format_bytes(mem.capacity)}",
        "memory_peak": format_bytes_like(mem.peak, mem.capacity),
        "memory_capacity": format_bytes_like(mem.capacity, mem.peak),
        "fits": mem.fits,
        "shortfall": format_bytes_like(mem.shortfall_bytes, mem.peak, mem.capacity),
        "search": format_seconds(result.plan.search_seconds),
        "compute": format_seconds(s["compute"]),
        "communication": format_seconds(s["communication"]),
        "redistribution": format_seconds(s["redistribution"]),
    }


def machine_text(result: PlanResult, machine_label: str | None = None) -> str:
    """The machine in words, from its shape (never the name of a preset it was edited from):
    ``64 nodes x 8 gpus of A100-SXM4-80GB``, plus ``(preset dgx_a100_64nodes)`` when it is one
    unchanged, or ``(edited)`` for a custom machine."""
    m = result.machine
    shape = " x ".join(f"{lv.arity} {lv.name}{'s' if lv.arity > 1 else ''}" for lv in m.levels)
    tag = "" if machine_label is None else " (edited)" if machine_label == "custom" else f" (preset {machine_label})"
    return f"{shape} of {m.device.name}{tag}"


def _roles_text(roles: list[str]) -> str:
    return " and ".join([", ".join(roles[:-1]), roles[-1]] if len(roles) > 2 else roles)


def where_split(result: PlanResult) -> str:
    """What the plan splits where: ``the layers into 2 pipeline stages over the node level, the
    batch over the 32 nodes of a stage, and heads and hidden over the 8 gpus of each node``."""
    parts = []
    sched = result.schedule
    if sched.stages > 1:
        levels = ", ".join(dict.fromkeys(sched.boundary_levels)) or "no"
        parts.append(f"the layers into {sched.stages} pipeline stages (activations sent between them over the {levels} "
                     "level)")
    replicated, outer = [], " of a stage" if sched.stages > 1 else ""
    levels = {lv.name: lv for lv in result.cost_model.machine.levels}
    for level, roles in level_roles(result):
        where = f"the {levels[level].arity} {level}s{outer}"
        outer = f" of each {level}"
        if roles:
            parts.append(f"the {_roles_text(roles)} over {where}")
        else:
            replicated.append(where)
    text = _roles_text(parts) if parts else "nothing (every operator runs whole on each device)"
    return text + (f"; it replicates the work over {' and '.join(replicated)}" if replicated and parts else "")


def _model_split_reason(result: PlanResult) -> str:
    """Why the plan beats pure data parallelism: the weights it splits by something other than the
    batch, whose gradients then cross fewer devices."""
    split = weights_split_by_model(result)
    total = result.graph.parameter_count or 1
    dp = ("pure data parallelism all-reduces the gradient of every one of the "
          f"{format_count(total)} weights over all {result.machine.num_devices:,} devices each iteration")
    if result.schedule.stages > 1:
        return dp + (f", while each of the {result.schedule.stages} pipeline stages holds only its own layers' weights "
                     "and all-reduces their gradients among its own devices")
    if not split:
        return dp + ", while this plan trades part of that traffic for cheaper communication inside the operators"
    names = ", ".join(f"{md_text(n)} ({format_count(w)} weights: {md_text(label)})" for n, w, label in split[:2])
    share = sum(w for _, w, _ in split) / total
    return (dp + f", while this plan splits {format_percent(share, 2)} of the weights by something other than the "
            "batch, so their "
            f"gradients need no all-reduce over those devices: {names}" + (" and others" if len(split) > 2 else ""))


def split_by_level(result: PlanResult) -> str:
    """``node: batch, hidden | gpu: batch, hidden`` (and the pipeline stages first)."""
    parts = [f"pipeline: {result.schedule.stages} stages"] if result.schedule.stages > 1 else []
    parts += [f"{level}: {', '.join(roles) or 'replicated'}" for level, roles in level_roles(result)]
    return " | ".join(parts) or "one device"


#: What each ZeRO stage shards over the data-parallel devices.
ZERO_SHARDS = {1: "the optimizer state", 2: "the optimizer state and the gradients",
               3: "the optimizer state, the gradients and the weights"}


def memory_measures(result: PlanResult) -> list[str]:
    """What the plan does to fit besides splitting operators: ``shards the optimizer state over
    the devices (ZeRO-1)``, ``recomputes the activations in the backward pass (full
    recomputation)``."""
    sched = result.schedule
    out = []
    if sched.zero:
        out.append(f"shards {ZERO_SHARDS.get(sched.zero, 'the training state')} over the devices "
                   f"(ZeRO-{sched.zero})")
    if sched.recompute and sched.recompute != "none":
        out.append(f"recomputes activations in the backward pass instead of keeping them ({sched.recompute} "
                   "recomputation)")
    return out


def _no_fit_sentence(result: PlanResult) -> str:
    """The second sentence when pure data parallelism does not fit: what it would need, what the
    plan needs, and the times."""
    dp, mem, h = result.data_parallel_memory, result.memory, headline(result)
    state = dp.parameters + dp.gradients + dp.optimizer_state
    held = ("all " + format_count(result.graph.parameter_count) + " weights with their gradients and optimizer state"
            if result.options.mode == "train" else "all " + format_count(result.graph.parameter_count) + " weights")
    need = (f"Pure data parallelism does not fit: every device would hold {held} ({format_bytes(state)}) and the "
            f"activations of its share of the batch ({format_bytes(dp.activations)}), {format_bytes(dp.peak)} against "
            f"{format_bytes(dp.capacity)}; ")
    plan = (f"this plan needs {format_bytes_like(mem.peak, mem.capacity)} per device" if mem.fits else
            f"this plan comes closest at {format_bytes_like(mem.peak, mem.capacity)} per device ({h['shortfall']} short)")
    sp = result.speedup_over_data_parallel
    versus = ("faster than" if sp >= 1.02 else "the speed of" if sp < 0.98 else "as fast as")
    return (f"{need}{plan}, and one iteration takes **{h['iteration']}**, **{h['speedup']}** {versus} data parallelism "
            f"would be if it fit ({format_seconds(result.data_parallel_seconds)}).")


def story(result: PlanResult, machine_label: str | None = None) -> str:
    """The Overview's first two sentences (Markdown): what the plan split where (and what else it
    does to fit), and the speed-up over pure data parallelism with the reason, or, when data
    parallelism does not fit, what it would need against what the plan needs."""
    h = headline(result)
    measures = memory_measures(result)
    first = (f"On {h['devices']:,} devices ({md_text(machine_text(result, machine_label))}) the planner splits "
             f"{md_text(where_split(result))}"  # level names come from the machine: escaped
             + (f", and {_roles_text(measures)}" if measures else "") + ".")
    dp_mem = result.data_parallel_memory
    sp = result.speedup_over_data_parallel
    if dp_mem is not None and not dp_mem.fits:
        return f"{first} {_no_fit_sentence(result)}"
    if sp < 0.98:
        why = (f"what the sidebar fixes here ({h['configuration']}, with {result.plan.algorithm}) costs more than it "
               "saves: set the pipeline and memory options back to auto, with drec+, to let the search choose")
    elif sp < 1.02:
        cheap = ("data parallelism's gradient all-reduce is already cheap" if result.options.mode == "train"
                 else "data parallelism moves nothing between devices")
        why = (f"with this batch each device has enough samples that computing dominates and {cheap}: "
               "try a smaller batch, slower links or a bigger model")
    else:
        why = _model_split_reason(result)
    versus = (f"a speed-up of **{h['speedup']}** over" if sp >= 0.98 else f"**{h['speedup']}** the speed of")
    second = (f"One iteration takes **{h['iteration']}**, {versus} pure data parallelism "
              f"({format_seconds(result.data_parallel_seconds)}), because {why}.")
    return f"{first} {second}"


def explanation(result: PlanResult, model_label: str, markdown: bool = True, machine_label: str | None = None) -> str:
    """The Overview's paragraph (Markdown; with ``markdown=False`` the names are left unescaped)."""
    esc = md_text if markdown else plain
    h = headline(result)
    s = result.cost.seconds()
    total = s["total"] or 1.0
    mode = "one training iteration (forward, backward and the gradient all-reduces)" if result.options.mode == "train" \
        else "one inference pass (forward only)"
    fixed = [name for name, value in (("pipeline stages", result.options.pipeline_stages),
                                      ("recomputation", result.options.recompute), ("ZeRO", result.options.zero))
             if value is not None]
    advice = "lower the batch" + (", use a 16-bit precision" if result.options.precision in (None, "fp32") else "") \
        + (f" or set {', '.join(fixed)} back to auto in the sidebar so that the search can trade time for memory"
           if fixed else " or use a machine with more devices or memory: the search found nothing that fits")
    fit = ("fits in each device's memory" if h["fits"] else
           f"does **not** fit in each device's memory: {h['shortfall']} short ({advice})")
    who = f"the fullest stage (stage {h['fullest_stage']})" if result.schedule.stages > 1 else "the plan"
    used = distinct_workers(result)
    replicas = ("" if used == h["devices"] else
                f" Only {used:,} of the {h['devices']:,} devices do distinct work: at the other cuts of the machine "
                "every operator is replicated, because splitting there would cost more in communication than it "
                "saves (a larger batch or faster links change that; try the Compare page's what-if).")
    split = (f"{format_percent(s['compute'] / total, 2)} compute, {format_percent(s['communication'] / total, 2)} "
             "communication inside operators "
             "(all-reduces of partial sums" + (" and gradients" if result.options.mode == "train" else "")
             + f") and {format_percent(s['redistribution'] / total, 2)} redistribution between "
             "operators whose layouts differ")
    time_text = f"**{h['iteration']}** is the predicted time of {mode}: {split}. "
    if result.pipelined:
        time_text = pipeline_explanation(result, split, esc)
    return (
        f"The planner chose, for every operator of **{esc(model_label)}**, how to split it across the "
        f"**{h['devices']:,} devices** ({esc(machine_text(result, machine_label))}) with **{result.plan.algorithm}** in "
        f"{h['search']}, "
        "without running anything: "
        f"each choice is scored by a symbolic BSP cost model of the machine. {time_text}"
        f"Pure data parallelism (every device holds the whole model and takes a slice of the batch) would take "
        f"{h['data_parallel']}, so the speed-up over pure data parallel is **{h['speedup']}**. "
        f"Per device {who} needs {format_bytes_like(result.memory.peak, result.memory.capacity)} of "
        f"{format_bytes_like(result.memory.capacity, result.memory.peak)}: it {fit}. "
        "Predictions are model estimates for comparing strategies, not measurements."
        + (" Here no operator is split: with this batch and machine, every split would cost more in communication "
           "than it saves in compute, so each device runs the whole iteration (the others hold replicas)."
           if used == 1 else replicas)
    )


def pipeline_explanation(result: PlanResult, operator_split: str, esc: Callable = md_text) -> str:
    """The explanation's sentences on the time of a plan with stages or micro-batches."""
    sched = result.schedule
    slowest = max(range(sched.stages), key=lambda i: sched.stage_seconds[i])
    t = sched.stage_seconds[slowest]
    size = f" of {sched.micro_batch_size}" if sched.micro_batch_size else ""
    train = result.options.mode == "train"
    micro = f"**{plural(sched.micro_batches, 'micro-batch')}**"
    if sched.stages > 1:
        levels = esc(", ".join(dict.fromkeys(sched.boundary_levels))) or "no"
        shape = (f"The model is cut into **{sched.stages} pipeline stages** (consecutive layers, each on "
                 f"{result.split.stage_machine.num_devices:,} devices; activations"
                 + (" and their gradients" if train else "") + f" are sent between stages over the {levels} level) "
                 f"and the batch into {micro}{size}, run in the " + ("1F1B schedule" if train else "pipeline")
                 + (f" with {sched.interleave} model chunks per device" if sched.interleave > 1 else "") + ". ")
        slots = (f"{sched.micro_batches} x the slowest stage's {format_seconds(t)} per micro-batch (stage {slowest}: "
                 f"{format_seconds(stage_work_seconds(result)[slowest])} of operators, "
                 f"{format_seconds(sched.send_seconds[slowest])} of sends), plus the fill-and-drain bubble of "
                 f"{format_seconds(sched.bubble_seconds)}")
    else:
        shape = (f"The batch is processed as {micro}{size}" + (", accumulating the gradients, so that the gradient "
                                                               "all-reduce happens once per iteration. " if train else ". "))
        slots = f"{sched.micro_batches} x {format_seconds(t)} per micro-batch"
    sync = (f", plus the gradient all-reduce of {format_seconds(max(sched.gradient_sync_seconds))}"
            + (" (the part the last backward pass does not hide)" if result.options.overlap_gradient_sync else "")
            if train else "")
    return (shape + f"**{format_seconds(result.total_seconds)}** is the predicted time of one "
            + ("training iteration" if train else "batch") + f": {slots}{sync}. Over the whole model, one "
            f"micro-batch is {operator_split}. ")
