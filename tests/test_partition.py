"""The solvers against the brute-force oracle, and the constraints they must keep."""

from __future__ import annotations

import math

import pytest
from oracle import random_problem

from hwpart.errors import PlanError
from hwpart.partition import (
    LinkCost,
    Plan,
    Problem,
    Unit,
    all_assignments,
    evaluate,
    make_plan,
    solve,
    stage_order,
    violations,
)


def optimum(problem: Problem) -> dict[str, float]:
    best = {"latency": math.inf, "throughput": math.inf}
    for assign in all_assignments(problem):
        if violations(problem, assign):
            continue
        ev = evaluate(problem, assign)
        best["latency"] = min(best["latency"], ev.latency_s)
        best["throughput"] = min(best["throughput"], ev.bottleneck_s)
    return best


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-5 * max(1.0, abs(b))


CASES = [(seed, n, chain) for seed in range(110) for n, chain in
         [(4 + seed % 7, True), (4 + (seed * 3) % 7, False)]]


@pytest.mark.parametrize("seed,n,chain", CASES)
def test_solvers_match_brute_force(seed: int, n: int, chain: bool) -> None:
    # 220 graphs (110 chains, 110 DAGs) x 2 objectives, each solver vs brute force
    problem = random_problem(seed, n, chain, slots=1 + seed % 2)
    best = optimum(problem)
    for objective in ("latency", "throughput"):
        sol = solve(problem, objective, "milp")
        assert sol.optimal
        assert close(sol.evaluation.value(objective), best[objective]), (objective, sol.assign)
        assert not violations(problem, sol.assign)
        greedy = solve(problem, objective, "greedy")
        assert not violations(problem, greedy.assign)
        assert greedy.evaluation.value(objective) >= best[objective] - 1e-9
        if chain and objective == "latency":
            dp = solve(problem, objective, "dp")
            assert close(dp.evaluation.value(objective), best[objective])
            assert not violations(problem, dp.assign)
    assert solve(problem, "latency", "auto").solver == ("dp" if problem.is_chain() else "milp")


@pytest.mark.parametrize("seed", range(40))
def test_overlay_groups_match_brute_force(seed: int) -> None:
    # with an overlay, a slot holds exactly one RM's layer group or nothing
    problem = random_problem(1000 + seed, 4 + seed % 7, seed % 2 == 0, slots=1 + seed % 2,
                             overlay=True)
    best = optimum(problem)
    allowed = set(problem.slot_runs.get("fpga0", []))
    for objective in ("latency", "throughput"):
        methods = ["milp", "dp"] if problem.is_chain() and objective == "latency" else ["milp"]
        for method in methods:
            sol = solve(problem, objective, method)
            assert close(sol.evaluation.value(objective), best[objective]), (method, objective)
            for u in {u for u in sol.assign.values() if u.startswith("fpga")}:
                run = tuple(n for n in problem.order if sol.assign[n] == u)
                assert run in allowed
        greedy = solve(problem, objective, "greedy")
        assert not violations(problem, greedy.assign)


def test_slot_count_and_resources_are_respected() -> None:
    for seed in range(20):
        problem = random_problem(seed, 9, seed % 2 == 0, slots=2)
        for objective in ("latency", "throughput"):
            sol = solve(problem, objective, "milp")
            slots_used = {u for u in sol.assign.values() if u.startswith("fpga")}
            assert len(slots_used) <= 2
            for s in slots_used:
                members = [n for n in problem.order if sol.assign[n] == s]
                lut = sum(problem.resources[n]["lut"] for n in members)
                assert lut <= 100.0 + 1e-9
                pos = [problem.position[n] for n in members]
                assert max(pos) - min(pos) + 1 == len(pos), "a slot holds one run of layers"


def tiny(slots: int = 1) -> Problem:
    """in -> a -> b -> c -> out: the FPGA is far faster for a, b, c but a slot fits two."""
    import networkx as nx

    g = nx.DiGraph([("in", "a"), ("a", "b"), ("b", "c"), ("c", "out")])
    compute = {"in": {"cpu": 0.0}, "out": {"cpu": 0.0}}
    for n in "abc":
        compute[n] = {"cpu": 10.0, "fpga0": 1.0}
    units = [Unit("cpu", "cpu"), Unit("fpga0", "fpga", 0, capacity={"dsp": 2.0})]
    links = {frozenset(("cpu", "fpga")): LinkCost(1e9, 0.5)}
    res = {n: {"dsp": 1.0} for n in "abc"}
    return Problem(g, units, compute, dict.fromkeys(g, 8.0), links, res)


def test_oversized_group_is_split_and_capability_kept() -> None:
    p = tiny()
    for method in ("dp", "milp"):
        sol = solve(p, "latency", method)
        on_fpga = [n for n, u in sol.assign.items() if u == "fpga0"]
        assert len(on_fpga) == 2 and not violations(p, sol.assign)
    bad = {"in": "cpu", "a": "fpga0", "b": "fpga0", "c": "fpga0", "out": "cpu"}
    assert any("dsp 3 > slot capacity 2" in v for v in violations(p, bad))
    gap = {"in": "cpu", "a": "fpga0", "b": "cpu", "c": "fpga0", "out": "cpu"}
    assert any("not consecutive" in v for v in violations(p, gap))
    assert any("cannot run on fpga0" in v for v in violations(p, {**gap, "in": "fpga0"}))


def test_no_capable_device_is_a_clear_error() -> None:
    import networkx as nx

    g = nx.DiGraph([("in", "x"), ("x", "out")])
    with pytest.raises(PlanError, match="layer 'x' can run on no device"):
        Problem(g, [Unit("cpu", "cpu")], {"in": {"cpu": 0}, "x": {}, "out": {"cpu": 0}},
                {}, {}, reasons={"x": {"cpu": "unsupported op"}})


def test_memory_limit_moves_layers_off_the_gpu() -> None:
    problem = random_problem(7, 10, False, slots=0, memory=True)
    for objective in ("latency", "throughput"):
        sol = solve(problem, objective, "milp")
        used = sum(problem.memory[n] for n, u in sol.assign.items() if u == "gpu")
        assert used <= 3000.0
        assert close(sol.evaluation.value(objective), optimum(problem)[objective])


def test_plan_roundtrip_and_stage_order(tmp_path) -> None:
    problem = random_problem(3, 10, False, slots=2)
    sol = solve(problem, "throughput", "milp")
    plan = make_plan(problem, sol, model="m", input_shape=(4,), objective="throughput",
                     batch=8, board="pynq-z2")
    plan.save(tmp_path / "plan.json")
    again = Plan.load(tmp_path / "plan.json")
    assert again == plan
    seen = [n for st in stage_order(problem, sol.assign) for n in st.nodes]
    assert sorted(seen) == sorted(problem.order)
    pos = {n: i for i, n in enumerate(seen)}
    assert all(pos[a] < pos[b] for a, b in problem.dag.edges), "stages respect dependencies"
    for st in plan.stages:
        assert {sol.assign[n] for n in st.nodes} == {st.unit}


def test_bad_plan_file_is_a_config_error(tmp_path) -> None:
    from hwpart.errors import ConfigError

    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(ConfigError, match="p.json: invalid JSON at line 1"):
        Plan.load(tmp_path / "p.json")
    (tmp_path / "q.json").write_text('{"model": "m"}')
    with pytest.raises(ConfigError, match="q.json: not a hwpart plan"):
        Plan.load(tmp_path / "q.json")
