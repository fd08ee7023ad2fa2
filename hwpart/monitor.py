"""Performance Monitoring Agent: per-stage and per-device figures while a pipeline runs.

Workers call :meth:`StageStats.record` once per batch, so that call must cost
next to nothing next to a batch: it adds a time to a fixed log-bucket histogram
(a ``math.log`` and a list increment, no allocation, no lock -- each stage has a
single writer). Everything else -- percentiles, rates, device probes, the JSONL
line, the terminal table -- happens on the monitor's own thread once per
interval. Histograms are cumulative counts, so the figures *of an interval* are
the difference of two snapshots' counts: exact counts, bounded memory, and
percentiles within half a bucket (about 1%).

A :class:`Snapshot` is what the re-allocator will read; ``None`` in it means
"not readable here" (shown as n/a), never a measured zero.
"""

from __future__ import annotations

import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from hwpart.devices.base import METRIC_KEYS
from hwpart.streams import Channel

# Buckets: [LOW * RATIO**i, LOW * RATIO**(i+1)) for i in 0..NBUCKETS-1; 100 ns to ~3 hours.
LOW = 1e-7
RATIO = 1.02
NBUCKETS = 1400
_INV_LOG = 1.0 / math.log(RATIO)
_LOG_LOW = math.log(LOW)


def bucket_of(seconds: float) -> int:
    if seconds <= LOW:
        return 0
    return min(int((math.log(seconds) - _LOG_LOW) * _INV_LOG), NBUCKETS - 1)


def bucket_value(i: int) -> float:
    """The geometric middle of bucket ``i``: within sqrt(RATIO) of any value in it."""
    return LOW * RATIO ** (i + 0.5)


@dataclass
class LatencySummary:
    count: int
    mean_s: float | None
    p50_s: float | None
    p95_s: float | None
    p99_s: float | None
    max_s: float | None = None

    @classmethod
    def of(cls, counts: Sequence[int], total_s: float, max_s: float | None = None,
           min_s: float | None = None) -> LatencySummary:
        n = sum(counts)
        if n == 0:
            return cls(0, None, None, None, None, None)
        qs = _percentiles(counts, n, (0.50, 0.95, 0.99))
        if max_s is not None:  # a bucket's middle can overshoot the largest value seen
            qs = [min(q, max_s) for q in qs]
        if min_s is not None:
            qs = [max(q, min_s) for q in qs]
        return cls(n, total_s / n, qs[0], qs[1], qs[2], max_s)


def _percentiles(counts: Sequence[int], n: int, qs: Sequence[float]) -> list[float]:
    out: list[float] = []
    targets = [max(1, math.ceil(q * n)) for q in qs]  # nearest-rank definition
    acc, t = 0, 0
    for i, c in enumerate(counts):
        if not c:
            continue
        acc += c
        while t < len(targets) and acc >= targets[t]:
            out.append(bucket_value(i))
            t += 1
        if t == len(targets):
            break
    return out


