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

from dataclasses import asdict, dataclass, field
from typing import Any

from hwpart.monitor import Snapshot
from hwpart.partition import Plan, unit_kind
from hwpart.timing import FPGA_RESOURCE

#: Weight of the newest interval in the smoothed factor, per 1,000 samples it saw:
#: a busy interval moves the factor more than a nearly empty one.
ALPHA_PER_KSAMPLE = 0.5


@dataclass
class Factor:
    """measured / predicted service time of one stage, smoothed, with what it rests on."""

    stage: str
    device: str
    ratio: float
    samples: int = 0
    intervals: int = 0
    modeled: bool = False  # the measured side is a simulated board's modeled time


@dataclass
class Calibrator:
    """Feed it monitor snapshots (``Monitor.subscribe(cal.update)`` and the final one)."""

    plan: Plan
    factors: dict[str, Factor] = field(default_factory=dict)
    _prev: dict[str, tuple[int, float]] = field(default_factory=dict)  # stage -> (samples, service)

    def update(self, snap: Snapshot) -> None:
        predicted = {s.name: s.predicted_s for s in self.plan.stages}
        for st in snap.stages:
            pred = predicted.get(st.name)
            if not pred or st.service_per_sample_s is None or not st.samples:
                continue
            service = st.service_per_sample_s * st.samples  # cumulative, seconds
            s0, v0 = self._prev.get(st.name, (0, 0.0))
            self._prev[st.name] = (st.samples, service)
            n = st.samples - s0
            if n <= 0:
                continue
            ratio = (service - v0) / n / pred
            f = self.factors.get(st.name)
            if f is None:
                self.factors[st.name] = Factor(st.name, unit_kind(st.unit), ratio, n, 1,
                                               st.service_modeled)
                continue
            a = min(1.0, ALPHA_PER_KSAMPLE * n / 1000.0)
            f.ratio += a * (ratio - f.ratio)
            f.samples += n
            f.intervals += 1
            f.modeled = st.service_modeled

    def ratio(self, stage: str) -> float:
        f = self.factors.get(stage)
        return 1.0 if f is None else f.ratio

    def prediction(self) -> dict[str, float]:
        """The plan's figures with every stage's time scaled by its factor.

        The plan's own unit and link loads are kept, so what no stage's service time
        covers (the pipeline's per-batch overhead, transfers on shared links) stays
        as predicted; each stage adds ``(factor - 1) x its predicted time`` to its
        unit's load -- all FPGA stages to the one DMA engine (:mod:`hwpart.timing`).
        A plan without unit loads (made by hand) is priced at stage level.
        """
        ratios = {s.name: self.ratio(s.name) for s in self.plan.stages}
        if not self.plan.unit_load_s:
            return stage_prediction(self.plan, ratios)
        loads = dict(self.plan.unit_load_s)
        links = dict(self.plan.link_load_s or {})
        fpga = [u for u in loads if unit_kind(u) == FPGA_RESOURCE]
        if fpga:  # the engine: every slot and every DMA crossing
            loads[FPGA_RESOURCE] = sum(loads.pop(u) for u in fpga) + sum(
                links.pop(k) for k in list(links) if FPGA_RESOURCE in k.split("-"))
        latency = float(self.plan.predicted.get("latency_s", 0.0))
        for st in self.plan.stages:
            delta = (ratios[st.name] - 1.0) * (st.predicted_s or 0.0)
            key = FPGA_RESOURCE if unit_kind(st.unit) == FPGA_RESOURCE else st.unit
            loads[key] = loads.get(key, 0.0) + delta
            latency += delta
        worst = max([*loads.values(), *links.values()], default=0.0)
        return {"throughput_sps": 1.0 / worst if worst > 0 else float("inf"),
                "bottleneck_s": worst, "latency_s": latency}

    def to_json(self) -> dict[str, Any]:
        return {name: asdict(f) for name, f in self.factors.items()}


def stage_prediction(plan: Plan, ratios: dict[str, float] | None = None) -> dict[str, float]:
    """Throughput, bottleneck and latency per sample from the plan's stage predictions."""
    ratios = ratios or {}
    loads: dict[str, float] = {}
    latency = 0.0
    for st in plan.stages:
        t = (st.predicted_s or 0.0) * ratios.get(st.name, 1.0)
        key = FPGA_RESOURCE if unit_kind(st.unit) == FPGA_RESOURCE else st.unit
        loads[key] = loads.get(key, 0.0) + t
        latency += t
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
