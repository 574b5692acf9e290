"""The plan options as the explorer shows them: the defaults, ``auto`` for an option left to the
configuration search, the sidebar's choices, changing one option, and what to say when an
algorithm gives no plan.
"""

from __future__ import annotations

from planner.api import PlanOptions
from planner.errors import PlannerError
from planner.options import OptionsError
from planner.machine.tree import Machine
from planner.machine.split import stage_counts


DEFAULT_OPTIONS = PlanOptions()


MODES = ("train", "infer")


#: What the sidebar and the URL show for an option left to the configuration search (None).
AUTO = "auto"


COMPARE_ALGORITHMS = ("drec+", "drec", "data_parallel", "megatron", "exact")


#: The sidebar's overlap switches: label, PlanOptions field (planner.options.OVERLAPS says what
#: each hides), widget key.
OVERLAP_TOGGLES = (("Overlap the gradient sync", "overlap_gradient_sync", "sb_overlap"),
                   ("Prefetch ZeRO-3 gathers", "prefetch_parameters", "sb_prefetch"),
                   ("Overlap pipeline sends", "overlap_pipeline_sends", "sb_overlap_sends"))


def searches_configurations(options: PlanOptions) -> bool:
    """Whether planning has stages, micro-batches, recomputation or ZeRO to choose or to pipeline
    (the options leave one of them open, or fix a pipeline or several micro-batches): the
    progress label names them then. Every plan is made by :func:`planner.api.plan_model`."""
    return options.searches_configuration or (options.pipeline_stages or 1) > 1 or (options.micro_batches or 1) > 1


def options_with(options: PlanOptions, **changes) -> PlanOptions:
    """The options with some fields changed (OptionsError if they do not go together)."""
    data = options.to_dict()
    data.update(changes)
    return PlanOptions(**data)


def option_from_widget(name: str, value):
    """A sidebar widget's value as the PlanOptions field ``name``: ``auto`` (and the precision's
    ``model``) is None, which leaves it to the search (or to the model's element types)."""
    return None if value == AUTO or (name == "precision" and value == "model") else value


def option_text(value) -> str:
    """An option as the URL and the sidebar write it: ``auto`` for None, ``true``/``false``."""
    if value is None:
        return AUTO
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def stage_choices(machine: Machine, current: int | None) -> list:
    """The sidebar's pipeline stages: auto, every count the machine splits into, and the count in
    use if the machine does not allow it (a link or an earlier machine: planning says why)."""
    counts = stage_counts(machine)
    return [AUTO, *counts, *([current] if current is not None and current not in counts else [])]


def what_to_change(exc: Exception) -> str:
    """Where a failed plan can be fixed: a configuration the options fix that does not fit the
    model or the machine (an OptionsError) is changed in the pipeline options, anything else by
    choosing another algorithm."""
    if isinstance(exc, OptionsError):
        return "Change the pipeline and memory options in the sidebar."
    return "Pick another algorithm in the sidebar."


def error_text(algorithm: str, exc: Exception) -> str:
    """What to show when an algorithm gives no plan: the planner's message for the errors it
    raises on purpose (PlannerError, and ValueError and its subclasses), and an honest bug report otherwise."""
    if isinstance(exc, (PlannerError, ValueError)):
        return f"{algorithm}: {exc}"
    return (f"{algorithm}: the planner failed ({type(exc).__name__}: {exc}); this is a bug in the planner, not in "
            "your input: please report it with the model and the machine (YAML on the Machine page)")
