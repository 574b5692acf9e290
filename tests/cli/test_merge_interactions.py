"""Defects found by a review of how this round's branches meet (each failed before its fix):
an upload's tied embedding, export of a Megatron plan with a padded vocabulary, the explorer's
plan cache and the gradient bucket, and ``--batch`` past the bindings bound."""

from __future__ import annotations

import json

import pytest

from planner.cli.main import main
from planner.options import PlanOptions
from planner.cost.result import cost_model_for
from explorer.upload import weight_free
from explorer.cache import PlanCache, PlanRequest
from explorer.sources import ModelSource
from planner.machine.tree import load_preset
from planner.onnx.importer import import_model
from tests.model.test_tied_weights import tied_lm


def test_upload_counts_a_tied_embedding_once():
    # the exported file holds wte [96, 32] and its transpose [32, 96]: one 96 x 32 table
    data = tied_lm(96, 32).SerializeToString()
    graph = import_model(weight_free(data), {"batch": 2, "seq": 4})
    assert graph.parameter_count == 96 * 32


def test_export_of_a_megatron_plan_with_a_padded_vocabulary(tmp_path, capsys):
    plan = tmp_path / "meg.json"
    # GPT-2's 50,257 tokens are padded to 50,432 = 197 x 128 x 2 for tensor size 2
    assert main(["evaluate", "sample_models/gpt2_small.onnx", "--machine", "machines/dgx_a100.yaml", "--tp", "2",
                 "--pp", "1", "--dp", "4", "--micro-batch-size", "4", "--global-batch", "32", "--bind", "seq=128",
                 "--json", str(plan)]) == 0
    assert json.loads(plan.read_text())["vocabulary_padded"] == {"from": 50257, "to": 50432}
    out = tmp_path / "dt.json"
    assert main(["export", str(plan), "--format", "dtensor", "--model", "sample_models/gpt2_small.onnx",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert out.exists()


def test_the_plan_cache_keys_on_the_gradient_bucket():
    path = "sample_models/mlp.onnx"
    source = ModelSource("sample", "mlp", "sha-of-mlp", path)
    bindings = {"batch": 64}
    graph = import_model(path, bindings)
    machine = load_preset("dgx_a100")
    cache = PlanCache()
    for bucket in (25.0, 0.0, 0.01):
        options = PlanOptions(algorithm="data_parallel", bucket_mb=bucket)
        cached = cache.result(PlanRequest(source, bindings, machine, options), graph)
        assert cached.cost_model.bucket_bytes == bucket * 1e6 == cost_model_for(graph, machine, options).bucket_bytes


def test_batch_counts_towards_the_bindings_bound(capsys):
    # 2^20 x 2^21 = 2^41 > 2^40: refused by the bound, naming both sources, not by the model's Reshape
    code = main(["inspect", "sample_models/gpt2_small.onnx", "--bind", "seq=1048576", "--batch", "2097152"])
    err = capsys.readouterr().err
    assert code == 2 and "--bind/--batch" in err and "more than 2^40" in err


def test_evaluate_header_says_the_parameters_are_of_the_padded_vocabulary(capsys):
    # GPT-2 small: 124,439,808 parameters (tied head); padded for t = 2 from 50,257 to 50,432
    # tokens: 175 more rows of the 768-wide embedding = 124,574,208
    assert main(["evaluate", "sample_models/gpt2_small.onnx", "--machine", "machines/dgx_a100.yaml", "--tp", "2",
                 "--pp", "1", "--dp", "4", "--micro-batch-size", "4", "--global-batch", "32", "--bind", "seq=128"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first == ("model        gpt2_small.onnx (124,574,208 parameters with the vocabulary padded "
                     "from 50,257 to 50,432 tokens)")
    assert 124_439_808 + 175 * 768 == 124_574_208
