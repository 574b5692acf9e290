"""Long sequences on the Llama-2-70B-shaped sample (80 layers, hidden 8,192, 64 query / 8 KV heads;
``sample_models/llama2_70b.onnx``) on 16 DGX H100 nodes (128 GPUs of 80 GB), bf16, Adam, ZeRO-1,
micro-batch 1, 16 sequences per iteration: without context parallelism TP 8 does not fit; with
enough of it, it does. The bounds by hand:

* 32K, TP 8 x PP 16, selective recomputation: stage 0 keeps 16 micro-batches of its 5 layers, and
  each layer at least its two RMSNorm inputs (2 x 2 s h bytes, whole on every tensor-parallel rank
  without sequence parallelism): 80 x 32,768 x 8,192 x 4 = 86 GB > 80 GB.
  TP 8 x PP 4 x CP 4: 2.2e9 parameters per GPU at 2 + 2 + 12/4 bytes (ZeRO-1 over the 4
  context-parallel ranks) = 15 GB, and each rank keeps a quarter of the tokens.
* 128K, TP 8 x PP 16, full recomputation: stage 0 keeps 16 micro-batches of 5 layer inputs,
  80 x 131,072 x 8,192 x 2 bytes = 172 GB > 80 GB. TP 8 x CP 16: 80 layer inputs of 8,192 tokens
  (10.7 GB), 8.6e9 parameters at 2 + 2 + 12/16 bytes (41 GB) and one layer recomputed, whose
  attention scores are 8,192 queries x 131,072 keys x 8 heads x 2 bytes (17 GB): about 69 GB < 80 GB.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from planner.machine.tree import load_machine
from planner.onnx.importer import import_model
from planner.onnx.rebinder import rebinder_for
from planner.options import PlanOptions
from planner.search.configurations import evaluate_configuration
from planner.search.context_parallel import evaluate_context_configuration

REPO = Path(__file__).resolve().parents[2]
LLAMA = str(REPO / "sample_models" / "llama2_70b.onnx")
MACHINE = load_machine(str(REPO / "machines" / "h100_cluster.yaml")).with_level("node", arity=16)


def _price(seq: int, pipeline: int, context: int, recompute: str):
    graph = import_model(LLAMA, {"batch": 1, "seq": seq})
    options = PlanOptions(algorithm="megatron", precision="bf16", recompute=recompute, zero=1)
    if context == 1:
        return evaluate_configuration(graph, MACHINE, 8, pipeline, 1, 1, 16, options, rebinder=rebinder_for(LLAMA))
    return evaluate_context_configuration(graph, MACHINE, 8, pipeline, 1, context, 1, 16, options,
                                          rebinder=rebinder_for(LLAMA))


@pytest.mark.parametrize("seq, recompute, with_cp", [(32768, "selective", (4, 4)), (131072, "full", (1, 16))])
def test_long_sequences_fit_only_with_context_parallelism(seq, recompute, with_cp):
    without = _price(seq, 16, 1, recompute)
    assert not without.memory.fits
    pipeline, context = with_cp
    assert _price(seq, pipeline, context, recompute).memory.fits
