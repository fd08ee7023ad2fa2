"""The planner over a cluster (no Ray needed): units per node, crossings priced by the
measured links, the host's input and output kept on this process's node, and the
``--cluster`` spec's one-line errors."""

from __future__ import annotations

import math

import networkx as nx
import pytest

from hwpart.cluster.env import ClusterError, node_names, parse_cluster
from hwpart.cluster.plan import check_units, cluster_problem
from hwpart.cluster.topology import ClusterInfo, NodeInfo, parse_cores
from hwpart.partition import LinkCost, Problem, Unit, make_plan, manual_plan, solve
from hwpart.timing import NetLink

MS = 1e-3


def base_problem(n: int = 4, per_layer_s: float = 1 * MS, out_bytes: float = 4096.0) -> Problem:
    """input -> l0 -> ... -> l{n-1} -> output, every layer ``per_layer_s`` on the CPU."""
    dag = nx.DiGraph()
    names = ["input", *[f"l{i}" for i in range(n)], "output"]
    for i, name in enumerate(names):
        op = name if name in ("input", "output") else "call_module"
        dag.add_node(name, op=op, order=i)
    dag.add_edges_from(zip(names, names[1:], strict=False))
    compute = {name: {"cpu": 0.0 if name in ("input", "output") else per_layer_s}
               for name in names}
    units = [Unit("cpu", "cpu")]
    return Problem(dag, units, compute, dict.fromkeys(names, out_bytes), {},
                   stage_s={"cpu": 0.0})


def info(bandwidth: float = 1e9, rtt: float = 100e-6, board_on_b: bool = False) -> ClusterInfo:
    a = NodeInfo("a", "id-a", "127.0.0.1", 1, 0, {}, 0, {}, driver=True)
    b = NodeInfo("b", "id-b", "127.0.0.1", 1, 0, {"pynq-z2": 1} if board_on_b else {},
                 2 if board_on_b else 0, {})
    return ClusterInfo([a, b], {frozenset(("a", "b")): NetLink(rtt, bandwidth)},
                       {"a": 50e-6, "b": 60e-6}, simulated=True)


def solve_plan(problem: Problem):
    sol = solve(problem, "throughput")
    return make_plan(problem, sol, model="m", input_shape=(1,), objective="throughput",
                     batch=8, board=None), sol


def test_every_node_gets_its_units_and_io_stays_here():
    p = cluster_problem(base_problem(), info(), batch=8)
    assert [u.name for u in p.units] == ["cpu", "cpu_b"]
    assert set(p.compute["l0"]) == {"cpu", "cpu_b"}
    assert set(p.compute["input"]) == set(p.compute["output"]) == {"cpu"}
    cost = p.links[frozenset(("cpu", "cpu_b"))]
    assert cost.bandwidth_bps == pytest.approx(1e9) and cost.latency_s == pytest.approx(100e-6 / 8)
    # each node's stage host costs one call from here per batch
    assert p.stage_s == {"cpu": pytest.approx(50e-6 / 8), "cpu_b": pytest.approx(60e-6 / 8)}


def test_a_fast_link_splits_the_work_across_nodes_and_prices_the_crossing():
    plan, sol = solve_plan(cluster_problem(base_problem(), info(), batch=8))
    units = {s.unit for s in plan.stages}
    assert units == {"cpu", "cpu_b"}
    assert plan.predicted["throughput_sps"] > 1.8 / (4 * MS)  # two nodes, not one
    assert any("cpu_b" in k for k in plan.link_load_s)  # the crossing is priced
    assert plan.assignment["input"].device == "cpu" and plan.assignment["output"].device == "cpu"


def test_a_slow_link_keeps_everything_on_one_node():
    plan, _ = solve_plan(cluster_problem(base_problem(), info(bandwidth=1e4, rtt=0.05),
                                         batch=8))
    assert {s.unit for s in plan.stages} == {"cpu"}


def test_a_board_on_a_node_gives_slots_there_only_and_crossings_in_series():
    base = base_problem()
    base.units.append(Unit("fpga0", "fpga", 0))
    base.units.append(Unit("fpga1", "fpga", 1))
    for n in ("l1", "l2"):
        base.compute[n].update(fpga0=0.1 * MS, fpga1=0.1 * MS)
    base.links = {frozenset(("cpu", "fpga")): LinkCost(100e6, 1e-6),
                  frozenset(("fpga",)): LinkCost(math.inf, 0.0, shared=False)}
    p = cluster_problem(base, info(board_on_b=True), batch=8)
    assert [u.name for u in p.units] == ["cpu", "cpu_b", "fpga_b0", "fpga_b1"]
    over = p.links[frozenset(("cpu", "fpga_b"))]  # network, then the board's DMA
    assert over.bandwidth_bps == pytest.approx(1 / (1 / 1e9 + 1 / 100e6))
    assert over.latency_s == pytest.approx(100e-6 / 8 + 1e-6)
    assert p.links[frozenset(("cpu_b", "fpga_b"))] == base.links[frozenset(("cpu", "fpga"))]
    plan, _ = solve_plan(p)
    assert any(s.unit.startswith("fpga_b") for s in plan.stages)


def test_missing_link_and_foreign_units_are_one_line_errors():
    i = info()
    i.links.clear()
    with pytest.raises(ClusterError, match="no measured link between nodes a and b"):
        cluster_problem(base_problem(), i, batch=8)
    plan = manual_plan("m", (1,), [("cpu", ["l0", "l1"]), ("cpu_c", ["l2", "l3"])])
    with pytest.raises(ClusterError, match="no node 'c' in the cluster"):
        check_units(plan, info())
    plan = manual_plan("m", (1,), [("gpu_b", ["l0", "l1", "l2", "l3"])])
    with pytest.raises(ClusterError, match="node b offers cpu"):
        check_units(plan, info())


@pytest.mark.parametrize("spec, want", [
    ("local-ray", ("local", None, 1)), ("local-ray:3", ("local", None, 3)),
    ("ray://127.0.0.1:10001", ("client", "ray://127.0.0.1:10001", 1)),
    ("10.0.0.5:6379", ("address", "10.0.0.5:6379", 1)),
])
def test_cluster_specs(spec, want):
    cs = parse_cluster(spec)
    assert (cs.kind, cs.address, cs.nodes) == want
    assert cs.loopback == (spec.startswith(("local", "ray://127")))


@pytest.mark.parametrize("spec", ["bogus", "local-ray:0", "local-ray:x", "ray://host",
                                  "ray://h:99999", "http://h:1/x"])
def test_bad_cluster_specs_are_one_line(spec):
    with pytest.raises(ClusterError, match=r"--cluster .*: use local-ray") as e:
        parse_cluster(spec)
    assert "\n" not in str(e.value)


def test_node_names_and_cores():
    assert node_names(3) == ["a", "b", "c"] and node_names(28)[26:] == ["aa", "ab"]
    assert parse_cores("0-2,5") == (0, 1, 2, 5) and parse_cores(None) is None
    with pytest.raises(ClusterError, match="hwpart.cores='x'"):
        parse_cores("x")
