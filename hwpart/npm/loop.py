"""The NPM's control loop: monitor snapshots in, moves out, every decision in the log.

Small on purpose: each step is a function of its own module (``analyse``,
``candidates``, ``evaluate`` + ``select``, ``migrate`` + ``reroute`` +
``verify``); the loop only feeds snapshots through them, keeps the layout, the
cooldown and the move under verification, and writes the event log. It runs on
a thread of its own: a migration may wait for a partial reconfiguration or a
drain, and the monitor must keep sampling meanwhile.

Faults come the other way, from a pipeline worker (``Pipeline.on_fault``): the
failed device is taken out, the failing stage gets a CPU route at once (every
item already routed to the failed one is retried on it, nothing lost or
reordered), and the loop re-plans without that device; when the device is back
(``device.down`` is false again: the FPGA's shell reloaded) the loop may use it
again.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hwpart.calibration import Calibrator
from hwpart.devices import Device
from hwpart.npm.analyse import AnalyseConfig, Analyser
from hwpart.npm.candidates import Fabric, Layout, Place, candidates, stages_of
from hwpart.npm.evaluate import evaluate_moves, layout_plan, move_cost, select, unit_factors
from hwpart.npm.events import EventLog
from hwpart.npm.migrate import Watch, migrate, reroute, shadow_check, verify, window_rate
from hwpart.partition import Plan, unit_kind, unit_slots
from hwpart.runtime import Pipeline, Route
from hwpart.stages import Segments, compose


@dataclass
class NpmConfig:
    margin: float = 1.2  # a move must promise this throughput ratio (hysteresis)
    cooldown_s: float = 1.0  # no new decision this long after a move or a rejection
    verify_s: float = 0.6  # the window measured after a move
    verify_skip_batches: int = 2  # the new route's first batches are not in that window...
    verify_open_s: float = 10.0  # ...unless they take longer than this
    before_s: float = 0.6  # the window it is compared with
    horizon_s: float = 5.0  # what a move's gain is counted over, against its cost
    tol: float = 0.05  # shadow check: max abs error against the float model
    taboo_s: float = 30.0  # a rolled-back layout is not tried again for this long
    # once every stage has been measured this long, decide once on the measured costs:
    # a plan made on profiles (or a board's model) may be wrong from the start, and no
    # departure from a baseline would ever show it. None: only departures trigger.
    settle_s: float | None = 1.0
    analyse: AnalyseConfig | None = None


class Npm:
    """See the module docstring. ``start()`` after the pipeline is built, ``stop()`` after."""

    def __init__(self, pipe: Pipeline, segs: Segments, layout: Layout, problem: Any,
                 fabric: Fabric, devices: Mapping[str, Device], log: EventLog, *,
                 probe: Any = None, reference: Any = None, config: NpmConfig | None = None,
                 plain: Sequence[str] = ("cpu",)) -> None:
        self.pipe, self.segs, self.problem, self.fabric = pipe, segs, problem, fabric
        self.devices, self.log, self.cfg = dict(devices), log, config or NpmConfig()
        self.probe, self.reference, self.plain = probe, reference, tuple(plain)
        self.layout = layout
        self.plan = self.plan_of(layout)
        self.cal = Calibrator(self.plan, signal="occupancy")
        self.analyser = Analyser(self.plan, self.cfg.analyse)
        self.down: set[str] = set()
        self.watch: Watch | None = None
        self.quiet_until = 0.0
        self.history: list[Any] = []
        # layouts a verify window rolled back: not tried again for ``taboo_s`` (measured
        # worse than predicted once; the same prediction would pick them again)
        self.taboo: dict[Layout, float] = {}
        # unit -> (factor, when): what each unit was last measured at, so a layout left
        # behind (moved off, rolled back) is priced on what it did, not on the bare
        # profile, until the memory is ``taboo_s`` old and the unit may be tried again
        self.memory: dict[str, tuple[float, float]] = {}
        self.settled = self.cfg.settle_s is None
        self._q: queue.Queue[Any] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()  # layout changes: the loop and fault callbacks
        pipe.on_fault = self.on_fault

    # ------------------------------------------------------------------ wiring

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hwpart-npm", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._q.put(None)
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def on_snapshot(self, snap: Any) -> None:
        """The monitor's subscriber: hand the snapshot to the loop's thread."""
        self._q.put(snap)

    def _run(self) -> None:
        while True:
            snap = self._q.get()
            if snap is None:
                return
            try:
                self.step(snap)
            except Exception as exc:  # the run goes on; the log says why the NPM did not
                self.log.add("rejected", f"NPM step failed: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ the loop

    def plan_of(self, layout: Layout) -> Plan:
        """The layout as a plan with per-stage predictions (raw costs: what calibration
        and analysis compare measurements with)."""
        return layout_plan(layout, self.segs, self.fabric, self.problem)

    def step(self, snap: Any) -> None:
        """One snapshot through the loop (the steps in order)."""
        self.history.append(snap)
        self.cal.update(snap)
        findings = self.analyser.update(snap)  # step 1
        for f in findings:
            self.log.add("detected", f.reason or f"{f.kind} {f.stage or f.device}",
                         device=f.device, stage=f.stage,
                         details={"kind": f.kind, "ratio": f.ratio, "baseline": f.baseline,
                                  "departure": f.departure, "signal": f.signal})
        for kind, dev in list(self.devices.items()):  # a device taken out may be back
            if kind in self.down and not getattr(dev, "down", False):
                self.down.discard(kind)
                self.log.add("returned", f"{kind} is usable again", device=kind)
                findings = findings or ["returned"]  # re-plan with it
        if self.watch is not None:
            self._verify(snap)
            return
        if not self.settled and self._measured_for(self.cfg.settle_s or 0.0):
            self.settled = True
            self.log.add("detected", "warm-up over: deciding on measured costs (" + ", ".join(
                f"{n} x{f.ratio:.2f}" for n, f in sorted(self.cal.factors.items())) + ")",
                details={"kind": "settle", "signal": self.cal.signal})
            self.decide(snap)
            return
        # new findings, or ones still active once a cooldown is over: decide (again)
        if (findings or self.analyser.active) and snap.t_s >= self.quiet_until:
            self.decide(snap)

    def _measured_for(self, seconds: float) -> bool:
        """Whether every busy stage of the layout has calibrated intervals over ``seconds``."""
        need = [f"stage{i}" for i, p in enumerate(self.layout) if not p.empty]
        per = self.history[-1].interval_s if self.history else 0.0
        return all((f := self.cal.factors.get(n)) is not None and f.intervals * per >= seconds
                   for n in need)

    def decide(self, snap: Any) -> None:
        """Steps 2-4, then 5-6 for the selected move."""
        self.settled = True  # any decision prices the layout on measured costs
        with self._lock:
            moves = [m for m in candidates(self.layout, self.segs, self.fabric,  # step 2
                                           self.plain, self.down)
                     if self.taboo.get(m.layout, -1.0) < snap.t_s]
            if not moves:
                self._reject(snap, "no legal move")
                return
            ratios = {name: f.ratio for name, f in self.cal.factors.items()}
            slot_rm = self._slot_rms()
            t_now, priced = evaluate_moves(moves, self.layout, self.segs, self.fabric,  # 3
                                           self.problem, ratios, slot_rm,
                                           horizon_s=self.cfg.horizon_s,
                                           prior=self._remembered(snap.t_s))
            best = select(priced, self.cfg.margin)  # step 4
            if best is None:
                top = max(priced, key=lambda p: p.gain)
                self._reject(snap, f"no move gains x{self.cfg.margin:g}: best {top.move.why} "
                             f"x{top.gain:.2f}")
                return
            self.log.add("decided", best.move.why, stage=best.move.stage,
                         predicted_gain=best.gain,
                         details={"kind": best.move.kind, "cost_s": best.cost_s,
                                  "swaps": best.swaps, "break_first": best.break_first,
                                  "now_sps": t_now, "predicted_sps": best.throughput_sps})
            self.apply(best.move.layout, best.break_first, best.gain, best.move.kind, snap)

    def apply(self, layout: Layout, break_first: bool, gain: float, kind: str,
              snap: Any) -> bool:
        """Steps 5-6 (and the shadow check of 7): move to ``layout``; True when switched."""
        with self._lock:
            before = window_rate(self.history, snap.t_s, self.cfg.before_s)
            stages = stages_of(layout, self.segs)
            mig = migrate(self.pipe, stages, self.devices, break_first)  # step 5
            if self.probe is not None and self.reference is not None:
                ok, err = shadow_check(self.segs.staged, mig.routes,
                                       [s.name for s in stages], self.probe, self.reference,
                                       self.cfg.tol)
                if not ok:
                    self.pipe.discard(mig.routes)
                    if mig.paused:
                        self.pipe.resume()
                    self._reject(snap, f"shadow check failed: max error {err:.3g} > "
                                       f"{self.cfg.tol:g}")
                    return False
                self.log.add("verified", f"shadow check: max error {err:.3g} within "
                                         f"{self.cfg.tol:g}")
            boundary, version, down = reroute(self.pipe, mig)  # step 6
            previous, self.layout = self.layout, layout
            self._replan(layout)
            self.log.add("swapped", f"{kind}: " + ", ".join(
                f"stage{i} {p.unit}" for i, p in enumerate(layout) if not p.empty),
                predicted_gain=gain,
                details={"boundary": boundary, "version": version, "downtime_s": down,
                         "load_s": mig.load_s, "break_before_make": mig.paused})
            self.watch = Watch(snap.t_s, before, previous, gain, kind,
                               from_seq=boundary + self.cfg.verify_skip_batches)
            return True

    def _verify(self, snap: Any) -> None:
        """Step 7, the measured window: roll back a move that made things worse."""
        w = self.watch
        assert w is not None
        opened = (self.pipe.delivered_seq >= w.from_seq
                  or snap.t_s - w.t_switch > self.cfg.verify_open_s)  # a hung route is judged
        if snap.t_s > w.t_switch and opened and snap.throughput_sps is not None:
            w.after.append((snap.interval_s, snap.throughput_sps))
        verdict = verify(w, self.cfg.verify_s)
        if verdict is None:
            return
        self.watch = None
        self.quiet_until = snap.t_s + self.cfg.cooldown_s
        rate = w.rate
        detail = {"before_sps": w.before_sps, "after_sps": rate,
                  "predicted_gain": w.predicted_gain}
        self._remember(snap.t_s)  # what the new layout did in its window
        if verdict == "rolled_back":  # (a rollback is never watched: see below)
            self.log.add("rolled_back", f"throughput {rate:,.0f}/s after the move vs "
                         f"{w.before_sps:,.0f}/s before: moving back", details=detail)
            self.taboo[self.layout] = snap.t_s + self.cfg.taboo_s
            self.apply(w.previous, self._busy_slots_change(w.previous), 1.0, "rollback", snap)
            self.watch = None  # a rollback is not itself rolled back
            self.quiet_until = snap.t_s + 2 * self.cfg.cooldown_s
        elif verdict == "recovered":
            self.log.add("recovered", f"throughput {rate:,.0f}/s, was {w.before_sps:,.0f}/s",
                         details=detail)
        else:
            self.log.add("verified", f"after the move {rate:,.0f}/s, before {w.before_sps:,.0f}/s:"
                         " kept", details=detail)

    # ------------------------------------------------------------------ faults

    def on_fault(self, name: str, route: Route, exc: BaseException, seq: int) -> Route | None:
        """``Pipeline.on_fault``: take the device out, give the stage the CPU at once."""
        kind = unit_kind(route.handle.stage.unit)
        with self._lock:
            self.down.add(kind)
            self.log.add("fault", f"{route.device.name} failed at batch {seq}: "
                         f"{type(exc).__name__}: {exc}", device=kind, stage=name)
            i = int(name.removeprefix("stage"))
            p = self.layout[i]
            new = list(self.layout)
            new[i] = Place("cpu", p.first, p.last)
            st = compose(name, "cpu", self.segs.segments[p.first:p.last])
            rep = self.pipe.load(st, self.devices["cpu"])
            self.layout = tuple(new)
            self._replan(self.layout)
            self.log.add("swapped", f"fault: {name} to the cpu, its in-flight items retried "
                         "there", stage=name, details={"from": route.device.name})
            return rep

    # ------------------------------------------------------------------ helpers

    def _remember(self, t_s: float) -> None:
        """Keep what the current layout's units measure, for when they are left behind."""
        ratios = {name: f.ratio for name, f in self.cal.factors.items()}
        used = {u for i, p in enumerate(self.layout) if not p.empty and f"stage{i}" in ratios
                for u in ([f"fpga{k}" for k in unit_slots(p.unit)] or [p.unit])}
        for u, f in unit_factors(self.layout, ratios, self.segs, self.fabric,
                                 self.problem).items():
            if u in used:  # measured now, not filled in for an idle slot
                self.memory[u] = (f, t_s)

    def _remembered(self, t_s: float) -> dict[str, float]:
        self._remember(t_s)
        return {u: f for u, (f, t) in self.memory.items() if t_s - t < self.cfg.taboo_s}

    def _replan(self, layout: Layout) -> None:
        self.plan = self.plan_of(layout)
        self.analyser.replan(self.plan)
        old = self.cal
        self.cal = Calibrator(self.plan, signal="occupancy")
        for st in self.plan.stages:  # unchanged stages keep what they learned
            f = old.factors.get(st.name)
            if f is not None and f.device == unit_kind(st.unit) and any(
                    o.name == st.name and o.unit == st.unit and o.nodes == st.nodes
                    for o in old.plan.stages):
                self.cal.factors[st.name] = f

    def _reject(self, snap: Any, why: str) -> None:
        self.log.add("rejected", why)
        self.quiet_until = snap.t_s + self.cfg.cooldown_s

    def _slot_rms(self) -> list[str | None]:
        fpga = self.devices.get("fpga")
        return [s.rm for s in getattr(fpga, "_slots", [])]

    def _busy_slots_change(self, layout: Layout) -> bool:
        return move_cost(self.layout, layout, self.segs, self.fabric, self.problem,
                         self._slot_rms(), 0.0)[2]
