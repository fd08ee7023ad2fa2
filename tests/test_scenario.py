"""Scenarios (hwpart.npm.scenario): strict loading, and each injected kind applied and undone.

The FPGA kinds run on the simulated board with the jet bundle of
tests/test_fpga_device.py; the slowdown is checked on the board's *modeled*
timeline (the ledger's RM time), which is where the injection lands.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from hwpart.errors import ConfigError, DeviceError
from hwpart.npm.scenario import (
    FailableDevice,
    Injector,
    RateLimiter,
    Targets,
    list_scenarios,
    load_scenario,
    records_by_kind,
    scenario_from_dict,
)
from hwpart.streams import Item

# --------------------------------------------------------------------------- loading


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


HEAD = "name: t\ndescription: d\nevents:\n"


@pytest.mark.parametrize("events, match", [
    ("  - {at: 1, kind: cpu_load, threads: 2}",
     r"s\.yaml: events\[0\]: field 'kind': unknown kind 'cpu_load'; write one of cpu_contention"),
    ("  - {at: 1, kind: fpga_slowdown, factor: 3}",
     r"s\.yaml: events\[0\] \(fpga_slowdown\): field 'slot': missing; write e\.g\. 'slot: 0'"),
    ("  - {at: 0, kind: input_rate, samples_per_s: 5}\n"
     "  - {at: 1, kind: fpga_slowdown, slot: 0, factor: fast}",
     r"s\.yaml: events\[1\] \(fpga_slowdown\): field 'factor': expected a number > 0, got "
     r"'fast'; write e\.g\. 'factor: 3\.0'"),
    ("  - {at: 1, kind: cpu_contention, processes: yes, duration: 1}",
     r"events\[0\] \(cpu_contention\): field 'processes': expected an integer >= 1, got True"),
    ("  - {at: -1, kind: gpu_busy}", r"events\[0\] \(gpu_busy\): field 'at': expected a number"),
    ("  - {at: 1, kind: fpga_slowdown, slot: 0, facter: 3}",
     r"events\[0\] \(fpga_slowdown\): unknown field 'facter' \(did you mean 'factor'\?\)"),
    ("  - {at: 1, kind: cpu_contention, threads: 1, processes: 1}",
     r"events\[0\] \(cpu_contention\): field 'threads'/'processes': give exactly one"),
    ("  - {at: 1, kind: fpga_slowdown, slot: 0}",
     r"events\[0\] \(fpga_slowdown\): field 'factor'/'stall_ms': give at least one"),
    ("  - {at: 1, kind: device_failure, device: tpu}",
     r"events\[0\] \(device_failure\): field 'device': expected one of fpga, cpu, gpu, got 'tpu'"),
    ("  - {at: 1, kind: input_rate}",
     r"events\[0\] \(input_rate\): field 'samples_per_s': missing; write e\.g\."),
    ("  - {at: 1, kind: fpga_slowdown, slot: 1, factor: 2, duration: 3}\n"
     "  - {at: 2, kind: fpga_slowdown, slot: 1, stall_ms: 1}",
     r"events\[0\] and events\[1\] both act on fpga slot 1 and overlap .* give events\[0\] a "
     r"'duration' that ends by 2 s"),
    ("  - [1, cpu]", r"events\[0\]: expected a mapping"),
])
def test_malformed_event_names_file_index_and_field(tmp_path, events, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_scenario(write(tmp_path, HEAD + events + "\n"))
    assert "\n" not in str(err.value)  # one line a user can act on


@pytest.mark.parametrize("text, match", [
    ("name: t\ndescription: d\nevents: [{at: 1, kind: gpu_busy}\n",
     r"s\.yaml: invalid YAML at line \d+, column \d+"),
    ("name: t\nevents: [{at: 1, kind: gpu_busy}]\n",
     r"s\.yaml: field 'description': missing; write e\.g\."),
    ("name: t\ndescription: d\nevents: []\n", r"s\.yaml: field 'events': expected a non-empty"),
    ("name: t\ndescription: d\nevent: []\n", r"unknown field 'event' \(did you mean 'events'"),
    ("", r"s\.yaml: expected a mapping .* got an empty file"),
])
def test_malformed_file(tmp_path, text, match):
    with pytest.raises(ConfigError, match=match):
        load_scenario(write(tmp_path, text))


def test_shipped_scenarios_load_and_are_short():
    names = list_scenarios()
    assert {"fpga-slowdown", "cpu-contention", "fpga-failure", "input-rate",
            "gpu-busy"} <= set(names)
    for n in names:
        s = load_scenario(n)
        assert s.description and 0 < s.end_s <= 8.0, n
    fs = load_scenario("fpga-slowdown").events[0]
    assert (fs.at, fs.slot, fs.factor) == (2.0, 0, 10.0)
    ff = load_scenario("fpga-failure").events[0]
    assert (ff.at, ff.end, ff.device) == (2.0, 5.0, "fpga")
    with pytest.raises(ConfigError, match="unknown scenario 'nope'; shipped: cpu-contention"):
        load_scenario("nope")


def one(**event) -> object:
    return scenario_from_dict({"name": "t", "description": "d", "events": [event]})


def wait_for(cond, timeout: float = 5.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        assert time.perf_counter() < deadline, "condition not reached in time"
        time.sleep(0.005)


# --------------------------------------------------------------------------- CPU / GPU


def test_busy_processes_run_and_are_killed_at_stop():
    log: list[tuple[str, str, dict]] = []
    inj = Injector(one(at=0, kind="cpu_contention", processes=2),
                   log=lambda kind, what, **kw: log.append((kind, what, kw)))
    inj.start()
    wait_for(lambda: records_by_kind(inj.records, "injected"))
    pids = inj.records[0]["pids"]
    procs = [psutil.Process(p) for p in pids]
    # each really burns a core: CPU time accumulates (spawn + import first)
    wait_for(lambda: all(p.cpu_times().user > 0.1 for p in procs))
    inj.stop()
    assert all(not psutil.pid_exists(p) or psutil.Process(p).status() == psutil.STATUS_ZOMBIE
               for p in pids)
    assert [k for k, _, _ in log] == ["injected", "restored"]
    assert log[1][2]["device"] == "cpu" and "killed" in log[1][1]
    assert log[1][2]["details"]["at_stop"] is True and log[0][2]["details"]["pids"] == pids


def test_busy_threads_end_after_their_duration():
    inj = Injector(one(at=0, kind="cpu_contention", threads=2, duration=0.2))
    inj.start()
    wait_for(lambda: records_by_kind(inj.records, "injected"))
    assert sum(t.name.startswith("hwpart-busy-0") for t in threading.enumerate()) == 2
    assert inj.wait(3.0)  # restored by the injector at 0.2 s, not by stop()
    restored = records_by_kind(inj.records, "restored")
    assert restored and restored[0]["at_stop"] is False and restored[0]["t_s"] >= 0.2
    assert not any(t.name.startswith("hwpart-busy-0") for t in threading.enumerate())
    inj.stop()
    assert len(records_by_kind(inj.records, "restored")) == 1  # nothing undone twice


def test_gpu_busy_without_cuda_is_skipped_with_a_reason():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the skip path does not apply")
    with Injector(one(at=0, kind="gpu_busy", duration=1)) as inj:
        wait_for(lambda: inj.records)
    assert inj.records[0]["kind"] == "skipped" and "no CUDA device" in inj.records[0]["what"]


def test_gpu_busy_runs_kernels_and_stops():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    with Injector(one(at=0, kind="gpu_busy", duration=5)) as inj:
        wait_for(lambda: inj.records)
        assert inj.records[0]["kind"] == "injected", inj.records
        assert any(t.name == "hwpart-gpu-busy-0" for t in threading.enumerate())
    assert not any(t.name == "hwpart-gpu-busy-0" for t in threading.enumerate())


# --------------------------------------------------------------------------- FPGA


@pytest.fixture(scope="module")
def jet_bundle(tmp_path_factory):
    pytest.importorskip("pynq")
    support = pytest.importorskip("test_fpga_support")
    from hwpart.sim.bundle import write_sim_bundle

    return write_sim_bundle(tmp_path_factory.mktemp("jet") / "b", "jet", support.jet_rms())


def fc3_reference(x: np.ndarray) -> np.ndarray:
    import test_fpga_support as support

    from hwpart.overlay.hls import from_stream, to_stream
    from hwpart.sim.rm import CSimRunner

    spec = support.jet_rms()[1]
    return from_stream(CSimRunner(spec).predict(to_stream(x)), spec.out_shape)


def modeled_rm_s(dev, plan, x) -> float:
    """The board's modeled RM time of one batch (ledger delta), checking the output."""
    before = dev.sim.modeled()["modeled_rm_s"]
    y = dev.run_array(plan, x)
    assert np.array_equal(y, fc3_reference(x))  # a slower clock computes the same words
    return dev.sim.modeled()["modeled_rm_s"] - before


