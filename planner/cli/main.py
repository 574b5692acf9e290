"""Command line: ``python -m planner inspect|plan|evaluate|strip-weights ...``.

Every user error exits with code 2 and a one-line message on stderr; no tracebacks.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from planner.limits import LimitError, check_binding_product, require_regular_file
from planner.onnx.importer import ModelImportError, binding_value, import_model
from planner.plans.plan_json import plan_bindings, read_plan_file
from planner.units import format_bytes


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
            number = binding_value(value)
        except ValueError as exc:
            raise UsageError(f"--bind {item!r}: the value {exc}, e.g. --bind {name}=32") from None
        if name.strip() in out:
            raise UsageError(f"--bind {name.strip()} is given twice; give each dimension once")
        out[name.strip()] = number
    check_binding_product(out, "--bind")
    return out


def megabytes(text: str) -> float:
    """An argparse type: a number of megabytes >= 0 (the gradient bucket)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give megabytes >= 0, e.g. 25") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be a number of megabytes >= 0 (0: one all-reduce per "
                                         "gradient tensor), e.g. 25")
    return value


BUCKET_HELP = ("gradient bucket in MB (10^6 bytes): gradients are all-reduced in buckets of this size, latency "
               "paid per bucket, as PyTorch DDP's bucket_cap_mb; 0: one all-reduce per tensor")


def _bindings(args) -> dict[str, int]:
    """The --bind values, else the plan file's bindings (already checked, and named as the file's)."""
    if args.bind or getattr(args, "plan_bindings", None) is None:
        return parse_bindings(args.bind)
    return dict(args.plan_bindings)


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one >= 1, e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1, e.g. 4")
    return value


def _write_json(path: str | None, data: dict) -> None:
    if path:
        try:
            Path(path).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def _load(args) -> "OperatorGraph":  # noqa: F821
    require_regular_file(args.model, "model file")
    return import_model(args.model, _model_bindings(args.model, args))


def _model_bindings(model, args, bindings: dict[str, int] | None = None) -> dict[str, int]:
    """The bindings (``_bindings``, or those given) with ``--batch N`` under the model's batch
    symbol (planner.model.rebatch). A plan file's batch is replaced by ``--batch``; a --bind of it must agree."""
    from planner.onnx.importer import load_model_proto
    from planner.model.rebatch import STATIC_SYMBOL, RebatchError, batch_binding, find_batch_symbol

    from_file = bindings is not None or not args.bind
    bindings = _bindings(args) if bindings is None else bindings
    if getattr(args, "batch", None) is None:
        return bindings
    try:
        proto = load_model_proto(model)
        if from_file:
            symbol = find_batch_symbol(proto) or STATIC_SYMBOL
            bindings = {k: v for k, v in bindings.items() if k != symbol or k in parse_bindings(args.bind)}
        bindings = batch_binding(proto, bindings, args.batch)
    except RebatchError as exc:
        raise UsageError(str(exc)) from None
    check_binding_product(bindings, "--bind/--batch")
    return bindings


def cmd_inspect(args) -> int:
    graph = _load(args)
    s = graph.summary()
    print(f"model        {s['model']}")
    print(f"operators    {s['operators']}")
    print(f"parameters   {s['parameters']:,}")
    frozen = f" ({s['frozen_parameters']:,} quantised parameters, frozen)" if s["frozen_parameters"] else ""
    print(f"weights      {format_bytes(s['parameter_bytes'])}{frozen}")
    for name, shape in s["input_shapes"].items():
        print(f"input        {name} {'x'.join(map(str, shape)) or 'scalar'}")
    print(f"FLOPs/fwd    {s['flops_forward']:.4g}")
    if s["unbound_dims"]:
        print(f"unbound dims {', '.join(s['unbound_dims'])} (taken as 1 here; bind with --bind NAME=VALUE)")
    if s["unsupported_op_types"]:
        print(f"unsupported  {', '.join(s['unsupported_op_types'])} (planned as replicated)")
    print("op types     " + ", ".join(f"{k} {v}" for k, v in s["op_types"].items()))
    _write_json(args.json, s)
    return 0


def cmd_strip_weights(args) -> int:
    from planner.onnx.importer import load_model_proto
    from planner.onnx.strip_weights import strip_weights

    require_regular_file(args.input, "model file")
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
    from planner.machine.tree import load_machine

    require_regular_file(path, "machine file", " (presets are in machines/, e.g. machines/dgx_a100.yaml)")
    return load_machine(path)


