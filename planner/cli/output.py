"""How ``plan`` and ``evaluate`` print a result: one labelled line per figure."""

from __future__ import annotations

from planner.plans.parallelism import describe, summary_lines
from planner.units import format_bytes, format_seconds


def print_result(result, label: str, how: str) -> None:
    """Print ``result`` for the model ``label``; ``how`` ends the algorithm line (``search 251 ms``
    after a search, what was priced instead when nothing was searched)."""
    padding = getattr(result.graph, "vocabulary_padding", None)  # Megatron's padded vocabulary
    padded = f" with the vocabulary padded from {padding[0]:,} to {padding[1]:,} tokens" if padding else ""
    print(f"model        {label} ({result.graph.parameter_count:,} parameters{padded})")
    print(f"machine      {result.machine.summary()}")
    print(f"algorithm    {result.plan.algorithm} ({result.options.mode}), {how}")
    for i, line in enumerate(summary_lines(describe(result))):
        print(f"{'parallelism' if i == 0 else '':13}{line}")
    if result.pipelined:
        _print_pipeline(result)
    else:
        _print_iteration(result)
    _print_throughput_and_memory(result)
    for note in result.notes:
        print(f"note         {note}")


def _print_pipeline(result) -> None:
    s = result.cost.seconds()
    sched = result.schedule
    levels = ", ".join(sorted(set(sched.boundary_levels))) or "none"
    print(f"pipeline     {sched.stages} stage(s) (sends over: {levels}), {sched.micro_batches} micro-batch(es) "
          f"of {sched.micro_batch_size} sample(s) per stage, interleave {sched.interleave}; each stage on "
          f"{result.split.stage_machine.summary()}")
    slowest = sched.stage_seconds.index(max(sched.stage_seconds))
    print(f"micro-batch  {format_seconds(sched.stage_seconds[slowest])} in the slowest stage ({slowest}; sends "
          f"{format_seconds(sched.send_seconds[slowest])}); the whole graph on one stage machine: compute "
          f"{format_seconds(s['compute'])} + communication {format_seconds(s['communication'])} + redistribution "
          f"{format_seconds(s['redistribution'])}")
    print(f"iteration    {format_seconds(result.total_seconds)} = {sched.micro_batches} x slowest stage + bubble "
          f"{format_seconds(sched.bubble_seconds)} + gradient sync {format_seconds(max(sched.gradient_sync_seconds))}")


def _print_iteration(result) -> None:
    s = result.cost.seconds()
    hidden = s["total"] - result.total_seconds  # the gradient sync the backward pass hides (overlap)
    print(f"iteration    {format_seconds(result.total_seconds)}  = compute {format_seconds(s['compute'])}"
          f" + communication {format_seconds(s['communication'])} + redistribution {format_seconds(s['redistribution'])}"
          + (f" - gradient sync hidden behind the backward pass {format_seconds(hidden)}"
             if hidden > 1e-9 * s["total"] else ""))


def _print_throughput_and_memory(result) -> None:
    mem = result.memory
    sched = result.schedule
    if result.options.mode == "train":
        tf = sched.tflops_per_device()
        print(f"throughput   {tf['model']:.1f} TFLOP/s per device (model), {tf['hardware']:.1f} (hardware, "
              f"recomputation {sched.recompute}); ZeRO stage {sched.zero}")
    dp_memory = result.data_parallel_memory
    dp_fit = f" (it does not fit: {format_bytes(dp_memory.peak)} per device)" if dp_memory and not dp_memory.fits else ""
    print(f"data parallel {format_seconds(result.data_parallel_seconds)}{dp_fit}: speed-up over pure data parallel "
          f"{result.speedup_over_data_parallel:.2f}x")
    fit = "fits" if mem.fits else f"does NOT fit: {format_bytes(mem.shortfall_bytes)} short"
    where = f" (stage {[m.peak for m in sched.memory].index(mem.peak)}, the fullest)" if sched.stages > 1 else ""
    print(f"memory       {format_bytes(mem.peak)} per device of {format_bytes(mem.capacity)}{where} ({fit})")