def test_fpga_slowdown_prices_the_slot_by_the_factor_and_is_undone(jet_bundle):
    from hwpart.devices.fpga import FpgaDevice

    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    dev.open()
    plan = dev.plan(["fc3"], 0)
    x = np.random.default_rng(0).uniform(-2, 2, (16, 32)).astype(np.float32)
    modeled_rm_s(dev, plan, x)  # swaps fc3 in
    base = modeled_rm_s(dev, plan, x)
    service = plan.last.service_s  # the batch's modeled round trip on the board
    assert base > 0
    inj = Injector(one(at=0, kind="fpga_slowdown", slot=0, factor=3.0), Targets(fpga=dev))
    inj.start()
    wait_for(lambda: inj.records)
    assert inj.records[0]["kind"] == "injected" and "modeled" in inj.records[0]["what"]
    assert modeled_rm_s(dev, plan, x) == pytest.approx(3 * base, rel=1e-9)
    inj.stop()
    assert modeled_rm_s(dev, plan, x) == pytest.approx(base, rel=1e-9)
    assert dev.sim.slot_speed == {}

    dev.sim.set_slot_speed(0, stall_s=0.004)  # a stall: added once per packet
    assert modeled_rm_s(dev, plan, x) == pytest.approx(base + 0.004, rel=1e-9)
    assert plan.last.service_s > service + 0.0039  # the S2MM completion moved out with it
    dev.sim.set_slot_speed(0)
    assert modeled_rm_s(dev, plan, x) == pytest.approx(base, rel=1e-9)


