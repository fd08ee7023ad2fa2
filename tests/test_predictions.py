"""Predictions that hold: the plan's FPGA figures against the simulated board's own timeline.

The partitioner and the simulated board price an FPGA stage with the same
functions (hwpart.timing), but from different inputs: the plan from the
overlay manifest at the plan's batch size, the board from the packets that
really cross its DMA and the RMs that really sit in its slots. These tests run
plans on the board and compare the two, stage by stage.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import torch
from rich.console import Console
from test_fpga_support import CACHE, ROOT, graph, jet_rms

pytest.importorskip("pynq")

from hwpart import timing  # noqa: E402
from hwpart.boards import load_board  # noqa: E402
from hwpart.costs import auto_plan, build_problem, parse_pins, profile  # noqa: E402
from hwpart.devices.cpu import CpuDevice  # noqa: E402
from hwpart.devices.fpga import FpgaDevice  # noqa: E402
from hwpart.monitor import Monitor  # noqa: E402
from hwpart.overlay import load_manifest  # noqa: E402
from hwpart.partition import _fpga_group, evaluate, solve  # noqa: E402
from hwpart.runtime import run_model  # noqa: E402


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """`hwpart overlay build` of the jet tagger's _2.._3 and _4.._5 (two RMs), from the cache."""
    from hwpart.overlay.build import BuildOptions, build_overlay

    jet_rms()  # compiled into the cache the builder reads
    out = tmp_path_factory.mktemp("pred") / "ob"
    build_overlay(graph("jet_tagger"), load_board("pynq-z2"), BuildOptions(
        out=out, slots=2, groups="_2-_3,_4-_5", rtl=False, samples=50, cache=CACHE, jobs=1))
    return out


@pytest.fixture(scope="module")
def table():
    """A CPU table measured once, small timing budget: the FPGA side is what is checked."""
    return profile(graph("jet_tagger"), [1, 64, 256], ["cpu"], repeats=3, min_total_s=0.0)


def plan_for(overlay, table, batch: int, pins: str):
    lg = graph("jet_tagger")
    return auto_plan(lg, batch=batch, devices=["cpu", "fpga"], table=table,
                     overlay=load_manifest(overlay), pins=parse_pins(lg, pins))


def run_on_board(overlay, plan, batch: int, batches: int = 8, pace: bool = True):
    lg = graph("jet_tagger")
    dev = FpgaDevice(overlay, fpga="sim", pace=pace)
    x = torch.from_numpy(np.random.default_rng(3).uniform(-3, 3, (batch * batches, 16))
                         .astype(np.float32))
    res = run_model(lg, plan, x, batch=batch, devices={"cpu": CpuDevice(), "fpga": dev},
                    monitor=Monitor(interval_s=None))
    return res, dev


@pytest.mark.parametrize("batch,pins,unit", [
    (64, "_2-_3=fpga,_4-_5=cpu", "fpga0"),
    (256, "_2-_3=fpga,_4-_5=cpu", "fpga0"),
    (64, "_2-_5=fpga", "fpga0+1"),  # both RMs: one stage chained through the switch
    (256, "_2-_5=fpga", "fpga0+1"),
])
def test_fpga_stage_prediction_matches_the_boards_modeled_timeline(overlay, table, batch, pins,
                                                                   unit):
    plan = plan_for(overlay, table, batch, pins)
    fpga = [s for s in plan.stages if s.unit.startswith("fpga")]
    assert [s.unit for s in fpga] == [unit]  # consecutive slots are one stage, not two
    res, dev = run_on_board(overlay, plan, batch)
    st = res.snapshot.stage(fpga[0].name)
    assert st.service_modeled  # the board's timeline, not the simulator's host time
    # the bar is 10%; one model on both sides should do far better
    assert st.service_per_sample_s == pytest.approx(fpga[0].predicted_s, rel=0.01)
    # and that timeline is the board's own: one DMA round trip per batch, the RMs' cycles
    sent = [t for t in dev.sim.ledger.transfers if t.channel == "mm2s"]
    assert len(sent) == res.snapshot.batches
    assert sum(s.processed for s in dev.sim.slots) == len(unit.split("+")) * len(sent)


def test_prediction_prices_packed_words_one_round_trip_and_the_shared_engine(overlay, table):
    """The plan's FPGA time is hwpart.timing's stage time: packed ap_fixed bytes (not
    float32), one DMA round trip for the chained stage, all slots on one shared resource."""
    lg = graph("jet_tagger")
    m = load_manifest(overlay)
    board = load_board("pynq-z2")
    problem = build_problem(lg, table, 64, ["cpu", "fpga"], board, overlay=m,
                            pins=parse_pins(lg, "_2-_5=fpga"))
    sol = solve(problem, "throughput")
    chain = [timing.RmTiming.of_manifest(r, m.shell.stream_width_bits) for r in m.rms]
    st = timing.stage_time(board, chain, 64)
    assert chain[0].in_bytes == 64 * 16 // 8  # 64 values of 16 bits in 64-bit words
    ev = evaluate(problem, sol.assign)
    assert ev.unit_load_s["fpga0"] + ev.unit_load_s["fpga1"] + ev.link_load_s["cpu-fpga"] == (
        pytest.approx(st.per_sample_s))
    # the one engine is a pipeline resource of its own, the sum of the slots and the DMA
    assert _fpga_group(problem, ev.unit_load_s, ev.link_load_s) == [
        (timing.FPGA_RESOURCE, pytest.approx(st.per_sample_s))]
    assert ev.bottleneck_s >= st.per_sample_s
    plan = auto_plan(lg, batch=64, devices=["cpu", "fpga"], table=table, overlay=m,
                     pins=parse_pins(lg, "_2-_5=fpga"))
    assert plan.predicted["pr_setup_s"] == pytest.approx(2 * timing.pr_s(board))


