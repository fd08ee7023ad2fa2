"""The run report: every figure of a run as JSON data, and the summary printed from it.

Apart from the engine (:mod:`hwpart.runtime`), which never prints: the
re-allocator drives the engine with no console in it, and reads figures from the
monitor, not from text.
"""

from __future__ import annotations

import platform
from typing import Any

import torch

from hwpart.energy import print_run_energy, run_energy
from hwpart.graph import LayerGraph
from hwpart.monitor import (
    LatencySummary,
    device_row,
    device_summary,
    fmt_num,
    fmt_pct,
    fmt_s,
)
from hwpart.partition import Plan
from hwpart.runtime import RunResult


def build_report(model_spec: str, lg: LayerGraph, plan: Plan, plan_source: str,
                 result: RunResult, calibrator: Any = None, **settings: Any) -> dict[str, Any]:
    """Every figure the summary shows, as plain JSON data.

    Like with like: a stage's *service* time is what its device spent on it -- on a
    simulated board the board's modeled timeline, which is what the plan predicts --
    and the host's wall time in the device call is shown apart, with the time spent
    waiting for locks and queues.
    """
    from hwpart.calibration import stage_prediction

    snap = result.snapshot
    wall = result.wall_s
    predicted_s = {st.name: st.predicted_s for st in plan.stages}
    stages = []
    for s in snap.stages:
        busy_s = (s.latency_total.mean_s or 0.0) * s.latency_total.count
        stages.append({
            "name": s.name, "unit": s.unit, "device": s.device, "batches": s.batches,
            "samples": s.samples, "busy_s": busy_s,
            "busy": busy_s / wall if wall > 0 else None,
            "per_sample_s": busy_s / s.samples if s.samples else None,
            "service_per_sample_s": s.service_per_sample_s,
            "service_source": "modeled (simulated board)" if s.service_modeled else "measured",
            "predicted_per_sample_s": predicted_s.get(s.name),
            "lock_wait_s": s.lock_wait_s, "queue_wait_s": s.queue_wait_s,
            "queue_high_water": s.queue_high_water, "queue_capacity": s.queue_capacity,
            "latency_per_batch": _lat(s.latency_total),
        })
    pred = plan.predicted or {}
    # the measured side at stage level, from service times: the same shape as the plan's
    measured = stage_prediction(plan_like(plan, {st["name"]: st["service_per_sample_s"]
                                                 for st in stages}))
    calibrated = calibrator.prediction() if calibrator is not None else {}
    rows = [("throughput_sps (wall)", pred.get("throughput_sps"),
             calibrated.get("throughput_sps"), result.throughput_sps),
            ("throughput_sps (from service times)", pred.get("throughput_sps"),
             calibrated.get("throughput_sps"), measured["throughput_sps"]),
            ("latency_s (per sample, service)", pred.get("latency_s"),
             calibrated.get("latency_s"), measured["latency_s"]),
            ("bottleneck_s (per sample)", pred.get("bottleneck_s"),
             calibrated.get("bottleneck_s"), measured["bottleneck_s"])]
    for st in stages:
        if st["predicted_per_sample_s"] is not None:
            f = calibrator.factors.get(st["name"]) if calibrator is not None else None
            rows.append((f"{st['name']} on {st['unit']} (per sample)",
                         st["predicted_per_sample_s"],
                         st["predicted_per_sample_s"] * f.ratio if f else None,
                         st["service_per_sample_s"]))
    return {
        "model": model_spec, "input_shape": list(lg.input_shape),
        "plan": {"source": plan_source, "solver": plan.solver, "objective": plan.objective,
                 "batch": plan.batch,
                 "stages": [{"name": s.name, "unit": s.unit, "nodes": len(s.nodes)}
                            for s in plan.stages]},
        "samples": result.samples, "batch": result.batch, "batches": snap.batches, "wall_s": wall,
        "throughput_sps": result.throughput_sps,
        "end_to_end_per_batch": _lat(snap.end_to_end_total),
        "stages": stages,
        "devices": device_summary(result.history or [snap]),
        "energy": run_energy(  # per device, labelled
            plan, stages, device_summary(result.history or [snap]), wall, result.samples),
        "pr_setup_s": {"predicted": pred.get("pr_setup_s"),
                       "per_batch": pred.get("pr_per_batch_s")},
        "predicted_vs_measured": [
            {"figure": f, "predicted": p, "calibrated": c, "measured": m,
             "measured_over_predicted": (m / p) if (p and m is not None) else None}
            for f, p, c, m in rows],
        "calibration": calibrator.to_json() if calibrator is not None else {},
        "settings": settings,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "torch_threads": torch.get_num_threads(),
                        "machine": platform.machine()},
    }