def test_fpga_failure_raises_typed_error_then_returns_bit_exact(jet_bundle):
    from hwpart.devices.fpga import FpgaDevice, FpgaDown, FpgaError

    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    plan = dev.plan(["fc3"], 0)
    x = np.random.default_rng(1).uniform(-2, 2, (8, 32)).astype(np.float32)
    ref = fc3_reference(x)
    assert np.array_equal(dev.run_array(plan, x), ref)
    swaps = dev.sim.ledger.swaps
    inj = Injector(one(at=0, kind="device_failure", device="fpga", return_after=0.3),
                   Targets(fpga=dev))
    inj.start()
    wait_for(lambda: inj.records)
    with pytest.raises(FpgaDown, match=r"fpga slot 0 \(RM fc3\): device is down") as err:
        dev.run_array(plan, x)
    assert isinstance(err.value, FpgaError) and err.value.slot == 0
    with pytest.raises(FpgaDown, match="slot 0"):
        dev.swap(0, "fc2")
    assert inj.wait(3.0)
    assert [r["kind"] for r in inj.records] == ["injected", "restored"]
    assert "shell reloaded" in inj.records[1]["what"]
    assert np.array_equal(dev.run_array(plan, x), ref)  # bit-exact after the return
    assert dev.sim.ledger.swaps == swaps + 1  # the reloaded shell's slot was empty
    inj.stop()


def test_a_batch_that_passed_the_first_check_still_fails_under_the_slot_lock(jet_bundle,
                                                                           monkeypatch):
    """The device fails between a batch's first check and its turn at the slot: the check
    under the slot locks catches it, so nothing reaches a failed fabric."""
    from hwpart.devices.fpga import FpgaDevice, FpgaDown

    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    plan = dev.plan(["fc3"], 0)
    x = np.zeros((2, 32), np.float32)
    dev.run_array(plan, x)
    real = dev._check_up

    def passes_then_fails(slots, rm):
        real(slots, rm)
        dev.fail("failed while the batch waited for its slot")

    monkeypatch.setattr(dev, "_check_up", passes_then_fails)
    processed = dev.sim.slots[0].processed
    with pytest.raises(FpgaDown, match="while the batch waited"):
        dev.run_array(plan, x)
    assert dev.sim.slots[0].processed == processed


