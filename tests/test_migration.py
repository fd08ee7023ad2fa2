"""Moving layers while the model runs, losing nothing (the engine side of the NPM).

The model is cut once into segments (``stages.segment``); a stage is a run of
segments on a unit (``stages.compose``); ``Pipeline.reroute`` loads the new
stages beside the old ones and switches at a sequence boundary
(make-before-break); ``pause``/``drain``/``resume`` give break-before-make; a
failed route is replaced for every item already routed to it.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch
from test_fpga_support import graph, jet_rms, make_plan

pytest.importorskip("pynq")

from hwpart.devices.cpu import CpuDevice  # noqa: E402
from hwpart.devices.fpga import FpgaDevice, FpgaError  # noqa: E402
from hwpart.monitor import Monitor  # noqa: E402
from hwpart.runtime import Pipeline  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.stages import StagedModel, compose, segment  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("mig") / "b", "jet", jet_rms())


@pytest.fixture(scope="module")
def segs():
    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0+1", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])])
    return segment(lg, plan, groups=[["_2", "_3"], ["_4", "_5"]])


#: Layouts of three stages over the four segments [_0,_1] [_2,_3] [_4,_5] [_6,_7]:
#: CPU <-> FPGA slots <-> CPU, slot <-> slot (PR swaps), a segment across a border.
LAYOUTS = [
    [("cpu", 0, 1), ("fpga0+1", 1, 3), ("cpu", 3, 4)],
    [("cpu", 0, 1), ("cpu", 1, 3), ("cpu", 3, 4)],  # FPGA -> CPU
    [("cpu", 0, 1), ("fpga1+0", 1, 3), ("cpu", 3, 4)],  # CPU -> slots, swapped over
    [("cpu", 0, 2), ("fpga0", 2, 3), ("cpu", 3, 4)],  # _2,_3 across the border, slot 0 only
    [("cpu", 0, 1), ("fpga1", 1, 2), ("cpu", 2, 4)],  # slot 1 takes fc2, _4,_5 to the CPU
]


def stages_of(segs, layout):
    return [compose(f"stage{i}", unit, segs.segments[a:b])
            for i, (unit, a, b) in enumerate(layout)]


def staged(segs, layout) -> StagedModel:
    s = segs.staged
    return StagedModel(stages_of(segs, layout), s.input_names, s.output, s.finish)


def reference(segs, layout, devices, x):
    """The static run of one layout: its stages one after another on their devices."""
    sm = staged(segs, layout)
    handles = [(devices[st.device], devices[st.device].load(st)) for st in sm.stages]
    env = sm.initial(x)
    for dev, h in handles:
        env = dev.run(h, env)
    return sm.result(env)


def test_segments_are_the_legal_borders(segs):
    assert [s.nodes for s in segs.segments] == [["_0", "_1"], ["_2", "_3"], ["_4", "_5"],
                                                ["_6", "_7"]]


def test_forced_migrations_lose_nothing_and_match_static_runs_bit_for_bit(bundle, segs):
    """100,000 samples, a forced migration every 0.25 s through every layout: every item
    out once, in order, each equal to the static run of the layout it was routed by."""
    devices = {"cpu": CpuDevice(threads=1), "fpga": FpgaDevice(bundle.root, fpga="sim",
                                                               pace=False)}
    batch, n = 16, 100_000
    x = torch.from_numpy(np.random.default_rng(0).uniform(-3, 3, (n, 16)).astype(np.float32))
    pipe = Pipeline(staged(segs, LAYOUTS[0]), devices, monitor=Monitor(interval_s=None))
    switches: list[tuple[int, int]] = [(0, 0)]  # (boundary, layout index)
    stop = threading.Event()

    def migrate() -> None:
        k = 0
        while not stop.wait(0.25):
            k += 1
            b, _ = pipe.reroute(stages_of(segs, LAYOUTS[k % len(LAYOUTS)]), devices)
            switches.append((b, k % len(LAYOUTS)))

    th = threading.Thread(target=migrate)
    th.start()
    try:
        res = pipe.run(x, batch)
    finally:
        stop.set()
        th.join()
    outs = res.outputs
    assert len(outs) == n // batch and res.samples == n  # none lost, none duplicated
    used = {i for _, i in switches if _ < n // batch}
    assert len(switches) >= 5 and len(used) >= 4, switches  # it really moved, many ways
    refs = {}
    for seq, out in enumerate(outs):  # in order: output seq came from input batch seq
        layout = max((b, i) for b, i in switches if b <= seq)[1]
        xb = x[seq * batch:(seq + 1) * batch]
        key = (layout, seq)
        refs[key] = reference(segs, LAYOUTS[layout], devices, xb)
        assert torch.equal(out, refs[key]), f"batch {seq} (layout {layout}) differs"
    assert pipe.released  # drained routes were unloaded, not kept for ever
    assert devices["fpga"].swaps >= 4  # slot <-> slot moves reconfigured the slots
    pipe.close()


def test_break_before_make_pauses_drains_and_resumes(bundle, segs):
    devices = {"cpu": CpuDevice(threads=1), "fpga": FpgaDevice(bundle.root, fpga="sim",
                                                               pace=True)}
    x = torch.from_numpy(np.random.default_rng(1).uniform(-3, 3, (64 * 60, 16))
                         .astype(np.float32))
    pipe = Pipeline(staged(segs, LAYOUTS[0]), devices, monitor=Monitor(interval_s=None))
    seen = {}
    running = threading.Event()
    go_on = threading.Event()

    def on_output(done: int) -> None:  # the sink holds batch 10 until the move has paused
        if done == 64 * 10:
            running.set()
            go_on.wait(5.0)

    def move() -> None:
        running.wait(5.0)
        pipe.pause()
        go_on.set()
        assert pipe.drain(5.0)
        run = pipe._run
        seen["drained_at"] = run.collector.next_seq
        seen["issued"] = run.base + run.issued
        t0 = time.perf_counter()
        pipe.reroute(stages_of(segs, LAYOUTS[2]), devices)  # the same slots, other RMs
        seen["downtime_s"] = time.perf_counter() - t0
        pipe.resume()

    th = threading.Thread(target=move)
    th.start()
    res = pipe.run(x, 64, on_output=on_output)
    th.join()
    assert seen["drained_at"] == seen["issued"]  # nothing in flight while it swapped
    assert 0 < seen["drained_at"] < 60 and res.samples == 64 * 60
    assert seen["downtime_s"] > 0


def test_a_failed_device_is_replaced_and_its_items_retried(bundle, segs):
    """The FPGA fails mid-run: the fault hook gives a CPU route, the failed item and
    every item already routed to the FPGA run on it, nothing lost or reordered."""
    fpga = FpgaDevice(bundle.root, fpga="sim", pace=False)
    cpu = CpuDevice(threads=1)
    devices = {"cpu": cpu, "fpga": fpga}
    x = torch.from_numpy(np.random.default_rng(2).uniform(-3, 3, (16 * 200, 16))
                         .astype(np.float32))
    pipe = Pipeline(staged(segs, LAYOUTS[0]), devices, monitor=Monitor(interval_s=None))
    calls = {"n": 0}
    real = fpga.run_array

    def flaky(plan, arr):
        calls["n"] += 1
        if calls["n"] > 50:
            raise FpgaError("DMA transfer did not complete (injected)", 0, "fc2")
        return real(plan, arr)

    fpga.run_array = flaky  # type: ignore[method-assign]
    faults = []

    def on_fault(name, route, exc, seq):
        faults.append((name, seq, type(exc).__name__))
        st = stages_of(segs, LAYOUTS[1])[1]  # the same layers on the CPU
        return pipe.load(st, cpu)

    pipe.on_fault = on_fault
    res = pipe.run(x, 16)
    assert len(faults) == 1 and faults[0][0] == "stage1"  # asked once per failed route
    assert res.samples == 16 * 200 and len(res.outputs) == 200
    cpu_ref = [reference(segs, LAYOUTS[1], devices, x[i * 16:(i + 1) * 16]) for i in range(200)]
    fpga_ok = 50
    for i, out in enumerate(res.outputs):
        if i >= fpga_ok:  # from the first failure on, the CPU computed it
            assert torch.equal(out, cpu_ref[i])
    pipe.close()
