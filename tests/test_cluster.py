"""Stages on a Ray cluster: two Ray nodes on this machine, on loopback, started by the test.

One module-scoped cluster (``LocalCluster``: two nodes, one core each, each with a
simulated board declared as resources) serves every test here; starting one costs
about 10 s on two cores. The tests: the cluster stays on loopback with token auth;
nodes, devices and links are discovered and measured; a plan across both nodes
equals eager torch bit for bit (DAGs included); killing a node's stage host mid-run
loses nothing and the run ends on the survivor; a plan uses slots on two boards;
the NPM moves a stage from one node to the other when that node's core is
contended; a node lost mid-run is a device failure (last: it leaves one node).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

ray = pytest.importorskip("ray")

from host.models import EXAMPLES  # noqa: E402
from hwpart.cluster.env import (  # noqa: E402
    LOOPBACK,
    ClusterError,
    LocalCluster,
    check_loopback,
    node_addresses,
    ray_listeners,
)
from hwpart.cluster.plan import cluster_devices  # noqa: E402
from hwpart.cluster.run import make_cluster, run_static  # noqa: E402
from hwpart.cluster.topology import discover, measure  # noqa: E402
from hwpart.graph import capture  # noqa: E402
from hwpart.partition import manual_plan  # noqa: E402
from hwpart.runtime import chain_plan  # noqa: E402

BOARD = {"board:pynq-z2": 1.0, "fpga_slot": 2.0}


@pytest.fixture(scope="module")
def cluster():
    lc = LocalCluster(nodes=2, resources={"a": BOARD, "b": BOARD}).start()
    try:
        yield lc, measure(discover(), pings=7, repeats=2)
    finally:
        lc.shutdown()


def graph(name: str):
    factory, shape = EXAMPLES[name]
    torch.manual_seed(0)
    return capture(factory(), shape, name)


def eager(lg, x: torch.Tensor, batch: int) -> torch.Tensor:
    """Eager torch on the same micro-batches, one thread (what a host on one core runs)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            return torch.cat([lg.module(xb) for xb in x.split(batch)])
    finally:
        torch.set_num_threads(n)


def devices(info, **kw):
    return make_cluster(info, cluster_devices(info, **kw))


# --------------------------------------------------------------------------- the cluster


def test_the_cluster_it_starts_uses_only_loopback_and_token_auth(cluster):
    lc, info = cluster
    assert len(ray.nodes()) == 2
    assert node_addresses() == [LOOPBACK, LOOPBACK]
    assert all(n.address == LOOPBACK for n in info.nodes)
    listening = ray_listeners()
    assert listening, "no Ray server found among this process's children"
    for name, ip, port in listening:
        assert ip in ("127.0.0.1", "::ffff:127.0.0.1", "::1"), (name, ip, port)
    check_loopback()
    assert lc.auth == "token"
    # a process without the cluster's token is refused
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["RAY_AUTH_TOKEN_PATH"] = os.devnull + ".absent"
    code = textwrap.dedent(f"""
        import ray
        from hwpart.cluster.env import keep_loopback
        keep_loopback()
        try:
            ray.init(address="{lc.address}", _node_ip_address="127.0.0.1")
            print("CONNECTED")
        except Exception as exc:
            print("REFUSED", type(exc).__name__)
    """)
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=120)
    assert "REFUSED" in r.stdout and "CONNECTED" not in r.stdout, r.stdout + r.stderr[-500:]


def test_nodes_devices_and_links_are_found_and_measured(cluster):
    _, info = cluster
    a, b = info.nodes
    assert a.driver and not b.driver and (a.name, b.name) == ("a", "b")
    assert (a.cores, b.cores) == ((0,), (1 % (os.cpu_count() or 1),))
    assert a.kinds() == b.kinds() == ["cpu", "fpga"] and b.slots == 2
    assert [a.unit("cpu"), b.unit("cpu"), b.unit("fpga0+1")] == ["cpu", "cpu_b", "fpga_b0+1"]
    link = info.link("a", "b")
    assert link is not None and 0 < link.rtt_s < 0.5 and link.bandwidth_Bps > 1e6
    assert all(0 < info.call_s[n] < 0.5 for n in ("a", "b"))
    assert info.simulated  # both nodes on this machine: every report says so
    assert info.node_of_unit("fpga_b0+1") == (b, "fpga0+1")
    with pytest.raises(ClusterError, match="no node 'c'"):
        info.node_of_unit("cpu_c")


