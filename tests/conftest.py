"""The test suite mirrors the library's rooms: tests/onnx, model, machine, cost, search, plans,
verify, cli and explorer (the app), with the cross-cutting tests (architecture, README example,
real-export corpus, units) here. The shared helpers stay in this folder (``models.py``,
``real_exports.py``, ``mask_models.py``, ``rebatch_models.py``, ``op_zoo.py``,
``hostile_onnx.py``) and are imported by
name from any room: this folder is put first on ``sys.path``."""

import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