def test_absent_targets_are_skipped_with_a_reason():
    s = scenario_from_dict({"name": "t", "description": "d", "events": [
        {"at": 0, "kind": "device_failure", "device": "fpga"},
        {"at": 0, "kind": "fpga_slowdown", "slot": 0, "factor": 2},
        {"at": 0, "kind": "input_rate", "samples_per_s": 10},
        {"at": 0, "kind": "device_failure", "device": "cpu"}]})
    with Injector(s, Targets(cpu=object())) as inj:
        assert inj.wait(3.0)
    whats = [r["what"] for r in inj.records]
    assert [r["kind"] for r in inj.records] == ["skipped"] * 4
    assert "no fpga device" in whats[0] and "no simulated board" in whats[1]
    assert "not rate-limited" in whats[2] and "no fault switch" in whats[3]


def test_failable_device_switch():
    class Dev:
        name = "cpu"

        def load(self, stage):
            return "h"

        def run(self, handle, env):
            return {"ok": True}

    class Handle:
        class stage:  # noqa: N801
            name = "s0"

    d = FailableDevice(Dev())
    inj = Injector(one(at=0, kind="device_failure", device="cpu"), Targets(cpu=d))
    inj.start()
    wait_for(lambda: inj.records)
    with pytest.raises(DeviceError, match=r"cpu: stage s0 failed: device is down"):
        d.run(Handle(), {})
    inj.stop()  # no return_after: restored at stop
    assert d.run(Handle(), {}) == {"ok": True} and d.name == "cpu"


# --------------------------------------------------------------------------- input rate


def test_rate_limiter_paces_samples_and_changes_rate_at_once():
    items = [Item(i, None, samples=5) for i in range(21)]
    rl = RateLimiter(items, samples_per_s=1000.0)  # 5 ms per item
    t0 = time.perf_counter()
    got = [next(rl) for _ in range(21)]
    dt = time.perf_counter() - t0
    assert got == items and rl.released == 105
    assert 0.1 * 0.95 <= dt <= 0.1 * 1.3  # 20 gaps of 5 ms

    slow = RateLimiter(range(10), samples_per_s=0.5)  # 2 s per item
    next(slow)
    threading.Timer(0.05, slow.set_rate, args=(None,)).start()
    t0 = time.perf_counter()
    assert list(slow) == list(range(1, 10))  # woken by the change, not after 2 s
    assert time.perf_counter() - t0 < 0.5


def test_input_rate_events_set_and_restore_the_rate():
    s = scenario_from_dict({"name": "t", "description": "d", "events": [
        {"at": 0.0, "kind": "input_rate", "samples_per_s": 200},
        {"at": 0.05, "kind": "input_rate", "samples_per_s": 50, "duration": 0.05},
        {"at": 0.15, "kind": "input_rate", "samples_per_s": 80}]})
    rl = RateLimiter(iter(range(10**6)), samples_per_s=None)
    seen: list[float | None] = []
    with Injector(s, Targets(rate=rl)) as inj:
        wait_for(lambda: len(inj.records) == 1)
        seen.append(rl.rate)
        wait_for(lambda: len(inj.records) == 2)
        seen.append(rl.rate)
        wait_for(lambda: len(inj.records) == 3)
        seen.append(rl.rate)  # the timed change is over: back to the open-ended one
        assert inj.wait(3.0)
        seen.append(rl.rate)  # a later open-ended rate replaces the earlier
    assert seen == [200.0, 50.0, 200.0, 80.0]
    assert rl.rate is None  # stop() put back the rate found at start
    assert [r["kind"] for r in inj.records] == ["injected", "injected", "restored", "injected",
                                                "restored"]


def test_events_fire_at_their_time_and_stop_before_them_does_nothing():
    s = scenario_from_dict({"name": "t", "description": "d", "events": [
        {"at": 0.15, "kind": "cpu_contention", "threads": 1, "duration": 0.05},
        {"at": 30.0, "kind": "cpu_contention", "processes": 1}]})
    inj = Injector(s)
    inj.start()
    wait_for(lambda: len(inj.records) == 2)
    assert [r["kind"] for r in inj.records] == ["injected", "restored"]
    assert 0.15 <= inj.records[0]["t_s"] < 0.4 and inj.records[1]["t_s"] >= 0.2
    t0 = time.perf_counter()
    inj.stop()  # the 30 s event never fires, and stop does not wait for it
    assert time.perf_counter() - t0 < 1.0 and len(inj.records) == 2
