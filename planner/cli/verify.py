"""``verify``: run plans on a CPU process group with DTensor and compare with the cost model.
Exit code 1 when a run disagrees or cannot run (a worker failed or timed out)."""

from __future__ import annotations

import sys
import time

from planner.cli.common import UsageError, write_json
from planner.units import format_number


def add_parser(sub) -> None:
    sp = sub.add_parser("verify", help="run plans on a CPU process group with DTensor; compare with the cost model")
    sp.add_argument("--models", nargs="+", choices=["mlp", "transformer"], default=["mlp", "transformer"])
    sp.add_argument("--algorithms", nargs="+", choices=["drec+", "data_parallel"], default=["drec+", "data_parallel"])
    sp.add_argument("--processes", nargs="+", type=int, choices=[2, 4, 8], default=[4, 8],
                    help="process counts, each a 2-level machine 2 x N/2 (default 4 8)")
    sp.add_argument("--timeout", type=float, default=240.0, metavar="S",
                    help="seconds allowed per launch of a process group (default 240)")
    sp.add_argument("--json", metavar="OUT.json", help="also write the rows as JSON")
    sp.set_defaults(func=run)


def run(args) -> int:
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
    print(f"{s['numerics_match']} of {s['runs']} runs match the single-process step (rtol {format_number(verify.RTOL)}, "
          f"atol {format_number(verify.ATOL)}); predicted and measured bytes agree within {verify.BYTES_TOLERANCE:.0%} on "
          f"{s['within_tolerance']} of {s['operators']} operators ({s['with_communication']} communicate); "
          f"{elapsed:.0f} s")
    write_json(args.json, verify.json_rows(rows))
    ok = s["numerics_match"] == s["runs"] and s["within_tolerance"] == s["operators"]
    return 0 if ok else 1
