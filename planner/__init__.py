"""A profiling-free hybrid-parallel planner: symbolic BSP costs over a hierarchical machine, D-Rec search."""

__version__ = "0.1.0"
