"""An uploaded ONNX file must never read the server's files nor make the importer do unbounded work.

Every tensor a model can carry (every ONNX operator's tensor attribute, initializers, sparse
initializers, subgraphs, functions) is pointed at a FIFO, a regular file in the working directory,
a file in ``..`` and an absolute path: nothing may be opened (an ``open`` audit hook in process,
and ``strace`` on a subprocess when it is installed), and the import either treats the value as
unknown or refuses with a one-line message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from hostile_onnx import constant_driven, hostile_models, huge_range, leak_chain, model, tensor_attributes
from planner.onnx import guard as onnx_guard
from planner.onnx.importer import ModelImportError, import_model, load_model_proto

REPO = Path(__file__).resolve().parents[2]
SECRET = b"Z" * 64  # 'Z' = 90: a Range of length 90 would betray the first byte

# ---- the audit hook: installed once, records opens of watched names --------------------------

_WATCH: list[str] = []
_OPENED: list[str] = []


def _hook(event, args):
    if event == "open" and _WATCH and args and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if any(w in path for w in _WATCH):
            _OPENED.append(path)
            raise PermissionError(f"test: the importer opened {path}")  # and never block on the FIFO


sys.addaudithook(_hook)


@pytest.fixture
def targets(tmp_path, monkeypatch):
    """A working directory with a secret, a FIFO, a secret in '..' and one at an absolute path."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "secret_cwd.txt").write_bytes(SECRET)
    (tmp_path / "secret_up.txt").write_bytes(SECRET)
    (tmp_path / "secret_abs.txt").write_bytes(SECRET)
    os.mkfifo(work / "secret_fifo")
    monkeypatch.chdir(work)
    names = ["secret_cwd.txt", "../secret_up.txt", str(tmp_path / "secret_abs.txt"), "secret_fifo"]
    _WATCH[:] = ["secret_"]
    _OPENED.clear()
    yield names
    _WATCH.clear()


def test_every_schema_tensor_attribute_is_covered():
    # the builders enumerate onnx.defs: ConstantOfShape.value, Constant.value and sparse_value are there
    found = {(op, attr) for _, op, attr, _ in tensor_attributes()}
    assert {("ConstantOfShape", "value"), ("Constant", "value"), ("Constant", "sparse_value")} <= found


def test_no_tensor_data_is_ever_opened(targets):
    outcomes = []
    for target in targets:
        for label, m in hostile_models(target):
            try:
                graph = import_model(m.SerializeToString())
                outcomes.append("imported")
                for t in graph.tensors.values():  # the secret's byte (90) never becomes a size
                    assert 90 not in t.shape, (label, target, t.name, t.shape)
            except ModelImportError as exc:
                assert "\n" not in str(exc), (label, str(exc))
                outcomes.append("refused")
    assert _OPENED == []
    assert len(outcomes) == 4 * len(hostile_models("x"))


def test_leak_chain_value_is_unknown(targets):
    # the reproduction: the secret's first byte must not become the Range's length
    # (before the fix it imported with a Range of length 90, the secret's first byte)
    try:
        graph = import_model(leak_chain("secret_cwd.txt").SerializeToString())
        assert all(90 not in t.shape for t in graph.tensors.values())
    except ModelImportError as exc:  # the Range's length is unknown, so is the Add's shape
        assert "tensor 'y' produced by node 'add'" in str(exc)
    assert _OPENED == []


def test_model_file_path_given_as_a_proto_is_neutralised(targets):
    # a ModelProto handed over directly (the app's cache) goes through the same gate
    m = leak_chain("secret_cwd.txt")
    with pytest.raises(ModelImportError, match="tensor 'y' produced by node 'add'"):
        import_model(m)
    assert _OPENED == []
    assert not any(t.data_location == TensorProto.EXTERNAL or len(t.external_data) for t in onnx_guard.all_tensors(m))


