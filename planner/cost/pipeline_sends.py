"""What a stage boundary of the 1F1B pipeline costs: the point-to-point sends, whole or scattered.

Per micro-batch, the activations that cross a boundary go forward to the next stage's matching
device and their gradients come back, over the machine level the boundary crosses:
``bytes * g_l + L_l`` each way. A tensor that the producing stage holds *replicated* over some of
its cuts (without sequence parallelism, the residual stream Megatron-LM keeps whole on each of
the ``t`` tensor-parallel ranks) need not cross whole from every replica: Megatron-LM's
*scatter-gather* (Narayanan et al. SC21, section 4.1) sends ``1/t`` of it from each replica over
the slow link and all-gathers it on the receiving stage over the fast one. Each way a boundary
is therefore priced as the cheaper of

* the whole tensor: ``S * g_l + L_l`` on the sender, nothing on the receiver;
* scattered: ``S/f * g_l + L_l`` on the sender (``f`` the replicas), and the all-gather of ``S``
  over those replicas' levels on the receiver (:func:`planner.cost.collectives.hierarchical_collectives`
  with one collective: ``(f_l - 1)/f_l`` of the shard at each level, one superstep each).

A tensor the stage already holds split (under sequence parallelism, or split on the batch) is
scattered by nature: it has no replicas, and crosses as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.cost.collectives import hierarchical_collectives, point_to_point
from planner.machine.tree import Level

FORWARD, BACKWARD = 0, 1  # the activations, and their gradients coming back


@dataclass(frozen=True)
class BoundaryTraffic:
    """Per boundary index ``i`` (before segment ``i``; ``0..n``) and direction (:data:`FORWARD`,
    :data:`BACKWARD`): the bytes one device sends whole, the bytes it sends scattered over the
    tensor's replicas, and the all-gather's seconds on the receiving stage's machine."""

    whole: np.ndarray  # [2, boundaries]
    scattered: np.ndarray  # [2, boundaries]
    gather_seconds: np.ndarray  # [2, boundaries]

    def seconds(self, level: Level, direction: int) -> tuple[np.ndarray, np.ndarray]:
        """Per boundary, ``(sender's seconds, receiver's seconds)`` of the cheaper way over ``level``."""
        whole = level_seconds(level, self.whole[direction])
        send = level_seconds(level, self.scattered[direction])
        gather = self.gather_seconds[direction]
        scatter = send + gather < whole
        return np.where(scatter, send, whole), np.where(scatter, gather, 0.0)

    def total(self, level: Level, direction: int) -> np.ndarray:
        send, gather = self.seconds(level, direction)
        return send + gather


def level_seconds(level: Level, nbytes):
    """Seconds of point-to-point sends of ``nbytes`` (a number or an array) over ``level``; a
    boundary that carries nothing costs nothing."""
    h, steps = point_to_point(np.asarray(nbytes, dtype=float))
    seconds = np.where(h > 0, h * level.gap_s_per_byte + steps * level.latency_s, 0.0)
    return float(seconds) if seconds.ndim == 0 else seconds


def boundary_traffic(cm, full: dict, points, edges) -> BoundaryTraffic:
    """The sends at every boundary of ``points`` (:class:`planner.cost.schedule.CutPoints`) of the
    per-sample ``edges`` under the plan ``full``; a tensor is relayed through every boundary it
    spans, and counted once per boundary however many operators read it."""
    order = points.order
    index = {n: i for i, n in enumerate(order)}
    bounds = points.bounds
    seg_of = np.searchsorted(np.asarray(bounds[1:]), np.arange(len(order)), side="right")
    n, d = len(bounds), cm.num_levels
    whole, scattered = np.zeros((2, n)), np.zeros((2, n))
    gather = np.zeros((2, n, d))  # bytes of the all-gather per level
    counted: set[tuple[str, int]] = set()
    for e in edges:
        a, b = seg_of[index[e.producer]], seg_of[index[e.consumer]]
        if a == b:
            continue
        layout = cm.layout(e.producer, e.out_index, full[e.producer])
        local = e.nbytes / math.prod(cm.cut_factor[t] for t, x in enumerate(layout) if x >= 0)
        groups: dict[int, int] = {}
        for t, x in enumerate(layout):
            if x < 0:
                groups[cm.cut_level[t]] = groups.get(cm.cut_level[t], 1) * cm.cut_factor[t]
        replicas = math.prod(groups.values())
        traffic = hierarchical_collectives(local, groups, 1)
        directions = (FORWARD, BACKWARD) if cm.mode == "train" and e.requires_grad else (FORWARD,)
        for boundary in range(a + 1, b + 1):
            if (e.tensor, boundary) in counted:
                continue
            counted.add((e.tensor, boundary))
            for way in directions:
                whole[way, boundary] += local
                scattered[way, boundary] += local / replicas
                for level, (nbytes, _) in traffic.items():
                    gather[way, boundary, level] += nbytes
    levels = cm.machine.levels
    gap = np.array([lv.gap_s_per_byte for lv in levels])
    latency = np.array([lv.latency_s for lv in levels])
    gather_seconds = (gather * gap).sum(axis=2) + ((gather > 0) * latency).sum(axis=2)  # one all-gather per level
    return BoundaryTraffic(whole, scattered, gather_seconds)
