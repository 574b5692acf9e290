"""The searches, all scored by the same ``CostModel``: ``registry`` (algorithm name -> search),
``drec``, ``exact`` (and ``exact_guard``), ``megatron``, ``data_parallel``, ``vocab`` (Megatron's
padded vocabulary) and ``configurations`` (stages, micro-batches, recomputation and ZeRO around a
search; hand-made configurations), ``context_parallel`` (tensor x pipeline x data x context,
hand-made and tried by the search for long sequences)."""
