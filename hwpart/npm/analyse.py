"""Step 1 of the NPM's seven, "Analyse": which stages and devices departed from their prediction.

Why not read the calibrator's factor: :class:`hwpart.calibration.Calibrator`
follows the devices within about a second (that is its job: decide on what the
devices do now), so a slowdown would soon read as "as predicted". The analyser
instead compares a **fast** view with a **baseline** learned while the run was
steady, and judges a departure only when it lasts:

- *Service ratio* per stage and interval: measured service ÷ the plan's
  ``predicted_s`` (sample-weighted, a ratio of sums as in calibration; service is
  the device's own account, so waiting on locks or queues never reads as slow).
- *Baseline*: a slow exponential average of that ratio (``base_tau_s``, 10 s),
  learned after ``warmup_s`` for ``learn_s`` before anything is judged, and
  frozen while a departure is suspected or active, so a slowdown does not
  become the new normal. fast ÷ baseline is then "measured over the calibrated
  prediction".
- *Fast window*: the last ``window_s`` (0.3 s) of intervals, ratio of sums.
- *Sustained*: a departure **enters** when the fast ratio is ``>= enter`` ×
  baseline (1.5) *and* every interval of the last ``hold_s`` (0.3 s, at least
  two intervals with samples) departed on its own by ``>= exit`` (1.2). The fast
  window alone is not enough: one 10× interval keeps a 0.3 s window above 1.5 for
  0.3 s. It **clears** only when the fast ratio and each interval of ``hold_s``
  are back below ``exit`` -- hysteresis, so a load hovering near ``enter`` gives
  one finding, not a flicker. A stage running faster than predicted by the same
  factors (``<= 1/enter``) is *under-used*: it has room the plan does not know of.

Under-use by starvation is kept modest: a stage is *input-bound* when its busy
share fell to ``idle_enter`` (0.5) of its baseline and its throughput fell with
it, while its input queue is empty (or it is the first stage, fed by the source)
and its output queue is not backed up (a stage blocked by its consumer is not
idle, its consumer is slow); each interval of ``hold_s`` must show it too.

Failures: a device whose probe raised (``Snapshot.device_errors``, immediately),
or a stage that made no progress for ``stall_s`` with items in its input queue
and room in its output queue (judged only after its first progress, so a slow
start -- a GPU warming up -- is not a failure; the first stage has no input queue
to look at and is left to the runtime's error path).

A re-routed stage (its device changed in the snapshot) or a re-planned one
(:meth:`Analyser.replan`) starts learning afresh: its old baseline described
another device.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hwpart.partition import Plan

_EPS = 1e-6  # seconds: intervals add up in floating point


@dataclass
class AnalyseConfig:
    """Thresholds (ratios are fast ÷ baseline) and times, in seconds of the run's clock."""

    enter: float = 1.5
    exit: float = 1.2
    hold_s: float = 0.3
    window_s: float = 0.3
    warmup_s: float = 0.2  # first intervals of a stage: start-up, not steady
    learn_s: float = 0.5  # baseline intervals needed before judging
    base_tau_s: float = 10.0  # baseline time constant: drifts slower than this are absorbed
    idle_enter: float = 0.5  # busy share ÷ its baseline, input-bound
    idle_exit: float = 0.7
    min_busy: float = 0.05  # a stage never busier than this cannot go idle
    stall_s: float = 1.0
    min_evidence: int = 2  # intervals with samples within a hold

    def __post_init__(self) -> None:
        if not self.enter > self.exit > 1.0:
            raise ValueError(f"need enter > exit > 1 (hysteresis), got {self.enter}, {self.exit}")
        if not 0.0 < self.idle_enter < self.idle_exit < 1.0:
            raise ValueError(f"need 0 < idle_enter < idle_exit < 1, got "
                             f"{self.idle_enter}, {self.idle_exit}")
        if self.hold_s <= 0 or self.window_s <= 0 or self.stall_s <= 0:
            raise ValueError("hold_s, window_s and stall_s must be positive")


@dataclass
class Finding:
    """A departure that entered (what :meth:`Analyser.update` returns).

    ``signal`` says what ``ratio`` and ``baseline`` are:
    ``service`` -- measured ÷ predicted service per sample, fast window and baseline
    (raw seconds per sample when the plan has no ``predicted_s``); ``busy`` -- busy
    share, fast and baseline; ``stall``/``probe`` -- None (a failure has no ratio).
    """

    stage: str | None  # None: a device probe failed, whichever stages it runs
    device: str
    kind: str  # overloaded | underused | failed
    ratio: float | None
    baseline: float | None
    since_s: float  # when the departure began (the start of its first interval)
    window_s: float  # what the fast figures covered
    samples: int  # in the fast window
    signal: str = "service"  # service | busy | stall | probe
    t_s: float = 0.0  # when it was found
    predicted_s: float | None = None
    reason: str = ""

    @property
    def departure(self) -> float | None:
        """fast ÷ baseline (None for failures)."""
        if self.ratio is None or not self.baseline:
            return None
        return self.ratio / self.baseline

    @property
    def key(self) -> tuple[str, str]:
        return (self.stage or f"device:{self.device}", self.signal)


