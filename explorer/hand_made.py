"""The sidebar's hand-made configuration in the app: which degrees the model offers (EP only with
experts, CP only with a sequence), the check of its degrees against the machine before anything is
priced, and its pricing through :func:`planner.search.hand_made.price_hand_made`, the entry
``evaluate --tp --pp --dp --ep --cp`` uses (the model bound to the micro-batch size as there), kept
in the plan cache."""

from __future__ import annotations

from dataclasses import replace

from explorer.cache import PlanCache
from explorer.sources import ModelSource
from planner.api import PlanResult
from planner.errors import PlannerError
from planner.machine.tree import Machine
from planner.model.rebatch import STATIC_SYMBOL
from planner.onnx.importer import ModelImportError
from planner.options import ConfigError
from planner.search.hand_made import HandMade, check_hand_made


def offers(cache: PlanCache, source: ModelSource, bindings: dict[str, int], data: bytes | None) -> tuple[bool, bool]:
    """Whether the model in use offers expert and context parallelism (False, False when it cannot
    be read: the page says why)."""
    try:
        return cache.offers(source, bindings, data)
    except (ModelImportError, PlannerError):
        return False, False


def within_offer(config: HandMade, experts: bool, sequence: bool) -> HandMade:
    """``config`` with EP 1 when the model has no experts and CP 1 when it has no sequence (their
    fields are not shown then)."""
    return replace(config, ep=config.ep if experts else 1, cp=config.cp if sequence else 1)


def layout_problem(config: HandMade, machine: Machine) -> str | None:
    """What is wrong with the degrees on this machine (evaluate's one-line message), or None."""
    try:
        check_hand_made(config, machine.num_devices)
    except ConfigError as exc:
        return str(exc)
    return None


def batch_symbol(graph) -> str | None:
    """The model's batch dimension, as evaluate binds it (a static export: re-batched)."""
    return graph.batch_symbol or (STATIC_SYMBOL if graph.batch_axes else None)


def price(ctx, config: HandMade) -> PlanResult:
    """``config`` priced as ``evaluate`` prices it: the model bound to the micro-batch size, the
    global batch the sidebar's batch, the machine and options in use; raises the planner's
    errors (PlannerError) with evaluate's messages."""
    symbol = batch_symbol(ctx.graph)
    if symbol is None or symbol not in ctx.bindings:
        raise ConfigError("the model has no symbolic batch dimension (axis 0 of its first input) to bind to the "
                          "micro-batch size; export it with a dynamic batch axis")
    global_batch = ctx.bindings[symbol]
    small = ctx.cache.graph(ctx.source, {**ctx.bindings, symbol: config.micro_batch_size}, ctx.data)
    return ctx.cache.hand_made(ctx.request(), config, small, global_batch)


def compare_row(ctx, config: HandMade) -> tuple[dict, PlanResult | None]:
    """The Compare page's row ``hand-made: DP 8 x TP 2 ...`` (iteration, memory, whether it fits),
    and its result; a configuration the planner refuses gives a row whose note says why (evaluate's
    message) and no result."""
    from explorer.options import error_text
    from explorer.views.compare import compare_row as row

    name = f"hand-made: {config.label()}"
    try:
        result = price(ctx, config)
    except Exception as exc:  # noqa: BLE001 - evaluate's messages; anything else is reported as a bug
        return row(name, None, error_text("hand-made", exc)), None
    return row(name, result), result
