"""How ``plan`` and ``evaluate`` print a result: one labelled line per figure."""

from __future__ import annotations

from planner.cost.moe import moe_notes
from planner.plans.parallelism import describe, summary_lines
from planner.units import format_bytes, format_bytes_like, format_number, format_seconds, format_speedup, plural


def print_result(result, label: str, how: str) -> None:
    """Print ``result`` for the model ``label``; ``how`` ends the algorithm line (``search 251 ms``
    after a search, what was priced instead when nothing was searched)."""
    padding = getattr(result.graph, "vocabulary_padding", None)  # Megatron's padded vocabulary
    padded = f" with the vocabulary padded from {padding[0]:,} to {padding[1]:,} tokens" if padding else ""
    print(f"model        {label} ({result.graph.parameter_count:,} parameters{padded})")
    for note in moe_notes(result.graph):  # the MoE layers rewritten at import, or why not
        print(f"moe          {note}")
    print(f"machine      {result.machine.summary()}")
    print(f"algorithm    {result.plan.algorithm} ({result.options.mode}), {how}")
    for i, line in enumerate(summary_lines(describe(result))):
        print(f"{'parallelism' if i == 0 else '':13}{line}")
    if result.pipelined:
        _print_pipeline(result)
    else:
        _print_iteration(result)
    if result.options.mode == "train":
        _print_overlap(result)
    _print_throughput_and_memory(result)
    for note in result.notes:
        print(f"note         {note}")


def _print_pipeline(result) -> None:
    s = result.cost.seconds()
    sched = result.schedule
    levels = ", ".join(sorted(set(sched.boundary_levels))) or "none"
    print(f"pipeline     {plural(sched.stages, 'stage')} (sends over: {levels}), "
          f"{plural(sched.micro_batches, 'micro-batch')} of {plural(sched.micro_batch_size, 'sample')} per stage, "
          f"interleave {sched.interleave}; each stage on "
          f"{result.split.stage_machine.summary()}")
    slowest = sched.stage_seconds.index(max(sched.stage_seconds))
    print(f"micro-batch  {format_seconds(sched.stage_seconds[slowest])} in the slowest stage ({slowest}; sends "
          f"{format_seconds(sched.send_seconds[slowest])}); the whole graph on one stage machine: compute "
          f"{format_seconds(s['compute'])} + communication {format_seconds(s['communication'])} + redistribution "
          f"{format_seconds(s['redistribution'])}")
    sync = f" + gradient sync {format_seconds(max(sched.gradient_sync_seconds))}" if result.options.mode == "train" else ""
    print(f"iteration    {format_seconds(result.total_seconds)} = {sched.micro_batches} x slowest stage + bubble "
          f"{format_seconds(sched.bubble_seconds)}{sync}")


def _print_iteration(result) -> None:
    s = result.cost.seconds()
    hidden = s["total"] - result.total_seconds  # the communication the compute hides (overlap)
    print(f"iteration    {format_seconds(result.total_seconds)}  = compute {format_seconds(s['compute'])}"
          f" + communication {format_seconds(s['communication'])} + redistribution {format_seconds(s['redistribution'])}"
          + (f" - hidden behind compute {format_seconds(hidden)}" if hidden > 1e-9 * s["total"] else ""))


def _print_overlap(result) -> None:
    """One line per kind of communication with any time: hidden behind compute and exposed."""
    for row in result.schedule.overlap_breakdown():
        hidden, exposed = row["hidden_seconds"], row["exposed_seconds"]
        if hidden + exposed > 0:
            print(f"overlap      {row['communication']}: {format_seconds(hidden)} hidden, "
                  f"{format_seconds(exposed)} exposed per iteration")


def _print_throughput_and_memory(result) -> None:
    mem = result.memory
    sched = result.schedule
    if result.options.mode == "train":
        tf = sched.tflops_per_device()
        print(f"throughput   {format_number(tf['model'])} TFLOP/s per device (model), {format_number(tf['hardware'])} (hardware, "
              f"recomputation {sched.recompute}); ZeRO stage {sched.zero}")
    dp_memory = result.data_parallel_memory
    dp_fit = f" (it does not fit: {format_bytes(dp_memory.peak)} per device)" if dp_memory and not dp_memory.fits else ""
    print(f"data parallel {format_seconds(result.data_parallel_seconds)}{dp_fit}: speed-up over pure data parallel "
          f"{format_speedup(result.speedup_over_data_parallel)}")
    fit = "fits" if mem.fits else f"does NOT fit: {format_bytes_like(mem.shortfall_bytes, mem.peak)} short"
    where = f" (stage {[m.peak for m in sched.memory].index(mem.peak)}, the fullest)" if sched.stages > 1 else ""
    print(f"memory       {format_bytes_like(mem.peak, mem.capacity)} per device of "
          f"{format_bytes_like(mem.capacity, mem.peak)}{where} ({fit})")
