"""The operator graph (graph.py), tracing of the batch axis (batch_trace.py), re-binding the batch
(rebatch.py), and what an export hides in it: buffers, tied weights, quantised weights."""