def test_hwpart_devices_lists_what_the_cluster_offers(cluster, capsys):
    lc, _ = cluster
    from hwpart.cli import main

    assert main(["devices", "--cluster", lc.address]) == 0
    out = capsys.readouterr().out
    assert "cpu_b" in out and "fpga_b0..1 (pynq-z2)" in out and "a - b" in out
    assert "simulated" in out


# --------------------------------------------------------------------------- running


@pytest.mark.parametrize("model", ["small_cnn", "resnet_block"])
def test_a_plan_across_two_nodes_equals_eager_bit_for_bit(cluster, model):
    _, info = cluster
    lg = graph(model)
    plan = chain_plan(lg, ["cpu", "cpu_b", "cpu"], batch=16)
    x = torch.randn(16 * 6 + 5, *lg.input_shape)  # a short last batch too
    res = run_static(lg, plan, devices(info), x, batch=16)
    assert torch.equal(res.output(), eager(lg, x, 16))
    assert [s.device for s in res.snapshot.stages] == ["cpu@a", "cpu@b", "cpu@a"]


def test_killing_a_node_stage_host_mid_run_loses_nothing(cluster):
    """The host of the stage on node b is killed after 4 batches: its call in flight fails,
    the stage is loaded again on node a and every item routed to the dead host is retried
    there, in order; the output is still eager torch's, bit for bit."""
    _, info = cluster
    lg = graph("small_cnn")
    plan = chain_plan(lg, ["cpu_b", "cpu"], batch=32)
    x = torch.randn(32 * 16, *lg.input_shape)
    hold: dict = {}

    def kill_after_four(done: int) -> None:
        if done >= 4 * 32 and "killed" not in hold:
            route = hold["pipe"].routing.current["stage0"]
            hold["killed"] = route.device.name
            ray.kill(route.handle.state["actor"])

    cl = devices(info)
    res = run_static(lg, plan, cl, x, batch=32, on_output=kill_after_four,
                     on_pipeline=lambda p: hold.__setitem__("pipe", p))
    assert hold["killed"] == "cpu@b"
    assert torch.equal(res.output(), eager(lg, x, 32))
    assert len(res.outputs) == 16
    assert res.snapshot.stages[0].device == "cpu@a"  # the survivor finished the run
    assert len(cl.replacements.by_handle) == 1


def test_a_plan_uses_slots_on_two_boards(cluster, tmp_path):
    """fc2 in slot 0 of node a's (simulated) board, fc3 in slot 1 of node b's: the output
    equals the same layers on one machine's simulated board, bit for bit."""
    support = pytest.importorskip("test_fpga_support")
    from hwpart.devices import CpuDevice
    from hwpart.devices.fpga import FpgaDevice
    from hwpart.runtime import run_model
    from hwpart.sim.bundle import write_sim_bundle

    _, info = cluster
    bundle = write_sim_bundle(tmp_path / "b", "jet", support.jet_rms())
    lg = support.graph("jet_tagger")
    layers = [["_0", "_1"], ["_2", "_3"], ["_4", "_5"], ["_6", "_7"]]
    on_cluster = manual_plan(lg.name, lg.input_shape, list(zip(
        ["cpu", "fpga0", "fpga_b1", "cpu"], layers, strict=True)), 16)
    here = manual_plan(lg.name, lg.input_shape, list(zip(
        ["cpu", "fpga0", "fpga1", "cpu"], layers, strict=True)), 16)
    x = torch.rand(16 * 5, 16) * 2 - 1
    os.environ["HWPART_SIM_PACE"] = "0"
    try:
        local = run_model(lg, here, x, devices={"cpu": CpuDevice(),
                                                "fpga": FpgaDevice(bundle.root, fpga="sim")})
        cl = devices(info, fpga={"overlay": str(bundle.root), "fpga": "sim"})
        res = run_static(lg, on_cluster, cl, x, batch=16)
    finally:
        os.environ.pop("HWPART_SIM_PACE", None)
    assert torch.equal(res.output(), local.output())
    assert [s.device for s in res.snapshot.stages] == ["cpu@a", "fpga@a", "fpga@b", "cpu@a"]
    assert res.snapshot.stages[1].service_modeled  # the simulated board's timeline, labelled


