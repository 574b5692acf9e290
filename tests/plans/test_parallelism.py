"""The engineers' vocabulary (planner/plans/parallelism.py): plans named from their splits.

The expected names are written from the configuration asked for (a Megatron configuration
``--tp T --pp P --dp D`` is ``DP D x TP T (column-row) x PP P``, degrees of 1 left out), from the
splits a hand-written plan file gives (MLP: fc1 1024->4096, fc2 4096->4096, fc3 4096->1024), or,
for a searched plan, by a second classification written here from the GPT sample's dimension
names (MatMul ``b0`` batch, ``n`` column, ``k`` row, ``b1`` heads, ``m`` sequence; Gather ``i0``
batch, ``v`` vocabulary), not by the module's own rules.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

import models  # tests/models.py

REPO = Path(__file__).resolve().parents[2]
GPT2 = str(REPO / "sample_models" / "gpt2_small.onnx")
MLP = str(REPO / "sample_models" / "mlp.onnx")
MOE = str(REPO / "sample_models" / "moe.onnx")
DGX = str(REPO / "machines" / "dgx_a100.yaml")  # 1 node x 8 GPUs
SLOW = str(REPO / "machines" / "a100_2x8_slow.yaml")  # 2 nodes x 8 GPUs
run = models.run_cli


def _parallelism_line(out: str) -> str:
    return next(line for line in out.splitlines() if line.startswith("parallelism"))[13:]


@pytest.mark.parametrize("machine, tp, pp, dp, extra, name", [
    (DGX, 1, 1, 8, [], "DP 8"),
    (DGX, 2, 1, 4, [], "DP 4 x TP 2 (column-row)"),
    (DGX, 4, 2, 1, [], "TP 4 (column-row) x PP 2"),
    (DGX, 2, 2, 2, [], "DP 2 x TP 2 (column-row) x PP 2"),
    (DGX, 4, 1, 2, ["--sequence-parallel"], "DP 2 x TP 4 (column-row) + SP"),
    (SLOW, 4, 2, 2, [], "DP 2 x TP 4 (column-row) x PP 2"),
])
def test_megatron_configurations_are_named_as_configured(tmp_path, capsys, machine, tp, pp, dp, extra, name):
    out_json = tmp_path / "plan.json"
    code, out, err = run(["evaluate", GPT2, "--machine", machine, "--tp", tp, "--pp", pp, "--dp", dp,
                          "--micro-batch-size", 1, "--global-batch", 4 * dp, "--bind", "seq=64", *extra,
                          "--json", out_json], capsys)
    assert code == 0, err
    assert _parallelism_line(out) == name
    data = json.loads(out_json.read_text())
    assert data["parallelism"]["name"] == name
    assert data["parallelism"]["pipeline_stages"] == pp
    # read back: the same name, and no note that the file disagrees
    code, out, err = run(["evaluate", GPT2, "--machine", machine, "--plan", out_json], capsys)
    assert code == 0, err
    assert _parallelism_line(out) == name
    assert "calls its parallelism" not in out


@pytest.mark.parametrize("model, binds, machine, devices", [
    (MLP, ["--bind", "batch=64"], DGX, 8), (GPT2, ["--bind", "batch=32", "--bind", "seq=64"], SLOW, 16)])
def test_pure_data_parallel_is_dp_n(tmp_path, capsys, model, binds, machine, devices):
    code, out, err = run(["plan", model, "--machine", machine, *binds, "--algorithm", "data_parallel",
                          "--json", tmp_path / "p.json"], capsys)
    assert code == 0, err
    assert _parallelism_line(out) == f"DP {devices}"
    levels = json.loads((tmp_path / "p.json").read_text())["parallelism"]["levels"]
    assert [lv["name"] for lv in levels] == ([f"DP {devices}"] if devices == 8 else ["DP 2", "DP 8"])


def _mlp_plan_file(tmp_path: Path, splits: dict[str, dict[str, int]]) -> Path:
    path = tmp_path / "hand.json"
    path.write_text(json.dumps({"ops": [{"name": n, "splits": s} for n, s in splits.items()]}))
    return path


def test_column_then_row_layers_of_an_mlp_are_tensor_parallel(tmp_path, capsys):
    plan = _mlp_plan_file(tmp_path, {"fc1": {"n": 8}, "fc2": {"k": 8}, "fc3": {"n": 8}})
    code, out, err = run(["evaluate", MLP, "--machine", DGX, "--plan", plan, "--bind", "batch=64"], capsys)
    assert code == 0, err
    assert _parallelism_line(out) == "TP 8 (column-row)"


def test_data_across_nodes_and_columns_inside_them(tmp_path, capsys):
    cuts = [["node", "m", 2]] + [["gpu", "n", 2]] * 3  # one entry per prime cut, outermost first
    plan = tmp_path / "hand.json"
    plan.write_text(json.dumps({"ops": [{"name": n, "cuts": cuts} for n in ("fc1", "fc2", "fc3")]}))
    code, out, err = run(["evaluate", MLP, "--machine", SLOW, "--plan", plan, "--bind", "batch=64"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith("parallelism"))
    assert lines[i][13:] == "DP 2 x TP 8 (column)"
    assert lines[i + 1].strip() == "per level: node (2) DP 2, gpu (8) TP 8 (column)"


def test_a_plan_that_fits_no_name_says_so(tmp_path, capsys):
    plan = _mlp_plan_file(tmp_path, {"fc1": {"m": 8}, "fc2": {"n": 8}, "fc3": {"m": 8}})
    code, out, err = run(["evaluate", MLP, "--machine", DGX, "--plan", plan, "--bind", "batch=64"], capsys)
    assert code == 0, err
    # fc2 (4096 x 4096) carries 2/3 of the FLOPs split by hidden, fc1 and fc3 (1024 x 4096 each)
    # 1/3 split by the batch: far more than an exception's 10%, so the cut is truly hybrid
    assert _parallelism_line(out) == "hybrid 8 (batch / hidden) over gpu"


def test_a_wrong_recorded_name_is_noted_and_a_malformed_one_ignored(tmp_path, capsys):
    plan = _mlp_plan_file(tmp_path, {"fc1": {"m": 8}, "fc2": {"m": 8}, "fc3": {"m": 8}})
    data = json.loads(plan.read_text())
    for recorded, noted in (({"name": "TP 8 (column-row)"}, True), ([1, 2], False), ({"name": 7}, False)):
        plan.write_text(json.dumps({**data, "parallelism": recorded}))
        code, out, err = run(["evaluate", MLP, "--machine", DGX, "--plan", plan, "--bind", "batch=64"], capsys)
        assert code == 0, err
        assert _parallelism_line(out) == "DP 8"
        assert ("the plan file calls its parallelism 'TP 8 (column-row)'" in out) is noted


# ---- a searched plan: a second classification from the GPT sample's dimension names ----------

def _role_by_name(op: dict, dim: str | None) -> str | None:
    if dim is None:
        return "replicated"
    if op["op_type"] == "Gather":
        return {"i0": "batch", "v": "vocabulary"}.get(dim, "other")
    batched = {"b0": "batch", "b1": "heads"}
    if dim in batched:
        return batched[dim]
    weighted = not op["name"].endswith(("scores", "context"))
    return {"n": "column", "k": "row", "m": "sequence"}[dim] if weighted else "other"


def _expected_level_names(data: dict) -> list[str]:
    compute = [op for op in data["ops"] if op["op_type"] in ("MatMul", "Gather")]
    names = []
    for level in data["parallelism"]["levels"]:
        degrees: dict[str, int] = {}
        for t, (lv, _, factor) in enumerate(compute[0]["cuts"]):
            if lv != level["level"]:
                continue
            roles = {_role_by_name(op, op["cuts"][t][1]) for op in compute}
            kind = ("DP" if roles == {"batch"} else "replicated" if roles == {"replicated"} else
                    "TP" if roles <= {"column", "row", "heads", "vocabulary"} and roles & {"column", "row"}
                    else "hybrid")
            degrees[kind] = degrees.get(kind, 1) * factor
        names.append(degrees)
    return names


def test_the_searched_gpt_plan_is_named_consistently_with_its_splits(tmp_path, capsys):
    code, out, err = run(["plan", GPT2, "--machine", SLOW, "--bind", "batch=16", "--bind", "seq=64",
                          "--pipeline-stages", 1, "--micro-batches", 1, "--json", tmp_path / "p.json"], capsys)
    assert code == 0, err
    data = json.loads((tmp_path / "p.json").read_text())
    name = data["parallelism"]["name"]
    assert _parallelism_line(out) == name
    for level, expected in zip(data["parallelism"]["levels"], _expected_level_names(data)):
        if "hybrid" in expected:
            assert "hybrid" in name and f"over {level['level']}" in name
            assert "hybrid" in level["name"]
            continue
        for kind, degree in expected.items():
            assert level["name"].startswith(f"{kind} {degree}") or f" x {kind} {degree}" in level["name"]
        assert math.prod(expected.values()) == level["arity"]
    if not name.startswith("hybrid"):
        total_dp = math.prod(d.get("DP", 1) for d in _expected_level_names(data))
        assert (f"DP {total_dp}" in name) == (total_dp > 1)


def test_stacked_expert_weights_split_on_their_expert_axis_are_expert_parallel():
    from planner.api import plan_model
    from planner.machine.tree import load_preset
    from planner.onnx.importer import import_model
    from planner.options import PlanOptions
    from planner.plans.parallelism import split_role

    graph = import_model(MOE, {"batch": 8, "seq": 128})
    result = plan_model(graph, load_preset("dgx_a100"), PlanOptions(algorithm="data_parallel"))
    batch = graph.batch_dims()
    assert split_role(result, "experts.fc1", "e", batch) == "expert"  # w1 [e, d, f]
    assert split_role(result, "experts.fc1", "f", batch) == "column"
    assert split_role(result, "experts.fc2", "f", batch) == "row"  # contracted
    assert split_role(result, "experts.fc1", "b", batch) == "data"
    assert split_role(result, "router.logits", "m", batch) == "sequence"
