"""Context parallelism: attention split along the sequence with the ring schedule, as Megatron-LM's
and PyTorch's context parallel run it, priced step by step.

Owns the ring's arithmetic (steps, exposed transfers, memory in flight), the zig-zag assignment
of sequence chunks that balances a causal mask, and :func:`apply_ring`, which adds the ring to a
plan priced at sequence ``s / C`` (every token-wise operator of a context-parallel rank holds
``s / C`` of the sequence, so a plan of the graph bound to ``s / C`` prices them exactly, the
weight gradients all-reduced over the data- and context-parallel ranks together, as Megatron-LM
does).

**The ring.** Each of ``C`` ranks holds ``s / C`` of the queries and its own block of K and V.
Forward: ``C`` steps; at step ``i`` a rank computes its queries against the K/V block it holds
(its own at step 0) while it sends that block to the next rank and receives the next one
(``C - 1`` transfers; the last step sends nothing). A step takes ``max(block compute,
transfer)``, so the exposed time is ``(C - 1) x max(0, transfer - block)``. Backward: ``C`` steps
of the block's backward; K/V go round again (``C - 1`` transfers) and the partial dK/dV travel
with them one step behind (a transfer at steps ``1 .. C-1``), each overlapped with the step's
block; after the last step the dK/dV reach their owner by one more hop, which nothing hides.

**Zig-zag.** With a causal mask, contiguous chunks give rank ``r`` ``r + 1/2`` blocks of work
(the last rank the most); cutting the sequence into ``2C`` chunks and giving rank ``i`` chunks
``i`` and ``2C - 1 - i`` gives every rank the same work (:func:`causal_pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.cost.memory import MemoryReport


def zigzag_chunks(rank: int, ranks: int) -> tuple[int, int]:
    """The two of ``2 x ranks`` sequence chunks rank ``rank`` holds under the zig-zag assignment."""
    return rank, 2 * ranks - 1 - rank


def rank_positions(rank: int, ranks: int, seq: int, zigzag: bool = True) -> list[int]:
    """The query (and key) positions rank ``rank`` holds: chunks ``i, 2C-1-i`` of ``s / 2C`` under
    zig-zag, chunk ``i`` of ``s / C`` otherwise."""
    if zigzag:
        size = seq // (2 * ranks)
        return [p for c in zigzag_chunks(rank, ranks) for p in range(c * size, (c + 1) * size)]
    size = seq // ranks
    return list(range(rank * size, (rank + 1) * size))


def causal_pairs(ranks: int, seq: int, zigzag: bool = True) -> list[int]:
    """Per rank, the (query, key) pairs a causal mask leaves to compute (key <= query): the
    attention work of each rank."""
    return [sum(p + 1 for p in rank_positions(r, ranks, seq, zigzag)) for r in range(ranks)]


@dataclass(frozen=True)
class RingCost:
    """One attention layer's ring on one rank, one micro-batch, in seconds."""

    ranks: int
    forward_block: float  # the attention core of one block (s/C queries x s/C keys), forward
    backward_block: float  # its backward (with the recomputation of its forward, if any)
    transfer: float  # one K/V block over the ring's link
    forward_exposed: float
    backward_exposed: float

    @property
    def compute(self) -> float:
        return self.ranks * (self.forward_block + self.backward_block)

    @property
    def exposed(self) -> float:
        return self.forward_exposed + self.backward_exposed

    @property
    def seconds(self) -> float:
        return self.compute + self.exposed


