"""Static TorchScript exports of real transformers re-batch (issue 10): exported at batch 2 and
re-batched with ``--batch 8``, each gives the graph of the same model exported at batch 8.

``torch.onnx.export(dynamo=False)`` without ``dynamic_axes`` bakes the batch into constants: the
Reshape targets, the attention mask's ``arange(batch)`` gather indices and its expand shape behind
``Where(Equal(shape, -1), ...)`` (GPT-2), a causal mask built from constants and expanded to the
batch (T5's decoder), the class token expanded to the batch (ViT). The independent check is the
export made at batch 8: every planned operator must have its FLOPs and bytes."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from real_exports import Corpus, export_module  # noqa: E402

from planner.onnx.importer import import_model  # noqa: E402


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    return Corpus(tmp_path_factory.mktemp("static_exports"))


def _static_export(modules, family: str, batch: int, directory):
    """The family's module exported with every shape fixed, inputs at ``batch`` samples."""
    module, args, names, _ = modules.module(family)
    batched = tuple(a[:1].expand(batch, *a.shape[1:]).contiguous() for a in args)
    path = directory / f"{family}_static_b{batch}.onnx"
    export_module(module, batched, names, {n: {} for n in names}, "torchscript", path)
    return path


def _bytes(graph, op) -> float:
    return sum(graph.tensors[u.tensor].nbytes for u in op.uses())


@pytest.mark.parametrize("family", ["gpt2", "t5", "vit"])
def test_static_export_rebatched_equals_the_export_at_that_batch(modules, family, tmp_path):
    rebatched = import_model(_static_export(modules, family, 2, tmp_path), {"batch": 8})
    exported = import_model(_static_export(modules, family, 8, tmp_path))
    assert not [w for w in rebatched.warnings if "cannot broadcast" in w]
    planned = exported.planned_operators()
    assert sorted(rebatched.planned_operators()) == sorted(planned)
    differ = [n for n in planned
              if (rebatched.operators[n].flops, _bytes(rebatched, rebatched.operators[n]))
              != (exported.operators[n].flops, _bytes(exported, exported.operators[n]))]
    assert not differ
    assert rebatched.flops_forward == exported.flops_forward
    first = exported.inputs[0]
    assert rebatched.tensors[first].shape[0] == exported.tensors[first].shape[0] == 8
