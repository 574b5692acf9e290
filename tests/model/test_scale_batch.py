"""Re-binding the batch by scaling (planner/model/scale_batch.py) gives, number by number, the graph
a real re-import gives, and refuses what it cannot show to be linear in the batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import networkx as nx
import pytest

import models  # tests/models.py
from planner.model.scale_batch import CACHES, scaled_graph
from planner.onnx.importer import import_model, load_model_proto
from planner.onnx.load import symbolic_dims
from planner.onnx.rebinder import rebinder_for

SAMPLES = sorted((Path(__file__).resolve().parents[2] / "sample_models").glob("*.onnx"))
BASE, PROBE = 64, 16


def same(a, b, where="graph") -> None:
    """Assert that two graphs (or parts) are equal, floats to 1e-12 relative, caches ignored."""
    assert type(a) is type(b), where
    if isinstance(a, float):
        assert math.isclose(a, b, rel_tol=1e-12), f"{where}: {a} != {b}"
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            same(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert list(a) == list(b), where
        for k in a:
            same(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, nx.DiGraph):
        assert list(a.nodes) == list(b.nodes) and list(a.edges(data=True)) == list(b.edges(data=True)), where
    elif hasattr(a, "__dict__") and not isinstance(a, Enum):
        da = {k: v for k, v in vars(a).items() if k not in CACHES}
        db = {k: v for k, v in vars(b).items() if k not in CACHES}
        same(da, db, where)
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def bindings_of(model, batch: int) -> dict[str, int]:
    return {d: (batch if d == "batch" else 128) for d in symbolic_dims(model)}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
def test_a_scaled_graph_is_the_reimported_graph_on_every_sample(path):
    model = load_model_proto(path)
    if "batch" not in symbolic_dims(model):
        pytest.fail(f"{path.name} has no batch dimension: the samples all have one")
    base = import_model(model, bindings_of(model, BASE))
    probe = import_model(model, bindings_of(model, PROBE))
    if len(bindings_of(model, BASE)) > 1:
        assert scaled_graph(base, probe, 128) is None  # the sequence's size: boundaries may merge, so imported
    for value in (2, 8, 32, 256):
        scaled = scaled_graph(base, probe, value)
        assert scaled is not None, f"{path.name} at batch {value} was not scaled"
        same(scaled, import_model(model, bindings_of(model, value)), f"{path.stem} at batch {value}")


def test_the_rebinder_scales_after_one_import_and_gives_the_imported_graphs():
    model = models.gemm_mlp([64, 32, 16], batch="batch", relu=True)
    graph = import_model(model, {"batch": 96})
    fast, slow = rebinder_for(model), rebinder_for(model)
    object.__setattr__(slow, "scaling", False)
    calls = []
    fast_import = fast.import_fn
    object.__setattr__(fast, "import_fn", lambda *a: calls.append(a[1]) or fast_import(*a))
    for value in (48, 24, 12, 6, 3):
        same(fast.with_batch(graph, value), slow.with_batch(graph, value), f"batch {value}")
    assert calls == [{"batch": 48}]  # the first micro-batch is imported, the others scaled


@dataclass
class Toy:
    shape: tuple
    flops: float
    note: str


def scale_toy(a: Toy, b: Toy, value: int):
    graph_a = import_model(models.gemm_mlp([8, 8], batch="batch"), {"batch": 4})
    graph_b = import_model(models.gemm_mlp([8, 8], batch="batch"), {"batch": 2})
    graph_a.__dict__["toy"], graph_b.__dict__["toy"] = a, b
    out = scaled_graph(graph_a, graph_b, value)
    return None if out is None else out.__dict__["toy"]


def test_only_differences_linear_in_the_batch_are_scaled():
    # batch 4 and 2: an axis of the batch, one of 7, FLOPs linear in the batch
    assert scale_toy(Toy((4, 7), 28.0, "x"), Toy((2, 7), 14.0, "x"), 6) == Toy((6, 7), 42.0, "x")
    assert scale_toy(Toy((16, 7), 1.0, "x"), Toy((4, 7), 1.0, "x"), 6) is None  # batch squared
    assert scale_toy(Toy((4, 7), 1.0, "x"), Toy((2, 7), 3.0, "x"), 6) is None  # FLOPs not proportional
    assert scale_toy(Toy((4, 7), 1.0, "x"), Toy((2, 7), 1.0, "y"), 6) is None  # a text that differs
    assert scale_toy(Toy((4, 7), 1.0, "x"), Toy((2, 7, 1), 1.0, "x"), 6) is None  # another structure
    assert scale_toy(Toy((4, 7), 1.0, "x"), Toy((2, 7), 1.0, "x"), 1) is None  # batch 1: size-1 axes differ
    assert scale_toy(Toy((4, 7), 1.0, "x"), Toy((2, 7), 1.0, "x"), 3) == Toy((3, 7), 1.0, "x")


def counted(import_fn, calls: list, tag):
    """``import_fn`` that appends ``tag`` to ``calls`` on each import."""
    def wrapped(*args):
        calls.append(tag)
        return import_fn(*args)
    return wrapped


def test_the_configuration_search_finds_the_same_plans_with_scaled_graphs():
    path = next(p for p in SAMPLES if p.stem == "gpt2_small")
    from planner.api import PlanOptions, plan_model

    results, imports = [], []
    for scaling in (True, False):
        rebinder = rebinder_for(path)
        object.__setattr__(rebinder, "scaling", scaling)
        object.__setattr__(rebinder, "import_fn", counted(rebinder.import_fn, imports, scaling))
        graph = import_model(rebinder.model, {"batch": 64, "seq": 128})
        results.append(plan_model(graph, models.two_level(4, 4, memory=4e9), PlanOptions(), rebinder=rebinder))
    fast, slow = results
    assert len({t["micro_batches"] for t in slow.tried}) == 3  # 1, 16 and 32 micro-batches: two re-bindings
    assert imports.count(True) == 1 and imports.count(False) == 2  # the second was scaled
    assert fast.plan.strategies == slow.plan.strategies
    assert math.isclose(fast.total_seconds, slow.total_seconds, rel_tol=1e-9)
    assert len(fast.tried) == len(slow.tried)
    for a, b in zip(fast.tried, slow.tried):
        assert {k: v for k, v in a.items() if k != "iteration_seconds"} == \
            {k: v for k, v in b.items() if k != "iteration_seconds"}
        assert math.isclose(a["iteration_seconds"], b["iteration_seconds"], rel_tol=1e-9)
