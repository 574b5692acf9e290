"""The operator graph and what an export hides in it.

* ``graph``: ``OperatorGraph`` of iteration-space ``Operator``s and ``Tensor``s (named dimensions,
  the dimensions indexing each tensor axis, reductions, FLOPs, atomic axis factorisations).
* ``batch_trace``: the batch axis through flattened, transposed and gathered axes and masks.
* ``rebatch`` (and ``rebatch_constants``): ``--batch N`` on static exports; ``rebind``: the
  ``Rebinder`` that re-binds a model's batch for micro-batches, passed explicitly by the caller;
  ``scale_batch``: re-binding by scaling what two imports show to be linear in the batch.
* ``buffers``, ``tied_weights``, ``quantised``: float buffers that are not parameters, a weight
  used twice (tied embeddings), frozen weights at their true bits.
* ``layers``: repeated layers, by the operators' names or by structure; ``roles``: what each
  dimension is in the model (batch, sequence, hidden, heads, vocabulary, experts).
"""
