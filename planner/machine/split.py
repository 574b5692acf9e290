"""A machine divided among pipeline stages, data-parallel replicas and tensor-parallel ranks.

Stages take the outermost devices, tensor parallelism the innermost, data parallelism the rest
(:func:`split_machine`); every stage is the same sub-machine (the machine is symmetric), the
*stage machine*, which is what a plan of one stage is searched and priced on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from planner.machine.tree import Level, Machine
from planner.options import ConfigError, check_counts


@dataclass(frozen=True)
class MachineSplit:
    """A machine divided into ``stages`` identical stage machines along its outermost levels.

    ``pipeline`` lists ``(level index, factor)`` outermost first; their product is the number of
    stages. ``tensor_levels`` are the stage machine's levels that a hand-made configuration uses
    for tensor parallelism (empty when D-Rec decides).
    """

    machine: Machine
    stage_machine: Machine
    pipeline: tuple[tuple[int, int], ...]
    tensor_levels: frozenset[int] = frozenset()

    @property
    def stages(self) -> int:
        return math.prod(f for _, f in self.pipeline)

    def _digits(self, stage: int) -> list[int]:
        digits = []
        for _, f in reversed(self.pipeline):  # least significant (innermost) first
            digits.append(stage % f)
            stage //= f
        return digits[::-1]

    def crossing_level(self, a: int, b: int) -> Level:
        """The machine level whose links carry traffic between stages ``a`` and ``b``: the
        outermost pipeline level at which their positions differ."""
        for (level, _), da, db in zip(self.pipeline, self._digits(a), self._digits(b)):
            if da != db:
                return self.machine.levels[level]
        raise ConfigError(f"stages {a} and {b} are the same stage")


def split_machine(machine: Machine, stages: int, tensor: int = 1, data: int | None = None) -> MachineSplit:
    """Stages take the outermost devices, tensor parallelism the innermost, data the rest.

    A count takes whole levels while it is a multiple of their arity, then a divisor of the next
    level (so 35 stages x 9 data-parallel groups can share 315 nodes). The stage machine keeps the
    remaining part of each level with the level's bandwidth and latency; a level shared by data
    and tensor parallelism becomes two levels, ``name (data)`` outside ``name (tensor)``.
    """
    check_counts({"pipeline stages": stages, "tensor-parallel size": tensor}, ConfigError)
    arities = [lv.arity for lv in machine.levels]
    shape = " x ".join(f"{lv.arity} {lv.name}" for lv in machine.levels)
    p = _take(arities, stages, outermost_first=True, what=f"{stages} pipeline stages", shape=shape,
              where="stages take the outermost levels")
    rest = [a // q for a, q in zip(arities, p)]
    t = _take(rest, tensor, outermost_first=False, what=f"tensor parallelism of {tensor}", shape=shape,
              where="tensor-parallel ranks take the innermost devices")
    d = [a // q for a, q in zip(rest, t)]
    if data is not None and math.prod(d) != data:
        raise ConfigError(f"tensor x pipeline x data = {tensor} x {stages} x {data} = {tensor * stages * data}, but "
                          f"the machine has {machine.num_devices} devices ({shape}): the product must equal it")
    levels: list[Level] = []
    tensor_levels = set()
    for lv, dl, tl in zip(machine.levels, d, t):
        shared = dl > 1 and tl > 1
        for role, f in (("data", dl), ("tensor", tl)):
            if f > 1:
                if role == "tensor":
                    tensor_levels.add(len(levels))
                name = f"{lv.name} ({role})" if shared else lv.name
                levels.append(Level(name, f, lv.bandwidth_Bps, lv.latency_s))
    if not levels:  # one device per stage
        inner = machine.levels[-1]
        levels.append(Level(inner.name, 1, inner.bandwidth_Bps, inner.latency_s))
    stage_machine = Machine(machine.name if stages == 1 else f"{machine.name} / {stages} stages",
                            machine.device, tuple(levels))
    pipeline = tuple((i, q) for i, q in enumerate(p) if q > 1)
    return MachineSplit(machine, stage_machine, pipeline, frozenset(tensor_levels))


def _take(arities: list[int], count: int, outermost_first: bool, what: str, shape: str, where: str) -> list[int]:
    taken = [1] * len(arities)
    left = count
    order = range(len(arities)) if outermost_first else reversed(range(len(arities)))
    for i in order:
        if left == 1:
            break
        if left % arities[i] == 0:
            taken[i], left = arities[i], left // arities[i]
        elif arities[i] % left == 0:
            taken[i], left = left, 1
        else:
            break
    if left != 1:
        raise ConfigError(f"{what} does not fit the machine ({shape}): {where}, whole levels first and then a "
                          "divisor of the next level; choose a count built that way")
    return taken


def stage_counts(machine: Machine) -> list[int]:
    """Every number of stages :func:`split_machine` accepts with no tensor parallelism."""
    counts = []
    for n in range(1, machine.num_devices + 1):
        if machine.num_devices % n == 0:
            try:
                split_machine(machine, n)
            except ConfigError:
                continue
            counts.append(n)
    return counts
