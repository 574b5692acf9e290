"""The test suite mirrors the library's rooms: tests/onnx, model, machine, cost, search, plans,
verify, cli and explorer (the app), with the cross-cutting tests (architecture, README example,
real-export corpus, units) here. The shared helpers stay in this folder (``models.py``,
``real_exports.py``, ``mask_models.py``, ``rebatch_models.py``, ``op_zoo.py``,
``hostile_onnx.py``) and are imported by
name from any room: this folder is put first on ``sys.path``."""

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="session")
def real_corpus(tmp_path_factory):
    """The real-export corpus (``real_exports.Corpus``), one per session: the corpus-wide tests and
    tests/onnx/test_moe_real.py share its Mixtral exports."""
    from real_exports import Corpus

    c = Corpus(tmp_path_factory.mktemp("real_exports"))
    yield c
    print(f"\nreal-export corpus: {len(c._exports)} exports in {c.seconds:.1f} s")