def test_auto_overlay_pin_through_the_run_command(overlay, monkeypatch):
    """`hwpart run --auto --overlay B --pin`: the pinned RM runs on the simulated board and
    the report's FPGA row compares the plan with the board's modeled time."""
    from hwpart.runcli import run_command

    monkeypatch.setenv("HWPART_SIM_PACE", "1")
    for var in ("HWPART_FPGA", "HWPART_OVERLAY"):  # run_command sets them: undone after
        monkeypatch.setenv(var, "")  # (delenv of an absent variable would record nothing)
    out = io.StringIO()
    report = run_command(f"{ROOT}/host/models.py:jet_tagger", "16", auto=True, samples=64 * 6,
                         batch=64, live=False, console=Console(file=out, width=200),
                         fpga="sim", overlay=str(overlay), pin="_2-_3=fpga")
    fpga = [s for s in report["stages"] if s["unit"].startswith("fpga0")]  # the solver
    assert len(fpga) == 1 and fpga[0]["service_source"].startswith("modeled")  # may add rm1
    row = next(r for r in report["predicted_vs_measured"] if r["figure"].endswith(
        f"on {fpga[0]['unit']} (per sample)"))
    assert row["measured"] == pytest.approx(row["predicted"], rel=0.1)
    assert "modeled (simulated board)" in out.getvalue()


def test_a_swap_in_one_slot_does_not_stall_transfers_through_another(overlay):
    """Per-slot locks: while slot 1 is being reconfigured (modeled PR time, paced), batches
    through slot 0 keep completing."""
    dev = FpgaDevice(overlay, fpga="sim", pace=True)
    dev.open()
    b = dev._load_bundle()
    p0 = dev.plan([b.rms[0].spec.name], [0])
    x = np.random.default_rng(0).uniform(-1, 1, (8, 64)).astype(np.float32)
    dev.run_array(p0, x)  # RM in slot 0
    pr = dev.sim.timing.pr_s()
    assert pr > 0.01  # the swap takes long enough to measure against
    done: list[float] = []
    t0 = time.perf_counter()
    th = threading.Thread(target=dev.swap, args=(1, b.rms[1].spec.name))
    th.start()
    while th.is_alive():
        dev.run_array(p0, x)
        done.append(time.perf_counter() - t0)
    th.join()
    assert done and done[0] < 0.5 * pr  # the first batch did not wait for the swap
    assert dev._slots[1].rm == b.rms[1].spec.name


def test_a_plan_needing_more_rms_than_slots_pays_pr_every_batch(overlay, table):
    """Two stages sharing slot 0: the model charges two swaps per batch, and the board's
    timeline (its modeled PR time included in the stages' service) agrees."""
    from test_fpga_support import make_plan

    from hwpart.costs import price_plan

    lg = graph("jet_tagger")
    m = load_manifest(overlay)
    hand = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3"]),
                          ("fpga0", ["_4", "_5"]), ("cpu", ["_6", "_7"])], batch=64)
    plan = price_plan(lg, hand, table, 64, overlay=m)
    pr = timing.pr_s(load_board("pynq-z2"))
    assert plan.predicted["pr_per_batch_s"] == pytest.approx(2 * pr)
    assert plan.predicted["pr_setup_s"] == pytest.approx(2 * pr)
    assert plan.predicted["throughput_sps"] < 64 / (2 * pr)  # the swaps dominate
    # one batch at a time through every stage (a pipeline may let one stage run ahead and
    # save swaps; this is the order the model assumes, its worst case)
    from hwpart.stages import split

    dev = FpgaDevice(overlay, fpga="sim", pace=True)
    cpu = CpuDevice()
    staged = split(lg, plan)
    handles = [(dev if st.device == "fpga" else cpu).load(st) for st in staged.stages]
    x = torch.from_numpy(np.random.default_rng(4).uniform(-3, 3, (64 * 4, 16))
                         .astype(np.float32))
    service: dict[str, list[float]] = {}
    for i in range(4):
        env = staged.initial(x[64 * i: 64 * (i + 1)])
        for st, h in zip(staged.stages, handles, strict=True):
            env = (dev if st.device == "fpga" else cpu).run(h, env)
            if h.service_modeled:
                service.setdefault(st.name, []).append(h.service_s)
    assert dev.swaps == 2 + 2 * 4
    for st in plan.stages[1:3]:
        assert np.mean(service[st.name]) / 64 == pytest.approx(st.predicted_s, rel=0.01)
