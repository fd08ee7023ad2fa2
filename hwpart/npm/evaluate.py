"""Steps 3 and 4 of the NPM: evaluate each candidate's cost against its gain; select one.

Pricing re-solves nothing by hand: a layout becomes an assignment of layers to
units, and the partitioner's own evaluation (:func:`hwpart.partition.evaluate`,
the one timing model of :mod:`hwpart.timing` for FPGA stages) prices it on the
*calibrated* costs -- every unit's per-layer times scaled by what the monitor
measured there (measured service / predicted, per stage, from
:mod:`hwpart.calibration`). A unit nothing runs on keeps its profiled cost.

The cost of a move is what it spends before it pays: partial reconfigurations
of slots that must take another RM (their partials are preloaded, so only the
configuration port's time), weights that cross to another memory (the GPU's),
and, when the move cannot be made before the old route is broken (a slot that
serves the current route must take another RM), the downtime of draining the
pipeline. The gain is the predicted throughput ratio. A move is worth making
when its gain clears ``margin`` (hysteresis: small predicted gains on noisy
costs never move anything) and the samples it gains over ``horizon_s`` exceed
those it costs.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hwpart.npm.candidates import Fabric, Layout, Move, nodes_of
from hwpart.partition import (
    Evaluation,
    Plan,
    Problem,
    StageSpec,
    evaluate,
    pipeline_overheads,
    predict_stages,
    unit_kind,
    unit_slots,
)
from hwpart.stages import Segments
from hwpart.timing import rm_chain


@dataclass(frozen=True)
class Priced:
    """A candidate with its figures (per sample unless said)."""

    move: Move
    evaluation: Evaluation
    throughput_sps: float
    gain: float  # predicted throughput, new / now
    cost_s: float  # time the move spends before it pays (PR, weights, downtime)
    swaps: int  # partial reconfigurations it needs
    break_first: bool  # the old route must drain first (a slot it uses changes RM)
    net_samples: float  # samples gained over the horizon, minus those the cost loses


def assignment(layout: Layout, segs: Segments, fabric: Fabric,
               problem: Problem) -> dict[str, str]:
    """Layer -> unit for a layout; a chained FPGA stage puts each RM's layers on its slot."""
    out = {n: "cpu" for n in problem.order}  # the host's input and output nodes
    for p in layout:
        if p.empty:
            continue
        nodes = nodes_of(p, segs)
        slots = unit_slots(p.unit)
        if unit_kind(p.unit) == "fpga" and slots:
            chain = rm_chain(fabric.groups, nodes) or []
            for c, k in zip(chain, slots, strict=False):
                for n in fabric.groups[c]:
                    out[n] = f"fpga{k}"
        else:
            for n in nodes:
                out[n] = p.unit
    return out


def calibrated(problem: Problem, factors: Mapping[str, float]) -> Problem:
    """``problem`` with every unit's compute scaled by its factor (measured / predicted)."""
    if not factors:
        return problem
    compute = {n: {u: t * factors.get(u, 1.0) for u, t in by.items()}
               for n, by in problem.compute.items()}
    return dataclasses.replace(problem, compute=compute)


def layout_plan(layout: Layout, segs: Segments, fabric: Fabric, problem: Problem) -> Plan:
    """A layout as a plan priced stage by stage: each stage's ``predicted_s`` (its layers
    plus the transfers its device makes, ``partition.predict_stages``), and its figures
    (:func:`hwpart.calibration.stage_prediction`: each stage is a worker thread, so each
    is a resource of its own with the pipeline's per-stage cost, and all FPGA stages
    share the one DMA engine). This is the view calibrated costs are measured in: a CPU
    stage's measured time already holds what the other stages' threads take from it, so
    adding CPU stages up, as the initial planner's single CPU unit does, would count
    that twice."""
    from hwpart.calibration import stage_prediction

    assign = assignment(layout, segs, fabric, problem)
    bad = [n for n, u in assign.items() if u not in problem.compute[n]]
    if bad:
        raise ValueError(f"layout places {bad[:3]} where they cannot run")
    specs = [StageSpec(f"stage{i}", p.unit, nodes_of(p, segs)) for i, p in enumerate(layout)]
    predict_stages(problem, assign, [s for s in specs if s.nodes])
    plan = Plan(model="npm layout", input_shape=[], objective="throughput", batch=0,
                board=None, assignment={}, stages=specs, predicted=pipeline_overheads(problem),
                solver="npm", optimal=False, solve_time_s=0.0,
                link_load_s=evaluate(problem, assign).link_load_s)
    plan.predicted.update(stage_prediction(plan))
    return plan


