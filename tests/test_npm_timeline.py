"""The NPM's timeline PNG (hwpart.npm.timeline) from a synthetic run and its events."""

from __future__ import annotations

import struct

import pytest

from hwpart.monitor import LatencySummary, Snapshot, StageSnapshot
from hwpart.npm.events import Event
from hwpart.npm.timeline import device_load, draw_timeline

EMPTY = LatencySummary(0, None, None, None, None)


def history(n: int = 100, dt: float = 0.1) -> list[Snapshot]:
    """A 10 s run: the fpga slot slows 3x at 3 s, stage 1 moves to the gpu at 3.6 s."""
    out = []
    for k in range(n):
        t = (k + 1) * dt
        slow = 3.0 <= t < 3.6
        moved = t >= 3.6
        tput = 3000.0 if slow else (9000.0 if moved else 10000.0)
        p99 = 0.004 if slow else 0.0015
        busy1 = 0.95 if slow else (0.6 if moved else 0.8)
        stages = []
        for i, (dev, busy) in enumerate((("cpu", 0.5 if not slow else 0.2), ("fpga" if not moved
                                         else "gpu", busy1), ("cpu", 0.3))):
            stages.append(StageSnapshot(
                name=f"stage{i}", unit="cpu", device=dev, batches=k, samples=k * 100,
                throughput_sps=tput, busy=busy, queue_depth=None if i == 0 else 1,
                queue_capacity=None if i == 0 else 8, queue_high_water=None, latency=EMPTY,
                latency_total=EMPTY, service_per_sample_s=1e-4, service_modeled=dev == "fpga"))
        e2e = LatencySummary(10, p99 / 2, p99 / 2, p99 * 0.9, p99, p99)
        out.append(Snapshot(seq=k, t_s=t, interval_s=dt, samples=k * 100, batches=k,
                            throughput_sps=tput, throughput_total_sps=None, end_to_end=e2e,
                            end_to_end_total=e2e, stages=stages, devices={}))
    return out


EVENTS = [
    Event(3.0, "injected", "fpga slot 0 clocked down 3x", device="fpga"),
    Event(3.3, "detected", "service 3.0x its baseline", device="fpga", stage="stage1"),
    Event(3.35, "decided", "stage1 -> gpu", stage="stage1", predicted_gain=2.8),
    Event(3.6, "swapped", "stage1 on gpu from seq 41210", device="gpu", stage="stage1"),
    Event(3.7, "verified", "first 8 outputs equal", stage="stage1"),
    Event(4.6, "recovered", "throughput at 90% of before", stage="stage1"),
    Event(7.0, "decided", "stage0 -> gpu", stage="stage0", predicted_gain=1.1),
    Event(7.4, "rolled_back", "throughput fell 12%", stage="stage0"),
]


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_draws_a_png_of_sane_size(tmp_path):
    out = draw_timeline(history(), EVENTS, tmp_path / "sub" / "timeline.png", "slowdown")
    assert out == tmp_path / "sub" / "timeline.png"
    w, h = png_size(out)
    assert 800 <= w <= 2000 and 600 <= h <= 1500
    assert 20_000 < out.stat().st_size < 2_000_000


def test_draws_without_events_and_with_one_snapshot(tmp_path):
    assert png_size(draw_timeline(history(1), [], tmp_path / "one.png"))[0] > 0


def test_refuses_an_empty_history(tmp_path):
    with pytest.raises(ValueError, match="no snapshots"):
        draw_timeline([], EVENTS, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_device_load_sums_stages_by_device_and_marks_modeled():
    load, modeled = device_load(history())
    assert load["cpu"][0] == pytest.approx(0.8)  # two stage threads on the cpu
    # the simulated board's load is its modeled service per interval (100 samples x 0.1 ms
    # in 0.1 s), not the host's busy share (0.8 in these snapshots)
    assert load["fpga"][1] == pytest.approx(0.1) and load["fpga"][-1] != load["fpga"][-1]
    assert load["gpu"][-1] == pytest.approx(0.6)
    assert modeled == {"fpga"}
