"""The 1F1B timeline of a pipelined plan: a small simulator of the schedule and its Gantt chart.

Why simulate when :mod:`planner.cost.schedule` already prices the schedule: the price is a
formula, ``(m + P - 1) x`` the slowest stage, that charges every slot at the slowest stage's
time. The explorer draws the schedule itself, so that one can see the warm-up, the steady
one-forward-one-backward phase, the cool-down and where the faster stages wait. Each stage's
forward and backward take its own share of its per-micro-batch time (a backward pass does about
twice a forward's work, three times when the forward is recomputed in it); with every stage as
slow as the slowest, the simulated makespan is exactly the priced one (a test checks it).
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from explorer.figures import fit
from planner.cost.result import PlanResult
from planner.units import format_seconds

#: The timeline draws the schedule of at most this many micro-batches (bars grow as stages x this).
MAX_TIMELINE_MICRO_BATCHES = 24

FORWARD, BACKWARD = "forward", "backward"


@dataclass(frozen=True)
class Slot:
    """One pass of one micro-batch on one stage, in seconds from the start of the iteration."""

    stage: int
    micro_batch: int
    kind: str  # FORWARD or BACKWARD
    start: float
    end: float


def one_f_one_b_order(stages: int, micro_batches: int, stage: int) -> list[tuple[str, int]]:
    """The passes of one stage in 1F1B order: ``P - s - 1`` warm-up forwards, then one forward
    and one backward at a time, then the backwards left (the cool-down)."""
    warmup = min(stages - stage - 1, micro_batches)
    order = [(FORWARD, i) for i in range(warmup)]
    for i in range(micro_batches - warmup):
        order += [(FORWARD, warmup + i), (BACKWARD, i)]
    order += [(BACKWARD, i) for i in range(micro_batches - warmup, micro_batches)]
    return order


def simulate_1f1b(forward: list[float], backward: list[float], micro_batches: int) -> list[Slot]:
    """Start every pass as soon as its stage is free and its input is there: forward ``i`` on
    stage ``s`` after forward ``i`` on stage ``s - 1``, backward ``i`` on stage ``s`` after backward
    ``i`` on stage ``s + 1`` (the last stage's backward follows its own forward, by its order)."""
    stages = len(forward)
    if len(backward) != stages or stages < 1 or micro_batches < 1:
        raise ValueError(f"need one forward and one backward time per stage and >= 1 micro-batch, not "
                         f"{len(forward)}, {len(backward)} and {micro_batches}")
    orders = [one_f_one_b_order(stages, micro_batches, s) for s in range(stages)]
    ends: dict[tuple[str, int, int], float] = {}  # (kind, micro-batch, stage) -> end
    free = [0.0] * stages
    nxt = [0] * stages
    slots: list[Slot] = []
    left = sum(len(o) for o in orders)
    while left:
        progressed = False
        for s in range(stages):
            while nxt[s] < len(orders[s]):
                kind, i = orders[s][nxt[s]]
                source = s - 1 if kind == FORWARD else s + 1  # the stage its input comes from
                ready = 0.0
                if 0 <= source < stages:
                    if (kind, i, source) not in ends:
                        break  # its input is not computed yet: another stage first
                    ready = ends[(kind, i, source)]
                start = max(free[s], ready)
                end = start + (forward[s] if kind == FORWARD else backward[s])
                ends[(kind, i, s)] = free[s] = end
                slots.append(Slot(s, i, kind, start, end))
                nxt[s] += 1
                left -= 1
                progressed = True
        if not progressed:  # cannot happen with 1F1B orders; a guard against an endless loop
            raise RuntimeError("the 1F1B orders wait on each other")
    return slots


def pass_seconds(stage_seconds: float, recompute: str) -> tuple[float, float]:
    """A stage's per-micro-batch time split into its forward and backward pass: 1/3 and 2/3, or
    1/4 and 3/4 when the backward pass recomputes the whole forward pass first."""
    forward_share = 1 / 4 if recompute == "full" else 1 / 3
    return stage_seconds * forward_share, stage_seconds * (1 - forward_share)


@dataclass
class Timeline:
    slots: list[Slot]
    stages: int
    micro_batches: int  # simulated (and drawn)
    plan_micro_batches: int  # in the plan
    interleave: int
    recompute: str
    priced_seconds: float  # the pricing's (m + (P-1)/v) x slowest stage, for the drawn micro-batches

    @property
    def truncated(self) -> bool:
        return self.micro_batches < self.plan_micro_batches

    @property
    def makespan(self) -> float:
        return max(s.end for s in self.slots)


def plan_timeline(result: PlanResult, most: int = MAX_TIMELINE_MICRO_BATCHES) -> Timeline:
    """The 1F1B timeline of a plan's stages for ``min(m, most)`` micro-batches (a longer schedule
    repeats the same steady pattern)."""
    sched = result.schedule
    shown = min(sched.micro_batches, most)
    passes = [pass_seconds(t, sched.recompute) for t in sched.stage_seconds]
    slots = simulate_1f1b([f for f, _ in passes], [b for _, b in passes], shown)
    slowest = max(sched.stage_seconds)
    priced = (shown + (sched.stages - 1) / sched.interleave) * slowest
    return Timeline(slots, sched.stages, shown, sched.micro_batches, sched.interleave, sched.recompute, priced)


def timeline_caption(timeline: Timeline) -> str:
    """What the chart shows and how it relates to the priced iteration."""
    shares = "1/4 forward, 3/4 backward (which recomputes the forward)" if timeline.recompute == "full" \
        else "1/3 forward, 2/3 backward"
    notes = [f"Each stage's forward and backward passes, from its time per micro-batch ({shares}); a pass starts "
             "when its stage is free and its input has arrived",
             f"simulated {format_seconds(timeline.makespan)} against the priced "
             f"{format_seconds(timeline.priced_seconds)}, which charges every slot at the slowest stage's time "
             "(the gradient sync comes after both)"]
    if timeline.truncated:
        notes.append(f"showing the schedule of {timeline.micro_batches} of the plan's {timeline.plan_micro_batches} "
                     "micro-batches (more micro-batches repeat the steady one-forward-one-backward phase)")
    if timeline.interleave > 1:
        notes.append(f"drawn without interleaving: the interleaved schedule's bubble is 1/{timeline.interleave} of "
                     "this one's, as priced")
    return "; ".join(notes) + "."


def timeline_figure(timeline: Timeline) -> go.Figure:
    """A Gantt chart: one row per stage (stage 0 on top), forward and backward passes as bars
    labelled with their micro-batch, the priced iteration (without the gradient sync) marked."""
    fig = go.Figure()
    scale, unit = _time_unit(timeline.makespan)
    for kind, color in ((FORWARD, "#4C78A8"), (BACKWARD, "#F58518")):
        slots = [s for s in timeline.slots if s.kind == kind]
        fig.add_trace(go.Bar(
            y=[f"stage {s.stage}" for s in slots], x=[(s.end - s.start) * scale for s in slots],
            base=[s.start * scale for s in slots], orientation="h", name=kind, marker_color=color,
            marker_line=dict(width=0.5, color="white"),
            text=[str(s.micro_batch) for s in slots], textposition="inside", insidetextanchor="middle",
            customdata=[[s.micro_batch, format_seconds(s.start), format_seconds(s.end)] for s in slots],
            hovertemplate=f"%{{y}}, {kind} of micro-batch %{{customdata[0]}}<br>%{{customdata[1]}} – "
                          "%{customdata[2]}<extra></extra>",
        ))
    fig.add_vline(x=timeline.priced_seconds * scale, line=dict(color="#333", dash="dash"))
    rows = [f"stage {s}" for s in range(timeline.stages)]
    fig.update_layout(barmode="overlay", height=max(220, min(1400, 26 * timeline.stages + 130)),
                      # the line's meaning in the axis title: above the plot it would meet the legend
                      xaxis_title=f"time in the iteration ({unit}); dashed: priced, (m + (P-1)/v) x slowest stage",
                      yaxis=dict(categoryorder="array", categoryarray=rows, autorange="reversed",
                                 tickfont=dict(size=10)),
                      uniformtext=dict(minsize=7, mode="hide"))
    return fit(fig)


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "µs")):
        if seconds * scale >= 1:
            return scale, unit
    return 1e6, "µs"
