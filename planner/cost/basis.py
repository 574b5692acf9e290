"""The machine basis of the symbolic BSP cost model: ``(1/F, g_1..g_D, L_1..L_D)``.

Every cost in :mod:`planner.cost.model` is a vector of coefficients over this basis; a machine (or a
what-if change of its bandwidths) is a dot product away.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from planner.machine.tree import Machine

if TYPE_CHECKING:
    import sympy

# ---- the basis ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Basis:
    """The machine's values for the symbols ``1/F, g_l, L_l`` (l = levels outermost first)."""

    machine: Machine

    @cached_property
    def values(self) -> np.ndarray:
        m = self.machine
        return np.array(
            [1.0 / m.device.effective_flops]
            + [lv.gap_s_per_byte for lv in m.levels]
            + [lv.latency_s for lv in m.levels]
        )

    @property
    def size(self) -> int:
        return 1 + 2 * len(self.machine.levels)

    def zero(self) -> np.ndarray:
        return np.zeros(self.size)

    def time(self, vec: np.ndarray) -> float:
        return float(vec @ self.values)

    @cached_property
    def symbols(self) -> list[sympy.Symbol]:
        import sympy  # formulas only: keeps sympy off the planner's import path

        names = []
        for lv in self.machine.levels:  # level names differing only in punctuation stay apart
            name = _sym_name(lv.name)
            names.append(name if name not in names else f"{name}{len(names)}")
        return ([sympy.Symbol("F", positive=True)]
                + [sympy.Symbol(f"g_{{{n}}}", positive=True) for n in names]
                + [sympy.Symbol(f"L_{{{n}}}", positive=True) for n in names])

    def symbolic(self, vec) -> sympy.Expr:
        """``w/F + sum h_l g_l + sum n_l L_l`` with the vector's coefficients."""
        sym = self.symbols
        expr = vec[0] / sym[0]
        for i in range(1, len(sym)):
            expr += vec[i] * sym[i]
        return expr

    def substitutions(self) -> dict:
        m = self.machine
        subs = {self.symbols[0]: m.device.effective_flops}
        for i, lv in enumerate(m.levels):
            subs[self.symbols[1 + i]] = lv.gap_s_per_byte
            subs[self.symbols[1 + len(m.levels) + i]] = lv.latency_s
        return subs


def _larger(a, b):
    """``max`` for numbers, ``sympy.Max`` for formulas (the roofline of a symbolic operator)."""
    if isinstance(a, (int, float, np.floating)) and isinstance(b, (int, float, np.floating)):
        return max(a, b)
    import sympy

    return sympy.Max(a, b)


def _sym_name(name: str) -> str:
    return "".join(c for c in name if c.isalnum()) or "l"