class StageStats:
    """Counters one worker updates per batch; read by the monitor thread."""

    __slots__ = ("name", "unit", "device", "queue", "counts", "batches", "samples", "busy_s",
                 "max_s", "min_s", "service_s", "service_modeled", "lock_wait_s", "queue_wait_s")

    def __init__(self, name: str, unit: str, device: str, queue: Channel | None = None) -> None:
        self.name, self.unit, self.device, self.queue = name, unit, device, queue
        self.counts = [0] * NBUCKETS
        self.batches = 0
        self.samples = 0
        self.busy_s = 0.0
        self.max_s = 0.0
        self.min_s = math.inf
        # the device's own time (modeled on a simulated board), apart from waiting:
        # for locks inside the device, and for the neighbours' queues (see record_wait)
        self.service_s = 0.0
        self.service_modeled = False
        self.lock_wait_s = 0.0
        self.queue_wait_s = 0.0

    def record_wait(self, seconds: float) -> None:
        """Time the worker spent blocked on its input or output queue."""
        self.queue_wait_s += seconds

    def record(self, seconds: float, samples: int, service_s: float | None = None,
               lock_wait_s: float = 0.0, modeled: bool = False) -> None:
        """One batch: ``seconds`` of wall time in the device's ``run``; ``service_s``, the
        device's own account of it (None: the wall time was all service, as on the CPU)."""
        if service_s is None:
            self.service_s += seconds
            self.service_modeled = False  # (a stage re-routed off a simulated board)
        else:
            self.service_s += service_s
            self.lock_wait_s += lock_wait_s
            self.service_modeled = modeled
        if seconds > LOW:
            i = int((math.log(seconds) - _LOG_LOW) * _INV_LOG)
            self.counts[i if i < NBUCKETS else NBUCKETS - 1] += 1
        else:
            self.counts[0] += 1
        self.batches += 1
        self.samples += samples
        self.busy_s += seconds
        if seconds > self.max_s:
            self.max_s = seconds
        if seconds < self.min_s:
            self.min_s = seconds


# --------------------------------------------------------------------------- snapshots


@dataclass
class StageSnapshot:
    name: str
    unit: str
    device: str
    batches: int
    samples: int
    throughput_sps: float | None  # samples/s over the interval
    busy: float | None  # fraction of the interval spent in the device's run
    queue_depth: int | None  # items waiting for this stage now (None: stage 0 pulls the source)
    queue_capacity: int | None
    queue_high_water: int | None  # the most ever waiting
    latency: LatencySummary  # per batch, this interval
    latency_total: LatencySummary  # per batch, since the start
    # per sample, since the start: the device's own service time (the board's modeled
    # time when service_modeled), and what the stage spent waiting instead
    service_per_sample_s: float | None = None
    service_modeled: bool = False
    lock_wait_s: float = 0.0  # total, waiting for the device's locks (shared DMA, slots)
    queue_wait_s: float = 0.0  # total, blocked on the input or output queue
    host_s: float = 0.0  # total wall time in the device's run (lock waits included)


@dataclass
class Snapshot:
    seq: int
    t_s: float  # since the monitor started
    interval_s: float
    samples: int  # completed at the sink
    batches: int
    throughput_sps: float | None  # this interval
    throughput_total_sps: float | None  # since the first item left the source
    end_to_end: LatencySummary  # per batch, source to sink, this interval
    end_to_end_total: LatencySummary
    stages: list[StageSnapshot]
    devices: dict[str, dict[str, float | None]]
    total_samples: int | None = None
    device_errors: dict[str, str] = field(default_factory=dict)  # device -> why its probe failed

    def stage(self, name: str) -> StageSnapshot:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Prev:
    t: float
    samples: int = 0
    e2e_counts: list[int] = field(default_factory=lambda: [0] * NBUCKETS)
    e2e_sum: float = 0.0
    stages: dict[str, tuple[list[int], int, float]] = field(default_factory=dict)


