"""Hostile inputs (issue 16): machine files, plan files, CLI paths, bindings and URL parameters are
bounded before anything is built from them, and each refusal is one line (exit 2 on the CLI).

The expected numbers are worked out by hand in the comments (sizes, products, YAML positions),
not taken from the code's output.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

from planner import limits
from explorer.url_state import decode_url_state
from planner.machine.tree import Machine, MachineError, load_machine
from explorer.url_state import unknown_bindings_message
from tests.models import _model, _weight, gemm_mlp, run_cli, two_level

REPO = Path(__file__).resolve().parents[2]

DEVICE = {"name": "d", "peak_flops": 1e14, "memory_bytes": 8e10}


def machine_dict(arities: list[int]) -> dict:
    return {"name": "m", "device": dict(DEVICE),
            "levels": [{"name": f"l{i}", "arity": a, "bandwidth_Bps": 1e10, "latency_s": 1e-6}
                       for i, a in enumerate(arities)]}


def one_error_line(err: str) -> str:
    """stderr of a refused command: exactly one line, starting 'error: ', no traceback."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("error: ")
    return lines[0]


# ---- files shared by the CLI tests (module scope: one tiny model, one plan) ---------------------

def seq_model() -> onnx.ModelProto:
    """x[batch, seq, 4] @ w[4, 4]: two symbolic dimensions, for the bindings tests."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "seq", 4])
    return _model("seq", [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x], [y], [_weight("w", [4, 4])])


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("limits")
    model = d / "mlp.onnx"
    onnx.save(gemm_mlp([16, 32, 16], batch="batch"), model)
    seq = d / "seq.onnx"
    onnx.save(seq_model(), seq)
    machine = d / "m.yaml"
    machine.write_text(two_level().to_yaml())
    plan = d / "plan.json"
    from planner.cli.main import main

    assert main(["plan", str(model), "--machine", str(machine), "--bind", "batch=8", "--json", str(plan)]) == 0
    fifo = d / "fifo"
    os.mkfifo(fifo)
    return {"dir": d, "model": model, "seq": seq, "machine": machine, "plan": plan, "fifo": fifo}


def edited_plan(files, name: str, edit) -> Path:
    data = json.loads(files["plan"].read_text())
    edit(data)
    path = files["dir"] / name
    path.write_text(json.dumps(data))
    return path


# ---- 1. machine files ----------------------------------------------------------------------------

def test_machine_text_over_64_kib_is_refused_before_parsing():
    # A valid machine padded with a comment to 70,000 bytes: 70,000 > 65,536.
    text = Machine.from_dict(machine_dict([8])).to_yaml()
    text += "#" + "x" * (70_000 - len(text) - 2) + "\n"
    assert len(text.encode()) == 70_000
    with pytest.raises(MachineError, match=r"70,000 bytes, more than the 65,536 allowed"):
        Machine.from_yaml(text)
    with pytest.raises(MachineError, match=r"more than the 65,536 allowed"):
        Machine.from_json(" " * 65_537 + json.dumps(machine_dict([8])))


def test_machine_file_over_64_kib_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    with open(path, "wb") as f:  # sparse: 10 MB on paper, nothing read
        f.truncate(10_000_000)
    with pytest.raises(MachineError, match=r"10,000,000 bytes, more than the 65,536 allowed"):
        load_machine(path)


def test_levels_bound_16():
    assert len(Machine.from_dict(machine_dict([1] * 16)).levels) == 16  # the bound itself is allowed
    with pytest.raises(MachineError, match=r"^levels: 17 levels, more than the 16 allowed"):
        Machine.from_dict(machine_dict([1] * 17))
    # The 146,536-level file of the issue is refused by the count, before any level is read.
    with pytest.raises(MachineError, match=r"146,536 levels"):
        Machine.from_dict({**machine_dict([1]), "levels": [None] * 146_536})


def test_devices_bound_2_pow_20():
    assert Machine.from_dict(machine_dict([2**10, 2**10])).num_devices == 1_048_576
    with pytest.raises(MachineError, match=r"levels\[1\]\.arity.*2097152 devices"):  # 2^10 x 2^11 = 2^21
        Machine.from_dict(machine_dict([2**10, 2**11]))


def test_shared_link_with_2_pow_24_devices_is_refused():
    link = json.dumps(machine_dict([2**12, 2**12]))  # 4096 x 4096 = 16,777,216 devices
    state, problems = decode_url_state({"machine_json": link})
    assert state.machine is None
    assert len(problems) == 1 and "16777216 devices" in problems[0] and "1048576" in problems[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 2**21), min_size=1, max_size=20))
def test_machine_accepted_iff_within_bounds(arities):
    ok = len(arities) <= 16 and math.prod(arities) <= 2**20
    try:
        machine = Machine.from_dict(machine_dict(arities))
    except MachineError as exc:
        assert not ok, exc
        assert "\n" not in str(exc)
    else:
        assert ok and machine.num_devices == math.prod(arities)


def test_yaml_syntax_error_is_one_line_with_line_and_column():
    # "a: b: c": the second ':' is the 5th character of line 1.
    with pytest.raises(MachineError) as exc:
        Machine.from_yaml("a: b: c\n")
    assert str(exc.value) == "invalid YAML at line 1, column 5: mapping values are not allowed here"
    # An unclosed flow sequence opened on line 2: the parser meets the end of the text on line 3.
    with pytest.raises(MachineError) as exc:
        Machine.from_yaml("name: m\nlevels: [a, b\n")
    message = str(exc.value)
    assert "\n" not in message and "line 3, column 1" in message and "flow sequence" in message


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet="ab:-[]{}&*!|>'\"#\n %@`,?", max_size=60))
def test_any_yaml_error_is_one_line(text):
    try:
        Machine.from_yaml(text)
    except MachineError as exc:
        assert "\n" not in str(exc)


# ---- 2. plan files -------------------------------------------------------------------------------

def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@st.composite
def json_values(draw):
    leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.text(alphabet='[]{}"\\ab', max_size=6))
    return draw(st.recursive(leaves, lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(alphabet='[]{}"a', max_size=3), inner, max_size=3)),
        max_leaves=15))


def depth_of(value) -> int:
    """The nesting of a Python value, by recursion (the second method)."""
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=200, deadline=None)
@given(json_values())
def test_json_nesting_matches_the_recursive_depth(value):
    assert limits.json_nesting(json.dumps(value)) == depth_of(value)


def test_json_nesting_of_100000_is_counted_without_recursion():
    assert limits.json_nesting(nested(100_000)) == 100_000
    assert limits.json_nesting('["[[[[", {"a": "]]"}]') == 2  # brackets in strings do not count


def test_plan_nested_100000_deep_is_one_line_exit_2(files):
    deep = files["dir"] / "deep.json"
    deep.write_text(nested(100_000))
    for argv in (["evaluate", files["model"], "--machine", files["machine"], "--plan", deep],
                 ["export", deep, "--format", "jax", "--model", files["model"]]):
        proc = subprocess.run([sys.executable, "-m", "planner", *map(str, argv)], capture_output=True, text=True,
                              cwd=REPO, timeout=300)
        assert proc.returncode == 2
        line = one_error_line(proc.stderr)
        assert "100,000 deep, more than the 32 allowed" in line and str(deep) in line


def test_plan_file_over_16_mib_is_refused(files, capsys):
    big = files["dir"] / "big.json"
    with open(big, "wb") as f:
        f.truncate(16 * 2**20 + 1)  # 16,777,217 bytes
    code, _, err = run_cli(["export", big, "--format", "jax", "--model", files["model"]], capsys)
    assert code == 2
    assert "16,777,217 bytes, more than the 16,777,216 allowed" in one_error_line(err)


def test_plan_file_interleave_0_is_refused_by_name(files, capsys):
    path = edited_plan(files, "il0.json", lambda d: d["options"].__setitem__("interleave", 0))
    code, _, err = run_cli(["evaluate", files["model"], "--machine", files["machine"], "--plan", path], capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"plan file {path}: options.interleave" in line and "0" in line


@pytest.mark.parametrize("field, value, name", [
    ("options", {"zero": 7}, "options.zero"),
    ("options", {"micro_batches": 2.5}, "options.micro_batches"),
    ("options", {"mode": "fly"}, "options.mode"),
    ("options", {"speed": 3}, "options.speed"),
    ("options", [1], "options must be"),
    ("bindings", [8], "bindings must be"),
    ("ops", {"a": 1}, "ops must be"),
])
def test_plan_file_bad_fields_are_refused_by_name(files, capsys, field, value, name):
    path = edited_plan(files, f"bad_{name.replace('.', '_').replace(' ', '_')}.json",
                       lambda d: d.__setitem__(field, value))
    code, _, err = run_cli(["evaluate", files["model"], "--machine", files["machine"], "--plan", path], capsys)
    assert code == 2
    assert f"plan file {path}: {name}" in one_error_line(err)


@pytest.mark.parametrize("command", ["evaluate", "export"])
def test_plan_file_bindings_errors_are_the_plan_files(files, capsys, command):
    path = edited_plan(files, "bind0.json", lambda d: d.__setitem__("bindings", {"batch": 0}))
    argv = (["evaluate", files["model"], "--machine", files["machine"], "--plan", path] if command == "evaluate"
            else ["export", path, "--format", "jax", "--model", files["model"]])
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"plan file {path}: bindings.batch" in line and "--bind" not in line


# ---- 3. CLI paths --------------------------------------------------------------------------------

def test_evaluate_plan_fifo_does_not_block(files):
    # A subprocess with a timeout guard: before the fix it blocks in open(); the guard keeps the
    # suite from hanging (it is not a speed requirement).
    argv = ["evaluate", files["model"], "--machine", files["machine"], "--plan", files["fifo"]]
    try:
        proc = subprocess.run([sys.executable, "-m", "planner", *map(str, argv)], capture_output=True, text=True,
                              cwd=REPO, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("evaluate --plan FIFO blocked")
    assert proc.returncode == 2
    assert f"plan file {files['fifo']} is not a regular file: it is a FIFO" in one_error_line(proc.stderr)


@pytest.mark.parametrize("special, kind", [("dir", "a directory"), ("/dev/zero", "a device")])
@pytest.mark.parametrize("role", ["model", "machine", "plan", "export plan", "export model", "strip input"])
def test_directory_or_device_is_not_a_regular_file(files, capsys, special, kind, role):
    bad = files["dir"] if special == "dir" else Path(special)
    m, mach, plan = files["model"], files["machine"], files["plan"]
    argv, what = {
        "model": (["inspect", bad], "model file"),
        "machine": (["plan", m, "--machine", bad, "--bind", "batch=8"], "machine file"),
        "plan": (["evaluate", m, "--machine", mach, "--plan", bad], "plan file"),
        "export plan": (["export", bad, "--format", "jax", "--model", m], "plan file"),
        "export model": (["export", plan, "--format", "jax", "--model", bad], "model file"),
        "strip input": (["strip-weights", bad, files["dir"] / "out.onnx"], "model file"),
    }[role]
    code, _, err = run_cli(argv, capsys)
    assert code == 2
    assert one_error_line(err) == f"error: {what} {bad} is not a regular file: it is {kind}; give the path of a file"


def test_overflowing_bindings_name_the_binding(files, capsys):
    # 2^40 x 2^40 = 2^80 = 1.21e24 > 2^40.
    code, _, err = run_cli(["inspect", files["seq"], "--bind", f"batch={2**40}", "--bind", f"seq={2**40}"], capsys)
    assert code == 2
    line = one_error_line(err)
    assert f"--bind batch={2**40}, seq={2**40}" in line and "1.21e+24" in line and "Reshape" not in line
    # 2^20 x 2^20 = 2^40 exactly: allowed.
    code, out, _ = run_cli(["inspect", files["seq"], "--bind", f"batch={2**20}", "--bind", f"seq={2**20}"], capsys)
    assert code == 0 and "operators    1" in out


def test_planning_work_bound(files, tmp_path, capsys):
    assert limits.MAX_PLANNING_WORK == 2**27
    limits.check_planning_work(2**20, 128)  # 2^20 x 2^7 = 2^27: allowed
    with pytest.raises(limits.LimitError, match=r"135,266,304 device-operators"):  # 2^20 x 129
        limits.check_planning_work(2**20, 129)
    # 200 Relu operators on 2^20 devices: 209,715,200 device-operators.
    x = helper.make_tensor_value_info("t0", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("t200", TensorProto.FLOAT, ["batch", 4])
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(200)]
    model = tmp_path / "relus.onnx"
    onnx.save(_model("relus", nodes, [x], [y], []), model)
    machine = tmp_path / "big.yaml"
    machine.write_text(Machine.from_dict(machine_dict([2**10, 2**10])).to_yaml())
    code, _, err = run_cli(["plan", model, "--machine", machine, "--bind", "batch=8"], capsys)
    assert code == 2
    assert "planning 200 operators on 1,048,576 devices is 209,715,200 device-operators" in one_error_line(err)


# ---- 4. URL parameters ---------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["machine_json", "bind", "model", "machine", "mode", "stages", "interleave"])
def test_url_value_of_100_kb_is_quoted_short(param):
    value = "{" * 100_000
    state, problems = decode_url_state({param: value})
    assert len(problems) == 1
    assert "100,000 characters" in problems[0] and "more than the 4,096" in problems[0]
    assert len(problems[0]) < 300  # the value is quoted with at most 80 characters
    assert state.machine is None


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["model", "machine", "mode", "algorithm", "precision", "optimizer", "bind", "stages",
                        "micro_batches", "interleave", "recompute", "zero", "overlap", "machine_json"]),
       st.builds(lambda unit, n: (unit * n)[:5000], st.text(min_size=1, max_size=5), st.integers(1, 2000)))
def test_every_url_warning_quotes_at_most_80_characters_of_a_value(param, value):
    _, problems = decode_url_state({param: value})
    for problem in problems:
        # a quoted value is cut to 80 characters; the rest of a message is under 300
        assert len(problem) < 300 + 80, problem[:400]


def test_url_bindings_overflow_is_named():
    _, problems = decode_url_state({"bind": f"batch:{2**40},seq:{2**40}"})
    assert len(problems) == 1 and f"batch={2**40}, seq={2**40}" in problems[0]


def test_unknown_url_bind_names_are_reported():
    assert unknown_bindings_message({"batch": 8}, ["batch", "seq"]) is None
    message = unknown_bindings_message({"batch": 8, "sequ": 128}, ["batch", "seq"])
    assert message is not None and "'sequ'" in message and "batch, seq" in message


def test_app_reports_unknown_bind_names_and_a_100_kb_value():
    """One small AppTest: the link binds 'sequ', which mlp lacks, and carries a 100 KB machine_json."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=120)
    at.query_params.update({"model": "mlp", "bind": "batch:16,sequ:128", "machine": "dgx_a100",
                            "machine_json": "x" * 100_000})
    at.run()
    assert not at.exception
    warnings = [w.value for w in at.sidebar.warning]
    assert any("'sequ'" in w and "does not have" in w for w in warnings), warnings
    assert any("100,000 characters" in w for w in warnings) and all(len(w) < 400 for w in warnings)
    assert at.session_state["_ctx"].bindings == {"batch": 16}


def test_uploaded_plan_json_is_bounded_and_checked_by_field():
    from explorer.views.strategy import read_plan_json

    with pytest.raises(ValueError, match="100,000 deep, more than the 32 allowed"):
        read_plan_json(nested(100_000).encode())
    with pytest.raises(ValueError, match=r"the plan file: options\.interleave"):
        read_plan_json(json.dumps({"ops": [], "options": {"interleave": 0}}).encode())
    with pytest.raises(ValueError, match=r"the plan file: bindings\.batch"):
        read_plan_json(json.dumps({"ops": [], "bindings": {"batch": "many"}}).encode())