def ring_cost(ranks: int, forward_block: float, backward_block: float, block_bytes: float,
              bandwidth_Bps: float, latency_s: float, train: bool = True) -> RingCost:
    """The ring of ``ranks`` ranks for one layer (module docstring); ``block_bytes`` is one rank's
    K and V together. A transfer of ``x`` bytes takes ``x / bandwidth + latency``."""
    def send(nbytes: float) -> float:
        return nbytes / bandwidth_Bps + latency_s if nbytes else 0.0

    kv = send(block_bytes)
    forward = (ranks - 1) * max(0.0, kv - forward_block)
    backward = 0.0
    if train and ranks > 1:
        for step in range(ranks):
            moved = block_bytes * (step < ranks - 1) + block_bytes * (step > 0)  # K/V ahead, dK/dV behind
            backward += max(0.0, send(moved) - backward_block)
        backward += kv  # the last dK/dV hop home
    return RingCost(ranks, forward_block, backward_block if train else 0.0, kv if ranks > 1 else 0.0,
                    forward, backward)


def in_flight_bytes(block_bytes: float, train: bool = True) -> float:
    """Ring buffers beside the local K/V: the block being computed on and the one arriving
    (forward), plus the travelling dK/dV pair in the backward pass; one layer at a time."""
    return (4 if train else 2) * block_bytes


@dataclass(frozen=True)
class RingLayer:
    """What :func:`apply_ring` needs of one attention layer of the ``s / C`` plan."""

    stage: int
    core_seconds: float  # the attention core's compute, all passes, one micro-batch, one block
    forward_fraction: float  # of it, the forward pass (1/3 in training, 1/4 when recomputed)
    block_bytes: float  # one rank's K and V (the un-repeated K/V heads)
    core_saved_bytes: float  # its saved tensors that grow with the keys (0 when recomputed)


def apply_ring(schedule, layers: list[RingLayer], ranks: int, bandwidth_Bps: float, latency_s: float,
               train: bool = True):
    """``schedule`` (a :class:`~planner.cost.schedule.PipelineSchedule` of the ``s / C`` plan) with
    each stage's ring added: ``C - 1`` more blocks of every attention core (forward and backward),
    the exposed transfers, the saved attention tensors ``C`` times as long (queries x all keys)
    and the ring's buffers. Returns the new schedule and the rings per stage."""
    extra = [0.0] * schedule.stages
    saved = [0.0] * schedule.stages
    buffers = [0.0] * schedule.stages
    rings: list[list[RingCost]] = [[] for _ in range(schedule.stages)]
    for layer in layers:
        fwd = layer.core_seconds * layer.forward_fraction
        ring = ring_cost(ranks, fwd, layer.core_seconds - fwd, layer.block_bytes, bandwidth_Bps, latency_s, train)
        rings[layer.stage].append(ring)
        extra[layer.stage] += ring.seconds - layer.core_seconds  # the plan already has one block
        saved[layer.stage] += (ranks - 1) * layer.core_saved_bytes
        buffers[layer.stage] = max(buffers[layer.stage], in_flight_bytes(layer.block_bytes, train))
    stage_seconds = [s + e for s, e in zip(schedule.stage_seconds, extra)]
    work = [w + e for w, e in zip(schedule.work_seconds, extra)]
    slowest = max(stage_seconds)
    bubble = (schedule.stages - 1) / schedule.interleave * slowest
    iteration = schedule.micro_batches * slowest + bubble + max(schedule.gradient_sync_seconds)
    memory = [_with_activations(m, in_flight(schedule, s) * saved[s] + buffers[s])
              for s, m in enumerate(schedule.memory)]
    return replace(schedule, stage_seconds=stage_seconds, work_seconds=work, bubble_seconds=bubble,
                   iteration_seconds=iteration, memory=memory), rings


def in_flight(schedule, stage: int) -> float:
    """Micro-batches whose activations stage ``stage`` keeps under 1F1B (interleaved: the first
    stage ``1 + (P-1)/(P v)`` times ``P``, the others proportionally fewer)."""
    p, v = schedule.stages, schedule.interleave
    if v == 1:
        return min(schedule.micro_batches, p - stage)
    return min(schedule.micro_batches, (1 + (p - 1) / (p * v)) * p * (p - stage) / p)


def _with_activations(report: MemoryReport, more: float) -> MemoryReport:
    return replace(report, activations=report.activations + more)
