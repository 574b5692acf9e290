"""A canonical digest of every graph the importer builds, to prove a refactoring changed nothing.

Imports every sample model (unbound, and bound at two sizes), every operator case of
``tests/op_zoo.py``, the small models of ``tests/models.py``, a static export re-batched with
``--batch``, and the real-export corpus (``tests/real_exports.py``: both exporters, built with
transformers), and writes one line per graph: its label and the SHA-256 of a canonical text of
the graph (operators in order with op type, kind, dims in order, axes of every input and output,
loose axes, FLOPs, reduction and fixed dims, halo, atomic factors; tensors with shape, dtype,
bytes per element, role, producer, gradient, frozen flag and axis factors; inputs, outputs,
bindings, unbound dims, the batch symbol and axes, warnings and unsupported op types).

    python bench/import_digest.py --corpus-dir /tmp/corpus OUT.txt        # write the digests
    python bench/import_digest.py --corpus-dir /tmp/corpus --compare OLD.txt  # diff against a run

``bench/import_digest_dbac0c4.txt`` holds the digests of main at dbac0c4, before the importer was
split into load, shapes, rules and importer (the split reproduces all 207; the corpus exports are
deterministic, so a fresh ``--corpus-dir`` gives the same digests with the same torch and
transformers). ``--corpus-dir`` keeps the exported corpus, so the second run reads the very same files (the
exports are not rebuilt when present); ``--dump DIR`` also writes each graph's canonical text.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from planner.onnx.importer import ModelImportError, import_model  # noqa: E402

SAMPLE_BINDINGS = ({}, {"batch": 8, "seq": 128}, {"batch": 3, "seq": 512})


def canonical(graph) -> str:
    """Every field the importer sets, in a fixed text form (dict orders kept: they are behaviour)."""
    lines = [f"graph {graph.name} inputs={graph.inputs} outputs={graph.outputs}",
             f"bindings={sorted(graph.bindings.items())} unbound={graph.unbound_dims}",
             f"batch_symbol={graph.batch_symbol} batch_axes={sorted(graph.batch_axes.items())}",
             f"warnings={graph.warnings} unsupported={graph.unsupported_op_types}",
             f"edges={sorted((u, v, tuple(d['tensors'])) for u, v, d in graph.graph.edges(data=True))}"]
    for name, op in graph.operators.items():
        uses = [(g, u.tensor, u.axes, sorted(u.loose)) for g, us in (("in", op.inputs), ("out", op.outputs)) for u in us]
        lines.append(f"op {name} {op.op_type} {op.kind.value} dims={list(op.dims.items())} flops={op.flops!r} "
                     f"red={sorted(op.reduction_dims)} fixed={sorted(op.fixed_dims)} halo={list(op.halo.items())} "
                     f"factors={list(op.dim_factors.items())} uses={uses}")
    for name, t in graph.tensors.items():
        lines.append(f"tensor {name} {t.shape} {t.dtype} {t.itemsize!r} {t.role.value} {t.producer} "
                     f"grad={t.requires_grad} frozen={t.frozen} factors={t.axis_factors}")
    return "\n".join(lines) + "\n"


def _static_export() -> onnx.ModelProto:
    """A static [8, 16] -> Reshape [8, 4, 4] -> MatMul export, for ``--batch 32`` (re-batching)."""
    import numpy as np
    from onnx import numpy_helper

    nodes = [helper.make_node("Reshape", ["x", "s"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "w"], ["y"], name="mm")]
    inits = [numpy_helper.from_array(np.array([8, 4, 4], np.int64), "s"),
             numpy_helper.from_array(np.zeros((4, 6), np.float32), "w")]
    graph = helper.make_graph(nodes, "static", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def _cases(corpus_dir: Path | None):
    """(label, thunk) for every graph to digest."""
    from op_zoo import CASES
    import models

    for path in sorted((ROOT / "sample_models").glob("*.onnx")):
        for bindings in SAMPLE_BINDINGS:
            b = {k: v for k, v in bindings.items() if k in ("batch",) or "bert" in path.stem or "gpt" in path.stem
                 or "moe" in path.stem}
            yield f"sample/{path.stem}/{sorted(b.items())}", lambda p=path, b=b: import_model(p, b)
    for label, model in CASES:
        yield f"zoo/{label}", lambda m=model: import_model(m)
    for label, build in (("matmul", models.matmul), ("two_matmuls", models.two_matmuls),
                         ("gemm_mlp", lambda: models.gemm_mlp([64, 128, 32], relu=True))):
        yield f"models/{label}", lambda b=build: import_model(b())
    yield "rebatch/static_32", lambda: import_model(_static_export(), {"batch": 32})
    if corpus_dir is not None:
        from real_exports import Corpus, FAMILIES

        corpus = Corpus(corpus_dir)
        for family in FAMILIES:
            for exporter in corpus.exporters(family):
                path = corpus_dir / f"{family}_{exporter}.onnx"
                export = corpus.get(family, exporter) if not path.exists() else None
                symbols = export.symbols if export else None
                for batch, seq in ((2, 16), (4, 128)):
                    yield (f"corpus/{family}/{exporter}/{batch}x{seq}",
                           lambda p=path, s=symbols, b=batch, q=seq: _import_corpus(p, s, b, q))


def _import_corpus(path: Path, symbols, batch: int, seq: int):
    from planner.onnx.importer import load_model_proto, symbolic_dims

    names = symbols or symbolic_dims(load_model_proto(path))
    values = {"batch": batch, "seq": seq}
    return import_model(path, {s: values[s] for s in names})


def digests(corpus_dir: Path | None, dump: Path | None) -> dict[str, str]:
    out = {}
    for label, thunk in _cases(corpus_dir):
        try:
            text = canonical(thunk())
        except ModelImportError as exc:
            text = f"ModelImportError: {exc}\n"
        out[label] = hashlib.sha256(text.encode()).hexdigest()
        if dump is not None:
            (dump / (label.replace("/", "__").replace(" ", "") + ".txt")).write_text(text)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="write the digests here")
    parser.add_argument("--compare", help="a file written by an earlier run: exit 1 on any difference")
    parser.add_argument("--corpus-dir", type=Path, help="export (or reuse) the real-export corpus here")
    parser.add_argument("--dump", type=Path, help="also write each graph's canonical text into this folder")
    args = parser.parse_args(argv)
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
    if args.corpus_dir:
        args.corpus_dir.mkdir(parents=True, exist_ok=True)
    found = digests(args.corpus_dir, args.dump)
    text = "".join(f"{digest}  {label}\n" for label, digest in found.items())
    if args.out:
        Path(args.out).write_text(text)
    print(f"{len(found)} graphs digested")
    if args.compare:
        old = dict(reversed(line.split("  ", 1)) for line in Path(args.compare).read_text().splitlines())
        old = {k.strip(): v for k, v in old.items()}
        differ = sorted(k for k in old.keys() | found.keys() if old.get(k) != found.get(k))
        for label in differ:
            print(f"DIFFERENT  {label}")
        print(f"{len(differ)} of {len(found)} graphs differ from {args.compare}")
        return 1 if differ else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
