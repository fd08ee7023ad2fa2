"""Online calibration: the cost table learns from the monitor while a plan runs.

Why: a profile measures layers in isolation (or a board model prices them), and
a run differs -- caches, thread hand-offs, a neighbour on the same cores, a
board slower than its datasheet. The re-allocator must decide on what the
devices do *now*, so every stage keeps a factor, measured service time over
predicted, per device and stage, smoothed over the monitor's intervals and
weighted by the samples each interval saw. Service time is the device's own
account (the board's modeled timeline on a simulated board, see
:class:`hwpart.monitor.StageSnapshot`), so waiting on locks or queues never
reads as a slow device.

A calibrated prediction re-prices the plan's stages with their factors; a
calibrated cost table scales every layer of a stage by that stage's factor, so
``hwpart partition --costs`` can plan on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from hwpart.monitor import Snapshot
from hwpart.partition import Plan, unit_kind
from hwpart.timing import FPGA_RESOURCE

#: Time constant of the smoothing, seconds: the factor is measured service over
#: predicted service of the samples of about the last ``TAU_S``, older ones decaying
#: as ``exp(-age / TAU_S)``. Sums, not a mean of ratios, so an interval counts by
#: the device time it held, and one with few samples cannot swing the factor alone.
TAU_S = 1.0


@dataclass
class Factor:
    """measured / predicted service time of one stage, smoothed, with what it rests on."""

    stage: str
    device: str
    ratio: float
    samples: int = 0
    intervals: int = 0
    modeled: bool = False  # the measured side is a simulated board's modeled time
    measured_s: float = 0.0  # decayed sums behind ``ratio`` (see TAU_S)
    predicted_s: float = 0.0


#: What a factor measures. ``service``: the device's own account of a batch (the
#: board's modeled timeline on a simulated board): what predictions are checked against
#: and what a calibrated cost table carries to another run. ``occupancy``: the time the
#: stage's worker is held by the device call, lock waits left out -- at least the service,
#: plus whatever the host spends around it (PYNQ's driver calls; on a simulated board the
#: simulator's own work). That is what bounds the pipeline's throughput in *this* run, so
#: it is what the re-allocator decides on.
SIGNALS = ("service", "occupancy")


@dataclass
class Calibrator:
    """Feed it monitor snapshots (``Monitor.subscribe(cal.update)`` and the final one)."""

    plan: Plan
    signal: str = "service"  # see SIGNALS
    factors: dict[str, Factor] = field(default_factory=dict)
    _prev: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage -> (samples, measured)

    def __post_init__(self) -> None:
        if self.signal not in SIGNALS:
            raise ValueError(f"calibration signal {self.signal!r}: use one of {SIGNALS}")

    def update(self, snap: Snapshot) -> None:
        predicted = {s.name: s.predicted_s for s in self.plan.stages}
        for st in snap.stages:
            pred = predicted.get(st.name)
            if not pred or st.service_per_sample_s is None or not st.samples:
                continue
            service = st.service_per_sample_s * st.samples  # cumulative, seconds
            if self.signal == "occupancy":
                service = max(service, st.host_s - st.lock_wait_s)
            s0, v0 = self._prev.get(st.name, (0, 0.0))
            self._prev[st.name] = (st.samples, service)
            n = st.samples - s0
            if n <= 0:
                continue
            f = self.factors.setdefault(st.name, Factor(st.name, unit_kind(st.unit), 1.0))
            keep = math.exp(-max(0.0, getattr(snap, "interval_s", TAU_S)) / TAU_S)
            f.measured_s = keep * f.measured_s + (service - v0)
            f.predicted_s = keep * f.predicted_s + n * pred
            f.ratio = f.measured_s / f.predicted_s
            f.samples += n
            f.intervals += 1
            f.modeled = st.service_modeled and self.signal == "service"

    def ratio(self, stage: str) -> float:
        f = self.factors.get(stage)
        return 1.0 if f is None else f.ratio

    def prediction(self) -> dict[str, float]:
        """The plan's figures with every stage's time scaled by its factor, stage by stage
        (:func:`stage_prediction`)."""
        return stage_prediction(self.plan, {s.name: self.ratio(s.name) for s in self.plan.stages})

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(f) for name, f in self.factors.items()}


def stage_prediction(plan: Plan, ratios: dict[str, float] | None = None) -> dict[str, float]:
    """Throughput, bottleneck and latency per sample, stage by stage.

    Each stage is a worker thread, so each is a resource of its own: its time
    (scaled by ``ratios``) plus the pipeline's own per-stage cost
    (``plan.predicted``'s ``overhead_first_s`` for the first, ``overhead_stage_s``
    for the others; FPGA stages are priced on the board's timeline and pay none).
    All FPGA stages also share the one DMA engine (:mod:`hwpart.timing`), and the
    plan's shared links (other than the FPGA's, inside its stages) stay as planned.

    Why threads and not the planner's one-CPU-unit view: calibrated stage times are
    measured in context, with whatever the stages' threads take from each other on
    the shared cores already in them; adding them up would count that twice.
    """
    ratios = ratios or {}
    pred = plan.predicted or {}
    first = float(pred.get("overhead_first_s", 0.0))
    other = float(pred.get("overhead_stage_s", 0.0))
    loads: dict[str, float] = {}
    engine = 0.0
    latency = 0.0
    for i, st in enumerate(plan.stages):
        t = (st.predicted_s or 0.0) * ratios.get(st.name, 1.0)
        if unit_kind(st.unit) == FPGA_RESOURCE:
            engine += t
            loads[st.name] = t
        else:
            loads[st.name] = t + (first if i == 0 else other)
        latency += loads[st.name]
    if engine:
        loads[FPGA_RESOURCE] = engine
    links = {k: v for k, v in (plan.link_load_s or {}).items()
             if FPGA_RESOURCE not in k.split("-")}  # the FPGA's are in its stages
    latency += sum(links.values())
    worst = max([*loads.values(), *links.values()], default=0.0)
    return {"throughput_sps": 1.0 / worst if worst > 0 else float("inf"),
            "bottleneck_s": worst, "latency_s": latency}


def calibrate_table(table: Any, plan: Plan, cal: Calibrator) -> Any:
    """A copy of ``table`` with each stage's layers scaled by the stage's factor on its
    device, and the factors recorded in ``table.env['calibration']`` (with their sources)."""
    from hwpart.costs import CostTable

    times = {n: {d: dict(b) for d, b in by.items()} for n, by in table.times.items()}
    applied: dict[str, Any] = {}
    for st in plan.stages:
        f = cal.factors.get(st.name)
        if f is None:
            continue
        dev = unit_kind(st.unit)
        for n in st.nodes:
            by_batch = times.get(n, {}).get(dev)
            if by_batch:
                for b in by_batch:
                    by_batch[b] *= f.ratio
        applied[st.name] = {**asdict(f), "nodes": list(st.nodes)}
    env = dict(table.env)
    env["calibration"] = {"stages": applied, "from_plan": plan.solver,
                          "note": "per-stage measured/predicted service time from a run; "
                                  "modeled=true means a simulated board's modeled time"}
    return CostTable(model=table.model, input_shape=list(table.input_shape),
                     batch_sizes=list(table.batch_sizes), times=times, source=dict(table.source),
                     fpga=dict(table.fpga), env=env)
