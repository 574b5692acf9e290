"""Run a plan for real on a CPU process group and check it against the cost model.

For each model the project builds both in PyTorch and as ONNX (an MLP; a transformer encoder
block with attention and MLP), each plan (D-Rec ``drec+`` and ``data_parallel``) and each
process count (4 = 2 x 2 and 8 = 2 x 4, a two-level machine), :func:`run_verification`

1. exports the module to ONNX, imports it and plans it on :func:`verification_machine`;
2. exports the plan to DTensor placements and starts that many worker processes, which build
   the device mesh and distribute the module's parameters and the input as the plan lays them;
3. runs one training step (forward, MSE loss, backward) operator by operator in ONNX order on
   each process's shards, communicating only where the plan has it, each time as explicit
   redistributions between the placements the plan dictates;
4. records every collective, turns it into bytes per device with the cost model's formulas and
   compares, operator by operator, with what the cost model predicts;
5. compares the loss, the output and every parameter gradient with a single-process run of
   the same module (``torch.allclose`` with :data:`RTOL` and :data:`ATOL`, fp32).

One module per concern (each docstring says more); the import order is the list's:

* ``base``: the optional PyTorch import, the default matrix (:data:`MODELS`,
  :data:`ALGORITHMS`, :data:`PROCESSES`), the tolerances, :class:`VerificationError`.
* ``models``: the two PyTorch modules, their ONNX export, the single-process reference step,
  and the fast machine description the plans are made for.
* ``moves``: redistribution moves between placements at the cost model's volume (a cheapest
  path of one-mesh-dimension steps, hierarchical reductions of partial sums, block exchanges);
  plain data.
* ``program``: the program the workers execute (per operator: type, attributes, placements and
  moves), built in the parent, and the bytes the cost model predicts per operator.
* ``recorder``: the dispatch mode that records collectives and prices them per machine level.
* ``executor``: running one program on this rank's shards with DTensor (worker side).
* ``results``: report rows from every rank's results, the table, the summary, the JSON form.
* ``runner``: :func:`run_verification`, the launcher of worker interpreters
  (``python -c "from planner.verify.runner import _worker_main; ..."``) and the worker.

PyTorch is optional: without it this package imports, :func:`torch_available` is false, and
:func:`run_verification` raises :class:`VerificationError` with :data:`INSTALL_HINT`. The names
below are what the command line, the app and the tests use; the pieces are in their modules.
"""

from planner.verify.base import (
    ALGORITHMS, ATOL, BYTES_TOLERANCE, INSTALL_HINT, MODELS, PROCESSES, RTOL, VerificationError, torch_available,
)
from planner.verify.models import build_model, export_onnx, verification_machine
from planner.verify.results import format_table, json_rows, summary
from planner.verify.runner import run_verification

__all__ = [
    "ALGORITHMS", "ATOL", "BYTES_TOLERANCE", "INSTALL_HINT", "MODELS", "PROCESSES", "RTOL",
    "VerificationError", "build_model", "export_onnx", "format_table", "json_rows", "run_verification",
    "summary", "torch_available", "verification_machine",
]