@dataclass
class _Interval:
    t_s: float  # end
    dt: float
    n: int  # samples
    service_s: float
    predicted_s: float  # n × predicted per sample (n when the plan has none)
    busy: float


class _Run:
    """A run of consecutive intervals that agree with a condition (None: no evidence either way)."""

    __slots__ = ("start", "evidence")

    def __init__(self) -> None:
        self.start: float | None = None
        self.evidence = 0

    def step(self, t_start: float, verdict: bool | None) -> None:
        if verdict is False:
            self.start, self.evidence = None, 0
        elif verdict is True:
            if self.start is None:
                self.start = t_start
            self.evidence += 1
        # None: an interval without samples neither breaks a run nor starts one

    def held(self, t: float, hold_s: float, min_evidence: int) -> bool:
        return (self.start is not None and t - self.start >= hold_s - _EPS
                and self.evidence >= min_evidence)

    def reset(self) -> None:
        self.start, self.evidence = None, 0


@dataclass
class _Latch:
    """Hysteresis for one (stage, signal): a run to enter, another to clear."""

    on: bool = False
    entering: _Run = field(default_factory=_Run)
    leaving: _Run = field(default_factory=_Run)


@dataclass
class _Stage:
    device: str
    unit: str
    predicted_s: float | None
    seen_s: float = 0.0
    prev_samples: int = 0
    prev_service_s: float = 0.0
    # baselines: decayed sums (see calibration.TAU_S for why sums)
    base_meas: float = 0.0
    base_pred: float = 0.0
    base_busy: float = 0.0  # busy × dt
    base_n: float = 0.0
    base_dt: float = 0.0
    learned_s: float = 0.0
    window: deque[_Interval] = field(default_factory=deque)
    last_progress_s: float | None = None
    latches: dict[str, _Latch] = field(default_factory=dict)

    def latch(self, name: str) -> _Latch:
        return self.latches.setdefault(name, _Latch())

    @property
    def base_ratio(self) -> float | None:
        return self.base_meas / self.base_pred if self.base_pred > 0 else None

    @property
    def base_busy_share(self) -> float | None:
        return self.base_busy / self.base_dt if self.base_dt > 0 else None

    @property
    def base_tput(self) -> float | None:
        return self.base_n / self.base_dt if self.base_dt > 0 else None


