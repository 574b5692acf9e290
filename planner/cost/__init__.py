"""The symbolic BSP cost: prices, never searches.

* ``collectives``: the BSP primitives (all-reduce, all-gather, hierarchical all-reduce, halo).
* ``basis``: the symbol basis of the formulas; ``redistribution``: once per tensor and layout;
  ``gradients``: one gradient per parameter, buckets, the embedding group.
* ``model``: ``CostModel``, a strategy priced for one operator, one method per cost term (compute,
  collectives, halos) composed in ``_op_cost``; whole plans; formulas with sympy. ``tables``: its
  per-operator tables, shared by the cost models of one graph on several machines.
* ``sequence_parallel``: the reduce-scatter rule of Megatron-SP; ``activations``: what the
  backward pass keeps, the attention core; ``overlap``: communication hidden behind compute
  (gradient buckets, ZeRO-3 prefetch, pipeline sends) and exposed; ``pipeline_sends``: a stage
  boundary's sends, whole or scattered over replicas and gathered (Megatron's scatter-gather).
* ``memory``: bytes per device; ``schedule``: balanced stages and the 1F1B schedule;
  ``baseline``: pure data parallelism, the yardstick; ``result``: the frozen ``PlanResult`` and
  ``result_for``, the one evaluator every plan goes through.
* ``context_parallel``: context parallelism's ring step by step (exposed transfers, buffers) and
  the zig-zag chunks that balance a causal mask.
"""
