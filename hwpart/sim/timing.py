"""Modeled hardware time of the simulated board, and the pacing of completions to it.

Nothing here measures hardware: every figure is *modeled* from the board file
(``boards/*.yaml``) -- RM cycles at the PL clock, DMA bytes over the declared
bandwidth plus a per-transfer latency, partial bitstream bytes over the
configuration port -- and is labelled so wherever it is reported.

Modeled events are placed on the host's ``perf_counter`` timeline: a transfer
issued at host time ``t`` completes at ``t + modeled duration`` (later if the
engine or the slot is still busy). With pacing on, a DMA's idle bit only rises
once the host clock has reached that time, so host code observes the modeled
hardware speed; waiting for it is waiting for modeled hardware, not a stand-in
for work. With pacing off the completion is visible at once (the C simulation's
own speed), and the modeled figures are still accounted.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from hwpart import timing
from hwpart.boards import Board

#: Longest single sleep while a register read waits for a modeled completion:
#: short enough that a poll loop notices the completion promptly, long enough
#: not to spin a shared CPU.
POLL_SLEEP_S = 200e-6


def pace_default() -> bool:
    """Pacing is on unless ``HWPART_SIM_PACE=0`` (benchmarks of the unpaced compute rate)."""
    return os.environ.get("HWPART_SIM_PACE", "1").strip().lower() not in ("0", "false", "no", "off")


@dataclass
class TransferRecord:
    channel: str  # "mm2s" / "s2mm"
    nbytes: int
    modeled_s: float  # latency + bytes / bandwidth (modeled)
    issued_host_s: float
    done_model_s: float  # when it completes on the modeled timeline
    observed_host_s: float | None = None  # when host code first saw it complete


@dataclass
class TimingModel:
    """Per-board prices, all modeled (see the module docstring): the functions of
    :mod:`hwpart.timing`, which the partitioner prices FPGA stages with too."""

    board: Board
    pace: bool = field(default_factory=pace_default)

    @classmethod
    def from_board(cls, board: Board, pace: bool | None = None) -> TimingModel:
        return cls(board, pace_default() if pace is None else pace)

    def dma_s(self, nbytes: int) -> float:
        return timing.dma_s(self.board, nbytes)

    def rm_s(self, cycles: float) -> float:
        return timing.rm_s(self.board, cycles)

    def pr_s(self, nbytes: int | None = None) -> float:
        return timing.pr_s(self.board, nbytes)


class ModeledLedger:
    """Totals of modeled time and the per-transfer log, for reports and benches."""

    def __init__(self, keep: int = 4096) -> None:
        self._lock = threading.Lock()
        self.keep = keep
        self.transfers: list[TransferRecord] = []
        self.dma_s = 0.0
        self.rm_s = 0.0
        self.pr_s = 0.0
        self.swaps = 0
        self.samples = 0

    def add_transfer(self, rec: TransferRecord) -> None:
        with self._lock:
            self.dma_s += rec.modeled_s
            self.transfers.append(rec)
            if len(self.transfers) > self.keep:
                del self.transfers[: len(self.transfers) - self.keep]

    def add_rm(self, seconds: float, samples: int) -> None:
        with self._lock:
            self.rm_s += seconds
            self.samples += samples

    def add_pr(self, seconds: float) -> None:
        with self._lock:
            self.pr_s += seconds
            self.swaps += 1

    def summary(self) -> dict[str, float]:
        """Totals, keys say *modeled*: they are never measurements of hardware."""
        with self._lock:
            return {"modeled_dma_s": self.dma_s, "modeled_rm_s": self.rm_s,
                    "modeled_pr_s": self.pr_s, "pr_swaps": float(self.swaps),
                    "rm_samples": float(self.samples)}


#: ``time.sleep`` overshoots by tens of microseconds; the last stretch of a
#: modeled wait shorter than this is spun so completions are not seen late.
SPIN_S = 100e-6


def hold_until(deadline: float) -> None:
    """Sleep, then spin the last :data:`SPIN_S`, until ``deadline`` (modeled hardware time).

    The spin yields the GIL on every turn (``os.sched_yield`` releases it): a bare spin
    keeps it for a whole switch interval (5 ms) whenever another stage's thread wants
    it, and the pipeline's CPU stages would wait on the simulated board's
    clock-watching. Not ``sleep(0)``: that takes the kernel's timer slack, about
    55 us on these hosts, and completions were seen that much late.
    """
    left = deadline - time.perf_counter()
    if left > SPIN_S:
        time.sleep(left - SPIN_S)
    while time.perf_counter() < deadline:
        os.sched_yield()
