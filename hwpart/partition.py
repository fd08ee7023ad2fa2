"""Initial partitioning (the seed's Network Partitioning Manager, static part).

A *unit* is something that runs nodes concurrently with the others: the CPU, the
GPU, and each reconfigurable slot of the FPGA (slots are separate hardware and
run in parallel behind the AXI-Stream switch). A :class:`Problem` holds per-sample
compute times per (node, unit), the bytes each node sends, link costs between
devices, and the constraints: capability, slot resources, device memory, and
that a slot holds one run of consecutive layers in execution order (one hls4ml
project built from a slice of the model; such a run is always convex -- a path
that leaves it only reaches later positions -- so it streams in and out).

Objectives, per sample:

* ``latency``: every node's compute plus one transfer for each (producer, other
  unit that consumes it). The runtime executes a sample's stages one after the
  other, so this sum is its end-to-end time, transfers included.
* ``throughput``: the pipeline's bottleneck, the busiest unit or shared link
  (all slots share the DMA link; slot-to-slot hops go through the switch and
  are not shared). Throughput = 1 / bottleneck.

Solvers: exact dynamic programming for latency on chains; a MILP (HiGHS through
``scipy.optimize.milp``) for DAGs and for throughput (min-max device load is
NP-hard already on chains: two identical devices and no transfer cost is
PARTITION, so no exact polynomial DP exists for it); a greedy + local-search
heuristic for very large graphs, with the MILP's dual bound to report its gap.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import networkx as nx
import numpy as np
from scipy import sparse
from scipy.optimize import Bounds, LinearConstraint, milp

from hwpart.errors import ConfigError, PlanError
from hwpart.timing import FPGA_RESOURCE

Objective = Literal["latency", "throughput", "energy"]
OBJECTIVES: tuple[str, ...] = ("latency", "throughput", "energy")
RESOURCE_KEYS = ("lut", "ff", "dsp", "bram_18k", "uram")
#: Relative slack on the floors: the MILP keeps them to its feasibility tolerance.
FLOOR_TOL = 1e-6
#: Weight of latency in the throughput objective: picks, among plans with the
#: same bottleneck, the one with the lowest latency without changing the optimum
#: by more than this fraction of a latency.
TIE_BREAK = 1e-6


@dataclass(frozen=True)
class Unit:
    """A place nodes run: ``cpu``, ``gpu``, or slot ``k`` of the FPGA (``fpga0``...)."""

    name: str
    device: str
    slot: int | None = None
    capacity: dict[str, float] | None = None  # slot resources; None = unlimited
    memory_bytes: float | None = None  # None = unlimited

    @property
    def is_slot(self) -> bool:
        return self.slot is not None


@dataclass(frozen=True)
class LinkCost:
    """Per-sample transfer cost: ``bytes / bandwidth + latency`` (latency already per sample)."""

    bandwidth_bps: float
    latency_s: float
    shared: bool = True  # counts as a pipeline resource (the bottleneck can be a link)

    def time(self, nbytes: float) -> float:
        return nbytes / self.bandwidth_bps + self.latency_s


@dataclass
class Problem:
    """Everything the solvers need; built from a LayerGraph + cost table by ``hwpart.costs``."""

    dag: nx.DiGraph
    units: list[Unit]
    compute: dict[str, dict[str, float]]  # node -> unit -> seconds per sample; absent = incapable
    out_bytes: dict[str, float]  # node -> bytes sent to each consuming unit
    links: dict[frozenset[str], LinkCost]  # device pair -> cost; {"fpga"} = slot to slot
    resources: dict[str, dict[str, float]] = field(default_factory=dict)  # node -> slot needs
    memory: dict[str, float] = field(default_factory=dict)  # node -> bytes resident on its unit
    reasons: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> unit -> why not
    # With an overlay, a slot can hold only the layer groups its RMs implement:
    # slot unit -> allowed runs. A slot absent here takes any run that fits.
    slot_runs: dict[str, list[tuple[str, ...]]] = field(default_factory=dict)
    # Bytes per sample that cross the DMA (packed ap_fixed words, hwpart.timing): node ->
    # bytes when its output enters the fabric / leaves it. Absent: its activation bytes.
    stream_in: dict[str, float] = field(default_factory=dict)
    stream_out: dict[str, float] = field(default_factory=dict)
    # Energy (filled by hwpart.energy.attach_power): node -> unit -> watts above the
    # device's idle while the node runs there, and device -> idle watts, paid by every
    # device the plan uses for the whole pipeline cycle. Empty: no energy objective.
    active_w: dict[str, dict[str, float]] = field(default_factory=dict)
    idle_w: dict[str, float] = field(default_factory=dict)
    # Floors every objective must keep (None: none): samples/s, and seconds per sample.
    min_throughput_sps: float | None = None
    max_latency_s: float | None = None
    pr_s: float = 0.0  # one PR swap (partial over the configuration port), hwpart.timing
    # The pipeline's own cost of every stage after the first (its worker loop and the
    # channel hand-off), seconds per sample, by device (hwpart.costs.measure_overhead;
    # the first stage's is the input node's compute). The solvers cannot count stages,
    # so they charge it per device crossing, which starts a stage: to the receiving
    # unit's load and to the latency. A plan's prediction charges it per stage.
    stage_s: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Execution order: the captured graph's own order when nodes carry one
        # (the model's forward order), else any topological order.
        if all("order" in d for _, d in self.dag.nodes(data=True)):
            self.order = sorted(self.dag.nodes, key=lambda n: self.dag.nodes[n]["order"])
        else:
            self.order = list(nx.topological_sort(self.dag))
        self.position = {n: i for i, n in enumerate(self.order)}
        self.unit_by_name = {u.name: u for u in self.units}
        for n in self.order:
            if not self.compute.get(n):
                why = "; ".join(f"{u}: {r}" for u, r in self.reasons.get(n, {}).items())
                raise PlanError(f"layer {n!r} can run on no device ({why or 'no capable unit'})")

    def capable(self, node: str) -> list[str]:
        return [u.name for u in self.units if u.name in self.compute[node]]

    def link(self, a: str, b: str) -> LinkCost | None:
        """Cost of moving a tensor from unit ``a`` to unit ``b`` (None when a == b)."""
        if a == b:
            return None
        da, db = self.unit_by_name[a].device, self.unit_by_name[b].device
        key = frozenset((da, db))
        try:
            return self.links[key]
        except KeyError:
            raise PlanError(f"no link between {da} and {db} in the host/board description") from None

    def transfer(self, node: str, a: str, b: str) -> float:
        cost = self.link(a, b)
        if cost is None:
            return 0.0
        nbytes = self.out_bytes.get(node, 0.0)
        sa, sb = self.unit_by_name[a].is_slot, self.unit_by_name[b].is_slot
        if sa and not sb:
            nbytes = self.stream_out.get(node, nbytes)
        elif sb and not sa:
            nbytes = self.stream_in.get(node, nbytes)
        return cost.time(nbytes)

    def stage_cost(self, a: str, b: str) -> float:
        """What a crossing from unit ``a`` to ``b`` costs ``b`` besides the transfer: a new
        stage (none between slots: consecutive slots chain into one stage)."""
        if a == b or not self.stage_s:
            return 0.0
        ua, ub = self.unit_by_name[a], self.unit_by_name[b]
        if ua.is_slot and ub.is_slot:
            return 0.0
        return self.stage_s.get(ub.device, 0.0)

    def shares_fpga(self, key: str) -> bool:
        """Whether a load (a unit or a shared link's name) holds the one DMA engine."""
        u = self.unit_by_name.get(key)
        if u is not None:
            return u.is_slot
        return FPGA_RESOURCE in key.split("-")

    def link_key(self, a: str, b: str) -> str | None:
        """Name of the shared link a transfer a->b loads, or None if it loads none."""
        cost = self.link(a, b)
        if cost is None or not cost.shared:
            return None
        return "-".join(sorted((self.unit_by_name[a].device, self.unit_by_name[b].device)))

    def is_chain(self) -> bool:
        return all(self.dag.in_degree(n) <= 1 and self.dag.out_degree(n) <= 1 for n in self.dag)


# --------------------------------------------------------------------------- evaluation


@dataclass
class Evaluation:
    latency_s: float
    bottleneck_s: float
    bottleneck: str
    unit_load_s: dict[str, float]
    link_load_s: dict[str, float]
    # Joules per sample (None without power figures) and its split per device.
    energy_j: float | None = None
    device_energy_j: dict[str, float] = field(default_factory=dict)

    @property
    def throughput_sps(self) -> float:
        return math.inf if self.bottleneck_s <= 0 else 1.0 / self.bottleneck_s

    def value(self, objective: str) -> float:
        if objective == "energy":
            return math.inf if self.energy_j is None else self.energy_j
        return self.latency_s if objective == "latency" else self.bottleneck_s


def evaluate(problem: Problem, assign: dict[str, str],
             stages: list[StageSpec] | None = None) -> Evaluation:
    """Latency and bottleneck of an assignment (node -> unit); assumes it is feasible.

    The pipeline's per-stage cost (``problem.stage_s``) is charged per device
    crossing, as the solvers see it; given the plan's ``stages``, per stage after
    the first instead (exact: a crossing may not start a stage, a stage may hold
    several crossings, and same-unit stages cross nothing).
    """
    loads = {u.name: 0.0 for u in problem.units}
    links: dict[str, float] = {}
    latency = 0.0
    for n in problem.order:
        a = assign[n]
        t = problem.compute[n][a]
        loads[a] += t
        latency += t
        for b in {assign[v] for v in problem.dag.successors(n)} - {a}:
            c = problem.transfer(n, a, b)
            latency += c
            if stages is None:
                o = problem.stage_cost(a, b)
                loads[b] += o
                latency += o
            key = problem.link_key(a, b)
            if key is not None:
                links[key] = links.get(key, 0.0) + c
    for st in (stages or [])[1:]:
        u = assign[st.nodes[0]]
        o = problem.stage_s.get(problem.unit_by_name[u].device, 0.0)
        loads[u] += o
        latency += o
    name, worst = max(list(loads.items()) + list(links.items()) + _fpga_group(problem, loads, links),
                      key=lambda kv: kv[1])
    return _with_energy(problem, assign, Evaluation(latency, worst, name, loads, links))


def _with_energy(problem: Problem, assign: dict[str, str], ev: Evaluation) -> Evaluation:
    """Energy per sample: each node's busy time x its power above idle, plus the idle
    power of every device the plan uses for one pipeline cycle (the bottleneck), since a
    device in the pipeline draws its idle power all the time, busy or waiting."""
    if not problem.idle_w and not problem.active_w:
        return ev
    per: dict[str, float] = {}
    for n in problem.order:
        u = assign[n]
        d = problem.unit_by_name[u].device
        per[d] = per.get(d, 0.0) + problem.compute[n][u] * problem.active_w.get(n, {}).get(u, 0.0)
    for d in per:
        per[d] += problem.idle_w.get(d, 0.0) * ev.bottleneck_s
    ev.energy_j = sum(per.values())
    ev.device_energy_j = per
    return ev


def fmt_sps(x: float) -> str:
    """Samples/s for messages: grouped digits when large, 4 significant digits when small."""
    return f"{x:,.0f}" if x >= 1000 else f"{x:.4g}"


def floor_violations(problem: Problem, ev: Evaluation) -> list[str]:
    """The floors (--min-throughput, --max-latency) an evaluated plan misses, in words."""
    out = []
    lo, hi = problem.min_throughput_sps, problem.max_latency_s
    if lo is not None and ev.throughput_sps < lo * (1 - FLOOR_TOL):
        out.append(f"throughput {fmt_sps(ev.throughput_sps)} samples/s is below the floor "
                   f"--min-throughput {fmt_sps(lo)}")
    if hi is not None and ev.latency_s > hi * (1 + FLOOR_TOL):
        out.append(f"latency {ev.latency_s:.6g} s per sample is above the floor "
                   f"--max-latency {hi:.6g}")
    return out


def _fpga_group(problem: Problem, loads: dict[str, float],
                links: dict[str, float]) -> list[tuple[str, float]]:
    """The shared FPGA resource's load: every slot and every DMA crossing (hwpart.timing:
    one engine, one routed chain at a time). Empty without slots."""
    if not any(u.is_slot for u in problem.units):
        return []
    total = sum(v for k, v in loads.items() if problem.shares_fpga(k))
    total += sum(v for k, v in links.items() if problem.shares_fpga(k))
    return [(FPGA_RESOURCE, total)]


def violations(problem: Problem, assign: dict[str, str], floors: bool = True) -> list[str]:
    """Every constraint an assignment breaks, in words (empty when feasible).

    ``floors=False`` leaves out the throughput/latency floors: baselines such as
    "all on the CPU" are shown beside a plan even when they miss the floor.
    """
    out = []
    for n in problem.order:
        u = assign.get(n)
        if u is None:
            out.append(f"layer {n!r} has no device")
        elif u not in problem.compute[n]:
            why = problem.reasons.get(n, {}).get(u, "not capable")
            out.append(f"layer {n!r} cannot run on {u}: {why}")
    if out:
        return out
    for unit in problem.units:
        members = {n for n in problem.order if assign[n] == unit.name}
        if unit.capacity is not None:
            for r, cap in unit.capacity.items():
                need = sum(problem.resources.get(n, {}).get(r, 0.0) for n in members)
                if need > cap + 1e-9:
                    out.append(f"{unit.name}: {r} {need:.0f} > slot capacity {cap:.0f}")
        if unit.memory_bytes is not None:
            need = sum(problem.memory.get(n, 0.0) for n in members)
            if need > unit.memory_bytes:
                out.append(f"{unit.name}: memory {need:.0f} B > {unit.memory_bytes:.0f} B")
        if unit.is_slot and members:
            pos = sorted(problem.position[n] for n in members)
            if pos[-1] - pos[0] + 1 != len(pos):
                out.append(f"{unit.name}: layers {sorted(members)} are not consecutive in "
                           "execution order (one slot holds one run of layers)")
            allowed = problem.slot_runs.get(unit.name)
            run = tuple(sorted(members, key=problem.position.__getitem__))
            if allowed is not None and run not in allowed:
                out.append(f"{unit.name}: no RM of the overlay implements exactly {list(run)}")
    if floors and not out and has_floors(problem):
        out += floor_violations(problem, evaluate(problem, assign))
    return out


def has_floors(problem: Problem) -> bool:
    return problem.min_throughput_sps is not None or problem.max_latency_s is not None


# --------------------------------------------------------------------------- solutions


@dataclass
class Solution:
    assign: dict[str, str]
    evaluation: Evaluation
    solver: str
    optimal: bool
    solve_time_s: float
    bound: float | None = None  # lower bound on the objective (MILP dual bound)

    def gap(self, objective: str) -> float | None:
        if self.bound is None:
            return None
        v = self.evaluation.value(objective)
        return 0.0 if v <= 0 else max(0.0, (v - self.bound) / v)


def solve(problem: Problem, objective: str = "throughput", method: str = "auto",
          time_limit_s: float = 60.0) -> Solution:
    """Pick the right solver: ``dp`` / ``milp`` / ``greedy`` / ``auto``."""
    if objective not in OBJECTIVES:
        raise PlanError(f"unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if objective == "energy" and not problem.idle_w and not problem.active_w:
        raise PlanError("the energy objective needs power figures for the devices "
                        "(hwpart.energy.attach_power); none were given")
    for name, v in (("--min-throughput", problem.min_throughput_sps),
                    ("--max-latency", problem.max_latency_s)):
        if v is not None and not (v > 0 and math.isfinite(v)):
            raise PlanError(f"{name} {v}: must be a positive number")
    if method == "dp" and has_floors(problem):
        raise PlanError("the dp solver cannot keep --min-throughput/--max-latency floors; "
                        "use milp (or auto)")
    if method == "auto":
        if objective == "latency" and problem.is_chain() and not _memory_binding(problem) \
                and not has_floors(problem):
            method = "dp"
        elif len(problem.order) <= 2000:
            method = "milp"
        else:
            method = "greedy"
    if method == "dp":
        return solve_chain_dp(problem)
    if method == "milp":
        return solve_milp(problem, objective, time_limit_s=time_limit_s)
    if method == "greedy":
        return solve_greedy(problem, objective)
    raise PlanError(f"unknown solver {method!r}; use auto, dp, milp or greedy")


def _memory_binding(problem: Problem) -> bool:
    for u in problem.units:
        if u.memory_bytes is None:
            continue
        total = sum(problem.memory.get(n, 0.0) for n in problem.order if u.name in problem.compute[n])
        if total > u.memory_bytes:
            return True
    return False


def _finish(problem: Problem, assign: dict[str, str], solver: str, optimal: bool, t0: float,
            bound: float | None = None) -> Solution:
    bad = violations(problem, assign)
    if bad:  # a solver bug, never the user's: fail loudly with the facts
        raise AssertionError(f"{solver} produced an infeasible plan: {bad}")
    return Solution(assign, evaluate(problem, assign), solver, optimal,
                    time.perf_counter() - t0, bound)


def solve_chain_dp(problem: Problem) -> Solution:
    """Exact latency optimum for a chain, slots as contiguous segments (Viterbi over segments)."""
    t0 = time.perf_counter()
    if not problem.is_chain() or len(problem.dag) and nx.number_weakly_connected_components(
            problem.dag) != 1:
        raise PlanError("the dynamic-programming solver needs a chain graph; use milp")
    order = problem.order
    n = len(order)
    slots = [u for u in problem.units if u.is_slot]
    slot_bit = {u.name: 1 << i for i, u in enumerate(slots)}
    plain = [u.name for u in problem.units if not u.is_slot]
    # best[i]: state (unit, mask) -> (cost, previous state, segment start)
    best: list[dict[tuple[str, int], tuple[float, tuple[str, int] | None, int]]] = [
        {} for _ in range(n)
    ]

    def relax(i: int, state: tuple[str, int], cost: float, prev, start: int) -> None:
        if cost < best[i].get(state, (math.inf,))[0]:
            best[i][state] = (cost, prev, start)

    def entries(i: int):
        """States the node before ``i`` can be in (a virtual start before node 0)."""
        if i == 0:
            return [((None, 0), 0.0)]
        return [(s, v[0]) for s, v in best[i - 1].items()]

    for i in range(n):
        node = order[i]
        for (u, mask), base in entries(i):
            for w in plain:
                if w not in problem.compute[node]:
                    continue
                c = base + problem.compute[node][w]
                if u is not None:
                    c += problem.transfer(order[i - 1], u, w) + problem.stage_cost(u, w)
                relax(i, (w, mask), c, (u, mask) if u is not None else None, i)
            for slot in slots:
                bit = slot_bit[slot.name]
                if mask & bit:
                    continue
                c = base + (problem.transfer(order[i - 1], u, slot.name)
                            + problem.stage_cost(u, slot.name) if u is not None else 0)
                for run in slot_runs_at(problem, slot, i):
                    j = i + len(run) - 1
                    cost = c + sum(problem.compute[m][slot.name] for m in run)
                    relax(j, (slot.name, mask | bit), cost, (u, mask) if u is not None else None, i)
    if not best[n - 1]:
        raise PlanError("no feasible plan: some layer fits no device under the slot limits")
    state = min(best[n - 1], key=lambda s: best[n - 1][s][0])
    assign: dict[str, str] = {}
    j = n - 1
    while state is not None:
        cost, prev, start = best[j][state]
        for k in range(start, j + 1):
            assign[order[k]] = state[0]
        j = start - 1
        state = prev
    return _finish(problem, assign, "dp", True, t0)


# --------------------------------------------------------------------------- MILP


class _Vars:
    def __init__(self) -> None:
        self.n = 0
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.integer: list[int] = []
        self.cost: list[float] = []

    def add(self, cost: float = 0.0, integer: bool = True, lb: float = 0.0, ub: float = 1.0) -> int:
        self.lb.append(lb)
        self.ub.append(ub)
        self.integer.append(1 if integer else 0)
        self.cost.append(cost)
        self.n += 1
        return self.n - 1


class _Rows:
    def __init__(self) -> None:
        self.r: list[int] = []
        self.c: list[int] = []
        self.v: list[float] = []
        self.lo: list[float] = []
        self.hi: list[float] = []

    def add(self, terms: list[tuple[int, float]], lo: float, hi: float) -> None:
        row = len(self.lo)
        for c, v in terms:
            self.r.append(row)
            self.c.append(c)
            self.v.append(v)
        self.lo.append(lo)
        self.hi.append(hi)


def build_milp(problem: Problem, objective: str):
    """The MILP as (vars, rows, x-index); shared by the exact solve and the bound."""
    V, R = _Vars(), _Rows()
    lat_w = 1.0 if objective == "latency" else TIE_BREAK
    lat_terms: list[tuple[int, float]] = []  # the latency expression, for --max-latency
    stage_terms: dict[str, list[tuple[int, float]]] = {}  # unit -> its crossings' stage cost
    x: dict[tuple[str, str], int] = {}
    for n in problem.order:
        for u, t in problem.compute[n].items():
            x[n, u] = V.add(lat_w * t)
            lat_terms.append((x[n, u], t))
        R.add([(x[n, u], 1.0) for u in problem.compute[n]], 1.0, 1.0)
    # y[e, a, b]: edge e=(u, v) runs u on a and v on b. Its marginals are x (the
    # tight "local polytope" form; the textbook z >= x_u + x_v - 1 has a weak LP
    # relaxation and made 200-node DAGs 10x slower). z[u, a, b] >= y pays one
    # transfer per (producer, consuming unit), however many consumers are there.
    link_terms: dict[str, list[tuple[int, float]]] = {}
    for n in problem.order:
        succ = list(problem.dag.successors(n))
        if not succ:
            continue
        z: dict[tuple[str, str], int] = {}
        for a in problem.compute[n]:
            for b in {b for v in succ for b in problem.compute[v]} - {a}:
                c = problem.transfer(n, a, b)
                o = problem.stage_cost(a, b)
                z[a, b] = V.add(lat_w * (c + o), integer=False)
                lat_terms.append((z[a, b], c + o))
                if o:
                    stage_terms.setdefault(b, []).append((z[a, b], o))
                key = problem.link_key(a, b)
                if key is not None:
                    link_terms.setdefault(key, []).append((z[a, b], c))
        for v in succ:
            y = {(a, b): V.add(integer=False)
                 for a in problem.compute[n] for b in problem.compute[v]}
            for a in problem.compute[n]:
                R.add([(y[a, b], 1.0) for b in problem.compute[v]] + [(x[n, a], -1.0)], 0.0, 0.0)
            for b in problem.compute[v]:
                R.add([(y[a, b], 1.0) for a in problem.compute[n]] + [(x[v, b], -1.0)], 0.0, 0.0)
            for (a, b), yi in y.items():
                if a != b:
                    R.add([(yi, 1.0), (z[a, b], -1.0)], -math.inf, 0.0)
    # A slot holds one run of consecutive nodes in execution order that fits its
    # resources. Each such run is a column w (at most one per slot) and x is the
    # sum of the runs covering the node: the knapsack and the run shape are then
    # built into the columns, whose LP relaxation is far tighter than resource
    # rows plus start indicators (3-10x faster on 200-node DAGs).
    for unit in problem.units:
        if not unit.is_slot:
            continue
        cover: dict[str, list[int]] = {}
        runs: list[int] = []
        for i in range(len(problem.order)):
            for run in slot_runs_at(problem, unit, i):
                w = V.add()
                runs.append(w)
                for m in run:
                    cover.setdefault(m, []).append(w)
        for n in problem.order:
            if (n, unit.name) in x:
                R.add([(x[n, unit.name], 1.0)] + [(w, -1.0) for w in cover.get(n, [])],
                      0.0, 0.0)
        if runs:
            R.add([(w, 1.0) for w in runs], -math.inf, 1.0)
    # Identical slots are interchangeable; without this, HiGHS explores every
    # relabelling (2 slots made 200-node DAGs 5-20x slower). Slot k+1 may hold a
    # node only if slot k holds an earlier one: the first-used slot comes first.
    slots = [u for u in problem.units if u.is_slot]
    for s0, s1 in zip(slots, slots[1:], strict=False):
        same = s0.capacity == s1.capacity and all(
            problem.compute[n].get(s0.name) == problem.compute[n].get(s1.name)
            and problem.active_w.get(n, {}).get(s0.name) == problem.active_w.get(n, {}).get(s1.name)
            for n in problem.order)
        if not same:
            continue
        prefix = V.add(integer=False, ub=0.0)  # number of nodes of slot s0 before position i
        for n in problem.order:
            if (n, s1.name) in x:
                R.add([(x[n, s1.name], 1.0), (prefix, -1.0)], -math.inf, 0.0)
            nxt = V.add(integer=False, ub=math.inf)
            terms = [(nxt, 1.0), (prefix, -1.0)]
            if (n, s0.name) in x:
                terms.append((x[n, s0.name], -1.0))
            R.add(terms, 0.0, 0.0)
            prefix = nxt
    for unit in problem.units:
        if unit.memory_bytes is not None:
            terms = [(x[n, unit.name], problem.memory.get(n, 0.0))
                     for n in problem.order if (n, unit.name) in x]
            terms = [t for t in terms if t[1]]
            if terms:
                R.add(terms, -math.inf, unit.memory_bytes)
    T = None  # the pipeline cycle per sample: throughput, energy and --min-throughput need it
    if objective != "latency" or problem.min_throughput_sps is not None:
        T = V.add(1.0 if objective == "throughput" else 0.0, integer=False, ub=math.inf)
        for unit in problem.units:
            terms = [(x[n, unit.name], problem.compute[n][unit.name])
                     for n in problem.order if (n, unit.name) in x]
            R.add(terms + stage_terms.get(unit.name, []) + [(T, -1.0)], -math.inf, 0.0)
        for terms in link_terms.values():
            R.add(terms + [(T, -1.0)], -math.inf, 0.0)
        group = [(x[n, u.name], problem.compute[n][u.name]) for u in problem.units
                 if u.is_slot for n in problem.order if (n, u.name) in x]
        group += [t for key, terms in link_terms.items() if problem.shares_fpga(key)
                  for t in terms]
        if group:  # the one DMA engine: all slots and all DMA crossings (hwpart.timing)
            R.add(group + [(T, -1.0)], -math.inf, 0.0)
    _floors_and_energy(problem, objective, V, R, x, T, lat_terms)
    return V, R, x


def _floors_and_energy(problem: Problem, objective: str, V: _Vars, R: _Rows,
                       x: dict[tuple[str, str], int], T: int | None,
                       lat_terms: list[tuple[int, float]]) -> None:
    """Floor rows, and the energy objective, which stays linear:

    sum x[n,u]·t[n,u]·P_active[n,u]  +  sum_d P_idle[d]·s_d,  with s_d >= T - M·(1 - used_d)
    and used_d >= x[n,u] for every unit u of device d. So s_d = T when the plan uses d,
    else 0; M bounds T (no unit or link can carry more than every node's slowest
    time plus every possible transfer). T >= every load (the rows above), so T is the
    bottleneck once minimised.
    """
    if problem.max_latency_s is not None:
        R.add(lat_terms, -math.inf, problem.max_latency_s)
    if T is not None and problem.min_throughput_sps is not None:
        V.ub[T] = 1.0 / problem.min_throughput_sps
    if objective != "energy":
        return
    assert T is not None
    for (n, u), i in x.items():
        V.cost[i] += problem.compute[n][u] * problem.active_w.get(n, {}).get(u, 0.0)
    big = min(V.ub[T], _load_bound(problem))
    V.ub[T] = big
    for device in sorted({u.device for u in problem.units}):
        p = problem.idle_w.get(device, 0.0)
        if p <= 0.0:
            continue
        used = V.add(integer=False)
        for (_n, u), i in x.items():
            if problem.unit_by_name[u].device == device:
                R.add([(i, 1.0), (used, -1.0)], -math.inf, 0.0)
        s = V.add(p, integer=False, ub=math.inf)
        R.add([(s, 1.0), (T, -1.0), (used, -big)], -big, math.inf)


def _load_bound(problem: Problem) -> float:
    """An upper bound on any unit's or link's load per sample (the big M of the energy rows)."""
    total = 0.0
    for n in problem.order:
        total += max(problem.compute[n].values())
        targets = {b for v in problem.dag.successors(n) for b in problem.compute[v]}
        worst = max((problem.transfer(n, a, b) for a in problem.compute[n]
                     for b in targets if b != a), default=0.0)
        total += len(problem.units) * worst
    return max(total, 1e-12)


def _time_scale(problem: Problem) -> float:
    """Factor that brings the problem's times to order 1 for HiGHS.

    HiGHS stops at an absolute gap of 1e-6 and keeps rows to 1e-7 absolute; real
    layers take microseconds, so in seconds it returned plans up to 10 % off the
    optimum (seen on random problems scaled to microseconds). Every objective and
    row is linear in time, so solving in scaled time gives the same plan.
    """
    ref = sum(min(problem.compute[n].values()) for n in problem.order)
    return 1.0 / ref if ref > 0 and math.isfinite(ref) else 1.0


def _scaled(problem: Problem, k: float) -> Problem:
    """The same problem with every time multiplied by ``k`` (floors and links too)."""
    if k == 1.0:
        return problem
    lo, hi = problem.min_throughput_sps, problem.max_latency_s
    return dataclasses.replace(
        problem,
        compute={n: {u: t * k for u, t in d.items()} for n, d in problem.compute.items()},
        links={key: dataclasses.replace(c, bandwidth_bps=c.bandwidth_bps / k,
                                        latency_s=c.latency_s * k)
               for key, c in problem.links.items()},
        min_throughput_sps=None if lo is None else lo / k,
        max_latency_s=None if hi is None else hi * k)


def _run_milp(V: _Vars, R: _Rows, relax: bool, time_limit_s: float, gap: float):
    A = sparse.csr_array((R.v, (R.r, R.c)), shape=(len(R.lo), V.n))
    return milp(
        c=np.array(V.cost), constraints=LinearConstraint(A, np.array(R.lo), np.array(R.hi)),
        integrality=np.zeros(V.n) if relax else np.array(V.integer),
        bounds=Bounds(np.array(V.lb), np.array(V.ub)),
        options={"time_limit": time_limit_s, "mip_rel_gap": gap, "disp": False},
    )


def solve_milp(problem: Problem, objective: str = "throughput", time_limit_s: float = 60.0,
               gap: float = 1e-7) -> Solution:
    """Exact (to ``gap``) MILP solve with HiGHS; reports the dual bound when time runs out."""
    t0 = time.perf_counter()
    k = _time_scale(problem)
    V, R, x = build_milp(_scaled(problem, k), objective)
    res = _run_milp(V, R, relax=False, time_limit_s=time_limit_s, gap=gap)
    if res.x is None:
        if res.status == 2 or "infeasible" in str(res.message).lower():
            if has_floors(problem):
                raise PlanError(_floor_message(problem, time_limit_s))
            raise PlanError(
                "no feasible plan: the capability, slot-resource and memory constraints cannot "
                "all be met; allow more devices or slots, or relax the FPGA tolerance"
            )
        raise PlanError(f"MILP solver stopped without a plan: {res.message}")
    assign = {}
    for n in problem.order:
        assign[n] = max(problem.compute[n], key=lambda u: res.x[x[n, u]])
    bound = getattr(res, "mip_dual_bound", None)
    sol = _finish(problem, assign, "milp", res.status == 0, t0, None)
    if bound is not None and np.isfinite(bound):
        # the dual bound is on the weighted objective in scaled time; convert to the objective
        bound = float(bound) / k
        sol.bound = bound if objective == "latency" else bound - TIE_BREAK * (
            sol.evaluation.latency_s)
    return sol


def _floor_message(problem: Problem, time_limit_s: float) -> str:
    """Why no plan meets the floors, with the best figure each floor could have had."""
    free = dataclasses.replace(problem, min_throughput_sps=None, max_latency_s=None)
    parts = []
    try:
        if problem.min_throughput_sps is not None:
            best = solve_milp(free, "throughput", time_limit_s).evaluation.throughput_sps
            parts.append(f"--min-throughput {fmt_sps(problem.min_throughput_sps)} samples/s "
                         f"(the fastest plan reaches {fmt_sps(best)} samples/s)")
        if problem.max_latency_s is not None:
            best = solve_milp(free, "latency", time_limit_s).evaluation.latency_s
            parts.append(f"--max-latency {problem.max_latency_s:.6g} s (the quickest plan "
                         f"takes {best:.6g} s per sample)")
    except PlanError as exc:  # infeasible without the floors too
        return str(exc)
    joint = " together" if len(parts) > 1 else ""
    return (f"no plan meets the floor{'s' if len(parts) > 1 else ''}{joint}: "
            f"{' and '.join(parts)}; lower the floor or allow more devices or slots")


def lower_bound(problem: Problem, objective: str, time_limit_s: float = 60.0) -> float:
    """LP-relaxation bound of the MILP: a certificate for heuristic plans on large graphs."""
    k = _time_scale(problem)
    V, R, _ = build_milp(_scaled(problem, k), objective)
    res = _run_milp(V, R, relax=True, time_limit_s=time_limit_s, gap=1e-9)
    if res.x is None:
        raise PlanError(f"LP relaxation failed: {res.message}")
    return float(res.fun) / k


# --------------------------------------------------------------------------- heuristic


class _State:
    """An assignment with its loads kept up to date, so a move costs O(degree).

    Moving node n changes its compute and the transfers of n and of its
    predecessors (each producer pays once per consuming unit); nothing else.
    """

    def __init__(self, problem: Problem, assign: dict[str, str]) -> None:
        self.p = problem
        self.assign = assign
        self.load = dict.fromkeys((u.name for u in problem.units), 0.0)
        self.links: dict[str, float] = {}
        self.latency = 0.0
        self.dynamic_j = 0.0  # sum of busy time x power above idle
        self.on_device: dict[str, int] = {}  # nodes per device: which devices are in use
        for n in problem.order:
            t = problem.compute[n][assign[n]]
            self.load[assign[n]] += t
            self.latency += t
            self._count(n, assign[n], +1)
        self._apply(problem.order, +1.0)

    def _count(self, n: str, unit: str, sign: int) -> None:
        d = self.p.unit_by_name[unit].device
        self.on_device[d] = self.on_device.get(d, 0) + sign
        self.dynamic_j += sign * self.p.compute[n][unit] * self.p.active_w.get(n, {}).get(unit, 0.0)

    def _floor_penalty(self, worst: float) -> float:
        """Greedy keeps the floors as a steep penalty (the MILP keeps them exactly)."""
        p = self.p
        over = 0.0
        if p.min_throughput_sps is not None:
            over += max(0.0, worst - 1.0 / p.min_throughput_sps)
        if p.max_latency_s is not None:
            over += max(0.0, self.latency - p.max_latency_s)
        return over * 1e6 * (1.0 + sum(p.idle_w.values()))

    def _transfers(self, producers):
        p, a = self.p, self.assign
        for n in producers:
            src = a[n]
            for b in {a[v] for v in p.dag.successors(n)} - {src}:
                yield p.transfer(n, src, b), p.link_key(src, b), b, p.stage_cost(src, b)

    def _apply(self, producers, sign: float) -> None:
        for c, key, b, o in self._transfers(producers):
            self.latency += sign * (c + o)
            self.load[b] += sign * o
            if key is not None:
                self.links[key] = self.links.get(key, 0.0) + sign * c

    def move(self, n: str, unit: str) -> None:
        producers = [n, *self.p.dag.predecessors(n)]
        self._apply(producers, -1.0)
        old = self.assign[n]
        t_old, t_new = self.p.compute[n][old], self.p.compute[n][unit]
        self.load[old] -= t_old
        self.load[unit] += t_new
        self.latency += t_new - t_old
        self._count(n, old, -1)
        self._count(n, unit, +1)
        self.assign[n] = unit
        self._apply(producers, +1.0)

    def value(self, objective: str) -> float:
        if objective == "latency" and not has_floors(self.p):
            return self.latency
        worst = max(max(self.load.values()), max(self.links.values(), default=0.0),
                    max((v for _, v in _fpga_group(self.p, self.load, self.links)), default=0.0))
        pen = self._floor_penalty(worst) if has_floors(self.p) else 0.0
        if objective == "latency":
            return self.latency + pen
        if objective == "energy":
            idle = sum(self.p.idle_w.get(d, 0.0) for d, c in self.on_device.items() if c > 0)
            return self.dynamic_j + idle * worst + pen + TIE_BREAK * self.latency
        return worst + TIE_BREAK * self.latency + pen


def solve_greedy(problem: Problem, objective: str = "throughput", passes: int = 6) -> Solution:
    """Greedy in topological order, then local search; the baseline and the large-graph solver.

    Single-node moves among the CPU/GPU, then, per slot, the best run of
    consecutive (in topological order) slot-capable layers that fits the slot.
    Such a run is always convex: a path leaving it reaches only later positions
    and cannot come back. Every move is checked against memory and resources.
    """
    t0 = time.perf_counter()
    plain = [u.name for u in problem.units if not u.is_slot]
    assign: dict[str, str] = {}
    for n in problem.order:
        options = [u for u in plain if u in problem.compute[n]]
        if not options:
            raise PlanError(f"greedy solver: layer {n!r} runs only on an FPGA slot; use milp")

        def local(u: str, n: str = n) -> float:
            c = problem.compute[n][u]
            for p in problem.dag.predecessors(n):
                c += problem.transfer(p, assign[p], u)
            return c

        assign[n] = min(options, key=local)
    for unit in plain:  # start from a plan that meets the memory limits
        while not _fits_memory(problem, assign, unit):
            movable = [n for n in problem.order if assign[n] == unit and
                       any(u != unit and u in problem.compute[n] for u in plain)]
            if not movable:
                raise PlanError(f"greedy solver: the layers that only {unit} can run exceed "
                                "its memory")
            n = max(movable, key=lambda n: problem.memory.get(n, 0.0))
            assign[n] = next(u for u in plain if u != unit and u in problem.compute[n])
    st = _State(problem, assign)
    mem = {u: sum(problem.memory.get(n, 0.0) for n in problem.order if assign[n] == u)
           for u in plain}
    for _ in range(passes):
        improved = False
        for n in problem.order:
            here = assign[n]
            cur = st.value(objective)
            for u in plain:
                if u == here or u not in problem.compute[n]:
                    continue
                cap = problem.unit_by_name[u].memory_bytes
                need = problem.memory.get(n, 0.0)
                if cap is not None and mem[u] + need > cap:
                    continue
                st.move(n, u)
                v = st.value(objective)
                if v < cur - 1e-12 * max(1.0, abs(cur)):
                    mem[here] -= need
                    mem[u] += need
                    cur, here, improved = v, u, True
                else:
                    st.move(n, here)
        if not improved:
            break
    for unit in [u for u in problem.units if u.is_slot]:
        best_run, best_val = None, st.value(objective)
        for run in _slot_runs(problem, unit, assign):
            before = {n: assign[n] for n in run}
            for n in run:
                st.move(n, unit.name)
            v = st.value(objective)
            if v < best_val - 1e-12 * max(1.0, abs(best_val)):
                best_run, best_val = run, v
            for n in reversed(run):
                st.move(n, before[n])
        if best_run is not None:
            for n in best_run:
                st.move(n, unit.name)
    missed = floor_violations(problem, evaluate(problem, assign)) if has_floors(problem) else []
    if missed:
        raise PlanError(f"greedy solver found no plan that meets the floors ({'; '.join(missed)}); "
                        "use --solver milp, which is exact")
    return _finish(problem, assign, "greedy", False, t0)


def _fits_memory(problem: Problem, assign: dict[str, str], unit: str) -> bool:
    cap = problem.unit_by_name[unit].memory_bytes
    if cap is None:
        return True
    return sum(problem.memory.get(n, 0.0) for n in assign if assign[n] == unit) <= cap


def _slot_runs(problem: Problem, unit: Unit, assign: dict[str, str], max_len: int = 64):
    """Runs the slot can take, skipping layers already in another slot (moving one
    could split that slot's group)."""
    for i in range(len(problem.order)):
        for run in slot_runs_at(problem, unit, i, max_len):
            if not any(problem.unit_by_name[assign[m]].is_slot for m in run):
                yield run


def _fits(problem: Problem, slot: Unit, run) -> bool:
    if not slot.capacity:
        return True
    return all(sum(problem.resources.get(m, {}).get(r, 0.0) for m in run) <= cap + 1e-9
               for r, cap in slot.capacity.items())


def slot_runs_at(problem: Problem, slot: Unit, start: int,
                 max_len: int | None = None) -> list[list[str]]:
    """Every run of consecutive layers from position ``start`` the slot may hold.

    Without an overlay: each prefix while the slot can run the layers within its
    resources. With one: exactly the RM groups that start there.
    """
    allowed = problem.slot_runs.get(slot.name)
    if allowed is not None:
        first = problem.order[start]
        return [list(r) for r in allowed if r and r[0] == first
                and all(slot.name in problem.compute[m] for m in r) and _fits(problem, slot, r)]
    runs: list[list[str]] = []
    used = dict.fromkeys(RESOURCE_KEYS, 0.0)
    run: list[str] = []
    for j in range(start, len(problem.order)):
        m = problem.order[j]
        if slot.name not in problem.compute[m] or (max_len is not None and len(run) >= max_len):
            break
        for r in used:
            used[r] += problem.resources.get(m, {}).get(r, 0.0)
        if slot.capacity and any(used[r] > slot.capacity.get(r, math.inf) + 1e-9 for r in used):
            break
        run.append(m)
        runs.append(list(run))
    return runs


# --------------------------------------------------------------------------- plans


@dataclass
class Placement:
    device: str  # "cpu" | "gpu" | "fpga"
    slot: int | None = None

    @property
    def unit(self) -> str:
        return self.device if self.slot is None else f"{self.device}{self.slot}"


def unit_kind(unit: str) -> str:
    """``fpga0`` / ``fpga0+1`` -> ``fpga``: a unit names a device kind, then its slots."""
    return _unit_parts(unit)[0]


def unit_slots(unit: str) -> tuple[int, ...]:
    """``fpga0+1`` -> (0, 1): the slots a stage chains through the switch; () for cpu/gpu."""
    return _unit_parts(unit)[1]


def chain_unit(device: str, slots: list[int] | tuple[int, ...]) -> str:
    """The unit of a stage that chains ``slots`` in stream order: ``fpga0+1``."""
    return device + "+".join(str(k) for k in slots)


def _unit_parts(unit: str) -> tuple[str, tuple[int, ...]]:
    m = re.fullmatch(r"([A-Za-z_]+)(\d+(?:\+\d+)*)?", unit)
    if m is None:
        raise PlanError(f"unit {unit!r} is not DEVICE, DEVICE<slot> or DEVICE<slot>+<slot>... "
                        "(e.g. cpu, gpu, fpga0, fpga0+1)")
    return m.group(1), tuple(int(k) for k in (m.group(2) or "").split("+") if k)


@dataclass
class StageSpec:
    """A maximal run of nodes, in execution order, on one unit.

    Consecutive FPGA slots whose groups form a chain are one stage (unit
    ``fpga0+1``): one DMA round trip through the switch (:mod:`hwpart.timing`).
    ``predicted_s``: the plan's service time per sample of this stage on its
    device, the transfers that device makes included (None for hand-made plans).
    """

    name: str
    unit: str
    nodes: list[str]
    predicted_s: float | None = None


@dataclass
class Plan:
    """Node -> device (+ slot), the stage order, and what the cost model predicts."""

    model: str
    input_shape: list[int]
    objective: str
    batch: int
    board: str | None
    assignment: dict[str, Placement]
    stages: list[StageSpec]
    predicted: dict[str, float]
    solver: str
    optimal: bool
    solve_time_s: float
    unit_load_s: dict[str, float] = field(default_factory=dict)
    link_load_s: dict[str, float] = field(default_factory=dict)
    bottleneck: str = ""
    version: int = 1
    # Per-device energy figures behind predicted["energy_j_per_sample"] (hwpart.energy):
    # device -> power used, its source, busy and energy per sample. Empty without power.
    energy: dict[str, dict] = field(default_factory=dict)

    def unit_of(self, node: str) -> str:
        return self.assignment[node].unit

    def to_json(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def from_json(cls, data: dict, source: str = "plan") -> Plan:
        try:
            data = dict(data)
            data["assignment"] = {k: Placement(**v) for k, v in data["assignment"].items()}
            data["stages"] = [StageSpec(**s) for s in data["stages"]]
            return cls(**data)
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"{source}: not a hwpart plan ({_clean(exc)}); "
                              "recreate it with `hwpart partition`") from None

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{p}: plan file not found") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        return cls.from_json(data, str(p))


def _clean(exc: Exception) -> str:
    return str(exc).replace("__init__() ", "").strip("'\"")


def stage_order(problem: Problem, assign: dict[str, str]) -> list[StageSpec]:
    """Order nodes so each slot's group is contiguous and device runs are long.

    Slot groups are contracted to one node first (a run of consecutive layers is
    convex, and contracting a convex set keeps the graph acyclic), then a topological sort prefers staying on the current
    unit; every maximal same-unit run becomes a stage.
    """
    group = {n: assign[n] for n in problem.order if problem.unit_by_name[assign[n]].is_slot}
    rep = {n: (f"@{assign[n]}" if n in group else n) for n in problem.order}
    contracted = nx.DiGraph()
    contracted.add_nodes_from(set(rep.values()))
    for a, b in problem.dag.edges:
        if rep[a] != rep[b]:
            contracted.add_edge(rep[a], rep[b])
    members: dict[str, list[str]] = {}
    for n in problem.order:  # keeps topological order inside each group
        members.setdefault(rep[n], []).append(n)
    unit_of = {r: assign[m[0]] for r, m in members.items()}
    position = {n: i for i, n in enumerate(problem.order)}
    indeg = {r: contracted.in_degree(r) for r in contracted}
    ready = [r for r, d in indeg.items() if d == 0]
    seq: list[str] = []
    current = None
    slot_unit = {u.name for u in problem.units if u.is_slot}
    while ready:
        same = [r for r in ready if unit_of[r] == current] or [  # then chain the next slot
            r for r in ready if current in slot_unit and unit_of[r] in slot_unit]
        pick = min(same or ready, key=lambda r: position[members[r][0]])
        ready.remove(pick)
        seq.append(pick)
        current = unit_of[pick]
        for s in contracted.successors(pick):
            indeg[s] -= 1
            if indeg[s] == 0:
                ready.append(s)
    stages: list[StageSpec] = []
    for r in seq:
        u = unit_of[r]
        if stages and stages[-1].unit == u:
            stages[-1].nodes.extend(members[r])
        elif stages and u in slot_unit and _chains(problem, stages[-1], members[r]):
            last = stages[-1]
            last.unit = chain_unit(unit_kind(u), unit_slots(last.unit) + unit_slots(u))
            last.nodes.extend(members[r])
        else:
            stages.append(StageSpec(f"stage{len(stages)}", u, list(members[r])))
    return stages


def _chains(problem: Problem, prev: StageSpec, group: list[str]) -> bool:
    """Whether slot ``group`` can follow stage ``prev`` through the switch: ``prev`` is on
    slots, its only value that leaves it feeds ``group`` alone, and ``group`` reads nothing
    else -- a stream chain, one DMA round trip (the host never sees the value between)."""
    if not unit_slots(prev.unit):
        return False
    inside, here = set(prev.nodes), set(group)
    dag = problem.dag
    leaving = {n for n in inside for v in dag.successors(n) if v not in inside}
    reads = {p for n in here for p in dag.predecessors(n) if p not in here}
    return (len(leaving) == 1 and reads == leaving
            and all(v in here for v in dag.successors(next(iter(leaving))) if v not in inside))


def make_plan(problem: Problem, sol: Solution, *, model: str, input_shape: tuple[int, ...],
              objective: str, batch: int, board: str | None) -> Plan:
    placement = {}
    for n, u in sol.assign.items():
        unit = problem.unit_by_name[u]
        placement[n] = Placement(unit.device, unit.slot)
    stages = stage_order(problem, sol.assign)
    # the solver counted the pipeline's per-stage cost per crossing; the plan knows its stages
    ev = evaluate(problem, sol.assign, stages) if problem.stage_s else sol.evaluation
    predict_stages(problem, sol.assign, stages)
    slots_used = {u for u in sol.assign.values() if problem.unit_by_name[u].is_slot}
    return Plan(
        model=model, input_shape=list(input_shape), objective=objective, batch=batch,
        board=board, assignment=placement, stages=stages,
        predicted={"latency_s": ev.latency_s, "bottleneck_s": ev.bottleneck_s,
                   "throughput_sps": ev.throughput_sps,
                   # every RM the plan places is swapped in once at load (hwpart.timing)
                   "pr_setup_s": len(slots_used) * problem.pr_s,
                   **pipeline_overheads(problem),
                   **({} if ev.energy_j is None else {"energy_j_per_sample": ev.energy_j})},
        solver=sol.solver, optimal=sol.optimal, solve_time_s=sol.solve_time_s,
        unit_load_s=ev.unit_load_s, link_load_s=ev.link_load_s, bottleneck=ev.bottleneck,
    )


def pipeline_overheads(problem: Problem) -> dict[str, float]:
    """The pipeline's own cost per sample that no stage's service time covers: the first
    stage's (source, sink, its worker: charged to the input node) and each further
    stage's (its worker and hand-off), for predictions made stage by stage."""
    first = problem.compute.get(problem.order[0], {}).get("cpu", 0.0) if problem.order else 0.0
    return {"overhead_first_s": first, "overhead_stage_s": problem.stage_s.get("cpu", 0.0)}


def predict_stages(problem: Problem, assign: dict[str, str], stages: list[StageSpec]) -> None:
    """Set each stage's ``predicted_s``: its layers' compute plus the transfers its device
    makes, per sample -- what the monitor measures as that stage's service time.

    A crossing is made by the side that is not the CPU (the GPU copies, the FPGA's DMA
    moves the data), so it is charged to that side's stage; the transfers into and
    out of a chained FPGA stage are its DMA round trip.
    """
    stage_of = {n: st for st in stages for n in st.nodes}
    for st in stages:
        st.predicted_s = sum(problem.compute[n][assign[n]] for n in st.nodes)
    for n in problem.order:
        a = assign[n]
        consumers: dict[str, str] = {}
        for v in problem.dag.successors(n):
            consumers.setdefault(assign[v], v)
        for b, v in consumers.items():
            if b == a:
                continue
            c = problem.transfer(n, a, b)
            st = stage_of.get(n) if problem.unit_by_name[a].device != "cpu" else stage_of.get(v)
            if st is not None and st.predicted_s is not None:
                st.predicted_s += c


def manual_plan(model: str, input_shape: tuple[int, ...] | list[int],
                stages: list[tuple[str, list[str]]], batch: int = 1) -> Plan:
    """A plan written by hand as ``[(unit, [nodes...]), ...]`` in execution order.

    For tests, benches and users who know where layers go; nothing is predicted.
    """
    specs = [StageSpec(f"stage{i}", unit, list(nodes)) for i, (unit, nodes) in enumerate(stages)]
    assignment = {}
    for st in specs:
        device, slots = _unit_parts(st.unit)
        for n in st.nodes:  # a chained stage's layers are placed on its first slot
            assignment[n] = Placement(device, slots[0] if slots else None)
    return Plan(model=model, input_shape=list(input_shape), objective="throughput", batch=batch,
                board=None, assignment=assignment, stages=specs, predicted={}, solver="manual",
                optimal=False, solve_time_s=0.0)


def single_device(problem: Problem, unit: str) -> dict[str, str] | None:
    """Everything on one unit (the host I/O nodes stay where they must), if possible."""
    assign = {}
    for n in problem.order:
        if unit in problem.compute[n]:
            assign[n] = unit
        elif set(problem.compute[n]) == {"cpu"}:
            assign[n] = "cpu"
        else:
            return None
    return None if violations(problem, assign, floors=False) else assign


def all_assignments(problem: Problem):
    """Every assignment of capable units (for brute-force checks on small graphs)."""
    names = problem.order
    for combo in itertools.product(*(list(problem.compute[n]) for n in names)):
        yield dict(zip(names, combo, strict=True))
