"""The host CPU as a device: torch eager, a thread count per stage, psutil and RAPL metrics.

Threads. ``torch.set_num_threads`` looks process-global but is not quite: with
torch's OpenMP backend (the CPU wheels) it stores the count in a global default
*and* in the calling OS thread's OpenMP state; a thread that has already run a
parallel op keeps its own count, and a thread that has not yet picks up the
global default on its first op. (Checked on torch 2.13: a worker that sets 1
runs single-threaded while the main thread keeps 2; a fresh thread then starts
with 1.) So a stage's count is applied *inside its worker thread* on its first
run, which gives real per-stage intra-op thread counts, and the process default
is put back on unload so later threads are not surprised. Inter-op threads are
untouched: the pipeline's parallelism comes from its own worker threads.
Summing the stages' counts above the core count oversubscribes; the runtime
does not forbid it (a plan may want it), it only costs throughput.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import torch

from hwpart.devices.base import LoadedStage, Metrics
from hwpart.graph import LayerGraph
from hwpart.stages import Stage

POWERCAP = Path("/sys/class/powercap")


class Rapl:
    """Package energy from Linux RAPL (``intel-rapl:N/energy_uj``), where readable.

    Since 2020 kernels make ``energy_uj`` root-only (a power side channel), so an
    unprivileged run usually gets ``None`` and the reason, never a made-up 0.
    Only top-level package domains are summed: sub-domains (core, dram) are parts
    of their package and would count twice.
    """

    def __init__(self, root: Path = POWERCAP) -> None:
        self.root = root
        self.domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
        self.reason = "" if self.domains else f"no RAPL domains under {root}"
        self._last: dict[Path, int] = {}
        self._wrap: dict[Path, int] = {}
        self._t_last = 0.0
        self.energy_j = 0.0  # accumulated since the first successful read
        self.ok = bool(self.domains)
        if self.ok:
            for d in self.domains:
                try:
                    self._last[d] = self._read(d / "energy_uj")
                    self._wrap[d] = self._read(d / "max_energy_range_uj")
                except (OSError, ValueError) as exc:
                    self.ok = False
                    self.reason = f"{d / 'energy_uj'} not readable ({type(exc).__name__})"
                    break
            self._t_last = time.perf_counter()

    @staticmethod
    def _read(path: Path) -> int:
        return int(path.read_text().strip())

    def sample(self) -> tuple[float | None, float | None]:
        """(average watts since the previous sample, joules since the first) or (None, None)."""
        if not self.ok:
            return None, None
        total_uj = 0
        try:
            for d in self.domains:
                now = self._read(d / "energy_uj")
                delta = now - self._last[d]
                if delta < 0:  # the counter wrapped
                    delta += self._wrap.get(d, 0) or 0
                total_uj += max(delta, 0)
                self._last[d] = now
        except (OSError, ValueError) as exc:
            self.ok = False
            self.reason = f"RAPL read failed ({type(exc).__name__})"
            return None, None
        t = time.perf_counter()
        dt, self._t_last = t - self._t_last, t
        self.energy_j += total_uj / 1e6
        return (total_uj / 1e6 / dt if dt > 0 else None), self.energy_j


class CpuDevice:
    """torch eager on the host. ``threads``: intra-op threads per stage (None: torch's default).

    ``stage_threads`` overrides the count for named stages.
    """

    kind = "cpu"

    def __init__(self, threads: int | None = None, stage_threads: dict[str, int] | None = None,
                 name: str = "cpu", powercap: Path = POWERCAP) -> None:
        self.name = name
        self.threads = threads
        self.stage_threads = dict(stage_threads or {})
        self._process_threads = torch.get_num_threads()
        self._loaded = 0
        self._lock = threading.Lock()
        self._proc = psutil.Process()
        self._proc.cpu_percent(None)  # the first call only starts the measuring interval
        self._ncpu = psutil.cpu_count() or os.cpu_count() or 1
        self._rapl = Rapl(powercap)

    def available(self) -> tuple[bool, str]:
        return True, (f"{self._ncpu} logical cores, torch {torch.__version__} with "
                      f"{self._process_threads} intra-op threads")

    def capabilities(self, lg: LayerGraph) -> set[str]:
        return set(lg.compute_nodes)

    def load(self, stage: Stage) -> LoadedStage:
        threads = self.stage_threads.get(stage.name, self.threads)
        if threads is not None and threads < 1:
            raise ValueError(f"thread count must be >= 1, got {threads}")
        with self._lock:
            self._loaded += 1
        return LoadedStage(stage, self.name, {"threads": threads})

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]:
        n = handle.state["threads"]
        if n is not None and torch.get_num_threads() != n:
            torch.set_num_threads(n)  # this worker thread's count, see the module docstring
        if torch.is_inference_mode_enabled():  # the runtime's workers enter it once
            return handle.stage(env)
        with torch.inference_mode():
            return handle.stage(env)

    def unload(self, handle: LoadedStage) -> None:
        with self._lock:
            self._loaded -= 1
            last = self._loaded == 0
        if last and (self.threads is not None or self.stage_threads):
            torch.set_num_threads(self._process_threads)  # the default for threads not yet started

    def metrics(self) -> Metrics:
        power, energy = self._rapl.sample()
        # CPU time is counted in scheduler ticks: over a short interval the ratio
        # can overshoot the wall time by a tick (seen: 111% on 2 cores). The
        # process cannot use more than every core, so the fraction is capped at 1.
        util = min(1.0, self._proc.cpu_percent(None) / (100.0 * self._ncpu))
        return {
            "util": util,
            "power_w": power,
            "energy_j": energy,
            "mem_used_b": float(self._proc.memory_info().rss),
            "mem_total_b": float(psutil.virtual_memory().total),
        }

    @property
    def power_reason(self) -> str:
        """Why power reads n/a (empty when it is readable)."""
        return "" if self._rapl.ok else self._rapl.reason

