"""Recording the collectives a worker takes part in, and pricing each with the cost model's
formulas.

:class:`CollectiveRecorder` (a dispatch mode on the c10d functional ops, defined when PyTorch
is installed) records every collective with the label of the plan step running it
(:func:`labelled`) and turns it into bytes per device per machine level with
:func:`collective_bytes`: all-reduce of S over f devices ``2(f-1)/f*S``; all-gather into S and
reduce-scatter from S ``(f-1)/f*S``; all-to-all of a local S ``(f-1)/f*S``. A collective outside
any labelled step is recorded as ``(unattributed)``.
"""

from __future__ import annotations

import contextlib
import math

from planner.verify.base import torch

_LABEL: list = [None]


@contextlib.contextmanager
def labelled(op: str, kind: str):
    """Collectives recorded inside are attributed to operator ``op``, phase ``kind``."""
    old = _LABEL[0]
    _LABEL[0] = (op, kind)
    try:
        yield
    finally:
        _LABEL[0] = old


def collective_bytes(kind: str, nbytes: float, f: int) -> float:
    """Per-device bytes of one collective, with the cost model's formulas (``nbytes`` is the
    local input's size)."""
    if f <= 1:
        return 0.0
    if kind == "all_reduce":
        return 2 * (f - 1) / f * nbytes
    if kind == "all_gather":  # gathers f shards of nbytes into f * nbytes
        return (f - 1) * nbytes
    if kind in ("reduce_scatter", "all_to_all"):
        return (f - 1) / f * nbytes
    return float(nbytes)  # broadcast, scatter and other c10d calls: the payload, flagged


if torch is not None:
    from torch.utils._python_dispatch import TorchDispatchMode

    _FUNCOL = torch.ops._c10d_functional
    _C10D = torch.ops.c10d
    _COLLECTIVES = {
        _FUNCOL.all_reduce: ("all_reduce", 2), _FUNCOL.all_reduce_: ("all_reduce", 2),
        _FUNCOL.all_gather_into_tensor: ("all_gather", 2),
        _FUNCOL.reduce_scatter_tensor: ("reduce_scatter", 3),
        _FUNCOL.all_to_all_single: ("all_to_all", 3),
        _FUNCOL.broadcast: ("broadcast", 2),
    }
    _OTHER_C10D = {getattr(_C10D, n) for n in (
        "allreduce_", "allgather_", "_allgather_base_", "_reduce_scatter_base_", "reduce_scatter_",
        "alltoall_", "alltoall_base_", "broadcast_", "scatter_", "gather_", "reduce_") if hasattr(_C10D, n)}

    class CollectiveRecorder(TorchDispatchMode):
        """Records every collective this process takes part in, with the label of the plan
        step running it and its bytes per device (the cost model's formulas), per machine level.

        ``dim_levels`` maps a mesh dimension's group name to its machine level; a collective on
        the whole group (a direct exchange) is split by level per peer, with ``peer_levels``
        (per rank: the level of the outermost mesh dimension where its coordinate differs).
        """

        def __init__(self, dim_levels: dict[str, tuple[int, int]], peer_levels: list[int | None], n_levels: int):
            super().__init__()
            self.dim_levels = dim_levels
            self.peer_levels = peer_levels
            self.n_levels = n_levels
            self.records: list[dict] = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            from torch.distributed.tensor import DTensor

            kwargs = kwargs or {}
            if any(issubclass(t, DTensor) for t in types):
                return NotImplemented
            out = func(*args, **kwargs)
            packet = getattr(func, "_overloadpacket", None)
            if packet in _COLLECTIVES:
                kind, gpos = _COLLECTIVES[packet]
                group = args[gpos] if len(args) > gpos else kwargs.get("group_name")
                splits = args[1] if kind == "all_to_all" else None
                self._record(kind, args[0], group, splits)
            elif packet in _OTHER_C10D:
                tensor = args[0][0] if isinstance(args[0], (list, tuple)) else args[0]
                self._record(packet.__name__, tensor, None, None)
            return out

        def _record(self, kind, tensor, group_name, splits):
            import torch.distributed as dist
            from torch.distributed.distributed_c10d import _resolve_process_group

            pg = _resolve_process_group(group_name) if isinstance(group_name, str) else None
            f = pg.size() if pg is not None else 0
            nbytes = tensor.numel() * tensor.element_size() if isinstance(tensor, torch.Tensor) else 0
            by_level = [0.0] * self.n_levels
            dim, level = self.dim_levels.get(group_name, (-1, None))
            if kind == "all_to_all" and splits is not None and f == len(self.peer_levels):
                row = tensor.element_size() * math.prod(tensor.shape[1:])  # uneven exchange over all
                me = dist.get_rank()
                for peer, count in enumerate(splits):
                    if peer != me and count:
                        by_level[self.peer_levels[peer]] += count * row
                total = sum(by_level)
            else:
                total = collective_bytes(kind, nbytes, f)
                by_level[level if level is not None else 0] += total
            label = _LABEL[0] or ("(unattributed)", "")
            self.records.append({"op": label[0], "phase": label[1], "collective": kind, "group_size": f,
                                 "mesh_dim": dim, "local_bytes": nbytes, "bytes": total, "by_level": by_level})
