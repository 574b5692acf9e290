"""``inspect MODEL.onnx``: operator count, op types, parameters, FLOPs, unbound dimensions."""

from __future__ import annotations

from planner.cli.common import add_model_args, load_graph, write_json
from planner.cost.moe import moe_notes
from planner.units import format_bytes, format_flop_count


def add_parser(sub) -> None:
    sp = sub.add_parser("inspect", help="operator count, op types, parameters, FLOPs")
    add_model_args(sp)
    sp.set_defaults(func=run)


def run(args) -> int:
    graph = load_graph(args)
    s = graph.summary()
    print(f"model        {s['model']}")
    print(f"operators    {s['operators']}")
    print(f"parameters   {s['parameters']:,}")
    frozen = f" ({s['frozen_parameters']:,} quantised parameters, frozen)" if s["frozen_parameters"] else ""
    print(f"weights      {format_bytes(s['parameter_bytes'])}{frozen}")
    for name, shape in s["input_shapes"].items():
        print(f"input        {name} {'x'.join(map(str, shape)) or 'scalar'}")
    for note in moe_notes(graph):
        print(f"moe          {note}")
    print(f"FLOPs/fwd    {format_flop_count(s['flops_forward'])}")
    if s["unbound_dims"]:
        print(f"unbound dims {', '.join(s['unbound_dims'])} (taken as 1 here; bind with --bind NAME=VALUE)")
    if s["unsupported_op_types"]:
        print(f"unsupported  {', '.join(s['unsupported_op_types'])} (planned as replicated)")
    print("op types     " + ", ".join(f"{k} {v}" for k, v in s["op_types"].items()))
    write_json(args.json, s)
    return 0
