"""``python -m planner inspect`` and ``strip-weights``: output, the JSON keys, and usage errors.

Most cases call ``planner.cli.main.main`` in-process (fast); a few run the real command in a
subprocess from the repository root, as the README shows it.

The test model (built here with onnx.helper): x [batch, 16] -> MatMul W1 [16, 32] -> Add b1 [32]
-> Relu -> MatMul W2 [32, 4] -> y.
  parameters 16*32 + 32 + 32*4 = 512 + 32 + 128 = 672
  FLOPs at batch 8: MatMul 2*8*32*16 = 8192, Add 8*32 = 256, Relu 8*32 = 256, MatMul 2*8*4*32 = 2048
                    -> 10752
  FLOPs with batch unbound (taken as 1): 1024 + 32 + 32 + 256 = 1344
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
SAMPLES = sorted((REPO / "sample_models").glob("*.onnx"))
REQUIRED_KEYS = {"operators", "op_types", "parameters", "flops_forward", "unbound_dims", "unsupported_op_types"}
EXTRA_KEYS_ALLOWED = {"model", "activation_bytes", "parameter_bytes", "frozen_parameters", "input_shapes"}


def _weights(name, shape, seed):
    return numpy_helper.from_array(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), name)


def _mlp_model(extra_op: str | None = None) -> onnx.ModelProto:
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1_bias"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2"),
    ]
    value_info = []
    if extra_op:  # an op type the importer does not know: opaque, with its shape from value_info
        nodes.append(helper.make_node(extra_op, ["y"], ["z"], name="mystery"))
        value_info.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4]))
    out = "z" if extra_op else "y"
    graph = helper.make_graph(
        nodes, "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", 4])],
        initializer=[_weights("w1", [16, 32], 0), _weights("b1", [32], 1), _weights("w2", [32, 4], 2)],
        value_info=value_info,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "tiny_mlp.onnx"
    path.write_bytes(_mlp_model().SerializeToString())
    return path


run = models.run_cli


def run_subprocess(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


# ---- the documented command, for real ---------------------------------------------------------------

def test_inspect_subprocess_prints_the_figures(model_path):
    proc = run_subprocess("inspect", model_path, "--bind", "batch=8")
    assert proc.returncode == 0, proc.stderr
    lines = dict(line.split(None, 1) for line in proc.stdout.splitlines() if line.strip() and not line.startswith("op types"))
    assert lines["operators"].strip() == "4"
    assert lines["parameters"].strip() == "672"
    assert lines["FLOPs/fwd"] == "10.8 kFLOP"  # 10752 FLOP, with 3 significant digits
    histogram = next(line for line in proc.stdout.splitlines() if line.startswith("op types"))
    assert "MatMul 2" in histogram and "Add 1" in histogram and "Relu 1" in histogram
    assert "unsupported" not in proc.stdout and "unbound" not in proc.stdout
    assert proc.stderr == ""


def test_inspect_subprocess_json(model_path, tmp_path):
    out = tmp_path / "inspect.json"
    proc = run_subprocess("inspect", model_path, "--bind", "batch=8", "--json", out)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert REQUIRED_KEYS <= set(data) and set(data) - REQUIRED_KEYS <= EXTRA_KEYS_ALLOWED
    assert data["operators"] == 4
    assert data["op_types"] == {"MatMul": 2, "Add": 1, "Relu": 1}
    assert data["parameters"] == 672
    assert data["flops_forward"] == 10752
    assert data["unbound_dims"] == []
    assert data["unsupported_op_types"] == []


@pytest.mark.parametrize("argv", [
    ["inspect", "no/such/model.onnx"],
    ["inspect", "{tmp}/README_NOT_A_MODEL.txt"],
    ["inspect", "sample_models/mlp.onnx", "--bind", "batch=zero"],
], ids=["missing", "text-file", "bad-bind"])
def test_inspect_subprocess_errors_exit_2_without_traceback(argv, tmp_path):
    (tmp_path / "README_NOT_A_MODEL.txt").write_text("hello, I am not an ONNX model\n")
    proc = run_subprocess(*[a.format(tmp=tmp_path) for a in argv])
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ")
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""


# ---- in-process -----------------------------------------------------------------------------------------

def test_inspect_unbound_dims_listed(model_path, tmp_path, capsys):
    out = tmp_path / "unbound.json"
    code, stdout, err = run(["inspect", model_path, "--json", out], capsys)
    assert code == 0, err
    assert "unbound dims batch" in stdout and "--bind" in stdout
    data = json.loads(out.read_text())
    assert data["unbound_dims"] == ["batch"]
    assert data["flops_forward"] == 1344  # batch taken as 1


def test_inspect_lists_unsupported_op_types(tmp_path, capsys):
    path = tmp_path / "odd.onnx"
    path.write_bytes(_mlp_model(extra_op="Twiddle").SerializeToString())
    out = tmp_path / "odd.json"
    code, stdout, err = run(["inspect", path, "--bind", "batch=2", "--json", out], capsys)
    assert code == 0, err
    assert "Twiddle" in next(line for line in stdout.splitlines() if line.startswith("unsupported"))
    data = json.loads(out.read_text())
    assert data["unsupported_op_types"] == ["Twiddle"]
    assert data["operators"] == 5 and data["op_types"]["Twiddle"] == 1


def test_inspect_several_bindings(tmp_path, capsys):
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        initializer=[_weights("w", [8, 2], 0)])
    path = tmp_path / "seq.onnx"
    path.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString())
    out = tmp_path / "seq.json"
    code, _, err = run(["inspect", path, "--bind", "batch=3", "--bind", "seq=5", "--json", out], capsys)
    assert code == 0, err
    assert json.loads(out.read_text())["flops_forward"] == 2 * 3 * 5 * 2 * 8  # 480


def _garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.onnx"
    path.write_bytes(np.random.default_rng(7).bytes(3000))
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("make_argv, words", [
    (lambda p, t: ["inspect", t / "missing.onnx"], ["not found", "missing.onnx"]),
    (lambda p, t: ["inspect", t], ["not a regular file", "a directory"]),  # a directory (issue 16: not "not found")
    (lambda p, t: ["inspect", _garbage(t)], ["ONNX"]),
    (lambda p, t: ["inspect", _empty(t)], ["empty", "0 bytes"]),
    (lambda p, t: ["inspect", p, "--bind", "batch"], ["NAME=VALUE", "batch"]),
    (lambda p, t: ["inspect", p, "--bind", "batch=abc"], ["positive integer"]),
    (lambda p, t: ["inspect", p, "--bind", "batch=0"], ["positive integer"]),
    (lambda p, t: ["inspect", p, "--bind", "batch=-3"], ["positive integer"]),
    (lambda p, t: ["inspect", p, "--bind", "=4"], ["NAME=VALUE"]),
    (lambda p, t: ["inspect", p, "--bind", "sequence=4"], ["sequence", "batch"]),
    (lambda p, t: ["inspect", p, "--bind", "batch=2", "--json", t / "no" / "dir" / "out.json"], ["cannot write"]),
], ids=["missing", "directory", "garbage", "empty", "bind-no-equals", "bind-not-int", "bind-zero",
        "bind-negative", "bind-no-name", "bind-unknown-name", "json-unwritable"])
def test_inspect_bad_input_exits_2(model_path, tmp_path, capsys, make_argv, words):
    code, stdout, err = run(make_argv(model_path, tmp_path), capsys)
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    for word in words:
        assert word in err
    assert len(err.strip().splitlines()) == 1  # one line a user can act on


def test_inspect_without_a_model_is_a_usage_error(capsys):
    """One line that names what is missing and where the usage is, not argparse's whole usage text."""
    code, out, err = run(["inspect"], capsys)
    assert code == 2 and out == ""
    assert err == "error: the following arguments are required: model (see python -m planner inspect --help)\n"


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_inspect_every_committed_sample(path, tmp_path, capsys):
    out = tmp_path / "s.json"
    code, stdout, err = run(["inspect", path, "--bind", "batch=2", *(["--bind", "seq=16"] if "seq" in path.read_bytes().decode("latin-1") else []), "--json", out], capsys)
    assert code == 0, err
    data = json.loads(out.read_text())
    assert data["unsupported_op_types"] == []
    assert data["unbound_dims"] == []
    # the importer counts what the file holds: every float initializer, once
    model = onnx.load(str(path), load_external_data=False)
    floats = {t.name: int(np.prod(t.dims)) for t in model.graph.initializer if t.data_type == TensorProto.FLOAT and t.dims}
    assert data["parameters"] == sum(floats.values())


