"""Split stages reproduce the original model exactly, whatever the plan."""

from __future__ import annotations

import random

import networkx as nx
import pytest
import torch

from hwpart.errors import PlanError
from hwpart.graph import IO_OPS, LayerGraph
from hwpart.partition import LinkCost, Placement, Plan, Problem, Unit, stage_order
from hwpart.stages import split


def plan_for(lg: LayerGraph, assign: dict[str, str]) -> Plan:
    units = [Unit("cpu", "cpu"), Unit("gpu", "gpu"), Unit("fpga0", "fpga", 0)]
    compute = {n: ({"cpu": 0.0} if lg.dag.nodes[n]["op"] in IO_OPS else
                   dict.fromkeys(("cpu", "gpu", "fpga0"), 1.0)) for n in lg.dag}
    links = {frozenset(p): LinkCost(1.0, 0.0) for p in
             [("cpu", "gpu"), ("cpu", "fpga"), ("gpu", "fpga")]}
    problem = Problem(lg.dag, units, compute, {}, links)
    stages = stage_order(problem, assign)
    dev = {"cpu": Placement("cpu"), "gpu": Placement("gpu"), "fpga0": Placement("fpga", 0)}
    return Plan(lg.name, list(lg.input_shape), "latency", 1, None,
                {n: dev[u] for n, u in assign.items()}, stages, {}, "test", False, 0.0)


def random_assignments(lg: LayerGraph, count: int, seed: int):
    rng = random.Random(seed)
    order = lg.nodes
    compute = lg.compute_nodes
    yield {n: "cpu" for n in order}
    for _ in range(count):
        assign = {n: ("cpu" if n not in compute else rng.choice(["cpu", "gpu"])) for n in order}
        i = rng.randrange(len(compute))
        j = rng.randrange(i, min(len(compute), i + 4))
        for n in compute[i:j + 1]:  # one run of consecutive layers in the slot
            assign[n] = "fpga0"
        yield assign


def test_split_reproduces_every_example_model(example) -> None:
    name, lg = example
    x = lg.example_input(batch=5, seed=1)
    with torch.inference_mode():
        ref = lg.module(x)
        for assign in random_assignments(lg, 8, seed=len(name)):
            plan = plan_for(lg, assign)
            staged = split(lg, plan)
            assert len(staged.stages) == len([s for s in plan.stages
                                              if any(n in lg.compute_nodes for n in s.nodes)])
            assert torch.equal(staged(x), ref)


def test_each_stage_reads_only_live_values() -> None:
    from examples import example_graph

    lg = example_graph("resnet_block")
    order = lg.compute_nodes
    assign = {n: "cpu" for n in lg.nodes}
    for n in order[2:5]:
        assign[n] = "gpu"
    staged = split(lg, plan_for(lg, assign))
    assert [s.unit for s in staged.stages] == ["cpu", "gpu", "cpu"]
    # the skip edge from the stem crosses the gpu stage untouched
    assert staged.stages[0].outputs and staged.stages[1].keep


def test_export_captured_model_splits() -> None:
    from hwpart.graph import load_graph

    lg = load_graph("tests/data/bad_models.py:shape_branch", "8")
    x = lg.example_input(batch=3)
    for assign in random_assignments(lg, 5, seed=3):
        assert torch.equal(split(lg, plan_for(lg, assign))(x), lg.module(x))


def test_plan_for_another_model_is_refused() -> None:
    from examples import example_graph

    lg = example_graph("jet_tagger")
    other = example_graph("resnet_block")
    plan = plan_for(other, {n: "cpu" for n in other.nodes})
    with pytest.raises(PlanError, match="does not match the captured graph"):
        split(lg, plan)


def test_dag_invariants_hold_for_stage_order(example) -> None:
    _, lg = example
    for assign in random_assignments(lg, 5, seed=7):
        plan = plan_for(lg, assign)
        pos = {n: i for i, st in enumerate(plan.stages) for n in st.nodes}
        assert all(pos[a] <= pos[b] for a, b in lg.dag.edges)
        assert nx.is_directed_acyclic_graph(lg.dag)


def test_stages_pass_on_only_the_values_later_stages_read() -> None:
    """Liveness: after each stage the value dict holds exactly what a later stage reads
    or the output is made of -- never the model input or a consumed activation."""
    from examples import example_graph

    from hwpart.runtime import chain_plan

    # a chain: one activation crosses each cut
    lg = example_graph("jet_tagger")
    staged = split(lg, chain_plan(lg, ["cpu", "cpu", "cpu"]))
    x = lg.example_input(batch=4)
    env = staged.initial(x)
    for st in staged.stages[:-1]:
        env = st(env)
        assert len(env) == 1 and "input_1" not in env, sorted(env)
    env = staged.stages[-1](env)
    assert torch.equal(staged.result(env), lg.module(x))

    # a skip edge: the stem's output crosses the middle stage, the input never does
    lg = example_graph("resnet_block")
    assign = {n: "cpu" for n in lg.nodes}
    for n in lg.compute_nodes[2:5]:
        assign[n] = "gpu"
    staged = split(lg, plan_for(lg, assign))
    made = {name: i for i, st in enumerate(staged.stages) for _, name in st.outputs}
    made.update(dict.fromkeys(staged.input_names, -1))
    x = lg.example_input(batch=2)
    env = staged.initial(x)
    for i, st in enumerate(staged.stages):
        env = st(env)
        # made by now and read by a later stage (or the output): exactly what is carried
        wanted = {v for s in staged.stages[i + 1:] for v in s.inputs
                  if v not in s.consts and made[v] <= i}
        if i == len(staged.stages) - 1:
            wanted = {staged.output}
        assert set(env) == wanted, (st.name, sorted(env), sorted(wanted))
        assert "x" not in env
    assert len(staged.stages) == 3 and len(env) == 1
    assert torch.equal(staged.result(env), lg.module(x))


def test_a_stage_runs_its_layers_directly_but_honours_hooks() -> None:
    """The per-batch call skips nn.Module's call machinery only where nothing is hooked."""
    from examples import example_graph

    from hwpart.runtime import chain_plan
    from hwpart.stages import direct_forward

    lg = example_graph("inception_block")
    x = lg.example_input(batch=3)
    staged = split(lg, chain_plan(lg, ["cpu", "cpu"]))
    with torch.inference_mode():
        ref = lg.module(x)
        assert all(direct_forward(st.module) is not None for st in staged.stages)
        assert torch.equal(staged(x), ref)

        seen: list[str] = []
        leaf = staged.stages[0].module.get_submodule(
            next(str(n.target) for n in staged.stages[0].module.graph.nodes
                 if n.op == "call_module"))
        handle = leaf.register_forward_hook(lambda m, i, o: seen.append(type(m).__name__))
        try:
            again = split(lg, chain_plan(lg, ["cpu", "cpu"]))
            assert torch.equal(again(x), ref)
            assert seen == [type(leaf).__name__]  # the hooked layer was called as a module
        finally:
            handle.remove()