def test_gate_says_yes_only_for_small_inline_data():
    small = numpy_helper.from_array(np.arange(6, dtype=np.int64).reshape(2, 3))
    assert onnx_guard.tensor_values(small).tolist() == [[0, 1, 2], [3, 4, 5]]
    big = numpy_helper.from_array(np.zeros(onnx_guard.FOLD_MAX_ELEMENTS + 1, np.float32))
    assert onnx_guard.tensor_values(big) is None
    assert onnx_guard.tensor_values(big, limit=onnx_guard.FOLD_MAX_ELEMENTS + 1) is not None
    assert onnx_guard.tensor_values(hostile_external := _ext()) is None
    assert not onnx_guard.may_materialise(hostile_external)
    short = TensorProto(name="s", data_type=TensorProto.INT64, dims=[3], int64_data=[1])  # 1 value for 3
    assert onnx_guard.tensor_values(short) is None


def _ext():
    from hostile_onnx import external
    return external("e", "/etc/passwd")


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed")
def test_strace_sees_no_open_of_the_targets(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "secret_cwd.txt").write_bytes(SECRET)
    (tmp_path / "secret_up.txt").write_bytes(SECRET)
    (tmp_path / "secret_abs.txt").write_bytes(SECRET)
    os.mkfifo(work / "secret_fifo")
    log = tmp_path / "strace.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run(
        ["strace", "-f", "-qq", "-e", "trace=open,openat,openat2,creat", "-o", str(log), sys.executable,
         str(REPO / "tests" / "hostile_onnx.py"),
         "secret_cwd.txt", "../secret_up.txt", str(tmp_path / "secret_abs.txt"), "secret_fifo"],
        cwd=work, env=env, capture_output=True, text=True, timeout=600,  # a hang guard: an opened FIFO blocks
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 4 * len(hostile_models("x"))
    assert all(re.search(r": (imported|refused: .+)$", line) for line in lines)
    opened = [line for line in log.read_text().splitlines() if "secret_" in line]
    assert opened == []


# ---- bounded work ----------------------------------------------------------------------------

def test_huge_range_is_refused_naming_the_node():
    # Range(0, 10**12): 10**12 > 2**32 = 4,294,967,296 elements
    with pytest.raises(ModelImportError, match=r"node 'range' \(Range\) would make a tensor of about 1,000,000,000,000"):
        import_model(huge_range().SerializeToString())


@pytest.mark.parametrize("op", ["Range", "ConstantOfShape", "Expand", "Tile", "Resize"])
def test_constant_driven_bound(op):
    bound = onnx_guard.MAX_CONSTANT_ELEMENTS
    with pytest.raises(ModelImportError, match=rf"node 'big' \({op}\) .* {bound + 1:,} elements"):
        import_model(constant_driven(op, bound + 1))
    # exactly at the bound: accepted (nothing is materialised, ONNX infers the shape only)
    graph = import_model(constant_driven(op, bound))
    assert graph.tensors["c"].shape == (bound,)


def test_range_with_zero_step_is_refused():
    m = huge_range(5)
    m.graph.initializer[2].CopyFrom(numpy_helper.from_array(np.array(0, np.int64), "one"))
    with pytest.raises(ModelImportError, match=r"node 'range' \(Range\) has a step \(delta\) of 0"):
        import_model(m)


def test_huge_range_under_an_address_space_limit(tmp_path):
    # the memory bomb in a subprocess limited to 2 GiB of address space: refused, not killed
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))\n"
        "from hostile_onnx import huge_range\n"
        "from planner.onnx.importer import ModelImportError, import_model\n"
        "try:\n"
        "    import_model(huge_range(4 * 10**9).SerializeToString())\n"  # just under 2^32: accepted
        "    print('imported')\n"
        "except ModelImportError as exc:\n"
        "    print('refused', exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "imported"


def _chain(depth: int) -> onnx.ModelProto:
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["b"])], "b", [],
                             [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    for _ in range(depth - 1):
        body = helper.make_graph([helper.make_node("If", ["c"], ["b"], then_branch=body, else_branch=body)], "b", [],
                                 [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])])
    return model([helper.make_node("If", ["c"], ["y"], name="if", then_branch=body, else_branch=body)],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2]),
                  helper.make_tensor_value_info("c", TensorProto.BOOL, [])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])


