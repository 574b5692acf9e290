"""A hand-made Megatron-style configuration (``evaluate --tp T --pp P --dp D --ep E --cp C
--micro-batch-size b --global-batch B``, and the app's *Hand-made configuration* in the sidebar):
what it is (:class:`HandMade`), the checks of its degrees against the machine (:func:`check_layout`,
shared by :func:`planner.search.configurations.evaluate_configuration` and
:func:`planner.search.context_parallel.evaluate_context_configuration`), which degrees a model
offers (:func:`offered`) and its one pricing entry (:func:`price_hand_made`), so that the command
line and the app price it the same way. Nothing here searches.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from planner.options import ConfigError, PlanOptions, check_counts


@dataclass(frozen=True)
class HandMade:
    """Tensor x pipeline x data (x context) parallel degrees, the expert-parallel size drawn from
    the data- and context-parallel ranks, the samples per micro-batch per data-parallel rank and
    the model chunks per device (interleaved 1F1B)."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    cp: int = 1
    micro_batch_size: int = 1
    interleave: int = 1

    def label(self) -> str:
        """The engineers' name: ``DP 8 x TP 2 x PP 1 x EP 4``, CP when used, the micro-batch size."""
        parts = [f"DP {self.dp}", f"TP {self.tp}", f"PP {self.pp}"]
        parts += [f"EP {self.ep}"] if self.ep > 1 else []
        parts += [f"CP {self.cp}"] if self.cp > 1 else []
        extra = f", interleave {self.interleave}" if self.interleave > 1 else ""
        return " x ".join(parts) + f" (micro-batch {self.micro_batch_size}{extra})"


def check_layout(tensor: int, pipeline: int, data: int, devices: int, context: int = 1, expert: int = 1) -> None:
    """The degrees are whole numbers >= 1, multiply to the device count, and (with context
    parallelism) the expert-parallel size divides ``D x C``; raises ConfigError saying what to
    change. (Without context parallelism, ``E`` dividing ``D`` is checked with the model's experts:
    :func:`planner.cost.moe.check_expert_parallel`.)"""
    check_counts({"--tp": tensor, "--pp": pipeline, "--dp": data, "--cp": context, "--ep": expert}, ConfigError)
    if context == 1:
        if tensor * pipeline * data != devices:
            raise ConfigError(f"--tp x --pp x --dp = {tensor} x {pipeline} x {data} = {tensor * pipeline * data}, "
                              f"but the machine has {devices} devices: the product must equal the device count")
        return
    product = tensor * pipeline * data * context
    if product != devices:
        raise ConfigError(f"--tp x --pp x --dp x --cp = {tensor} x {pipeline} x {data} x {context} = {product}, but "
                          f"the machine has {devices} devices: the product must equal the device count")
    if (data * context) % expert:
        raise ConfigError(f"--ep {expert} does not divide --dp x --cp = {data} x {context} = {data * context}: the "
                          "expert-parallel groups are drawn from the data- and context-parallel ranks together (as "
                          f"in Megatron-LM); choose an --ep that divides {data * context}")


def check_hand_made(config: HandMade, devices: int) -> None:
    """:func:`check_layout` of ``config`` (before the model is read), and the micro-batch size and
    interleave are whole numbers >= 1."""
    check_counts({"--micro-batch-size": config.micro_batch_size, "--interleave": config.interleave}, ConfigError)
    check_layout(config.tp, config.pp, config.dp, devices, config.cp, config.ep)


def offered(graph) -> tuple[bool, bool]:
    """Whether the model offers expert parallelism (a mixture-of-experts layer with its experts
    stacked on a leading axis) and context parallelism (attention over one bound sequence symbol)."""
    from planner.cost.moe import find_moe_layers
    from planner.search.context_parallel import sequence_symbol

    experts = any(layer.form == "stacked" for layer in find_moe_layers(graph))
    try:
        sequence_symbol(graph)
        sequence = any(op.op_type == "Softmax" for op in graph.operators.values())
    except ConfigError:
        sequence = False
    return experts, sequence


def price_hand_made(graph, machine, config: HandMade, global_batch: int, options: PlanOptions | None = None,
                    rebinder=None):
    """Price ``config`` with ``global_batch`` samples per iteration (the graph's batch is re-bound
    to the micro-batches; with ``cp`` > 1 the sequence to ``s / C`` through ``rebinder``): a
    :class:`planner.cost.result.PlanResult` whose plan is the Megatron layout, nothing searched."""
    from planner.search.configurations import evaluate_configuration
    from planner.search.context_parallel import evaluate_context_configuration

    check_hand_made(config, machine.num_devices)
    options = replace(options or PlanOptions(), algorithm="megatron", pipeline_stages=None, micro_batches=None,
                      interleave=config.interleave)
    if config.cp > 1:
        return evaluate_context_configuration(graph, machine, config.tp, config.pp, config.dp, config.cp,
                                              config.micro_batch_size, global_batch, options, rebinder=rebinder,
                                              expert=config.ep)
    return evaluate_configuration(graph, machine, config.tp, config.pp, config.dp, config.micro_batch_size,
                                  global_batch, options, rebinder=rebinder, expert=config.ep)
