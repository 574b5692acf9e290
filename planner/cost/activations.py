"""Activation memory: the tensors a backward pass reads, kept as the training engines keep them.

Owns three things the memory model and the recomputation pricing share:

* **What each operator saves** for its backward pass (PyTorch autograd's saved tensors): a
  matrix product or convolution its inputs that are not weights, Softmax its output, a
  normalisation its input, Dropout a one-byte mask per element; views, gathers and shape
  arithmetic nothing; the model's outputs are kept for the loss. Element-wise operators are fused into kernels, as Megatron-LM's fused
  bias-GeLU and bias-dropout-add and ``torch.compile`` do: a chain of element-wise operators
  joined by tensors that only the next operator reads is one kernel, which saves its inputs from
  outside the chain if any operator in it is non-linear (GeLU, tanh, a product of two tensors
  that need gradients) and nothing if all are linear (bias and residual Adds, scaling by a
  constant, a mask's Where).
* **The attention core** that selective recomputation recomputes (Korthikanti et al. 2022,
  "Reducing Activation Recomputation in Large Transformer Models", section 5): the weight-free
  operators from the attention scores to the context (``Q K^T``, scaling, mask, Softmax,
  dropout, ``P V``), found from each Softmax.
* **The bytes one micro-batch keeps**: with the rules above a GPT layer keeps
  ``s b h (34 + 5 a s / h)`` bytes in 16-bit precision with dropout (the paper's equation 1);
  selective recomputation drops the ``5 a s / h`` term (the core's tensors are recomputed, its
  inputs Q, K, V are kept); tensor parallelism divides what the plan splits, and sequence
  parallelism keeps a column-parallel layer's input as the sequence shard its producer holds
  (Megatron-LM all-gathers it again in the backward pass, overlapped with the weight gradient).
  Under ``--precision fp8`` a linear layer keeps its input as its own 1-byte FP8 copy
  (:mod:`planner.cost.fp8`).
"""

from __future__ import annotations

from planner.cost import fp8
from planner.model.graph import OpKind, TensorRole

#: element-wise operators fused into one kernel (Dropout apart: it saves a mask of its own)
LINEAR_ELEMENTWISE = {"Add", "Sub", "Neg", "Sum", "Mean", "Where", "Cast", "CastLike", "Identity", "Expand",
                      "ReduceSum", "ReduceMean"}
SAVES_OUTPUT = {"Softmax", "LogSoftmax"}
SAVES_DATA_INPUT = {"LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization", "BatchNormalization",
                    "InstanceNormalization", "GroupNormalization", "MaxPool"}
SAVES_NOTHING = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Split", "Concat", "Slice", "Pad", "Tile",
                 "Gather", "GatherND", "GatherElements", "ScatterND", "ScatterElements", "AveragePool",
                 "GlobalAveragePool", "Shape", "Size", "Constant", "ConstantOfShape", "Range", "CumSum"}
DROPOUT_MASK_BYTES = 1  # one byte per element, as PyTorch's and Megatron-LM's dropout keep it
#: the loss keeps the model's outputs (the logits) in fp32: Megatron-LM casts them with ``.float()`` before its
#: vocabulary-parallel cross-entropy, which saves the fp32 softmax (``exp_logits``, ``s b V / t`` elements);
#: PyTorch's autocast runs ``log_softmax`` / ``cross_entropy`` in fp32 and saves its fp32 output
LOSS_ITEMSIZE = 4


def _fusible(op_type: str) -> bool:
    from planner.onnx.rules.elementwise import ELEMENTWISE_FLOPS

    return (op_type in ELEMENTWISE_FLOPS and op_type != "Dropout") or op_type in LINEAR_ELEMENTWISE


def _nonlinear(cm, name: str) -> bool:
    """Whether an element-wise operator's backward pass reads its inputs."""
    op = cm.graph.operators[name]
    tensors = cm.graph.tensors
    if op.op_type in LINEAR_ELEMENTWISE:
        return False
    if op.op_type in ("Mul", "Div"):
        graded = [u for u in op.inputs if tensors[u.tensor].requires_grad]
        divisor = op.op_type == "Div" and len(op.inputs) > 1 and tensors[op.inputs[1].tensor].requires_grad
        return len(graded) > 1 or divisor  # x * c and x / c are linear; x * gamma and c / x are not
    return True