# ---- strip-weights --------------------------------------------------------------------------------------

def test_strip_weights_cli(tmp_path, capsys):
    big = tmp_path / "big.onnx"
    model = _mlp_model()
    model.graph.initializer.append(_weights("unused_big", [256, 256], 3))  # 256 KB of floats
    big.write_bytes(model.SerializeToString())
    small = tmp_path / "small.onnx"
    code, stdout, err = run(["strip-weights", big, small], capsys)
    assert code == 0, err
    assert small.stat().st_size < big.stat().st_size / 50
    assert "wrote" in stdout and "small.onnx" in stdout
    assert not (tmp_path / "small.weights.bin").exists()  # the data file is never written
    out = tmp_path / "small.json"
    code, _, err = run(["inspect", small, "--bind", "batch=8", "--json", out], capsys)
    assert code == 0, err
    # 672 + 256*256 = 66208: the same count from the stripped file
    assert json.loads(out.read_text())["parameters"] == 672 + 65536


def test_strip_weights_cli_errors(model_path, tmp_path, capsys):
    code, _, err = run(["strip-weights", tmp_path / "missing.onnx", tmp_path / "out.onnx"], capsys)
    assert code == 2 and "not found" in err and "Traceback" not in err
    code, _, err = run(["strip-weights", _garbage(tmp_path), tmp_path / "out.onnx"], capsys)
    assert code == 2 and "ONNX" in err
    code, _, err = run(["strip-weights", model_path, tmp_path / "no" / "dir" / "out.onnx"], capsys)
    assert code == 2 and "cannot write" in err
    # writing over the input would lose its weights
    before = model_path.read_bytes()
    code, _, err = run(["strip-weights", model_path, model_path], capsys)
    assert code == 2 and "same file" in err
    assert model_path.read_bytes() == before