class Monitor:
    """Collects stage/device figures; optionally logs JSONL and draws a live table.

    The runtime calls :meth:`attach` with its stages and devices, then
    :meth:`start`/:meth:`stop` around the run (unless the caller already started
    it). ``interval_s=None`` takes no periodic snapshots: only the final one.
    """

    def __init__(self, interval_s: float | None = 0.5, jsonl: str | Path | None = None,
                 live: bool = False, console: Any = None, keep: int = 1000) -> None:
        self.interval_s = interval_s
        self.jsonl_path = Path(jsonl) if jsonl else None
        self.live = live
        self.console = console
        self.history: deque[Snapshot] = deque(maxlen=keep)
        self.stages: list[StageStats] = []
        self.devices: dict[str, Any] = {}
        self.total_samples: int | None = None
        self._subscribers: list[Callable[[Snapshot], None]] = []
        self._thread: threading.Thread | None = None
        self._running = False
        self._stop = threading.Event()
        self._snap_lock = threading.Lock()
        self._view: LiveView | None = None
        self._log: IO[str] | None = None
        self.reset()

    # ------------------------------------------------------------------ wiring

    def reset(self) -> None:
        self._t0 = time.perf_counter()
        self._first: float | None = None
        self._seq = 0
        self.e2e_counts = [0] * NBUCKETS
        self.e2e_sum = 0.0
        self.e2e_max = 0.0
        self.e2e_min = math.inf
        self.samples = 0
        self.batches = 0
        self._prev = _Prev(self._t0)

    def attach(self, stages: Sequence[tuple[str, str, str, Channel | None]],
               devices: Sequence[Any], total_samples: int | None = None) -> list[StageStats]:
        """(name, unit, device name, input channel) per stage; returns their recorders.

        Under the snapshot lock: a monitor that is already running (owned by the
        caller) must not snapshot half of the old run's state and half of the new.
        """
        with self._snap_lock:
            self.reset()
            self.history.clear()
            self.stages = [StageStats(*s) for s in stages]
            self.devices = {d.name: d for d in devices}
            self.total_samples = total_samples
        return self.stages

    def subscribe(self, fn: Callable[[Snapshot], None]) -> None:
        """Call ``fn(snapshot)`` on the monitor thread after every periodic snapshot."""
        self._subscribers.append(fn)

    @property
    def running(self) -> bool:
        return self._running

    # ------------------------------------------------------------------ the sink side

    def started(self) -> None:
        """The first item left the source: the throughput clock starts here, not at attach."""
        if self._first is None:
            self._first = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds on the snapshots' clock (``Snapshot.t_s``): since the run attached.
        What an event log beside the monitor stamps its events with."""
        return time.perf_counter() - self._t0

    @property
    def first_t(self) -> float | None:
        """perf_counter() when the first item left the source (None before)."""
        return self._first

    def record_output(self, latency_s: float, samples: int) -> None:
        """One batch reached the sink ``latency_s`` after it left the source."""
        self.e2e_counts[bucket_of(latency_s)] += 1
        self.e2e_sum += latency_s
        if latency_s > self.e2e_max:
            self.e2e_max = latency_s
        if latency_s < self.e2e_min:
            self.e2e_min = latency_s
        self.samples += samples
        self.batches += 1

    # ------------------------------------------------------------------ snapshots

    def snapshot(self) -> Snapshot:
        """Figures since the previous snapshot (and since the start); safe from any thread."""
        with self._snap_lock:
            return self._snapshot()

    def _snapshot(self) -> Snapshot:
        now = time.perf_counter()
        prev = self._prev
        dt = now - prev.t
        e2e = list(self.e2e_counts)
        e2e_sum, samples = self.e2e_sum, self.samples
        stages = []
        new_prev = _Prev(now, samples, e2e, e2e_sum)
        for st in self.stages:
            counts, sampled, busy = list(st.counts), st.samples, st.busy_s
            p_counts, p_samples, p_busy = prev.stages.get(st.name, ([0] * NBUCKETS, 0, 0.0))
            diff = [a - b for a, b in zip(counts, p_counts, strict=True)]
            q = st.queue
            stages.append(StageSnapshot(
                name=st.name, unit=st.unit, device=st.device, batches=st.batches,
                samples=sampled,
                throughput_sps=(sampled - p_samples) / dt if dt > 0 else None,
                busy=min(1.0, (busy - p_busy) / dt) if dt > 0 else None,
                queue_depth=q.depth if q is not None else None,
                queue_capacity=q.capacity if q is not None else None,
                queue_high_water=q.high_water if q is not None else None,
                latency=LatencySummary.of(diff, busy - p_busy),
                latency_total=LatencySummary.of(counts, busy, st.max_s or None,
                                                st.min_s if st.batches else None),
                service_per_sample_s=st.service_s / sampled if sampled else None,
                service_modeled=st.service_modeled, lock_wait_s=st.lock_wait_s,
                queue_wait_s=st.queue_wait_s, host_s=busy,
            ))
            new_prev.stages[st.name] = (counts, sampled, busy)
        devices: dict[str, dict[str, float | None]] = {}
        errors: dict[str, str] = {}
        for name, dev in self.devices.items():
            try:
                devices[name] = dict(dev.metrics())
            except Exception as exc:  # a probe failure must not stop the run
                devices[name] = dict.fromkeys(METRIC_KEYS)
                errors[name] = f"{type(exc).__name__}: {exc}"
        e2e_diff = [a - b for a, b in zip(e2e, prev.e2e_counts, strict=True)]
        since = now - self._first if self._first is not None else 0.0
        snap = Snapshot(
            seq=self._seq, t_s=now - self._t0, interval_s=dt, samples=samples,
            batches=self.batches,
            throughput_sps=(samples - prev.samples) / dt if dt > 0 else None,
            throughput_total_sps=samples / since if since > 0 else None,
            end_to_end=LatencySummary.of(e2e_diff, e2e_sum - prev.e2e_sum),
            end_to_end_total=LatencySummary.of(e2e, e2e_sum, self.e2e_max or None,
                                               self.e2e_min if self.batches else None),
            stages=stages, devices=devices, total_samples=self.total_samples,
            device_errors=errors,
        )
        self._prev = new_prev
        self._seq += 1
        self.history.append(snap)
        return snap

    # ------------------------------------------------------------------ the thread

    def start(self) -> None:
        if self._running:
            return
        self._running = True
        if self.jsonl_path is not None:
            self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.jsonl_path.open("w")
        if self.live:
            self._view = LiveView(self.console)
            self._view.start()
        self._stop.clear()
        if self.interval_s:
            self._thread = threading.Thread(target=self._loop, name="hwpart-monitor", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        assert self.interval_s
        while not self._stop.wait(self.interval_s):
            self._emit(self.snapshot())

    def _emit(self, snap: Snapshot) -> None:
        if self._log is not None:
            self._log.write(json.dumps(snap.to_json()) + "\n")
            self._log.flush()
        if self._view is not None:
            self._view.update(snap)
        for fn in self._subscribers:
            try:
                fn(snap)
            except Exception as exc:  # a subscriber bug must not kill the monitor
                print(f"hwpart monitor: subscriber failed: {exc!r}", file=sys.stderr)

    def stop(self) -> Snapshot:
        """Stop the sampler; takes, logs and returns the final snapshot."""
        th, self._thread = self._thread, None
        self._stop.set()
        if th is not None:
            th.join(timeout=5.0)
        snap = self.snapshot()
        if self._running:
            self._emit(snap)
        self._running = False
        if self._view is not None:
            self._view.stop()
            self._view = None
        if self._log is not None:
            self._log.close()
            self._log = None
        return snap


def device_summary(history: Sequence[Snapshot]) -> dict[str, dict[str, float | None]]:
    """Per device over a run: time-weighted mean utilization and power, last energy, peak memory.

    One snapshot's utilization covers only its interval (psutil and NVML report
    since the previous read), so a run's figure must combine all of them.
    """
    out: dict[str, dict[str, float | None]] = {}
    names = {n for s in history for n in s.devices}
    for name in sorted(names):
        row: dict[str, float | None] = {}
        for key in ("util", "power_w"):
            pairs = [(s.devices[name].get(key), s.interval_s) for s in history
                     if name in s.devices and s.devices[name].get(key) is not None]
            w = sum(dt for _, dt in pairs)
            row[f"{key}_mean"] = (sum(v * dt for v, dt in pairs) / w) if w > 0 else None
        # devices count energy since they were first read (warm-up and earlier runs
        # included): the run's own energy is the rise between its first and last reads
        energies = [e for s in history if name in s.devices
                    if (e := s.devices[name].get("energy_j")) is not None]
        row["energy_j"] = energies[-1] - energies[0] if len(energies) >= 2 else None
        mems = [s.devices[name].get("mem_used_b") for s in history if name in s.devices]
        known = [m for m in mems if m is not None]
        row["mem_used_peak_b"] = max(known) if known else None
        modeled = [s.devices[name].get("modeled_busy_s") for s in history if name in s.devices]
        row["modeled_busy_s"] = next((m for m in reversed(modeled) if m is not None), None)
        out[name] = row
    return out


# --------------------------------------------------------------------------- display


def fmt_s(x: float | None) -> str:
    if x is None:
        return "n/a"
    if x < 1e-3:
        return f"{x * 1e6:.1f} µs"
    if x < 1.0:
        return f"{x * 1e3:.2f} ms"
    return f"{x:.2f} s"


def fmt_num(x: float | None, unit: str = "", digits: int = 1) -> str:
    if x is None:
        return "n/a"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.{digits}f} {prefix}{unit}".rstrip()
    return f"{x:.{digits}f} {unit}".rstrip()


def fmt_pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def render(snap: Snapshot) -> Any:
    """The live view of one snapshot: a progress bar, the stage table, the device table."""
    from rich.console import Group
    from rich.progress_bar import ProgressBar
    from rich.table import Table
    from rich.text import Text

    total = snap.total_samples
    head = Text(f"{snap.samples}" + (f"/{total}" if total else "") + " samples   "
                f"{fmt_num(snap.throughput_sps, 'samples/s')} now   "
                f"{fmt_num(snap.throughput_total_sps, 'samples/s')} overall   "
                f"end-to-end p50 {fmt_s(snap.end_to_end_total.p50_s)}")
    parts: list[Any] = [head]
    if total:
        parts.append(ProgressBar(total=total, completed=snap.samples, width=60))
    st = Table(title=None, expand=False)
    for col in ("stage", "unit", "batches", "samples/s", "p50", "p95", "p99", "busy", "queue"):
        st.add_column(col, justify="left" if col in ("stage", "unit") else "right")
    for s in snap.stages:
        queue = "source" if s.queue_depth is None else f"{s.queue_depth}/{s.queue_capacity}"
        st.add_row(s.name, s.unit, str(s.batches), fmt_num(s.throughput_sps),
                   fmt_s(s.latency.p50_s), fmt_s(s.latency.p95_s), fmt_s(s.latency.p99_s),
                   fmt_pct(s.busy), queue)
    parts.append(st)
    dt = Table(expand=False)
    for col in ("device", "util", "power", "energy", "memory", "modeled busy"):
        dt.add_column(col, justify="left" if col == "device" else "right")
    for name, m in snap.devices.items():
        dt.add_row(*device_row(name, m.get("util"), m.get("power_w"), m.get("energy_j"),
                               m.get("mem_used_b"), m.get("modeled_busy_s")))
    parts.append(dt)
    return Group(*parts)


def device_row(name: str, util: float | None, power_w: float | None, energy_j: float | None,
               mem_b: float | None, modeled_s: float | None) -> tuple[str, ...]:
    """One device's table cells (live view and end-of-run summary): util (marked
    modeled on simulated devices), power, energy, memory, modeled busy time."""
    return (name, fmt_pct(util) + (" (modeled)" if modeled_s is not None else ""),
            fmt_num(power_w, "W"), fmt_num(energy_j, "J"),
            "n/a" if mem_b is None else fmt_num(mem_b, "B"),
            "-" if modeled_s is None else fmt_s(modeled_s))


class LiveView:
    """rich.live.Live around :func:`render`; the monitor thread feeds it snapshots."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.live import Live

        self.console = console or Console()
        self._live = Live(console=self.console, refresh_per_second=4, transient=False)

    def start(self) -> None:
        self._live.start()

    def update(self, snap: Snapshot) -> None:
        self._live.update(render(snap), refresh=True)

    def stop(self) -> None:
        self._live.stop()
