"""``strip-weights BIG.onnx SMALL.onnx``: the model with its weights as references to an absent file."""

from __future__ import annotations

from pathlib import Path

from planner.cli.common import UsageError
from planner.limits import require_regular_file


def add_parser(sub) -> None:
    sp = sub.add_parser("strip-weights", help="write the model with its weights as references to an absent file")
    sp.add_argument("input")
    sp.add_argument("output")
    sp.set_defaults(func=run)


def run(args) -> int:
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
