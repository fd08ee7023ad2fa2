"""Random partitioning problems and the brute-force oracle the solvers are checked against.

Shared by the tests and ``bench/partition.py`` (which imports this file by path).
"""

from __future__ import annotations

import math
import random

import networkx as nx

from hwpart.partition import (
    LinkCost,
    Problem,
    Unit,
    all_assignments,
    evaluate,
    violations,
)


def random_dag(rng: random.Random, n: int, chain: bool) -> nx.DiGraph:
    """A connected DAG from an input node to an output node (a path when ``chain``)."""
    g = nx.DiGraph()
    names = [f"n{i}" for i in range(n)]
    g.add_nodes_from(names)
    for i in range(1, n):
        if chain:
            g.add_edge(names[i - 1], names[i])
            continue
        # one edge from a recent node keeps it connected; sometimes a second (skip/fan-in)
        g.add_edge(names[rng.randrange(max(0, i - 3), i)], names[i])
        if i > 2 and rng.random() < 0.35:
            g.add_edge(names[rng.randrange(0, i - 1)], names[i])
    for i in range(n - 1):  # every node reaches the output
        if g.out_degree(names[i]) == 0:
            g.add_edge(names[i], names[-1])
    return g


def random_problem(seed: int, n: int, chain: bool, slots: int = 1, gpu: bool = True,
                   memory: bool = False, overlay: bool = False, power: bool = False) -> Problem:
    """Input/output pinned to the CPU; random capabilities, costs, resources and links.

    ``power``: random idle watts per device and active watts per (node, unit), for the
    energy objective (drawn from a separate stream, so the rest of the problem is the
    same as without it).
    """
    rng = random.Random(seed)
    g = random_dag(rng, n, chain)
    units = [Unit("cpu", "cpu")]
    if gpu:
        units.append(Unit("gpu", "gpu", memory_bytes=3000.0 if memory else None))
    cap = {"lut": 100.0, "dsp": 10.0}
    units += [Unit(f"fpga{k}", "fpga", k, capacity=dict(cap)) for k in range(slots)]
    order = list(nx.topological_sort(g))
    compute: dict[str, dict[str, float]] = {}
    resources, mem, out_bytes = {}, {}, {}
    for v in order:
        if v in (order[0], order[-1]):
            compute[v] = {"cpu": 0.0}
        else:
            c = rng.uniform(1, 10)
            compute[v] = {"cpu": c}
            if gpu and rng.random() < 0.8:
                compute[v]["gpu"] = c * rng.uniform(0.1, 1.2)
            if rng.random() < 0.6:
                fpga = c * rng.uniform(0.05, 0.8)  # slots are identical regions of one shell
                for k in range(slots):
                    compute[v][f"fpga{k}"] = fpga
            resources[v] = {"lut": rng.uniform(5, 60), "dsp": rng.randint(0, 5)}
            mem[v] = rng.uniform(100, 1200)
        out_bytes[v] = rng.uniform(0, 2000)
    links = {
        frozenset(("cpu", "gpu")): LinkCost(1000.0, rng.uniform(0, 1)),
        frozenset(("cpu", "fpga")): LinkCost(500.0, rng.uniform(0, 2)),
        frozenset(("gpu", "fpga")): LinkCost(400.0, rng.uniform(0, 3)),
        frozenset(("fpga",)): LinkCost(5000.0, 0.01, shared=False),
    }
    slot_runs: dict[str, list[tuple[str, ...]]] = {}
    if overlay:  # an overlay's RMs: a few runs of consecutive FPGA-capable layers
        runs: list[tuple[str, ...]] = []
        for i in range(1, n - 1):
            length = rng.randint(1, 3)
            run = tuple(order[i:i + length])
            if len(run) == length and all("fpga0" in compute[m] for m in run) and \
                    order[-1] not in run and rng.random() < 0.5:
                runs.append(run)
        slot_runs = {f"fpga{k}": list(runs) for k in range(slots)}
    problem = Problem(g, units, compute, out_bytes, links, resources, mem, slot_runs=slot_runs)
    if power:
        prng = random.Random(seed + 7919)
        problem.idle_w = {"cpu": prng.uniform(2, 20), "gpu": prng.uniform(5, 40),
                          "fpga": prng.uniform(0.5, 5)}
        base = {"cpu": prng.uniform(10, 40), "gpu": prng.uniform(30, 200)}
        problem.active_w = {}
        for v in order:
            fabric = prng.uniform(0.05, 3)  # one RM's power, whichever identical slot holds it
            problem.active_w[v] = {u: base[u] * prng.uniform(0.8, 1.2) if u in base else fabric
                                   for u in compute[v]}
    return problem


def brute_force(problem: Problem, objective: str) -> tuple[float, dict[str, str]]:
    """Minimum objective over every feasible assignment (exponential: small graphs only)."""
    best, arg = math.inf, None
    for assign in all_assignments(problem):
        if violations(problem, assign):
            continue
        v = evaluate(problem, assign).value(objective)
        if v < best:
            best, arg = v, assign
    assert arg is not None, "random problem without a feasible plan"
    return best, arg
