"""What the commands share: argument types and groups, bindings, loading the model and the
machine, the plan options, and writing JSON. ``UsageError`` is a bad command-line argument."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from planner.errors import PlannerError
from planner.limits import check_binding_product, require_regular_file
from planner.bindings import CLI_SEPARATOR, BindingTextError, parse_binding
from planner.onnx.importer import import_model


class UsageError(PlannerError):
    """A bad command-line argument; the message says how to fix it."""


# ---- argument types -----------------------------------------------------------------------------

def parse_bindings(items: list[str] | None) -> dict[str, int]:
    """``["batch=32", "seq=2048"]`` -> ``{"batch": 32, "seq": 2048}``."""
    out: dict[str, int] = {}
    for item in items or []:
        try:
            name, number = parse_binding(item, CLI_SEPARATOR)
        except BindingTextError as exc:
            if exc.name is None:
                raise UsageError(f"--bind {item!r}: expected NAME=VALUE, e.g. --bind batch=32") from None
            raise UsageError(f"--bind {item!r}: the value {exc}, e.g. --bind {item.partition('=')[0]}=32") from None
        if name in out:
            raise UsageError(f"--bind {name} is given twice; give each dimension once")
        out[name] = number
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


def capacity_factor(text: str) -> float:
    """An argparse type: the MoE capacity factor, a number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a capacity factor above 0, "
                                         "e.g. 1.25") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} must be above 0 (1.0: each expert takes its share of the tokens), "
                                         "e.g. 1.25")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number >= 1, with a message that says so."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give one >= 1, e.g. 4") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1, e.g. 4")
    return value


BUCKET_HELP = ("gradient bucket in MB (10^6 bytes): gradients are all-reduced in buckets of this size, latency "
               "paid per bucket, as PyTorch DDP's bucket_cap_mb; 0: one all-reduce per tensor")


# ---- argument groups ----------------------------------------------------------------------------

def add_batch_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--batch", type=positive_int, metavar="N",
                    help="the batch size: binds the symbolic batch dimension, or re-binds the traced batch "
                         "axis of a static export (shapes re-inferred)")


def add_model_args(sp: argparse.ArgumentParser) -> None:
    """The model file, ``--bind``, ``--json`` and ``--batch``."""
    sp.add_argument("model", help="ONNX model file")
    sp.add_argument("--bind", action="append", metavar="NAME=VALUE",
                    help="bind a symbolic input dimension, e.g. --bind batch=32 (repeatable)")
    sp.add_argument("--json", metavar="OUT.json", help="also write the result as JSON")
    add_batch_arg(sp)


