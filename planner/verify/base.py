"""What every verification module shares: the optional PyTorch import, the matrix the
verification runs by default, its tolerances, and :class:`VerificationError`.

PyTorch is optional for the planner: ``torch`` is ``None`` here when it is not installed, the
package still imports, and every entry point that needs it raises :class:`VerificationError`
with :data:`INSTALL_HINT`.
"""

from __future__ import annotations

try:  # PyTorch is optional for the planner; only this package and the DTensor helpers need it
    import torch
except ImportError:  # pragma: no cover - exercised only where torch is absent
    torch = None

MODELS = ("mlp", "transformer")
ALGORITHMS = ("drec+", "data_parallel")
PROCESSES = (4, 8)
RTOL = 1e-4  # torch.allclose tolerances for loss, outputs and gradients (fp32)
ATOL = 1e-5
BYTES_TOLERANCE = 0.10  # predicted vs measured bytes per operator
DEFAULT_TIMEOUT_S = 240.0  # per launch of a process group (all configurations of one size)

INSTALL_HINT = "PyTorch is needed to verify plans: pip install -r requirements-verify.txt"


class VerificationError(RuntimeError):
    """The verification could not run (missing torch, a worker failed or timed out)."""


def torch_available() -> bool:
    return torch is not None


def require_torch() -> None:
    if torch is None:
        raise VerificationError(INSTALL_HINT)
