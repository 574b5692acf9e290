"""The one base of every error the planner reports to a person: ``PlannerError``.

An error that derives from it means "the input is wrong" (a file, a binding, an option, a plan
that does not fit); its message is one line that says what is wrong and how to fix it. The
command line prints that line and exits with code 2 (planner/cli/main.py); the explorer shows it.
Anything else that escapes the planner is a bug and keeps its traceback.

The error classes live beside the code that raises them (``MachineError`` in machine/tree.py,
``ModelImportError`` in onnx/importer.py, ...); each also keeps its older base (``ValueError``
for most) so that callers that caught that keep working. This module imports nothing, so every
layer of the planner may use it.
"""


class PlannerError(Exception):
    """A user-facing error: the input is wrong, and the one-line message says how to fix it."""