def plan_like(plan: Plan, per_stage_s: dict[str, float | None]) -> Plan:
    """A copy of ``plan`` whose stage predictions are ``per_stage_s`` (measured figures
    priced the way the plan's are, for a like-with-like comparison)."""
    import copy

    out = copy.deepcopy(plan)
    for st in out.stages:
        st.predicted_s = per_stage_s.get(st.name)
    return out


def _lat(s: LatencySummary) -> dict[str, Any]:
    return {"count": s.count, "mean_s": s.mean_s, "p50_s": s.p50_s, "p95_s": s.p95_s,
            "p99_s": s.p99_s, "max_s": s.max_s}


def print_summary(report: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    e2e = report["end_to_end_per_batch"]
    console.print(
        f"[bold]{report['model']}[/]: {report['samples']} samples in {report['batches']} "
        f"batches of {report['batch']}, {report['wall_s']:.3f} s, "
        f"[bold]{fmt_num(report['throughput_sps'], 'samples/s')}[/]; end-to-end per batch "
        f"p50 {fmt_s(e2e['p50_s'])}, p95 {fmt_s(e2e['p95_s'])}, p99 {fmt_s(e2e['p99_s'])}")
    t = Table(title="stages (time in the device per batch)")
    for col in ("stage", "unit", "device", "batches", "p50", "p95", "p99", "mean", "busy",
                "queue max"):
        t.add_column(col, justify="left" if col in ("stage", "unit", "device") else "right")
    for s in report["stages"]:
        lat = s["latency_per_batch"]
        t.add_row(s["name"], s["unit"], s["device"], str(s["batches"]), fmt_s(lat["p50_s"]),
                  fmt_s(lat["p95_s"]), fmt_s(lat["p99_s"]), fmt_s(lat["mean_s"]),
                  fmt_pct(s["busy"]), "source" if s["queue_capacity"] is None else
                  f"{s['queue_high_water']}/{s['queue_capacity']}")
    console.print(t)
    d = Table(title="devices (over the run)")
    for col in ("device", "util (mean)", "power (mean)", "energy", "memory (peak)",
                "modeled busy / sample"):
        d.add_column(col, justify="left" if col == "device" else "right")
    for name, m in report["devices"].items():
        modeled = m.get("modeled_busy_s")
        d.add_row(*device_row(name, m.get("util_mean"), m.get("power_w_mean"),
                              m.get("energy_j"), m.get("mem_used_peak_b"),
                              None if modeled is None else modeled / max(1, report["samples"])))
    console.print(d)
    if any(m.get("modeled_busy_s") is not None for m in report["devices"].values()):
        console.print("[dim]simulated devices: 'modeled' figures come from the board's timing "
                      "model (RM cycles, DMA bandwidth, PR swap), not from hardware; a stage's "
                      "service time there is the board's modeled time, its host time is the "
                      "simulator's own[/]")
    w = Table(title="stage service time vs waiting (per sample; totals for waits)")
    for col in ("stage", "unit", "predicted", "service", "service source", "host in device",
                "lock wait", "queue wait"):
        w.add_column(col, justify="left" if col in ("stage", "unit", "service source")
                     else "right")
    for s in report["stages"]:
        w.add_row(s["name"], s["unit"], fmt_s(s["predicted_per_sample_s"]),
                  fmt_s(s["service_per_sample_s"]), s["service_source"],
                  fmt_s(s["per_sample_s"]), fmt_s(s["lock_wait_s"]), fmt_s(s["queue_wait_s"]))
    console.print(w)
    pr = report.get("pr_setup_s") or {}
    setup, each = pr.get("predicted"), pr.get("per_batch")
    p = Table(title="predicted (plan) vs measured" + (
        f" -- plus PR at load {fmt_s(setup)} (modeled)" if setup else "") + (
        f", PR {fmt_s(each)} every batch: stages share a slot" if each else ""))
    for col in ("figure", "predicted", "calibrated", "measured", "measured/predicted"):
        p.add_column(col, justify="left" if col == "figure" else "right")
    for row in report["predicted_vs_measured"]:
        f = fmt_num if row["figure"].startswith("throughput") else fmt_s
        ratio = row["measured_over_predicted"]
        p.add_row(row["figure"], f(row["predicted"]), f(row["calibrated"]), f(row["measured"]),
                  "n/a" if ratio is None else f"{ratio:.2f}x")
    console.print(p)
    print_run_energy(report.get("energy"), console)