def test_subgraph_nesting_bound():
    import_model(_chain(onnx_guard.MAX_SUBGRAPH_DEPTH))  # depth 8: accepted
    with pytest.raises(ModelImportError, match=r"nests subgraphs 9 deep .* at most 8 levels"):
        import_model(_chain(onnx_guard.MAX_SUBGRAPH_DEPTH + 1))


def test_node_count_bound(monkeypatch):
    monkeypatch.setattr(onnx_guard, "MAX_NODES", 3)
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"]) for i in range(4)]
    m = model(nodes, [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2])],
              [helper.make_tensor_value_info("t4", TensorProto.FLOAT, None)])
    with pytest.raises(ModelImportError, match="more than 3 nodes"):
        import_model(m)
    import_model(model(nodes[:3], [helper.make_tensor_value_info("t0", TensorProto.FLOAT, [2])],
                       [helper.make_tensor_value_info("t3", TensorProto.FLOAT, None)]))


def test_sparse_tensors_go_through_the_gate():
    # values [5, 7] at flat positions 1 and 3 of a length-4 vector -> [0, 5, 0, 7]
    values = numpy_helper.from_array(np.array([5, 7], np.int64), "v")
    indices = numpy_helper.from_array(np.array([1, 3], np.int64), "v_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    assert onnx_guard.sparse_values(sparse).tolist() == [0, 5, 0, 7]
    assert onnx_guard.sparse_values(sparse, limit=3) is None  # 4 dense elements > 3
    from hostile_onnx import sparse_external
    assert onnx_guard.sparse_values(sparse_external("w", "/etc/passwd")) is None


def test_a_lying_value_info_does_not_make_the_importer_evaluate_a_huge_range(monkeypatch):
    # limit = 10**6 * 10**6 = 10**12 is computed (Mul), so it escapes the file-constant estimate, and
    # the file claims the Range's output has shape [1]: the fold must trust ONNX's inference on the
    # actual values (10**12 elements > 4,096), never the claim, and so never run the Range.
    import planner.onnx.shapes as shapes

    evaluated = []
    real = shapes._evaluate
    monkeypatch.setattr(shapes, "_evaluate", lambda node, *a: evaluated.append(node.op_type) or real(node, *a))
    inits = [numpy_helper.from_array(np.array(v, np.int64), n) for n, v in (("zero", 0), ("a", 10**6), ("b", 10**6), ("one", 1))]
    nodes = [helper.make_node("Mul", ["a", "b"], ["lim"], name="mul"),
             helper.make_node("Range", ["zero", "lim", "one"], ["r"], name="range"),
             helper.make_node("Cast", ["r"], ["f"], name="cast", to=TensorProto.FLOAT),
             helper.make_node("Add", ["x", "f"], ["y"], name="add")]
    m = model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    m.graph.value_info.append(helper.make_tensor_value_info("r", TensorProto.INT64, [1]))
    try:
        import_model(m)
    except ModelImportError:
        pass
    assert evaluated == ["Mul"]  # 10**6 * 10**6 folded (1 element); the Range never run


def test_model_size_bound(monkeypatch, tmp_path):
    blob = huge_range(5).SerializeToString()
    monkeypatch.setattr(onnx_guard, "MAX_MODEL_BYTES", len(blob) - 1)
    with pytest.raises(ModelImportError, match=f"the uploaded file is {len(blob):,} bytes, above the bound of {len(blob) - 1:,}"):
        load_model_proto(blob)
    path = tmp_path / "m.onnx"
    path.write_bytes(blob)
    with pytest.raises(ModelImportError, match=f"m.onnx is {len(blob):,} bytes, above the bound"):
        load_model_proto(path)
    monkeypatch.setattr(onnx_guard, "MAX_MODEL_BYTES", len(blob))
    assert load_model_proto(blob).graph.node[0].op_type == "Range"
