"""Command line: ``python -m planner inspect|plan|evaluate|strip-weights ...``.

Every user error exits with code 2 and a one-line message on stderr; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .onnx_import import ModelImportError, import_model


class UsageError(Exception):
    """A bad command-line argument; the message says how to fix it."""


def parse_bindings(items: list[str] | None) -> dict[str, int]:
    """``["batch=32", "seq=2048"]`` -> ``{"batch": 32, "seq": 2048}``."""
    out: dict[str, int] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--bind {item!r}: expected NAME=VALUE, e.g. --bind batch=32")
        try:
            number = int(value)
        except ValueError:
            raise UsageError(f"--bind {item!r}: the value must be a positive integer, e.g. --bind {name}=32") from None
        if number < 1:
            raise UsageError(f"--bind {item!r}: the value must be a positive integer, e.g. --bind {name}=32")
        out[name.strip()] = number
    return out


def _write_json(path: str | None, data: dict) -> None:
    if path:
        try:
            Path(path).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _load(args) -> "OperatorGraph":  # noqa: F821
    if not Path(args.model).is_file():
        raise UsageError(f"model file not found: {args.model}")
    return import_model(args.model, parse_bindings(args.bind))


def cmd_inspect(args) -> int:
    graph = _load(args)
    s = graph.summary()
    print(f"model        {s['model']}")
    print(f"operators    {s['operators']}")
    print(f"parameters   {s['parameters']:,}")
    print(f"FLOPs/fwd    {s['flops_forward']:.4g}")
    if s["unbound_dims"]:
        print(f"unbound dims {', '.join(s['unbound_dims'])} (taken as 1 here; bind with --bind NAME=VALUE)")
    if s["unsupported_op_types"]:
        print(f"unsupported  {', '.join(s['unsupported_op_types'])} (planned as replicated)")
    print("op types     " + ", ".join(f"{k} {v}" for k, v in s["op_types"].items()))
    _write_json(args.json, s)
    return 0


def cmd_strip_weights(args) -> int:
    from .onnx_import import load_model_proto
    from .strip_weights import strip_weights

    model = load_model_proto(args.input)
    out = Path(args.output)
    if out.exists() and out.resolve() == Path(args.input).resolve():
        raise UsageError(f"{out} is the same file as the input: write the stripped model to a new file "
                         "(overwriting would lose the weights)")
    before = Path(args.input).stat().st_size
    stripped = strip_weights(model, out.stem + ".weights.bin")
    try:
        out.write_bytes(stripped.SerializeToString(deterministic=True))
    except OSError as exc:
        raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    after = out.stat().st_size
    print(f"wrote {out}: {after:,} bytes (was {before:,}); weights are references to an absent file")
    return 0


def _machine(path: str):
    from .machine import load_machine

    if not Path(path).is_file():
        raise UsageError(f"machine file not found: {path} (presets are in machines/, e.g. machines/dgx_a100.yaml)")
    return load_machine(path)


def _options(args):
    from .api import PlanOptions

    return PlanOptions(mode=args.mode, precision=args.precision, optimizer=args.optimizer,
                       algorithm=getattr(args, "algorithm", "drec+"))


def _print_result(result, label: str) -> None:
    from .units import format_bytes, format_seconds

    s = result.cost.seconds()
    mem = result.memory
    print(f"model        {label} ({result.graph.parameter_count:,} parameters)")
    print(f"machine      {result.machine.summary()}")
    print(f"algorithm    {result.plan.algorithm} ({result.options.mode}), search {format_seconds(result.plan.search_seconds)}")
    print(f"iteration    {format_seconds(s['total'])}  = compute {format_seconds(s['compute'])}"
          f" + communication {format_seconds(s['communication'])} + redistribution {format_seconds(s['redistribution'])}")
    print(f"data parallel {format_seconds(result.data_parallel_seconds)}: speed-up over pure data parallel "
          f"{result.speedup_over_data_parallel:.2f}x")
    fit = "fits" if mem.fits else f"does NOT fit: {format_bytes(mem.shortfall_bytes)} short"
    print(f"memory       {format_bytes(mem.peak)} per device of {format_bytes(mem.capacity)} ({fit})")
    for note in result.notes:
        print(f"note         {note}")


def cmd_plan(args) -> int:
    from .api import plan_model
    from .onnx_import import model_sha256
    from .report import plan_to_json

    graph = _load(args)
    result = plan_model(graph, _machine(args.machine), _options(args))
    _print_result(result, Path(args.model).name)
    _write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model), parse_bindings(args.bind)))
    return 0


def cmd_evaluate(args) -> int:
    from .api import evaluate_plan
    from .onnx_import import model_sha256
    from .report import plan_to_json

    graph = _load(args)
    machine = _machine(args.machine)
    try:
        data = json.loads(Path(args.plan).read_text())
    except FileNotFoundError:
        raise UsageError(f"plan file not found: {args.plan}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"plan file {args.plan} is not valid JSON: {exc}") from None
    result = evaluate_plan(graph, machine, data, _options(args))
    _print_result(result, Path(args.model).name)
    _write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model), parse_bindings(args.bind)))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m planner", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("model", help="ONNX model file")
        sp.add_argument("--bind", action="append", metavar="NAME=VALUE",
                        help="bind a symbolic input dimension, e.g. --bind batch=32 (repeatable)")
        sp.add_argument("--json", metavar="OUT.json", help="also write the result as JSON")

    sp = sub.add_parser("inspect", help="operator count, op types, parameters, FLOPs")
    model_args(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("strip-weights", help="write the model with its weights as references to an absent file")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.set_defaults(func=cmd_strip_weights)

    from .api import ALGORITHMS, DEFAULT_ALGORITHM
    from .cost import MODES, PRECISION_BYTES
    from .memory import DEFAULT_OPTIMIZER, OPTIMIZERS

    def planning_args(sp):
        model_args(sp)
        sp.add_argument("--machine", required=True, metavar="X.yaml", help="machine description (see machines/)")
        sp.add_argument("--mode", choices=MODES, default="train", help="train (forward+backward) or infer")
        sp.add_argument("--precision", choices=list(PRECISION_BYTES), help="bytes of float tensors (default: the ONNX type)")
        sp.add_argument("--optimizer", choices=list(OPTIMIZERS), default=DEFAULT_OPTIMIZER,
                        help=f"optimizer state in memory (default {DEFAULT_OPTIMIZER})")

    sp = sub.add_parser("plan", help="search a parallel plan and print its cost")
    planning_args(sp)
    sp.add_argument("--algorithm", choices=list(ALGORITHMS), default=DEFAULT_ALGORITHM,
                    help="; ".join(f"{k}: {v}" for k, v in ALGORITHMS.items()))
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("evaluate", help="score a plan written by hand or by another tool")
    planning_args(sp)
    sp.add_argument("--plan", required=True, metavar="PLAN.json",
                    help='{"ops": [{"name": ..., "cuts": [[level, dim, factor], ...]} or {"name": ..., "splits": {dim: f}}]}')
    sp.set_defaults(func=cmd_evaluate)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UsageError, ModelImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
