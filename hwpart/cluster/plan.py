"""The planner's view of a cluster: every node's devices as units, every crossing priced.

The single-machine problem (:func:`hwpart.costs.build_problem`: measured CPU/GPU
costs, the FPGA's timing model or overlay, the host's links) is built once and
then laid over the cluster: each node gets its own copy of the units its
devices allow (``cpu_b``, ``gpu_b``, ``fpga_b0``; the node this process runs on
keeps the plain names), with the same per-layer costs -- a CPU is priced as the
CPU profiled here until the run measures it (the NPM's calibration) -- and every
pair of devices on two nodes gets the measured network link between them, in
series with each end's own host link (a GPU or a board behind its node's PCIe or
DMA). A crossing between stage hosts is a fetch of the producer's output: one
round trip plus bytes over bandwidth, per batch. Every stage host costs one call
from this process per batch (the node's measured call round trip), so a plan
with more stages pays for them.

The solvers are the partitioner's own (:func:`hwpart.partition.solve`): a plan
across nodes is an ordinary plan whose units name nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from hwpart.cluster.device import RayDevice, Replacements
from hwpart.cluster.env import ClusterError
from hwpart.cluster.topology import ClusterInfo, NodeInfo
from hwpart.graph import IO_OPS, LayerGraph
from hwpart.partition import LinkCost, Plan, Problem, Unit, make_plan, solve, unit_kind


def _unit_on(u: Unit, node: NodeInfo) -> Unit:
    kind = u.device + node.suffix
    name = kind if u.slot is None else f"{kind}{u.slot}"
    return Unit(name, kind, u.slot, capacity=u.capacity, memory_bytes=u.memory_bytes)


def _offers(node: NodeInfo, u: Unit) -> bool:
    if u.device == "fpga":
        return "fpga" in node.kinds() and u.slot is not None and u.slot < node.slots
    return u.device in node.kinds()


def _series(links: list[LinkCost]) -> LinkCost:
    inv = sum(1.0 / c.bandwidth_bps for c in links if math.isfinite(c.bandwidth_bps))
    return LinkCost(1.0 / inv if inv > 0 else math.inf, sum(c.latency_s for c in links))


def cluster_problem(base: Problem, info: ClusterInfo, batch: int) -> Problem:
    """``base`` (one machine) laid over the cluster's nodes (module docstring)."""
    units: list[Unit] = []
    origin: dict[str, tuple[Unit, NodeInfo]] = {}
    for node in info.nodes:
        for u in base.units:
            if _offers(node, u):
                nu = _unit_on(u, node)
                units.append(nu)
                origin[nu.name] = (u, node)
    compute: dict[str, dict[str, float]] = {}
    for n, by in base.compute.items():
        io = base.dag.nodes[n].get("op") in IO_OPS  # the host's input and output: here
        compute[n] = {name: by[u.name] for name, (u, node) in origin.items()
                      if u.name in by and (node.driver or not io)}
    links: dict[frozenset[str], LinkCost] = {}
    devices = {u.device: origin[u.name] for u in units}
    names = sorted(devices)
    for i, da in enumerate(names):
        for db in names[i:]:
            (ua, na), (ub, nb) = devices[da], devices[db]
            if na.name == nb.name:
                key = frozenset((ua.device, ub.device))
                if key in base.links:
                    links[frozenset((da, db))] = base.links[key]
                continue
            net = info.link(na.name, nb.name)
            if net is None:
                raise ClusterError(f"no measured link between nodes {na.name} and {nb.name} "
                                   "(measure the cluster first)")
            hops = [LinkCost(net.bandwidth_Bps, net.rtt_s / batch)]
            for u in (ua, ub):  # a GPU or a board sits behind its node's own host link
                if u.device != "cpu":
                    hops.append(base.links[frozenset(("cpu", u.device))])
            links[frozenset((da, db))] = _series(hops)
    stage_s = {}
    for dev, (u, node) in devices.items():
        call = info.call_s.get(node.name, 0.0)
        stage_s[dev] = base.stage_s.get(u.device, 0.0) + call / batch
    slot_runs = {nu: base.slot_runs[u.name] for nu, (u, _) in origin.items()
                 if u.name in base.slot_runs}
    return Problem(base.dag, units, compute, base.out_bytes, links, base.resources,
                   base.memory, base.reasons, slot_runs=slot_runs, stream_in=base.stream_in,
                   stream_out=base.stream_out, pr_s=base.pr_s, stage_s=stage_s,
                   min_throughput_sps=base.min_throughput_sps, max_latency_s=base.max_latency_s)


def cluster_plan(lg: LayerGraph, base: Problem, info: ClusterInfo, batch: int,
                 objective: str = "throughput", board: str | None = None) -> tuple[Plan, Problem]:
    """Solve ``base`` laid over the cluster; (plan, the cluster problem it was solved on)."""
    if objective == "energy":
        raise ClusterError("--objective energy is not priced across a cluster yet (no power "
                           "figures per node): use throughput or latency")
    problem = cluster_problem(base, info, batch)
    sol = solve(problem, objective)
    plan = make_plan(problem, sol, model=lg.name, input_shape=lg.input_shape,
                     objective=objective, batch=batch, board=board)
    plan.solver += f" over {len(info.nodes)} nodes"
    return plan, problem


def check_units(plan: Plan, info: ClusterInfo) -> None:
    """Every unit the plan names exists on the cluster (a plan made for another cluster)."""
    for st in plan.stages:
        node, unit = info.node_of_unit(st.unit)
        if unit_kind(unit) not in node.kinds():
            raise ClusterError(f"plan stage {st.name} is on {st.unit}, but node {node.name} "
                               f"offers {', '.join(node.kinds())}")


def cluster_devices(info: ClusterInfo, *, fpga: Mapping[str, Any] | None = None,
                    threads: int | None = None, replacements: Replacements | None = None,
                    host_env: Mapping[str, str] | None = None,
                    timeout_s: float = 60.0) -> dict[str, RayDevice]:
    """A :class:`RayDevice` for every device kind on every node, keyed as plans name them
    without their slots (``cpu``, ``cpu_b``, ``fpga_b``): what ``resolve_device`` looks up.
    ``fpga``: the FPGA device's options (overlay, mode) on every node with a board."""
    reps = replacements or Replacements()
    out: dict[str, RayDevice] = {}
    for node in info.nodes:
        for kind in node.kinds():
            opts = dict(fpga or {}) if kind == "fpga" else {}
            out[kind + node.suffix] = RayDevice(info, node, kind, options=opts,
                                                threads=threads, replacements=reps,
                                                host_env=dict(host_env or {}),
                                                timeout_s=timeout_s)
    return out
