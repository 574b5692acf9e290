"""The Overview page: the plan's headline figures and the paragraph that explains them."""

from __future__ import annotations

from collections.abc import Callable

from explorer.safe_markdown import md_text, plain
from explorer.views.pipeline import configuration_label, fullest_stage, stage_work_seconds
from explorer.views.splits import distinct_workers
from planner.api import PlanResult
from planner.plans.parallelism import describe, summary_lines
from planner.units import format_bytes, format_bytes_like, format_seconds, format_speedup, plural


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


def explanation(result: PlanResult, model_label: str, markdown: bool = True) -> str:
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
    split = (f"{s['compute'] / total:.0%} compute, {s['communication'] / total:.0%} communication inside operators "
             "(all-reduces of partial sums" + (" and gradients" if result.options.mode == "train" else "")
             + f") and {s['redistribution'] / total:.0%} redistribution between "
             "operators whose layouts differ")
    time_text = f"**{h['iteration']}** is the predicted time of {mode}: {split}. "
    if result.pipelined:
        time_text = pipeline_explanation(result, split, esc)
    return (
        f"The planner chose, for every operator of **{esc(model_label)}**, how to split it across the "
        f"**{h['devices']:,} devices** of {esc(result.machine.name)} with **{result.plan.algorithm}** in {h['search']}, "
        "without running anything: "
        f"each choice is scored by a symbolic BSP cost model of the machine. {time_text}"
        f"Pure data parallelism (every device holds the whole model and takes a slice of the batch) would take "
        f"{h['data_parallel']}, so the speed-up over pure data parallel is **{h['speedup']}**"
        + (f" (but pure data parallelism does not fit: it needs {format_bytes(result.data_parallel_memory.peak)} per "
           "device). " if result.data_parallel_memory is not None and not result.data_parallel_memory.fits else ". ")
        + 
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