def test_hwpart_run_on_the_cluster(cluster, tmp_path, capsys):
    """`hwpart run --auto --cluster ADDRESS`: measured, planned over both nodes, run, reported."""
    lc, _ = cluster
    from hwpart.cli import main

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rc = main(["run", f"{root}/host/models.py:jet_tagger", "--input-shape", "16", "--auto",
               "--batch", "32", "--samples", "640", "--no-live", "--cluster", lc.address,
               "--report", str(tmp_path / "r.json")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "cluster nodes" in out and "links between nodes" in out and "over 2 nodes" in out
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 640 and report["cluster"]["simulated"] is True
    assert {n["name"] for n in report["cluster"]["nodes"]} == {"a", "b"}
    assert ray.is_initialized()  # the test's connection was not closed by the command


@pytest.mark.slow
def test_the_npm_moves_a_stage_between_nodes_under_contention(cluster, tmp_path):
    """Everything on node b; at 1.5 s three busy processes take node b's core. The NPM sees
    the stage slow down and moves work to node a (a move between nodes); nothing is lost
    (the ordered collector raises on any gap). Whether the move is kept is not asserted:
    loading a stage host takes seconds here, and the verify window can roll it back."""
    from hwpart.cluster.plan import cluster_problem
    from hwpart.cluster.run import run_adaptive
    from hwpart.costs import auto_table, build_problem
    from hwpart.monitor import Monitor
    from hwpart.npm.loop import NpmConfig
    from hwpart.npm.scenario import load_scenario

    _, info = cluster
    core_b = info.node("b").cores[0]
    lg = graph("small_cnn")
    batch = 32
    table = auto_table(lg, batch, ["cpu"], threads=1)
    problem = cluster_problem(build_problem(lg, table, batch, ["cpu"]), info, batch)
    plan = manual_plan(lg.name, lg.input_shape, [("cpu_b", lg.compute_nodes)], batch)
    sc_path = tmp_path / "node-b-contention.yaml"
    sc_path.write_text(textwrap.dedent(f"""
        name: node-b-contention
        description: three busy processes on node b's core
        events:
          - {{at: 1.5, kind: cpu_contention, processes: 3, cores: [{core_b}], duration: 6.0}}
    """))
    sc = load_scenario(str(sc_path))
    mon = Monitor(interval_s=0.1)
    run = run_adaptive(lg, plan, problem, devices(info), batch=batch, seconds=sc.end_s + 0.5,
                       monitor=mon, scenario=sc, config=NpmConfig(settle_s=None),
                       warmup_batches=2)
    events = run.log.events
    injected = next(e.t_s for e in events if e.kind == "injected")
    swaps = [e for e in events if e.kind == "swapped" and e.t_s > injected]
    trail = [(round(e.t_s, 2), e.kind, e.what) for e in events]
    # a swap after the contention began that put work on node a's cpu (the text lists the
    # new layout's busy stages: "stage0 cpu", "stage1 cpu_b, stage2 cpu"...)
    to_a = [e for e in swaps if any(part.split()[-1] == "cpu"
                                    for part in e.what.split(":", 1)[-1].split(","))]
    assert to_a, trail
    assert run.result.samples > 0


@pytest.mark.slow
def test_a_node_lost_mid_run_is_a_device_failure(cluster):
    """Node b (its raylet, object store and stage hosts) is stopped mid-run. Its stage is
    loaded again on node a, items in flight are retried there, values that only node b
    held are recomputed; nothing is lost and the output is eager torch's. (Last in the
    module: the cluster has one node afterwards.)"""
    lc, info = cluster
    lg = graph("small_cnn")
    plan = chain_plan(lg, ["cpu_b", "cpu"], batch=32)  # b's outputs: 512 KiB, in b's store
    x = torch.randn(32 * 16, *lg.input_shape)
    hold: dict = {}

    def lose_b(done: int) -> None:
        if done >= 4 * 32 and "lost" not in hold:
            hold["lost"] = True
            lc.remove_node("b")

    cl = devices(info)
    res = run_static(lg, plan, cl, x, batch=32, on_output=lose_b,
                     on_pipeline=lambda p: hold.__setitem__("pipe", p))
    assert torch.equal(res.output(), eager(lg, x, 32))
    assert len(res.outputs) == 16
    assert res.snapshot.stages[0].device == "cpu@a"
    deadline = time.monotonic() + 60  # the cluster notices a dead node by health checks
    while cl.devices["cpu_b"].down is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "node b (127.0.0.1) is gone" in (cl.devices["cpu_b"].down or "")
    assert cl.survivor("cpu").node.name == "a"