def _options(args, algorithm: str | None = None):
    from planner.api import PlanOptions

    return PlanOptions(mode=args.mode, precision=args.precision, optimizer=args.optimizer,
                       algorithm=algorithm or getattr(args, "algorithm", "drec+"),
                       pipeline_stages=getattr(args, "pipeline_stages", None),
                       micro_batches=getattr(args, "micro_batches", None),
                       interleave=getattr(args, "interleave", None) or 1,
                       recompute=getattr(args, "recompute", None), zero=getattr(args, "zero", None),
                       overlap_gradient_sync=bool(getattr(args, "overlap_gradient_sync", False)),
                       sequence_parallel=bool(getattr(args, "sequence_parallel", False)),
                       **({} if getattr(args, "bucket_mb", None) is None else {"bucket_mb": args.bucket_mb}))


def _print_result(result, label: str) -> None:
    from planner.units import format_bytes, format_seconds

    s = result.cost.seconds()
    mem = result.memory
    sched = result.schedule
    padding = getattr(result.graph, "vocabulary_padding", None)  # Megatron's padded vocabulary
    padded = f" with the vocabulary padded from {padding[0]:,} to {padding[1]:,} tokens" if padding else ""
    print(f"model        {label} ({result.graph.parameter_count:,} parameters{padded})")
    print(f"machine      {result.machine.summary()}")
    print(f"algorithm    {result.plan.algorithm} ({result.options.mode}), search {format_seconds(result.plan.search_seconds)}")
    if result.pipelined:
        levels = ", ".join(sorted(set(sched.boundary_levels))) or "none"
        print(f"pipeline     {sched.stages} stage(s) (sends over: {levels}), {sched.micro_batches} micro-batch(es) "
              f"of {sched.micro_batch_size} sample(s) per stage, interleave {sched.interleave}; each stage on "
              f"{result.split.stage_machine.summary()}")
        slowest = sched.stage_seconds.index(max(sched.stage_seconds))
        print(f"micro-batch  {format_seconds(sched.stage_seconds[slowest])} in the slowest stage ({slowest}; sends "
              f"{format_seconds(sched.send_seconds[slowest])}); the whole graph on one stage machine: compute "
              f"{format_seconds(s['compute'])} + communication {format_seconds(s['communication'])} + redistribution "
              f"{format_seconds(s['redistribution'])}")
        print(f"iteration    {format_seconds(result.total_seconds)} = {sched.micro_batches} x slowest stage + bubble "
              f"{format_seconds(sched.bubble_seconds)} + gradient sync {format_seconds(max(sched.gradient_sync_seconds))}")
    else:
        hidden = s["total"] - result.total_seconds  # the gradient sync the backward pass hides (overlap)
        print(f"iteration    {format_seconds(result.total_seconds)}  = compute {format_seconds(s['compute'])}"
              f" + communication {format_seconds(s['communication'])} + redistribution {format_seconds(s['redistribution'])}"
              + (f" - gradient sync hidden behind the backward pass {format_seconds(hidden)}"
                 if hidden > 1e-9 * s["total"] else ""))
    if result.options.mode == "train":
        tf = sched.tflops_per_device()
        print(f"throughput   {tf['model']:.1f} TFLOP/s per device (model), {tf['hardware']:.1f} (hardware, "
              f"recomputation {sched.recompute}); ZeRO stage {sched.zero}")
    dp_memory = result.data_parallel_memory
    dp_fit = f" (it does not fit: {format_bytes(dp_memory.peak)} per device)" if dp_memory and not dp_memory.fits else ""
    print(f"data parallel {format_seconds(result.data_parallel_seconds)}{dp_fit}: speed-up over pure data parallel "
          f"{result.speedup_over_data_parallel:.2f}x")
    fit = "fits" if mem.fits else f"does NOT fit: {format_bytes(mem.shortfall_bytes)} short"
    where = f" (stage {[m.peak for m in sched.memory].index(mem.peak)}, the fullest)" if sched.stages > 1 else ""
    print(f"memory       {format_bytes(mem.peak)} per device of {format_bytes(mem.capacity)}{where} ({fit})")
    for note in result.notes:
        print(f"note         {note}")


def cmd_plan(args) -> int:
    from planner.api import plan_model
    from planner.onnx.importer import model_sha256
    from planner.plans.report import plan_to_json

    graph = _load(args)
    result = plan_model(graph, _machine(args.machine), _options(args))
    _print_result(result, Path(args.model).name)
    _write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model),
                                        _model_bindings(args.model, args)))
    return 0


HAND_MADE = ("tp", "pp", "dp", "micro_batch_size", "global_batch")