def unit_factors(layout: Layout, stage_ratios: Mapping[str, float], segs: Segments,
                 fabric: Fabric, problem: Problem,
                 prior: Mapping[str, float] | None = None) -> dict[str, float]:
    """Per problem unit, the factor on its compute that makes the stage running there take
    what was measured (a stage's service is its compute plus the transfers its device
    makes; a departure is put on the compute: a slower clock, a busier core). A chained
    FPGA stage's factor applies to each of its slots. ``prior``: factors measured earlier
    on units no stage of ``layout`` runs on now (the loop's memory); what is measured now
    wins."""
    out: dict[str, float] = dict(prior or {})
    assign = assignment(layout, segs, fabric, problem)
    plan = layout_plan(layout, segs, fabric, problem)
    for i, (p, spec) in enumerate(zip(layout, plan.stages, strict=True)):
        r = stage_ratios.get(f"stage{i}")
        if r is None or p.empty:
            continue
        compute = sum(problem.compute[n][assign[n]] for n in spec.nodes)
        total = spec.predicted_s or 0.0
        f = max(0.1, (r * total - (total - compute)) / compute) if compute > 0 else r
        slots = unit_slots(p.unit)
        for u in ([f"fpga{k}" for k in slots] if slots else [p.unit]):
            out[u] = f
    # A slot no stage has measured is on the same board, behind the same host and
    # driver, as the measured ones: price it like the best of them, not at the bare
    # model (on a simulated board that model leaves out the simulator's host time,
    # so every unmeasured slot would look faster than any measured one).
    seen = [f for u, f in out.items() if u.startswith("fpga")]
    if seen:
        for u in problem.units:
            if u.is_slot and u.name not in out:
                out[u.name] = min(seen)
    return out


def price(layout: Layout, segs: Segments, fabric: Fabric, problem: Problem) -> Evaluation:
    """A layout's figures (:func:`layout_plan`), as the partitioner's Evaluation."""
    plan = layout_plan(layout, segs, fabric, problem)
    ev = evaluate(problem, assignment(layout, segs, fabric, problem))
    return dataclasses.replace(ev, latency_s=plan.predicted["latency_s"],
                               bottleneck_s=plan.predicted["bottleneck_s"],
                               bottleneck="stages")


def move_cost(now: Layout, new: Layout, segs: Segments, fabric: Fabric, problem: Problem,
              slot_rm: Sequence[str | None], drain_s: float,
              weights_bps: float = 12e9) -> tuple[float, int, bool]:
    """(seconds the move spends, PR swaps, whether it must break the old route first)."""
    swaps, busy_change = 0, False
    now_slots = {k for p in now if not p.empty for k in unit_slots(p.unit)}
    want: dict[int, str] = {}
    for p in new:
        slots = unit_slots(p.unit)
        if p.empty or not slots:
            continue
        chain = rm_chain(fabric.groups, nodes_of(p, segs)) or []
        for c, k in zip(chain, slots, strict=False):
            want[k] = fabric.names[c]
    for k, rm in want.items():
        if k >= len(slot_rm) or slot_rm[k] != rm:
            swaps += 1
            if k in now_slots:  # the current route streams through it: drain first
                busy_change = True
    moved = 0.0
    before = {n: u for p in now if not p.empty for n in nodes_of(p, segs) for u in [p.unit]}
    for p in new:
        if p.empty or unit_kind(p.unit) != "gpu":
            continue
        for n in nodes_of(p, segs):
            if unit_kind(before.get(n, "cpu")) != "gpu":
                moved += problem.memory.get(n, 0.0)
    cost = swaps * problem.pr_s + moved / weights_bps + (drain_s if busy_change else 0.0)
    return cost, swaps, busy_change


def evaluate_moves(moves: Sequence[Move], now: Layout, segs: Segments, fabric: Fabric,
                   problem: Problem, stage_ratios: Mapping[str, float],
                   slot_rm: Sequence[str | None], horizon_s: float = 5.0,
                   drain_s: float = 0.01,
                   prior: Mapping[str, float] | None = None) -> tuple[float, list[Priced]]:
    """Step 3: (current calibrated throughput, every candidate priced)."""
    cal = calibrated(problem, unit_factors(now, stage_ratios, segs, fabric, problem, prior))
    t_now = price(now, segs, fabric, cal).throughput_sps
    out = []
    for mv in moves:
        ev = price(mv.layout, segs, fabric, cal)
        t_new = ev.throughput_sps
        cost, swaps, brk = move_cost(now, mv.layout, segs, fabric, problem, slot_rm, drain_s)
        gain = t_new / t_now if t_now > 0 and math.isfinite(t_now) else 1.0
        net = (t_new - t_now) * max(0.0, horizon_s - cost) - t_now * cost
        out.append(Priced(mv, ev, t_new, gain, cost, swaps, brk, net))
    return t_now, out


def select(priced: Sequence[Priced], margin: float = 1.2) -> Priced | None:
    """Step 4: the candidate with the most net samples, if its gain clears ``margin``."""
    worth = [p for p in priced if p.gain >= margin and p.net_samples > 0]
    return max(worth, key=lambda p: (p.net_samples, p.gain), default=None)
