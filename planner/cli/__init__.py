"""The command line, ``python -m planner`` (and the ``planner`` console script): main.py (the
parser and the error policy), one module per command (inspect, strip_weights, plan, evaluate,
export, verify), common.py (what they share) and output.py (how a result is printed). It may
import every other room of the planner; nothing in the planner imports it."""
