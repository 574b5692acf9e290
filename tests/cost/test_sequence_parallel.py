"""Sequence parallelism (Korthikanti et al. 2022) on a hand-made tensor-parallel configuration:
the all-reduces around the LayerNorm/residual regions become reduce-scatter + all-gather with the
same bytes, and those regions' compute and activations are divided by the tensor-parallel size.

The model: a 2-layer GPT (hidden h = 64, 4 heads, FFN 256, vocabulary 1000, sequence s = 32),
batch b = 2, fp32, on one level of t = 4 GPUs, tensor parallel 4. One activation of the residual
stream is S = b*s*h*4 = 16,384 bytes; one reduce-scatter or all-gather of it over 4 GPUs moves
(t-1)/t * S = 12,288 bytes per GPU in one superstep, and an all-reduce twice that.
"""

from __future__ import annotations

import json

import pytest

from planner.api import PlanOptions
from planner.cli.main import main
from planner.machine.tree import Device, Level, Machine
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.search.configurations import evaluate_configuration
from sample_models.synthetic import gpt_decoder

S = 2 * 32 * 64 * 4
ONE_COLLECTIVE = 3 / 4 * S  # 12,288 bytes


@pytest.fixture(scope="module")
def graph():
    return import_model(gpt_decoder(2, 64, 4, 256, 1000, 32), {"batch": 2, "seq": 32}, name="gpt2l")


@pytest.fixture(scope="module")
def machine():
    return Machine("four", Device("gpu", 1e12, 80e9), (Level("gpu", 4, 1e9, 1e-6),))


def _result(graph, machine, sequence_parallel: bool, recompute: str = "none"):
    options = PlanOptions(algorithm="megatron", recompute=recompute, zero=0, sequence_parallel=sequence_parallel)
    return evaluate_configuration(graph, machine, 4, 1, 1, 2, 2, options)


def _traffic(result, names) -> tuple[float, float]:
    """Bytes and supersteps on the GPU level of the listed operators' collectives and
    redistributions, the once-per-iteration parameter gradient sync left out."""
    cost = result.cost
    total = sum((cost.communication[n] - cost.gradient_sync[n] + cost.redistribution[n] for n in names),
                result.cost_model.basis.zero())
    return float(total[1]), float(total[2])


@pytest.mark.parametrize("recompute", ["none", "full"])
def test_a_layer_moves_the_same_bytes_with_and_without_sequence_parallelism(graph, machine, recompute):
    # per layer: the two row-parallel outputs (attention projection, fc2) and the two column-parallel
    # inputs' gradients (QKV, fc1) are all-reduced without SP: 4 all-reduces = 8 collectives; with SP
    # each all-reduce is a reduce-scatter and an all-gather: again 8 collectives of 12,288 bytes.
    # Full recomputation all-reduces the two forward partial sums once more: 4 collectives more.
    layer = [n for n in graph.planned_operators() if n.startswith("layer0.")]
    collectives = 8 if recompute == "none" else 12
    for sp in (False, True):
        nbytes, steps = _traffic(_result(graph, machine, sp, recompute), layer)
        assert nbytes == pytest.approx(collectives * ONE_COLLECTIVE)
        assert steps == pytest.approx(collectives)


def test_the_all_reduce_becomes_reduce_scatter_plus_all_gather(graph, machine):
    plain, sp = _result(graph, machine, False), _result(graph, machine, True)
    # the attention projection's output: all-reduced (2 collectives) without SP, reduce-scattered (1) with it
    assert _traffic(plain, ["layer0.attn.proj"]) == pytest.approx((2 * ONE_COLLECTIVE, 2))
    assert _traffic(sp, ["layer0.attn.proj"]) == pytest.approx((ONE_COLLECTIVE, 1))
    # its gradient comes back into the row-parallel layer by an all-gather (the bias Add's input edge)
    assert _traffic(sp, ["layer0.attn.proj.bias"]) == pytest.approx((ONE_COLLECTIVE, 1))
    # the QKV input: all-gathered in the forward pass (redistribution), its gradient reduce-scattered
    qkv = sp.cost
    assert float(qkv.redistribution["layer0.attn.qkv"][1]) == pytest.approx(ONE_COLLECTIVE)
    assert float((qkv.communication["layer0.attn.qkv"] - qkv.gradient_sync["layer0.attn.qkv"])[1]) \
        == pytest.approx(ONE_COLLECTIVE)
    assert sp.plan.strategies["layer0.ln_2"] == ("d1", "d1")  # the sequence, over both cuts of 2
    assert plain.plan.strategies["layer0.ln_2"] == (None, None)