def add_planning_args(sp: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The model and the machine, and the options of a plan. ``evaluate`` passes ``defaults=False``
    and leaves them unset, so that the plan file's own settings apply."""
    from planner.options import DEFAULT_OPTIMIZER, MODES, OPTIMIZERS, PRECISION_BYTES

    add_model_args(sp)
    from_file = "" if defaults else ", or the plan file's"
    sp.add_argument("--machine", required=True, metavar="X.yaml", help="machine description (see machines/)")
    sp.add_argument("--mode", choices=MODES, default="train" if defaults else None,
                    help=f"train (forward+backward) or infer (default: train{from_file})")
    sp.add_argument("--precision", choices=list(PRECISION_BYTES),
                    help="bytes of float tensors (default: the ONNX type); fp8: linear layers at the device's FP8 peak "
                         "(peak_flops_fp8) with 1-byte inputs, the rest bf16")
    sp.add_argument("--optimizer", choices=list(OPTIMIZERS), default=DEFAULT_OPTIMIZER if defaults else None,
                    help=f"optimizer state in memory (default {DEFAULT_OPTIMIZER})")
    sp.add_argument("--bucket-mb", type=megabytes, metavar="MB", help=f"{BUCKET_HELP} (default 25{from_file})")
    sp.add_argument("--moe-capacity-factor", type=capacity_factor, metavar="F",
                    help="mixture-of-experts models: each expert takes ceil(tokens x top-k x F / experts) tokens of a "
                         "sequence, which sizes the experts' compute and the all-to-all bytes (default: as the model "
                         "is written; the generated samples: 1.0)")


def add_memory_args(sp) -> None:
    """Interleaving, recomputation, ZeRO and the gradient-sync overlap (a parser or a group)."""
    from planner.options import RECOMPUTE, ZERO_STAGES

    sp.add_argument("--interleave", type=positive_int, metavar="V",
                    help="model chunks per device (interleaved 1F1B schedule; needs stages; default 1)")
    sp.add_argument("--recompute", choices=list(RECOMPUTE),
                    help="activation recomputation: " + "; ".join(f"{k}: {v}" for k, v in RECOMPUTE.items())
                         + " (plan default: the least that fits; evaluate default: none)")
    sp.add_argument("--zero", type=int, choices=list(ZERO_STAGES),
                    help="ZeRO stage of the data-parallel groups: " + "; ".join(f"{k}: {v}" for k, v in ZERO_STAGES.items())
                         + " (plan default: the lowest that fits; evaluate default: 0)")
    on_off = argparse.BooleanOptionalAction
    sp.add_argument("--overlap-gradient-sync", action=on_off,
                    help="all-reduce the gradients bucket by bucket during the last backward pass, as PyTorch DDP "
                         "does (default: on, as PyTorch DDP; Megatron-LM's own default is off; a plan file: as recorded)")
    sp.add_argument("--prefetch-parameters", action=on_off,
                    help="under ZeRO-3, gather each layer's parameters while the one before it computes "
                         "(default: on, as DeepSpeed and FSDP)")
    sp.add_argument("--overlap-pipeline-sends", action=on_off,
                    help="send between pipeline stages while computing another micro-batch (default: off, as "
                         "Megatron-LM's --overlap-p2p-communication)")


# ---- what the commands load -----------------------------------------------------------------------

def bindings_of(args) -> dict[str, int]:
    """The --bind values, else the plan file's bindings (already checked, and named as the file's)."""
    if args.bind or getattr(args, "plan_bindings", None) is None:
        return parse_bindings(args.bind)
    return dict(args.plan_bindings)


def model_bindings(model, args, bindings: dict[str, int] | None = None) -> dict[str, int]:
    """The bindings (``bindings_of``, or those given) with ``--batch N`` under the model's batch
    symbol (planner.model.rebatch). A plan file's batch is replaced by ``--batch``; a --bind of it must agree."""
    from planner.model.rebatch import STATIC_SYMBOL, RebatchError, batch_binding, find_batch_symbol
    from planner.onnx.importer import load_model_proto

    from_file = bindings is not None or not args.bind
    bindings = bindings_of(args) if bindings is None else bindings
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


def model_source(args):
    """``args.model``, or its graph with ``--moe-capacity-factor`` set (:mod:`planner.onnx.capacity`),
    as :func:`import_model` and :func:`rebinder_of` take it."""
    factor = getattr(args, "moe_capacity_factor", None)
    if factor is None:
        return args.model
    if getattr(args, "_capacity_model", None) is None:
        from planner.onnx.capacity import with_capacity_factor
        from planner.onnx.importer import load_model_proto

        require_regular_file(args.model, "model file")
        args._capacity_model = with_capacity_factor(load_model_proto(args.model), factor)
    return args._capacity_model


def capacity_note(args, result) -> None:
    """Say on the result that ``--moe-capacity-factor`` was applied (a plan file does not record it:
    evaluate it with the same flag)."""
    factor = getattr(args, "moe_capacity_factor", None)
    if factor is not None:
        from planner.units import format_number

        text = format_number(factor)
        result.notes.append(f"MoE capacity factor {text} (--moe-capacity-factor): each expert takes "
                            f"ceil(tokens x top-k x {text} / experts) tokens of a sequence; a plan file does not "
                            "record it, so evaluate it with the same flag")


def rebinder_of(args):
    """The rebinder of the model the arguments give (with its capacity factor, if set)."""
    from planner.onnx.rebinder import rebinder_for

    return rebinder_for(model_source(args), Path(args.model).stem)


def load_graph(args, bindings: dict[str, int] | None = None) -> "OperatorGraph":  # noqa: F821
    """The model of ``args.model``, bound as the arguments say (or to ``bindings``)."""
    require_regular_file(args.model, "model file")
    return import_model(model_source(args), model_bindings(args.model, args) if bindings is None else bindings,
                        Path(args.model).stem)


def load_machine(path: str):
    from planner.machine.tree import load_machine as load

    require_regular_file(path, "machine file", " (presets are in machines/, e.g. machines/dgx_a100.yaml)")
    return load(path)


def plan_options(args, algorithm: str | None = None):
    """The ``PlanOptions`` the arguments give (those a command does not have take their defaults)."""
    from planner.options import OVERLAPS, PlanOptions

    return PlanOptions(mode=args.mode, precision=args.precision, optimizer=args.optimizer,
                       algorithm=algorithm or getattr(args, "algorithm", "drec+"),
                       pipeline_stages=getattr(args, "pipeline_stages", None),
                       micro_batches=getattr(args, "micro_batches", None),
                       interleave=getattr(args, "interleave", None) or 1,
                       recompute=getattr(args, "recompute", None), zero=getattr(args, "zero", None),
                       sequence_parallel=bool(getattr(args, "sequence_parallel", False)),
                       **{k: getattr(args, k) for k in OVERLAPS if getattr(args, k, None) is not None},
                       **({} if getattr(args, "bucket_mb", None) is None else {"bucket_mb": args.bucket_mb}))


def write_json(path: str | None, data: dict) -> None:
    """Write ``data`` to ``path`` (nothing when no path is given)."""
    if path:
        try:
            Path(path).write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None
