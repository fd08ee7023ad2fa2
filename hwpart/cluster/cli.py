"""``hwpart run --cluster SPEC`` and ``hwpart devices --cluster SPEC``.

The run: connect (or start ``local-ray[:N]``), find the nodes and their devices,
measure the links, profile this machine's CPU (every node's CPU is priced like it
until the run measures otherwise), plan over the cluster (``--auto``) or check
the given plan's units against it, run -- static, or with the NPM (``--adapt``)
-- and print the usual report with the cluster's nodes and links beside it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from hwpart.cluster.env import Session, connect
from hwpart.cluster.topology import ClusterInfo, discover, measure
from hwpart.errors import HwpartError, PlanError


def cluster_info(session: Session) -> ClusterInfo:
    return measure(discover())


def print_cluster(info: ClusterInfo, console: Any) -> None:
    from rich.table import Table

    from hwpart.monitor import fmt_s

    t = Table(title="cluster nodes" + (" (simulated: every node on this machine, on loopback)"
                                       if info.simulated else ""))
    for c in ("node", "address", "units", "cores", "call round trip"):
        t.add_column(c)
    for n in info.nodes:
        units = ", ".join(n.unit(k) if k != "fpga" else f"{n.unit('fpga')}0..{n.slots - 1} "
                          f"({', '.join(n.boards)})" for k in n.kinds())
        t.add_row(n.name + (" (here)" if n.driver else ""), n.address, units,
                  ",".join(map(str, n.cores)) if n.cores else "-",
                  fmt_s(info.call_s.get(n.name)))
    console.print(t)
    if info.links:
        lt = Table(title="links between nodes (measured now, actor to actor)")
        for c in ("nodes", "round trip", "bandwidth"):
            lt.add_column(c)
        for key, link in sorted(info.links.items(), key=lambda kv: sorted(kv[0])):
            a, b = sorted(key)
            lt.add_row(f"{a} - {b}", fmt_s(link.rtt_s), f"{link.bandwidth_Bps / 1e6:.0f} MB/s")
        console.print(lt)


def devices_on_cluster(spec: str, console: Any = None) -> dict[str, Any]:
    """``hwpart devices --cluster SPEC``: every node, its devices, the links between them."""
    from rich.console import Console

    console = console or Console()
    session = connect(spec)
    try:
        info = cluster_info(session)
        print_cluster(info, console)
        return info.to_json()
    finally:
        session.close()


def run_on_cluster(spec: str, model_spec: str, input_shape: str | tuple[int, ...], *,
                   plan_path: str | None, auto: bool, samples: int, batch: int | None,
                   report_path: str | None, seed: int, threads: int | None, capacity: int,
                   warmup_batches: int, console: Any, objective: str, overlay: str | None,
                   fpga: str | None, adapt: bool, scenario: str | None,
                   timeline: str | None, margin: float | None, settle_s: float | None,
                   interval_s: float | None, metrics_path: str | None) -> dict[str, Any]:
    """``hwpart run ... --cluster SPEC`` (module docstring); returns the report dict."""
    from hwpart.calibration import Calibrator
    from hwpart.cluster.plan import check_units, cluster_devices, cluster_plan, cluster_problem
    from hwpart.cluster.run import make_cluster, run_adaptive, run_static
    from hwpart.costs import auto_table, build_problem, overlay_board
    from hwpart.graph import load_graph
    from hwpart.monitor import Monitor
    from hwpart.partition import Plan, unit_kind
    from hwpart.report import build_report, print_summary

    if samples < 1:
        raise HwpartError(f"--samples must be >= 1, got {samples}")
    if bool(plan_path) == bool(auto):
        raise HwpartError("--cluster needs --auto (plan over the cluster's nodes) or --plan "
                          "PLAN.json (made for this cluster: units such as cpu_b)")
    if objective == "energy":
        raise HwpartError("--objective energy is not priced across a cluster yet: use "
                          "throughput or latency")
    lg = load_graph(model_spec, input_shape)
    manifest = board = None
    if overlay is not None:
        from hwpart.overlay import load_manifest

        manifest = load_manifest(overlay)
        board = overlay_board(manifest)
    given = Plan.load(plan_path) if plan_path else None
    if given is not None and given.model != lg.name:
        raise PlanError(f"{plan_path} is a plan for model {given.model!r}, not {lg.name!r}")
    batch = batch or (given.batch if given else None) or 1
    if batch < 1:
        raise HwpartError(f"--batch must be >= 1, got {batch}")
    session = connect(spec)
    try:
        info = cluster_info(session)
        print_cluster(info, console)
        kinds = ["cpu"] + (["fpga"] if manifest is not None else [])
        table = auto_table(lg, batch, kinds, board, manifest, threads=threads)
        base = build_problem(lg, table, batch, kinds, board, overlay=manifest)
        if given is not None:
            check_units(given, info)
            plan, source = given, str(plan_path)
            problem = cluster_problem(base, info, batch)
        else:
            plan, problem = cluster_plan(lg, base, info, batch, objective,
                                         board.name if board else None)
            source = "auto (cluster)"
        console.print(f"plan ({plan.solver}): " + ", ".join(
            f"{s.name} on {s.unit}" for s in plan.stages))
        fpga_opts = {"overlay": str(overlay), "fpga": fpga or "sim"} if overlay else None
        cl = make_cluster(info, cluster_devices(info, fpga=fpga_opts, threads=threads))
        if interval_s is None:
            interval_s = 0.1 if (adapt or scenario) else 0.5
        monitor = Monitor(interval_s=interval_s, jsonl=metrics_path, live=False,
                          console=console)
        calibrator = Calibrator(plan)
        monitor.subscribe(calibrator.update)
        adaptive = None
        if adapt or scenario:
            from hwpart.npm.loop import NpmConfig
            from hwpart.npm.scenario import load_scenario

            sc = load_scenario(scenario) if scenario else None
            cfg = NpmConfig(settle_s=settle_s or None)
            if margin is not None:
                cfg.margin = margin
            adaptive = run_adaptive(lg, plan, problem, cl, batch=batch,
                                    seconds=sc.end_s + 2.0 if sc else float("inf"),
                                    monitor=monitor, scenario=sc, adapt=adapt, seed=seed,
                                    config=cfg, warmup_batches=warmup_batches,
                                    max_items=None if sc else max(1, samples // batch))
            result = adaptive.result
            if adaptive.npm is not None:
                plan, calibrator = adaptive.npm.plan, adaptive.npm.cal
        else:
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn((samples, *lg.input_shape), generator=gen)
            result = run_static(lg, plan, cl, x, batch=batch, monitor=monitor,
                                capacity=capacity, warmup_batches=warmup_batches)
        if monitor.running:
            monitor.stop()
        calibrator.update(result.snapshot)
        report = build_report(model_spec, lg, plan, source, result, calibrator, seed=seed,
                              threads=threads, warmup_batches=warmup_batches,
                              capacity=capacity)
        report["cluster"] = {**info.to_json(), "spec": spec,
                             "recomputed_values": cl.replacements.recomputed,
                             "nodes_lost": [d.node.name for d in cl.devices.values()
                                            if d.down]}
        print_summary(report, console)
        used = sorted({unit_kind(s["unit"]) for s in report.get("stages", [])})
        console.print(f"cluster: stages on {', '.join(used) or '-'}"
                      + (" -- simulated cluster (every node on this machine)"
                         if info.simulated else ""))
        if adaptive is not None:
            from hwpart.npm.report import adaptive_report, print_adaptive

            report["adaptive"] = adaptive_report(adaptive, list(monitor.history), timeline,
                                                 scenario)
            print_adaptive(report["adaptive"], console)
        if report_path:
            Path(report_path).parent.mkdir(parents=True, exist_ok=True)
            Path(report_path).write_text(json.dumps(report, indent=2, default=str) + "\n")
            console.print(f"report written to {report_path}")
        return report
    finally:
        session.close()