def cmd_evaluate(args) -> int:
    from planner.api import evaluate_plan
    from planner.onnx.importer import model_sha256
    from planner.plans.report import plan_to_json

    given = [k for k in HAND_MADE if getattr(args, k) is not None]
    if args.plan is None:
        if len(given) != len(HAND_MADE):
            missing = ", ".join("--" + k.replace("_", "-") for k in HAND_MADE if getattr(args, k) is None)
            raise UsageError("give a plan file (--plan PLAN.json) or a hand-made configuration: "
                             f"--tp T --pp P --dp D --micro-batch-size b --global-batch B (missing: {missing})")
        return _evaluate_hand_made(args)
    if given:
        raise UsageError("--plan scores a plan file as written; drop --tp/--pp/--dp/--micro-batch-size/--global-batch "
                         "(or drop --plan to evaluate a hand-made configuration)")
    data = read_plan_file(args.plan)
    recorded = data.get("options") if isinstance(data.get("options"), dict) else {}
    notes = []
    for key in ("mode", "precision", "optimizer", "recompute", "zero", "interleave", "bucket_mb"):  # the plan's own
        given = getattr(args, key)                                                      # settings, unless overridden
        if given is None:
            setattr(args, key, recorded.get(key) if key in recorded else _EVALUATE_DEFAULTS[key])
        elif key in recorded and recorded[key] != given:
            notes.append(f"--{key.replace('_', '-')} {given} overrides the plan file's {recorded[key]}")
    for key in ("pipeline_stages", "micro_batches", "overlap_gradient_sync", "sequence_parallel"):  # kept as planned
        setattr(args, key, recorded.get(key) or getattr(args, key, None))
    if isinstance(data.get("bindings"), dict):
        args.plan_bindings = plan_bindings(data, f"plan file {args.plan}")
    graph = _load(args)
    result = evaluate_plan(graph, _machine(args.machine), data, _options(args))
    result.notes.extend(notes)
    _print_result(result, Path(args.model).name)
    _write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model),
                                        _model_bindings(args.model, args)))
    return 0


_EVALUATE_DEFAULTS = {"mode": "train", "precision": None, "optimizer": "adam", "recompute": None, "zero": None,
                      "interleave": 1, "bucket_mb": None}


def _evaluate_hand_made(args) -> int:
    from planner.search.configurations import evaluate_configuration
    from planner.onnx.importer import model_sha256
    from planner.plans.report import plan_to_json

    for key, value in _EVALUATE_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.batch is not None:
        raise UsageError("--batch does not apply to a hand-made configuration: its batch is --global-batch "
                         "(and --micro-batch-size); drop --batch")
    graph = _load(args)
    from planner.model.rebatch import STATIC_SYMBOL

    symbol = graph.batch_symbol or (STATIC_SYMBOL if graph.batch_axes else None)  # a static export: re-batched
    if symbol and symbol not in parse_bindings(args.bind):
        # the batch dimension is bound by the configuration; only the others need --bind
        graph = import_model(args.model, {**parse_bindings(args.bind), symbol: args.micro_batch_size})
    result = evaluate_configuration(graph, _machine(args.machine), args.tp, args.pp, args.dp, args.micro_batch_size,
                                    args.global_batch, _options(args, algorithm="megatron"))
    _print_result(result, Path(args.model).name)
    # the file records the whole batch, so that evaluate --plan prices the same iteration
    bindings = {**parse_bindings(args.bind), **result.graph.bindings, graph.batch_symbol or symbol: args.global_batch}
    _write_json(args.json, plan_to_json(result, Path(args.model).name, model_sha256(args.model), bindings))
    return 0


def cmd_export(args) -> int:
    from planner.plans.export import export_plan, find_model
    from planner.onnx.importer import model_sha256

    plan = read_plan_file(args.plan)
    if args.model:
        model = require_regular_file(args.model, "model file")
    else:
        model = find_model(plan, args.plan)
        if model is None:
            raise UsageError(f"the plan names model {plan.get('model')!r}, which is not found (as given, next to "
                             "the plan, or in sample_models/): give it with --model MODEL.onnx")
    bindings = plan_bindings(plan, f"plan file {args.plan}")
    bindings.update(parse_bindings(args.bind))
    bindings = _model_bindings(str(model), args, bindings)  # --batch replaces the plan's batch
    check_binding_product(bindings, "the plan file's bindings with --bind")
    graph = import_model(str(model), bindings)
    data = export_plan(plan, graph, args.format, args.mesh, args.bucket_mb)
    if plan.get("model_sha256") and plan["model_sha256"] != model_sha256(str(model)):
        data["notes"].insert(0, f"{model} is not the file the plan was made for (its SHA-256 differs)")
        print(f"warning: {model} is not the file the plan was made for (its SHA-256 differs)", file=sys.stderr)
    if args.out:
        _write_json(args.out, data)
        print(f"wrote {args.out}: {args.format} layouts of {len(data['ops'])} operators on "
              f"{data['devices']} devices")
    else:
        print(json.dumps(data, indent=2))
    return 0


