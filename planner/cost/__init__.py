"""The symbolic BSP cost: basis.py, collectives.py, redistribution.py, gradients.py, model.py
(the cost of a strategy) and memory.py (bytes per device)."""
