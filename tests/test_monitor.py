"""The monitor: histogram accuracy, interval figures, busy fraction, JSONL, live table, overhead."""

from __future__ import annotations

import io
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console

from hwpart.devices import CpuDevice
from hwpart.monitor import (
    NBUCKETS,
    LatencySummary,
    Monitor,
    StageStats,
    bucket_of,
    render,
)
from hwpart.runtime import Pipeline
from hwpart.stages import Stage, StagedModel
from hwpart.streams import Channel


class Sleep:
    """A synthetic stage: the delay is its simulated work."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __call__(self, x):
        time.sleep(self.seconds)
        return x


def synthetic(delays: list[float]) -> StagedModel:
    stages = [Stage(f"stage{i}", "cpu", [], Sleep(d), ["x"], [(None, "x")], {"x"})
              for i, d in enumerate(delays)]
    return StagedModel(stages, ["x"], "x")


def test_percentiles_match_numpy_within_a_bucket():
    rng = np.random.default_rng(0)
    values = rng.lognormal(mean=math.log(2e-3), sigma=0.8, size=20000)
    st = StageStats("s", "cpu", "cpu")
    for v in values:
        st.record(float(v), 1)
    s = LatencySummary.of(st.counts, st.busy_s, st.max_s, st.min_s)
    assert s.count == 20000
    assert s.mean_s == pytest.approx(values.mean(), rel=1e-9)
    for q, got in ((50, s.p50_s), (95, s.p95_s), (99, s.p99_s)):
        want = np.percentile(values, q, method="inverted_cdf")
        assert got == pytest.approx(want, rel=0.015), q
    assert s.max_s == pytest.approx(values.max())


def test_extreme_values_land_in_the_end_buckets():
    assert bucket_of(0.0) == 0 and bucket_of(1e-12) == 0
    assert bucket_of(1e9) == NBUCKETS - 1
    st = StageStats("s", "cpu", "cpu")
    st.record(0.0, 1)
    st.record(1e9, 1)
    assert st.counts[0] == 1 and st.counts[-1] == 1


def test_interval_figures_cover_only_the_interval():
    mon = Monitor(interval_s=None)
    q = Channel(4, "q")
    (st,) = mon.attach([("stage0", "cpu", "cpu", q)], [])
    for _ in range(100):
        st.record(1e-3, 2)
    first = mon.snapshot()
    for _ in range(10):
        st.record(5e-3, 2)
    q.put(1)
    second = mon.snapshot()
    s1, s2 = first.stage("stage0"), second.stage("stage0")
    assert s1.latency.count == 100 and s1.latency.p50_s == pytest.approx(1e-3, rel=0.015)
    assert s2.latency.count == 10 and s2.latency.p50_s == pytest.approx(5e-3, rel=0.015)
    assert s2.latency_total.count == 110 and s2.samples == 220
    assert s2.queue_depth == 1 and s2.queue_capacity == 4
    assert second.seq == first.seq + 1
    empty = mon.snapshot().stage("stage0").latency
    assert empty.count == 0 and empty.p50_s is None  # nothing happened: n/a, not 0


def test_record_is_cheap():
    """The per-batch cost a worker pays; the bench target needs it far below a batch."""
    st = StageStats("s", "cpu", "cpu")
    n = 200_000
    best = math.inf
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(n):
            st.record(1.5e-4, 64)
        best = min(best, (time.perf_counter() - t) / n)
    assert best < 3e-6, f"record() costs {best * 1e6:.2f} µs"


def test_busy_fraction_and_throughput_follow_the_bottleneck(tmp_path):
    """A 4 ms stage feeding a 1 ms stage: the first is busy, the second mostly waits."""
    staged = synthetic([0.004, 0.001])
    log = tmp_path / "m.jsonl"
    mon = Monitor(interval_s=0.05, jsonl=log)
    with Pipeline(staged, {"cpu": CpuDevice()}, monitor=mon) as pipe:
        result = pipe.run(torch.arange(120), batch=1)
    assert torch.equal(result.output(), torch.arange(120))
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) >= 5  # about 0.5 s at 50 ms per line
    assert [ln["seq"] for ln in lines] == list(range(len(lines)))
    assert lines[-1]["samples"] == 120
    mid = lines[len(lines) // 2]  # a steady-state interval
    busy = {s["name"]: s["busy"] for s in mid["stages"]}
    assert busy["stage0"] > 0.8 and busy["stage1"] < 0.5
    total = result.snapshot
    assert total.stage("stage0").latency_total.p50_s == pytest.approx(0.004, rel=0.5)
    assert 0.5 / 0.004 < total.throughput_total_sps < 1.05 / 0.004  # bounded by the 4 ms stage
    # every line carries the device figures, with n/a as null where unreadable
    cpu = lines[-1]["devices"]["cpu"]
    assert set(cpu) >= {"util", "power_w", "energy_j"}
    if CpuDevice().power_reason:
        assert cpu["power_w"] is None


def test_subscribers_get_every_periodic_snapshot():
    staged = synthetic([0.002])
    got = []
    mon = Monitor(interval_s=0.02)
    mon.subscribe(got.append)
    mon.subscribe(lambda s: 1 / 0)  # a broken subscriber does not stop the others
    with Pipeline(staged, {"cpu": CpuDevice()}, monitor=mon) as pipe:
        pipe.run(torch.arange(100), batch=1)
    assert len(got) >= 3 and got[-1].samples == 100
    assert got == list(mon.history)[-len(got):]


def test_live_table_renders_stages_devices_and_na():
    staged = synthetic([0.0, 0.0])
    with Pipeline(staged, {"cpu": CpuDevice(powercap=Path("/nonexistent"))}) as pipe:
        result = pipe.run(torch.arange(50), batch=5)
    out = io.StringIO()
    Console(file=out, width=140, force_terminal=False).print(render(result.snapshot))
    text = out.getvalue()
    assert "stage0" in text and "stage1" in text and "50/50 samples" in text
    assert "n/a" in text  # power on a machine without RAPL
    assert "queue" in text and "p99" in text


def test_live_view_runs_during_a_pipeline():
    out = io.StringIO()
    console = Console(file=out, width=140, force_terminal=True)
    mon = Monitor(interval_s=0.02, live=True, console=console)
    with Pipeline(synthetic([0.001]), {"cpu": CpuDevice()}, monitor=mon) as pipe:
        pipe.run(torch.arange(100), batch=1)
    text = out.getvalue()
    assert "stage0" in text and "100/100 samples" in text


def test_run_energy_is_the_rise_over_the_run_not_the_device_total():
    from hwpart.monitor import Snapshot, device_summary

    none = LatencySummary.of([], 0.0)

    def snap(e):
        return Snapshot(0, 0.0, 0.5, 0, 0, None, None, none, none, [],
                        {"gpu": {"energy_j": e, "util": 0.5}})

    history = [snap(1000.0), snap(1010.0), snap(1025.0)]  # 1000 J before this run began
    assert device_summary(history)["gpu"]["energy_j"] == 25.0
    assert device_summary(history[:1])["gpu"]["energy_j"] is None
