"""Search algorithms: each returns a Plan scored by the same CostModel."""