def cmd_verify(args) -> int:
    import time

    from planner import verify

    if not verify.torch_available():
        raise UsageError(verify.INSTALL_HINT)
    start = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        print(f"[{fraction:4.0%}] {message} ({time.perf_counter() - start:.0f} s)", file=sys.stderr, flush=True)

    try:
        rows = verify.run_verification(args.models, args.processes, args.algorithms, progress=progress,
                                       timeout_s=args.timeout)
    except verify.VerificationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    print(verify.format_table(rows))
    s = verify.summary(rows)
    print(f"{s['numerics_match']} of {s['runs']} runs match the single-process step (rtol {verify.RTOL:g}, "
          f"atol {verify.ATOL:g}); predicted and measured bytes agree within {verify.BYTES_TOLERANCE:.0%} on "
          f"{s['within_tolerance']} of {s['operators']} operators ({s['with_communication']} communicate); "
          f"{elapsed:.0f} s")
    _write_json(args.json, verify.json_rows(rows))
    ok = s["numerics_match"] == s["runs"] and s["within_tolerance"] == s["operators"]
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m planner", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def model_args(sp):
        sp.add_argument("model", help="ONNX model file")
        sp.add_argument("--bind", action="append", metavar="NAME=VALUE",
                        help="bind a symbolic input dimension, e.g. --bind batch=32 (repeatable)")
        sp.add_argument("--json", metavar="OUT.json", help="also write the result as JSON")
        batch_arg(sp)

    def batch_arg(sp):
        sp.add_argument("--batch", type=positive_int, metavar="N",
                        help="the batch size: binds the symbolic batch dimension, or re-binds the traced batch "
                             "axis of a static export (shapes re-inferred)")

    sp = sub.add_parser("inspect", help="operator count, op types, parameters, FLOPs")
    model_args(sp)
    sp.set_defaults(func=cmd_inspect)

    sp = sub.add_parser("strip-weights", help="write the model with its weights as references to an absent file")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.set_defaults(func=cmd_strip_weights)

    from planner.api import ALGORITHMS, DEFAULT_ALGORITHM
    from planner.cost.model import MODES, PRECISION_BYTES, RECOMPUTE, ZERO_STAGES
    from planner.cost.memory import DEFAULT_OPTIMIZER, OPTIMIZERS

    def planning_args(sp, defaults=True):
        """``evaluate`` leaves them unset so that the plan file's own settings apply."""
        model_args(sp)
        sp.add_argument("--machine", required=True, metavar="X.yaml", help="machine description (see machines/)")
        sp.add_argument("--mode", choices=MODES, default="train" if defaults else None,
                        help="train (forward+backward) or infer (default: train"
                             + ("" if defaults else ", or the plan file's") + ")")
        sp.add_argument("--precision", choices=list(PRECISION_BYTES), help="bytes of float tensors (default: the ONNX type)")
        sp.add_argument("--optimizer", choices=list(OPTIMIZERS), default=DEFAULT_OPTIMIZER if defaults else None,
                        help=f"optimizer state in memory (default {DEFAULT_OPTIMIZER})")
        sp.add_argument("--bucket-mb", type=megabytes, metavar="MB",
                        help=BUCKET_HELP + " (default 25" + ("" if defaults else ", or the plan file's") + ")")

    def memory_args(sp):
        sp.add_argument("--interleave", type=positive_int, metavar="V",
                        help="model chunks per device (interleaved 1F1B schedule; needs stages; default 1)")
        sp.add_argument("--recompute", choices=list(RECOMPUTE),
                        help="activation recomputation: " + "; ".join(f"{k}: {v}" for k, v in RECOMPUTE.items())
                             + " (plan default: the least that fits; evaluate default: none)")
        sp.add_argument("--zero", type=int, choices=list(ZERO_STAGES),
                        help="ZeRO stage of the data-parallel groups: " + "; ".join(f"{k}: {v}" for k, v in ZERO_STAGES.items())
                             + " (plan default: the lowest that fits; evaluate default: 0)")
        sp.add_argument("--overlap-gradient-sync", action="store_true",
                        help="hide the gradient all-reduce behind the last backward pass (as far as it lasts)")

    sp = sub.add_parser("plan", help="search a parallel plan and print its cost")
    planning_args(sp)
    sp.add_argument("--algorithm", choices=list(ALGORITHMS), default=DEFAULT_ALGORITHM,
                    help="; ".join(f"{k}: {v}" for k, v in ALGORITHMS.items()))
    sp.add_argument("--pipeline-stages", type=positive_int, metavar="N",
                    help="pipeline stages over the outermost machine levels (default: drec/drec+ try the counts "
                         "that make sense; other algorithms 1)")
    sp.add_argument("--micro-batches", type=positive_int, metavar="M",
                    help="micro-batches per iteration; must divide the batch (default: chosen with the stages)")
    memory_args(sp)
    sp.set_defaults(func=cmd_plan)

    sp = sub.add_parser("evaluate", help="score a plan file, or a hand-made tensor x pipeline x data configuration")
    planning_args(sp, defaults=False)
    sp.add_argument("--plan", metavar="PLAN.json",
                    help='{"ops": [{"name": ..., "cuts": [[level, dim, factor], ...]} or {"name": ..., "splits": {dim: f}}]}')
    hand = sp.add_argument_group("hand-made configuration (transformers; instead of --plan)")
    hand.add_argument("--tp", type=positive_int, metavar="T", help="tensor-parallel size (innermost devices)")
    hand.add_argument("--pp", type=positive_int, metavar="P", help="pipeline stages (outermost devices)")
    hand.add_argument("--dp", type=positive_int, metavar="D", help="data-parallel size; T x P x D = devices")
    hand.add_argument("--micro-batch-size", type=positive_int, metavar="b", help="samples per micro-batch per data-parallel rank")
    hand.add_argument("--global-batch", type=positive_int, metavar="B", help="samples per iteration; B / (b x D) micro-batches")
    memory_args(hand)
    hand.add_argument("--sequence-parallel", action="store_true",
                      help="sequence parallelism (Korthikanti et al. 2022): LayerNorm, dropout and residual regions "
                           "split on the sequence over the tensor-parallel ranks; all-reduces become reduce-scatter "
                           "+ all-gather (same bytes)")
    sp.set_defaults(func=cmd_evaluate)

    from planner.plans.export import FORMATS, MESH_MODES

    sp = sub.add_parser("export", help="the plan as DTensor placements, JAX PartitionSpecs or MindSpore strategies")
    sp.add_argument("plan", metavar="PLAN.json", help="a plan written by plan --json")
    sp.add_argument("--format", choices=FORMATS, required=True, help="dtensor, jax or mindspore")
    sp.add_argument("--model", metavar="MODEL.onnx", help="the model (default: the file the plan names)")
    batch_arg(sp)
    sp.add_argument("--bind", action="append", metavar="NAME=VALUE",
                    help="bind a symbolic dimension (default: the plan's bindings)")
    sp.add_argument("--mesh", choices=MESH_MODES, default="cuts",
                    help="mesh dimensions: one per prime cut (default) or one per machine level")
    sp.add_argument("--out", metavar="OUT.json", help="write the export here (default: print it)")
    sp.add_argument("--bucket-mb", type=megabytes, metavar="MB",
                    help=BUCKET_HELP + "; written to the export as gradient_bucket_mb (default: the plan's, or 25)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("verify", help="run plans on a CPU process group with DTensor; compare with the cost model")
    sp.add_argument("--models", nargs="+", choices=["mlp", "transformer"], default=["mlp", "transformer"])
    sp.add_argument("--algorithms", nargs="+", choices=["drec+", "data_parallel"], default=["drec+", "data_parallel"])
    sp.add_argument("--processes", nargs="+", type=int, choices=[2, 4, 8], default=[4, 8],
                    help="process counts, each a 2-level machine 2 x N/2 (default 4 8)")
    sp.add_argument("--timeout", type=float, default=240.0, metavar="S",
                    help="seconds allowed per launch of a process group (default 240)")
    sp.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    sp.set_defaults(func=cmd_verify)
    return p


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean "bad input": reported in one line with exit code 2. Anything
    else is a bug and keeps its traceback."""
    from planner.cost.model import OptionsError, PlanError
    from planner.plans.export import ExportError
    from planner.machine.tree import MachineError
    from planner.search.exact import SearchTooLargeError
    from planner.search.megatron import NotATransformerError

    return (UsageError, LimitError, ModelImportError, MachineError, PlanError, OptionsError, SearchTooLargeError,
            NotATransformerError, ExportError)


USER_ERRORS = _user_errors()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. piped into head
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