class Analyser:
    """Feed it every monitor snapshot in order; it keeps per-stage state between them."""

    def __init__(self, plan: Plan | None = None, config: AnalyseConfig | None = None) -> None:
        self.config = config or AnalyseConfig()
        self._predicted: dict[str, float | None] = {}
        self._stages: dict[str, _Stage] = {}
        self._active: dict[tuple[str, str], Finding] = {}
        self.last_cleared: list[Finding] = []  # findings the latest update cleared
        if plan is not None:
            self.replan(plan)

    # ------------------------------------------------------------------ public

    @property
    def active(self) -> list[Finding]:
        """Departures that entered and have not cleared, oldest first."""
        return sorted(self._active.values(), key=lambda f: (f.t_s, f.key))

    def replan(self, plan: Plan) -> None:
        """A new plan (a move was made): stages whose unit or prediction changed relearn."""
        new = {s.name: (s.predicted_s or None) for s in plan.stages}
        units = {s.name: s.unit for s in plan.stages}
        for name in list(self._stages):
            st = self._stages[name]
            if name not in new or new[name] != st.predicted_s or units[name] != st.unit:
                self._forget(name)
        self._predicted = new

    def departure(self, stage: str) -> float | None:
        """The stage's fast service ratio ÷ its baseline now (None before it has both)."""
        st = self._stages.get(stage)
        if st is None or st.base_ratio is None:
            return None
        fast = self._fast(st)[0]
        return None if fast is None else fast / st.base_ratio

    def update(self, snap: Any) -> list[Finding]:
        """One snapshot (``hwpart.monitor.Snapshot`` or alike); returns findings that entered."""
        cfg = self.config
        t, dt = float(snap.t_s), float(snap.interval_s)
        new: list[Finding] = []
        self.last_cleared = []
        stages = list(snap.stages)
        for i, ss in enumerate(stages):
            nxt = stages[i + 1] if i + 1 < len(stages) else None
            st = self._state(ss)
            service = (ss.service_per_sample_s or 0.0) * ss.samples
            n = ss.samples - st.prev_samples
            dserv = service - st.prev_service_s
            st.prev_samples, st.prev_service_s = ss.samples, service
            if n > 0:
                st.last_progress_s = t
            self._judge_stall(ss, st, nxt, t, new)  # before warm-up: a new route can hang at once
            st.seen_s += dt
            if st.seen_s <= cfg.warmup_s + _EPS or dt <= 0:
                continue
            pred = st.predicted_s
            iv = _Interval(t, dt, n, max(0.0, dserv), n * (pred or 1.0),
                           float(ss.busy or 0.0))
            st.window.append(iv)
            while len(st.window) > 1 and \
                    sum(w.dt for w in st.window) - st.window[0].dt >= cfg.window_s - _EPS:
                st.window.popleft()
            if st.learned_s < cfg.learn_s - _EPS:
                self._learn(st, iv)
                continue
            suspect = False
            suspect |= self._judge_service(ss, st, iv, t, new)
            suspect |= self._judge_idle(ss, st, iv, nxt, t, new)
            if not suspect:
                self._learn(st, iv)
        self._judge_probes(snap, stages, t, new)
        return new

    # ------------------------------------------------------------------ state

    def _state(self, ss: Any) -> _Stage:
        st = self._stages.get(ss.name)
        if st is not None and (st.device != ss.device or ss.samples < st.prev_samples):
            self._forget(ss.name)  # re-routed, or a new run: another device's figures
            st = None
        if st is None:
            st = _Stage(ss.device, ss.unit, self._predicted.get(ss.name))
            st.prev_samples = ss.samples
            st.prev_service_s = (ss.service_per_sample_s or 0.0) * ss.samples
            self._stages[ss.name] = st
        return st

    def _forget(self, name: str) -> None:
        self._stages.pop(name, None)
        for key in [k for k in self._active if k[0] == name]:
            self.last_cleared.append(self._active.pop(key))

    def _learn(self, st: _Stage, iv: _Interval) -> None:
        keep = math.exp(-iv.dt / self.config.base_tau_s)
        if iv.n > 0:
            st.base_meas = keep * st.base_meas + iv.service_s
            st.base_pred = keep * st.base_pred + iv.predicted_s
        st.base_busy = keep * st.base_busy + iv.busy * iv.dt
        st.base_n = keep * st.base_n + iv.n
        st.base_dt = keep * st.base_dt + iv.dt
        if st.base_pred > 0:
            st.learned_s += iv.dt

    @staticmethod
    def _fast(st: _Stage) -> tuple[float | None, float, float, int, float]:
        """(service ratio, busy share, throughput, samples, span) over the fast window."""
        span = sum(w.dt for w in st.window)
        n = sum(w.n for w in st.window)
        pred = sum(w.predicted_s for w in st.window)
        ratio = sum(w.service_s for w in st.window) / pred if n and pred > 0 else None
        busy = sum(w.busy * w.dt for w in st.window) / span if span > 0 else 0.0
        return ratio, busy, (n / span if span > 0 else 0.0), n, span

    # ------------------------------------------------------------------ judges

    def _judge_service(self, ss: Any, st: _Stage, iv: _Interval, t: float,
                       new: list[Finding]) -> bool:
        """Overloaded / under-used by service ratio. Returns whether it is suspect (the
        baseline must not learn from this interval)."""
        cfg = self.config
        base = st.base_ratio
        fast, _, _, n, span = self._fast(st)
        if base is None or fast is None:
            return False
        f = fast / base
        one = (iv.service_s / iv.predicted_s) / base if iv.n > 0 and iv.predicted_s > 0 else None
        start = t - iv.dt
        suspect = False
        for name, kind, up in (("overloaded", "overloaded", True), ("faster", "underused", False)):
            la = st.latch(name)
            # in the direction's own orientation: >1 means departing
            g = f if up else 1.0 / f
            o = None if one is None else (one if up else (1.0 / one if one > 0 else math.inf))
            if not la.on:
                la.entering.step(start, None if o is None else o >= cfg.exit)
                if la.entering.held(t, cfg.hold_s, cfg.min_evidence) and g >= cfg.enter:
                    la.on, la.leaving = True, _Run()
                    fd = Finding(ss.name, ss.device, kind, fast, base, la.entering.start or start,
                                 span, n, "service", t, st.predicted_s,
                                 f"service {f:.2f}x its baseline for "
                                 f"{t - (la.entering.start or start):.2f} s")
                    self._active[fd.key] = fd
                    new.append(fd)
                suspect |= g >= cfg.exit
            else:
                la.leaving.step(start, None if o is None else o < cfg.exit)
                if la.leaving.held(t, cfg.hold_s, cfg.min_evidence) and g < cfg.exit:
                    la.on = False
                    la.entering.reset()
                    self._clear((ss.name, "service"), kind)
                suspect = True
        return suspect

    def _judge_idle(self, ss: Any, st: _Stage, iv: _Interval, nxt: Any, t: float,
                    new: list[Finding]) -> bool:
        """Input-bound: busy and throughput fell while the input is empty and the output
        is not backed up."""
        cfg = self.config
        base_busy, base_tput = st.base_busy_share, st.base_tput
        if not base_busy or base_busy < cfg.min_busy or not base_tput:
            return False
        _, busy, tput, n, span = self._fast(st)
        starved = (ss.queue_depth is None or ss.queue_depth == 0) and not _backed_up(nxt)
        one = (starved and iv.busy <= cfg.idle_exit * base_busy
               and iv.n / iv.dt <= cfg.idle_exit * base_tput)
        la = st.latch("idle")
        start = t - iv.dt
        if not la.on:
            la.entering.step(start, one)
            if (la.entering.held(t, cfg.hold_s, cfg.min_evidence)
                    and busy <= cfg.idle_enter * base_busy and tput <= cfg.idle_exit * base_tput):
                la.on, la.leaving = True, _Run()
                fd = Finding(ss.name, ss.device, "underused", busy, base_busy,
                             la.entering.start or start, span, n, "busy", t, st.predicted_s,
                             f"input-bound: busy {busy:.0%} (baseline {base_busy:.0%}), "
                             f"{tput:.0f}/s (baseline {base_tput:.0f}/s), input queue empty")
                self._active[fd.key] = fd
                new.append(fd)
            return busy <= cfg.idle_exit * base_busy
        la.leaving.step(start, busy > cfg.idle_exit * base_busy or not starved)
        if la.leaving.held(t, cfg.hold_s, 1):
            la.on = False
            la.entering.reset()
            self._clear((ss.name, "busy"), "underused")
        return True

    def _judge_stall(self, ss: Any, st: _Stage, nxt: Any, t: float,
                     new: list[Finding]) -> None:
        cfg = self.config
        la = st.latch("stall")
        if st.last_progress_s is None:
            return
        stuck = t - st.last_progress_s
        waiting = ss.queue_depth is not None and ss.queue_depth > 0 and not _full(nxt)
        if not la.on and stuck >= cfg.stall_s - _EPS and waiting:
            la.on = True
            fd = Finding(ss.name, ss.device, "failed", None, None, st.last_progress_s, stuck, 0,
                         "stall", t, st.predicted_s,
                         f"no progress for {stuck:.2f} s with {ss.queue_depth} items queued")
            self._active[fd.key] = fd
            new.append(fd)
        elif la.on and stuck == 0.0:  # progress again
            la.on = False
            self._clear((ss.name, "stall"), "failed")

    def _judge_probes(self, snap: Any, stages: list[Any], t: float,
                      new: list[Finding]) -> None:
        errors: dict[str, str] = dict(getattr(snap, "device_errors", None) or {})
        for dev, why in errors.items():
            key = (f"device:{dev}", "probe")
            if key in self._active:
                continue
            on = [s.name for s in stages if s.device == dev]
            fd = Finding(None, dev, "failed", None, None, t - float(snap.interval_s),
                         float(snap.interval_s), 0, "probe", t, None,
                         f"probe failed ({why})" + (f"; runs {', '.join(on)}" if on else ""))
            self._active[fd.key] = fd
            new.append(fd)
        for key in [k for k in self._active if k[1] == "probe"]:
            if key[0].removeprefix("device:") not in errors:
                self.last_cleared.append(self._active.pop(key))

    def _clear(self, key: tuple[str, str], kind: str) -> None:
        fd = self._active.get(key)
        if fd is not None and fd.kind == kind:
            self.last_cleared.append(self._active.pop(key))


def _backed_up(nxt: Any) -> bool:
    """The stage's output queue (the next stage's input) is at least half full."""
    if nxt is None or nxt.queue_depth is None or not nxt.queue_capacity:
        return False
    return nxt.queue_depth >= max(1, nxt.queue_capacity // 2)


def _full(nxt: Any) -> bool:
    if nxt is None or nxt.queue_depth is None or not nxt.queue_capacity:
        return False
    return nxt.queue_depth >= nxt.queue_capacity