def test_the_regions_compute_and_activations_are_divided_by_t(graph, machine):
    plain, sp = _result(graph, machine, False), _result(graph, machine, True)
    for name in ("layer0.ln_2", "layer0.attn.residual", "layer1.mlp.fc2.bias"):
        assert float(sp.cost.compute[name][0]) == pytest.approx(float(plain.cost.compute[name][0]) / 4)
    # kept per layer in the region, S bytes each without SP: the two LayerNorms' inputs and outputs
    # (the outputs are the QKV and fc1 inputs, kept as the sequence shard under SP); plus the final
    # LayerNorm's input and output: 2 * 4 + 2 = 10 tensors, each 3/4 * S smaller
    saved = plain.memory.activations - sp.memory.activations
    assert saved == pytest.approx(10 * 3 / 4 * S)


def test_without_tensor_parallelism_it_is_not_applied(graph):
    machine = Machine("four", Device("gpu", 1e12, 80e9), (Level("gpu", 4, 1e9, 1e-6),))
    options = PlanOptions(algorithm="megatron", recompute="none", zero=0, sequence_parallel=True)
    rebinder = rebinder_for(gpt_decoder(2, 64, 4, 256, 1000, 32), name="gpt2l")  # the batch goes from 2 to 4
    plain = evaluate_configuration(graph, machine, 1, 1, 4, 1, 4, PlanOptions(algorithm="megatron", recompute="none",
                                                                              zero=0), rebinder=rebinder)
    result = evaluate_configuration(graph, machine, 1, 1, 4, 1, 4, options, rebinder=rebinder)
    assert result.total_seconds == pytest.approx(plain.total_seconds)
    assert any("needs tensor parallelism" in note for note in result.notes)


def test_option_must_be_a_bool():
    with pytest.raises(ValueError, match="sequence_parallel must be true or false"):
        PlanOptions(sequence_parallel="yes")


def test_cli_flag_and_plan_file_round_trip(tmp_path, capsys):
    out = tmp_path / "sp.json"
    yaml = tmp_path / "two_by_four.yaml"  # tensor parallelism inside a node, data parallelism across two
    yaml.write_text("name: two-by-four\ndevice: {name: A100, peak_flops: 312e12, memory_bytes: 80e9}\nlevels:\n"
                    "  - {name: node, arity: 2, bandwidth_Bps: 25e9, latency_s: 1e-5}\n"
                    "  - {name: gpu, arity: 4, bandwidth_Bps: 300e9, latency_s: 5e-6}\n")
    args = ["evaluate", "sample_models/gpt2_small.onnx", "--machine", str(yaml), "--tp", "4", "--pp",
            "1", "--dp", "2", "--micro-batch-size", "2", "--global-batch", "4", "--bind", "seq=128"]
    assert main(args + ["--sequence-parallel", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "sequence parallel:" in text
    data = json.loads(out.read_text())
    assert data["options"]["sequence_parallel"] is True
    # the plan file keeps the option: evaluate --plan re-prices the reduce-scatters
    plan_out = tmp_path / "again.json"
    assert main(["evaluate", "sample_models/gpt2_small.onnx", "--machine", str(yaml), "--plan", str(out),
                 "--json", str(plan_out)]) == 0
    again = json.loads(plan_out.read_text())
    assert again["options"]["sequence_parallel"] is True
    assert again["iteration_seconds"] == pytest.approx(data["iteration_seconds"], rel=1e-9)
