"""The command line, ``python -m planner``: main.py (the parser, the commands, the error policy)."""