def _regions(cm) -> dict[str, str]:
    """Fused element-wise kernels: each fusible operator -> its region's representative."""
    parent = {n: n for n in cm.planned if _fusible(cm.graph.operators[n].op_type)}

    def find(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    readers: dict[str, int] = {}
    for e in cm.edges:
        readers[e.tensor] = readers.get(e.tensor, 0) + 1
    for e in cm.edges:
        if e.producer in parent and e.consumer in parent and readers[e.tensor] == 1:
            parent[find(e.producer)] = find(e.consumer)
    return {n: find(n) for n in parent}


def attention_core(cm) -> frozenset[str]:
    """The operators selective recomputation recomputes: for each Softmax fed (through element-wise
    operators on the data path) by a weight-free matrix product and feeding one (through
    element-wise operators and dropout), those products and everything between them."""
    g = cm.graph
    producer = {e.tensor: e.producer for e in cm.edges}
    consumers: dict[str, list[str]] = {}
    for e in cm.edges:
        consumers.setdefault(e.producer, []).append(e.consumer)

    def weight_free_product(n: str) -> bool:
        op = g.operators[n]
        return op.kind is OpKind.COMPUTE and op.op_type in ("MatMul", "Einsum") and not cm.info[n].has_parameters

    def walk(start: str, step) -> set[str] | None:
        path, frontier = set(), [start]
        for _ in range(8):
            nxt = []
            for n in frontier:
                for m in step(n):
                    if weight_free_product(m):
                        return path | {m}
                    if _fusible(g.operators[m].op_type) or g.operators[m].op_type == "Dropout":
                        path.add(m)
                        nxt.append(m)
            frontier = nxt
        return None

    def back(n):
        return [producer[u.tensor] for u in g.operators[n].inputs
                if u.tensor in producer and g.tensors[u.tensor].requires_grad]

    core: set[str] = set()
    for name in cm.planned:
        if g.operators[name].op_type != "Softmax":
            continue
        before, after = walk(name, back), walk(name, lambda n: consumers.get(n, []))
        if before and after:
            core |= before | after | {name}
    return frozenset(core)


def mark_attention_core(cm) -> None:
    """Set ``cm.selective_ops`` to the attention core and tell its operators' cost signatures apart
    (the cost caches are keyed by signature: a core operator is priced with its recomputation)."""
    cm.selective_ops = attention_core(cm)
    for name in cm.selective_ops:
        cm.info[name].signature += "|attention core"


def _kept(t) -> bool:
    return (t.role is TensorRole.ACTIVATION and t.requires_grad) or (t.role is TensorRole.INPUT and t.is_float)


def _tables(cm) -> tuple:
    """What :func:`saved_tensors` needs of the graph alone, computed once per cost model (its
    variants share it): the fused regions, whether each is non-linear, each tensor's producer, and
    the tensors some operator reads."""
    hit = getattr(cm, "_activation_tables", None)
    if hit is None:
        regions = _regions(cm)
        needs: dict[str, bool] = {}
        for n, root in regions.items():
            needs[root] = needs.get(root, False) or _nonlinear(cm, n)
        producer_of = {e.tensor: (e.producer, e.out_index) for e in cm.edges}
        hit = cm._activation_tables = (regions, needs, producer_of, {e.tensor for e in cm.edges})
    return hit


def loss_tensors(cm, full: dict, ops: list[str]) -> dict[str, float]:
    """The model outputs among ``ops``' outputs that the loss reads (the logits; no operator reads
    them), as the loss keeps them for its backward pass: local elements x :data:`LOSS_ITEMSIZE`
    (fp32) bytes, one micro-batch. They are on the last stage only, whose last chunk runs each
    micro-batch's backward pass right after its forward pass in 1F1B (interleaved or not), so
    they are held for one micro-batch at a time."""
    read = _tables(cm)[3]
    kept: dict[str, float] = {}
    for name in ops:
        for i, u in enumerate(cm.info[name].uses):
            t = cm.graph.tensors[u.tensor]
            if u.is_output and u.tensor not in read and _kept(t):
                size = cm.local_bytes(name, i, full[name])
                kept[u.tensor] = max(kept.get(u.tensor, 0.0), size / u.itemsize * max(LOSS_ITEMSIZE, u.itemsize))
    return kept


def saved_tensors(cm, full: dict, ops: list[str], drop_core: bool = False, outputs: bool = True) -> dict[str, float]:
    """Local bytes of every tensor the backward pass of ``ops`` reads, one micro-batch (a dropout
    mask as ``<operator>:mask``). ``drop_core``: the attention core's own tensors are recomputed,
    not kept (its inputs are). ``outputs=False`` leaves out the model outputs the loss reads (at
    their own precision here; :func:`loss_tensors` counts them as the loss keeps them)."""
    g = cm.graph
    tensors = g.tensors
    regions, needs, producer_of, read = _tables(cm)
    core = cm.selective_ops if drop_core else frozenset()
    kept: dict[str, float] = {}

    def keep(name: str, index: int, in_fp8: bool = False) -> None:
        use = cm.info[name].uses[index]
        t = tensors[use.tensor]
        if not _kept(t) or (name in core and t.producer in core):
            return
        size = cm.local_bytes(name, index, full[name])
        source = producer_of.get(use.tensor)
        if cm.sequence_parallel and source and not use.is_output and source[0] in full:
            size = min(size, cm.local_bytes(source[0], source[1], full[source[0]]))  # the shard is kept
        key = f"{use.tensor}:fp8" if in_fp8 else use.tensor  # an FP8 linear layer keeps its own 1-byte copy
        kept[key] = max(kept.get(key, 0.0), size * fp8.input_scale(use) if in_fp8 else size)

    for name in ops:
        op = g.operators[name]
        uses = cm.info[name].uses
        inputs = [i for i, u in enumerate(uses) if not u.is_output]
        for i, u in enumerate(uses):  # a model output the loss reads (logits): the loss's backward needs it
            if outputs and u.is_output and u.tensor not in read:
                keep(name, i)
        if name in regions:
            if needs[regions[name]]:
                for i in inputs:
                    p = tensors[uses[i].tensor].producer
                    if p is None or regions.get(p) != regions[name]:
                        keep(name, i)
        elif op.op_type == "Dropout":
            if name not in core:
                out = next(i for i, u in enumerate(uses) if u.is_output)
                elements = cm.local_bytes(name, out, full[name]) / uses[out].itemsize
                kept[f"{name}:mask"] = elements * DROPOUT_MASK_BYTES
        elif op.op_type in SAVES_OUTPUT:
            for i, u in enumerate(uses):
                if u.is_output:
                    keep(name, i)
        elif op.op_type in SAVES_DATA_INPUT:
            keep(name, inputs[0])
        elif op.op_type in SAVES_NOTHING or op.kind is OpKind.OPAQUE:
            continue
        else:  # matrix products, convolutions and anything else: the inputs that are not weights
            for i in inputs:
                if not uses[i].is_parameter:
                    keep(name, i, name in cm.fp8_ops)
    return kept
