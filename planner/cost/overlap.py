"""Communication overlapped with computation, as the training engines schedule it: what is hidden
and what is exposed.

A device runs its kernels on one compute stream and its data-parallel and pipeline communication
on another, so a collective costs time only where the compute stream has to wait for it. Three
overlaps are modelled, each an option of :class:`planner.options.PlanOptions`:

* **Gradient sync, bucket by bucket** (``overlap_gradient_sync``; PyTorch DDP's behaviour,
  Megatron-LM's ``--overlap-grad-reduce``): during the last micro-batch's backward pass the
  gradients become ready operator by operator in reverse order; they fill buckets of
  ``bucket_mb``, and a bucket is all-reduced as soon as it is full, after the buckets before it.
  Only what finishes after the backward pass is exposed (:func:`bucket_timeline`). Off, the whole
  sync follows the backward pass.
* **ZeRO-3 parameter gathers prefetched one layer ahead** (``prefetch_parameters``; DeepSpeed's
  and FSDP's default): an operator's all-gather is issued when the operator before it starts
  computing, and the gradient reduce-scatter after its backward, on the same communication
  stream (:func:`timeline`). The first gather of each pass is exposed. Off, each gather and
  reduce-scatter waits for the compute and the compute for it.
* **Pipeline sends** (``overlap_pipeline_sends``; Megatron-LM's ``--overlap-p2p-communication``,
  off by default): a stage's sends of one micro-batch run while it computes another, so a
  micro-batch slot costs ``max(work, sends)`` instead of ``work + sends``.

Tensor-parallel collectives (partial sums inside a layer) stay exposed: the next operator needs
their result (Megatron-LM's default).

The searches price one operator at a time; :func:`hidden_seconds` is the same overlap seen from one
operator: its gradient all-reduce hidden behind its own backward compute (in a model of similar
layers, the backward of the layer before it in backward order, which is what hides it), and its
ZeRO-3 gathers behind its own forward and backward compute. The schedule
(:mod:`planner.cost.schedule`) prices the whole stage with the timelines below.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Overlaps:
    """Which communication is overlapped with compute (see the module docstring)."""

    gradient_sync: bool = False
    parameter_prefetch: bool = False
    pipeline_sends: bool = False


NO_OVERLAP = Overlaps()


def overlaps_of(options) -> Overlaps:
    """The overlaps a :class:`planner.options.PlanOptions` asks for."""
    return Overlaps(options.overlap_gradient_sync, options.prefetch_parameters, options.overlap_pipeline_sends)


@dataclass(frozen=True)
class Split:
    """Seconds of one kind of communication: ``hidden`` behind compute and ``exposed``."""

    hidden: float = 0.0
    exposed: float = 0.0

    @property
    def total(self) -> float:
        return self.hidden + self.exposed

    def __add__(self, other: Split) -> Split:
        return Split(self.hidden + other.hidden, self.exposed + other.exposed)

    def times(self, k: float) -> Split:
        return Split(k * self.hidden, k * self.exposed)


def backward_fraction(cm, name: str) -> float:
    """The share of an operator's training compute that runs in the backward pass: 2 of its 3
    passes, 3 of 4 when its forward is recomputed there."""
    return 3 / 4 if cm.recomputed(name) else 2 / 3


def timeline(items: list[tuple[float, float, float]]) -> float:
    """When the last of ``items`` ends, each ``(gather, compute, reduce)`` seconds in execution
    order on two streams: an item's compute waits for its gather, which is issued on the
    communication stream when the item before it starts computing (one ahead; the first at 0);
    its reduce is queued on that stream when its compute ends. An item with nothing to gather
    waits only for the compute before it."""
    if not items:
        return 0.0
    comm = ready = items[0][0]
    compute_end = 0.0
    for i, (_, compute, reduce) in enumerate(items):
        start = max(compute_end, ready)
        compute_end = start + compute
        if i + 1 < len(items) and items[i + 1][0] > 0:
            comm = max(comm, start) + items[i + 1][0]
            ready = comm
        elif i + 1 < len(items):  # nothing to gather: the next item need not wait for the stream
            ready = 0.0
        if reduce:
            comm = max(comm, compute_end) + reduce
    return max(compute_end, comm)


def serial(items: list[tuple[float, float, float]]) -> float:
    """The same items with nothing overlapped."""
    return sum(g + c + r for g, c, r in items)


def exposed_split(items: list[tuple[float, float, float]], overlapped: bool) -> Split:
    """How much of the items' communication the compute hides, and how much it waits for."""
    compute = sum(c for _, c, _ in items)
    comm = sum(g + r for g, _, r in items)
    exposed = (timeline(items) if overlapped else serial(items)) - compute
    exposed = min(comm, max(0.0, exposed))
    return Split(comm - exposed, exposed)


def bucket_timeline(backward: list[float], syncs: list[float], grad_bytes: list[float], bucket_bytes: float,
                    tail: float = 0.0, overlapped: bool = True) -> Split:
    """The gradient sync of one backward pass, bucket by bucket.

    ``backward``, ``syncs`` and ``grad_bytes`` are per operator in backward order (the reverse of
    the forward): its backward seconds, its gradient all-reduce seconds and its gradient's bytes.
    A bucket closes at the operator where the bytes since the last one reach ``bucket_bytes``
    (every operator with a gradient closes one when it is 0), the last operator closes the rest;
    its all-reduce is the sum of its operators' (their latency is already shared per bucket, see
    :func:`planner.cost.gradients.sync_traffic`). ``tail`` is communication that follows the whole
    sync (the embedding group's all-reduce across stages), always exposed after it."""
    items = []
    pending = filled = 0.0
    for i, (seconds, sync, nbytes) in enumerate(zip(backward, syncs, grad_bytes)):
        pending += sync
        filled += nbytes
        closes = i == len(backward) - 1 or (filled >= bucket_bytes and (nbytes > 0 or sync > 0))
        items.append((0.0, seconds, pending if closes else 0.0))
        if closes:
            pending = filled = 0.0
    if items and tail:
        g, c, r = items[-1]
        items[-1] = (g, c, r + tail)
    return exposed_split(items, overlapped)


def hidden_seconds(cm, name: str, cost) -> float:
    """Seconds of one operator's communication per micro-batch that the overlaps hide, seen from the
    operator alone (the searches' objective; see the module docstring): its share of the gradient
    all-reduce (``1/m`` of it) up to its own backward compute of the last micro-batch, its ZeRO-3
    forward gather up to its forward compute and its backward gather and reduce-scatter up to its
    backward compute."""
    chosen = cm.overlap
    if cm.mode != "train" or chosen == NO_OVERLAP:
        return 0.0
    basis = cm.basis
    compute = basis.time(cost.compute)
    backward = compute * backward_fraction(cm, name)
    hidden = 0.0
    if chosen.gradient_sync:
        hidden += min(basis.time(cost.gradient_sync), backward) / cm.micro_batches
    if chosen.parameter_prefetch and cost.parameter_gathers is not None:
        gathers = basis.time(cost.parameter_gathers)  # forward gather, backward gather, reduce-scatter
        hidden += min(gathers / 3, compute - backward) + min(2 * gathers / 3, backward)
    return hidden
