"""The NPM's steps 2-7 alone, and the loop on a real pipeline over the simulated board.

FPGA timing here is the simulated board's *modeled* timing.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from test_fpga_support import graph, jet_rms, make_plan

pytest.importorskip("pynq")

from hwpart.boards import load_board  # noqa: E402
from hwpart.costs import build_problem, profile  # noqa: E402
from hwpart.devices.cpu import CpuDevice  # noqa: E402
from hwpart.devices.fpga import FpgaDevice  # noqa: E402
from hwpart.monitor import Monitor  # noqa: E402
from hwpart.npm.candidates import Fabric, Place, candidates, layout_of  # noqa: E402
from hwpart.npm.evaluate import calibrated, evaluate_moves, select, unit_factors  # noqa: E402
from hwpart.npm.migrate import Watch, verify  # noqa: E402
from hwpart.npm.scenario import scenario_from_dict  # noqa: E402
from hwpart.npm.session import run_adaptive  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.stages import segment  # noqa: E402

PLAN = [("cpu", ["_0", "_1"]), ("fpga0+1", ["_2", "_3", "_4", "_5"]), ("cpu", ["_6", "_7"])]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("npm") / "b", "jet", jet_rms())


@pytest.fixture(scope="module")
def fabric(bundle):
    return Fabric.of_bundle(bundle)


@pytest.fixture(scope="module")
def setup(fabric):
    lg = graph("jet_tagger")
    plan = make_plan(lg, PLAN, batch=64)
    segs = segment(lg, plan, groups=fabric.groups)
    board = load_board("pynq-z2")  # FPGA layers priced by the per-layer model (modeled)
    table = profile(lg, [64], ["cpu", "fpga"], board, repeats=3, min_total_s=0.0)
    problem = build_problem(lg, table, 64, ["cpu", "fpga"], board)
    return lg, plan, segs, problem


# --------------------------------------------------------------------------- step 2


def test_candidates_are_the_legal_one_step_moves(setup, fabric):
    lg, plan, segs, _ = setup
    now = layout_of(plan, segs)
    assert now == (Place("cpu", 0, 1), Place("fpga0+1", 1, 3), Place("cpu", 3, 4))
    moves = {m.layout: m for m in candidates(now, segs, fabric)}
    # the FPGA stage to the CPU, or through the slots the other way round
    assert (Place("cpu", 0, 1), Place("cpu", 1, 3), Place("cpu", 3, 4)) in moves
    assert (Place("cpu", 0, 1), Place("fpga1+0", 1, 3), Place("cpu", 3, 4)) in moves
    # a segment across a border, the FPGA stage re-chained onto one slot
    shifted = [m for m in moves.values() if m.kind == "shift-border"]
    assert any(m.layout[1] == Place("fpga0", 2, 3) or m.layout[1] == Place("fpga1", 2, 3)
               for m in shifted)
    # never a CPU stage on layers no RM holds moved to the FPGA
    assert all(not (m.layout[2].unit.startswith("fpga")) for m in moves.values())
    # a device taken out is offered nothing
    down = candidates(now, segs, fabric, down={"fpga"})
    assert down and all("fpga" not in p.unit for m in down for p in m.layout if
                        m.layout.index(p) != 1 or p.unit != "fpga0+1")
    assert not any(m.layout[1].unit.startswith("fpga") and m.layout[1] != now[1]
                   for m in down)


def test_an_rm_without_a_partial_for_a_slot_is_not_offered_there(setup, fabric):
    lg, plan, segs, _ = setup
    now = layout_of(plan, segs)
    only0 = Fabric(fabric.groups, fabric.names, [{0}, {0, 1}], fabric.slots)
    units = {m.layout[1].unit for m in candidates(now, segs, only0)}
    assert "fpga1+0" not in units  # fc2 has no partial for slot 1


# --------------------------------------------------------------------------- steps 3-4


def test_evaluate_prices_calibrated_costs_and_select_respects_the_margin(setup, fabric):
    lg, plan, segs, problem = setup
    # the CPU as measured, but a hundred times faster: the FPGA stage is the bottleneck
    # however loaded this host was when the fixture profiled it
    problem = calibrated(problem, {"cpu": 0.01})
    now = layout_of(plan, segs)
    moves = candidates(now, segs, fabric)
    slot_rm = ["fc2", "fc3"]
    t0, priced = evaluate_moves(moves, now, segs, fabric, problem, {}, slot_rm)
    assert t0 > 0 and len(priced) == len(moves)
    # a PR swap is a cost: moving the chain to the other slots reconfigures both
    swap = next(p for p in priced if p.move.layout[1].unit == "fpga1+0")
    assert swap.swaps == 2 and swap.break_first and swap.cost_s >= 2 * problem.pr_s
    # the FPGA stage measured 20x its prediction: taking it off the slots gains
    t_slow, priced = evaluate_moves(moves, now, segs, fabric, problem, {"stage1": 20.0},
                                    slot_rm)
    assert t_slow < t0 / 5
    best = select(priced, margin=1.2)
    assert best is not None and best.gain >= 1.2 and "fpga0+1" not in best.move.layout[1].unit
    assert select(priced, margin=1e9) is None  # nothing clears an impossible margin


def test_an_unmeasured_slot_is_priced_like_the_best_measured_one(setup, fabric):
    """On one board every slot sits behind the same host and driver: a slot no stage ran
    on gets the best measured slot's factor, not the bare model's 1."""
    lg, plan, segs, problem = setup
    one = (Place("cpu", 0, 1), Place("fpga0", 1, 2), Place("cpu", 2, 4))
    f = unit_factors(one, {"stage1": 3.0}, segs, fabric, problem)
    assert f["fpga1"] == f["fpga0"] > 1.0
    assert "cpu" not in f  # no CPU stage was measured: the CPU keeps its profile
    assert unit_factors(one, {"stage0": 2.0}, segs, fabric, problem).get("fpga1") is None


# --------------------------------------------------------------------------- step 7


def test_verify_waits_for_its_window_then_judges_against_before():
    w = Watch(t_switch=1.0, before_sps=1000.0, previous=None, predicted_gain=2.0, kind="x")
    w.after = [(0.1, 500.0)] * 3
    assert verify(w, window_s=0.6) is None
    w.after += [(0.1, 500.0)] * 3
    assert verify(w, window_s=0.6) == "rolled_back"
    w.after = [(0.1, 1500.0)] * 6
    assert verify(w, window_s=0.6) == "recovered"
    w.after = [(0.1, 1000.0)] * 6
    assert verify(w, window_s=0.6) == "verified"


# --------------------------------------------------------------------------- the loop


def devices_for(bundle):
    return {"cpu": CpuDevice(threads=1), "fpga": FpgaDevice(bundle.root, fpga="sim", pace=True)}


def test_a_planted_bad_move_is_rolled_back(setup, bundle, fabric):
    """Slots 1 and 0 swapped while slot 1 stalls 20 ms on every packet: throughput falls,
    verify measures it and moves back."""
    lg, plan, segs, problem = setup
    devices = devices_for(bundle)
    mon = Monitor(interval_s=0.1)
    holder = {}

    def plant() -> None:
        npm = holder["npm"]
        devices["fpga"].sim.set_slot_speed(1, stall_s=0.02)  # 20 ms per packet (modeled)
        snap = npm.history[-1]
        bad = (npm.layout[0], Place("cpu", 0, 1), Place("fpga1+0", 1, 3), Place("cpu", 3, 4),
               npm.layout[-1])
        npm.apply(bad, True, 1.0, "planted", snap)

    def watch(snap) -> None:
        if "npm" in holder and snap.t_s > 1.5 and not holder.get("planted"):
            holder["planted"] = True
            threading.Thread(target=plant).start()

    mon.subscribe(watch)
    def start(npm) -> None:  # nothing but the planted move and its rollback
        npm.quiet_until, npm.settled = 1e9, True
        holder["npm"] = npm

    run = run_adaptive(lg, plan, problem, devices, batch=64, seconds=5.0, monitor=mon,
                       fabric=fabric, on_start=start)
    kinds = [e.kind for e in run.log.events]
    assert "swapped" in kinds and "rolled_back" in kinds, run.log.to_json()
    back = [e.what for e in run.log.events if e.kind == "swapped"
            and e.what.startswith("rollback:")]
    assert back and "stage2 fpga0+1" in back[0], back  # back where it was
    assert [lay[2] for lay in run.npm.taboo] == [Place("fpga1+0", 1, 3)]  # not tried again
    rb = next(e for e in run.log.events if e.kind == "rolled_back")
    assert rb.details["after_sps"] < 0.9 * rb.details["before_sps"]


@pytest.mark.slow
def test_a_noisy_but_unchanged_load_makes_no_migration_over_30_s(setup, bundle, fabric):
    """The one decision allowed is the first on measured costs (the settle after warm-up,
    or a departure that beat it): the plan was priced on profiles and the board's model,
    and here the simulated board's host time makes the FPGA stage far slower than
    modeled, so it moves. After that the load does not change, and for 30 s the noise
    of a shared 2-core host moves nothing: no decision, no swap, no rollback."""
    lg, plan, segs, problem = setup
    run = run_adaptive(lg, plan, problem, devices_for(bundle), batch=64, seconds=32.0,
                       monitor=Monitor(interval_s=0.1), fabric=fabric)
    ev = run.log.events
    # the first decision: the settle, or a departure that came before it (a loaded host)
    first = next(e for e in ev if e.kind in ("decided", "rejected"))
    assert first.t_s < 2.0, run.log.to_json()
    moved = [e for e in ev if e.kind == "swapped"][:1]  # its move, if it made one
    quiet_from = moved[0].t_s if moved and first.kind == "decided" else first.t_s
    # 30 s: what a unit measured is remembered that long (NpmConfig.taboo_s); after it the
    # NPM may try a layout it left again, which verify then keeps or rolls back
    later = [e for e in ev if quiet_from < e.t_s <= quiet_from + 30.0
             and e.kind in ("decided", "swapped", "rolled_back")]
    assert not later, run.log.to_json()
    assert run.result.samples > 0 and run.result.history[-1].t_s - quiet_from >= 30.0


def test_a_failed_fpga_is_taken_out_and_its_items_finish_on_the_cpu(setup, bundle, fabric):
    lg, plan, segs, problem = setup
    sc = scenario_from_dict({"name": "fail", "description": "t", "events": [
        {"at": 0.8, "kind": "device_failure", "device": "fpga", "return_after": 1.0}]})
    run = run_adaptive(lg, plan, problem, devices_for(bundle), batch=64, seconds=3.0,
                       monitor=Monitor(interval_s=0.1), scenario=sc, fabric=fabric)
    kinds = [e.kind for e in run.log.events]
    assert "fault" in kinds and kinds.index("fault") < kinds.index("swapped")
    assert "returned" in kinds  # the shell was reloaded: the FPGA is usable again
    res = run.result  # the collector raised on any gap or duplicate; count what came out
    assert len(res.outputs) * 64 == res.samples and res.samples > 0
    out = torch.cat(res.outputs)
    assert torch.isfinite(out).all() and np.allclose(out.sum(1).numpy(), 1.0, atol=1e-3)
