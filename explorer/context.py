"""What every page reads: the :class:`Context` of one run (the model, machine and options in
use, their graph and plan, or why there is none), and how other plans of the same model are
asked for (through the cache, so through :func:`planner.api.plan_model`)."""

from __future__ import annotations

from dataclasses import dataclass

from explorer.cache import PlanCache, PlanRequest, Progress
from explorer.sources import ModelSource
from explorer.views.report import ReportMeta
from planner.api import PlanOptions, PlanResult
from planner.machine.tree import Machine
from planner.model.graph import OperatorGraph
from planner.onnx.importer import ModelImportError


@dataclass
class Context:
    """The model, machine and options in use, and their plan (if any)."""

    cache: PlanCache
    source: ModelSource
    data: bytes | None  # uploaded bytes (None for samples)
    dims: list[str]
    bindings: dict[str, int]
    machine: Machine
    machine_label: str  # preset name or "custom"
    options: PlanOptions
    graph: OperatorGraph | None = None
    result: PlanResult | None = None
    model_error: str | None = None
    plan_error: str | None = None
    plan_fix: str = ""  # where to change something when there is no plan (explorer.options.what_to_change)

    @property
    def meta(self) -> ReportMeta:
        return ReportMeta(self.source, self.bindings, self.machine_label)

    @property
    def no_plan(self) -> str:
        """What a page shows instead of the plan: the planner's message and what to change."""
        return f"No plan: {self.plan_error}. {self.plan_fix}"

    def request(self, machine: Machine | None = None, options: PlanOptions | None = None) -> PlanRequest:
        """This model planned on ``machine`` with ``options`` (those in use by default)."""
        return PlanRequest(self.source, self.bindings, machine or self.machine, options or self.options)

    def has_plan(self, machine: Machine | None = None, options: PlanOptions | None = None) -> bool:
        """Whether that plan is already cached (drawing it will not plan)."""
        return self.cache.has_result(self.request(machine, options))

    def plan(self, machine: Machine | None = None, options: PlanOptions | None = None,
             progress: Progress = None) -> PlanResult:
        """Another plan of the same model (another machine or options), through the cache."""
        if self.graph is None:
            raise ModelImportError(self.model_error or "no model loaded")
        return self.cache.result(self.request(machine, options), self.graph, progress)
