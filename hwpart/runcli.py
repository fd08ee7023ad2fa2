"""``hwpart run`` and ``hwpart devices``: load, plan, run a pipeline, report.

The command: it reads the model and the plan, runs the engine
(:mod:`hwpart.runtime`) with a monitor and the online calibration, and prints
the report (:mod:`hwpart.report`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hwpart.errors import HwpartError, PlanError
from hwpart.graph import LayerGraph
from hwpart.monitor import (
    Monitor,
)
from hwpart.partition import Plan, unit_kind
from hwpart.report import build_report, print_summary
from hwpart.runtime import DEFAULT_CAPACITY, run_model


def run_command(model_spec: str, input_shape: str | tuple[int, ...], plan_path: str | None = None,
                auto: bool = False, samples: int = 2000, batch: int | None = None,
                report_path: str | None = None, live: bool | None = None,
                metrics_path: str | None = None, *, interval_s: float | None = None, seed: int = 0,
                threads: int | None = None, capacity: int = DEFAULT_CAPACITY,
                warmup_batches: int = 2, console: Any = None, fpga: str | None = None,
                overlay: str | None = None, pin: str | None = None,
                costs_path: str | None = None, save_costs: str | None = None,
                adapt: bool = False, scenario: str | None = None,
                timeline: str | None = None, margin: float | None = None,
                settle_s: float | None = 1.0, objective: str = "throughput",
                min_throughput: float | None = None, key: str | None = None) -> dict[str, Any]:
    """``hwpart run``: load, plan (file or --auto), run N seeded random samples, report.

    The run calibrates its plan as it goes (:mod:`hwpart.calibration`): the summary
    shows the calibrated prediction beside the raw one, and ``save_costs`` writes the
    calibrated cost table (``costs_path`` is the table a ``--plan`` was made from; with
    ``--auto`` it replaces profiling).

    ``fpga`` (sim / board / auto / remote://HOST:PORT) and ``overlay`` (a bundle
    folder) select what FPGA stages run on; with ``auto`` planning, the overlay's
    RMs are the only layer groups the FPGA is offered. A remote FPGA is a board
    agent (``hwpart board serve``) reached with the CURVE key file ``key``; when
    the bundle has no measured link yet, it is measured first (the planner
    prices the network crossing with it).

    Prints a summary and returns the report dict (also written to
    ``report_path``); every figure printed is in it. Raises HwpartError
    subclasses for anything the user can fix; KeyboardInterrupt after a clean
    shutdown of the pipeline.
    """
    from rich.console import Console

    from hwpart.graph import load_graph

    console = console or Console()
    if samples < 1:
        raise HwpartError(f"--samples must be >= 1, got {samples}")
    lg = load_graph(model_spec, input_shape)
    manifest = None
    if fpga is not None or overlay is not None or key is not None:
        from hwpart.devices.fpga import configure

        configure(fpga, overlay, key)
        _measure_link_if_missing(overlay, console)
    if overlay is not None and (auto or costs_path):
        from hwpart.overlay import load_manifest

        manifest = load_manifest(overlay)
    if pin and not auto:
        raise HwpartError("--pin places layers for --auto planning; with --plan, edit the plan")
    if save_costs and plan_path and not costs_path:
        raise HwpartError("--save-costs with --plan needs --costs TABLE.json, the cost table "
                          "the plan was made from")
    plan, plan_source, table = _get_plan(lg, plan_path, auto, batch, manifest, pin, threads,
                                         costs_path, objective, min_throughput)
    if auto:
        _say_why(plan, console)
    if plan_path and table is not None and any(s.predicted_s is None for s in plan.stages):
        from hwpart.costs import price_plan  # a hand-made plan: priced as the solver would

        plan = price_plan(lg, plan, table, batch, overlay=manifest)
        plan_source += f" (priced with {costs_path})"
    batch = batch or plan.batch or 1
    if batch < 1:
        raise HwpartError(f"--batch must be >= 1, got {batch}")
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((samples, *lg.input_shape), generator=gen)
    is_tty = console.is_terminal
    use_live = is_tty if live is None else live
    if interval_s is None:  # the NPM decides on intervals: detection within 0.5 s needs short ones
        interval_s = 0.1 if (adapt or scenario) else 0.5
    monitor = Monitor(interval_s=interval_s, jsonl=metrics_path, live=use_live, console=console)
    from hwpart.calibration import Calibrator

    calibrator = Calibrator(plan)
    monitor.subscribe(calibrator.update)
    progress = None
    if not use_live and is_tty:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        progress = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                            transient=True)
    on_output = None
    if progress is not None:
        task = progress.add_task("running", total=samples)

        def on_output(done: int) -> None:
            progress.update(task, completed=done)

        progress.start()
    adaptive = None
    try:
        if adapt or scenario:
            adaptive = _run_adaptive(lg, plan, table, manifest, batch, samples, threads,
                                     monitor, adapt, scenario, seed, warmup_batches, margin,
                                     settle_s, console)
            result = adaptive.result
        else:
            result = run_model(lg, plan, x, batch=batch, threads=threads, monitor=monitor,
                               capacity=capacity, warmup_batches=warmup_batches,
                               on_output=on_output)
    finally:
        if progress is not None:
            progress.stop()
        if monitor.running:
            monitor.stop()
    if adaptive is not None and adaptive.npm is not None:  # the stages it ended with
        plan, calibrator = adaptive.npm.plan, adaptive.npm.cal
    calibrator.update(result.snapshot)
    report = build_report(model_spec, lg, plan, plan_source, result, calibrator, seed=seed,
                          threads=threads, warmup_batches=warmup_batches, capacity=capacity)
    print_summary(report, console)
    if adaptive is not None:
        from hwpart.npm.report import adaptive_report, print_adaptive

        report["adaptive"] = adaptive_report(adaptive, list(monitor.history), timeline,
                                             scenario)
        print_adaptive(report["adaptive"], console)
    if save_costs:
        from hwpart.calibration import calibrate_table

        assert table is not None
        calibrate_table(table, plan, calibrator).save(save_costs)
        console.print(f"calibrated cost table written to {save_costs}")
    if report_path:
        Path(report_path).parent.mkdir(parents=True, exist_ok=True)
        import json

        Path(report_path).write_text(json.dumps(report, indent=2) + "\n")
        console.print(f"report written to {report_path}")
    return report


def _run_adaptive(lg: LayerGraph, plan: Plan, table: Any, manifest: Any, batch: int,
                  samples: int, threads: int | None, monitor: Monitor, adapt: bool,
                  scenario: str | None, seed: int, warmup_batches: int, margin: float | None,
                  settle_s: float | None, console: Any) -> Any:
    """``--adapt``/``--scenario``: the plan as runs of segments, the NPM (unless only a
    scenario was asked for: the static baseline), the scenario's events on the run's
    clock (:mod:`hwpart.npm.session`)."""
    from hwpart.costs import auto_devices, auto_table, build_problem, overlay_board
    from hwpart.npm.loop import NpmConfig
    from hwpart.npm.scenario import load_scenario
    from hwpart.npm.session import run_adaptive
    from hwpart.runtime import devices_for

    sc = load_scenario(scenario) if scenario else None
    board = overlay_board(manifest) if manifest is not None else None
    # every device the NPM may move layers to: the plan's, the CPU, the FPGA of an overlay
    kinds = sorted({unit_kind(s.unit) for s in plan.stages} | {"cpu"}
                   | ({"fpga"} if manifest is not None else set()))
    if table is None:  # the NPM prices moves on measured costs: profile the host now
        table = auto_table(lg, batch, auto_devices(board, manifest), board, manifest,
                           threads=threads)
    problem = build_problem(lg, table, batch, kinds, board, overlay=manifest)
    devices = devices_for(kinds, cpu_threads=threads)
    seconds = sc.end_s + 2.0 if sc is not None else float("inf")
    if sc is not None:
        console.print(f"scenario [bold]{sc.name}[/]: {sc.description}")
    cfg = NpmConfig(settle_s=settle_s or None)  # 0: departures alone trigger the NPM
    if margin is not None:
        cfg.margin = margin
    return run_adaptive(lg, plan, problem, devices, batch=batch, seconds=seconds,
                        monitor=monitor, scenario=sc, adapt=adapt, seed=seed, config=cfg,
                        warmup_batches=warmup_batches,
                        max_items=None if sc is not None else max(1, samples // batch))


def _say_why(plan: Plan, console: Any) -> None:
    """Why each device got its layers: the objective, and each stage's predicted share."""
    from hwpart.monitor import fmt_num, fmt_s

    pred = plan.predicted or {}
    goal = {"throughput": "the most samples/s", "latency": "the least time per sample",
            "energy": "the least energy per sample"}.get(plan.objective, plan.objective)
    extra = (f", {pred['energy_j_per_sample'] * 1e6:.1f} µJ/sample"
             if pred.get("energy_j_per_sample") is not None else "")
    console.print(f"plan ({plan.solver}): {goal} -- predicted "
                  f"{fmt_num(pred.get('throughput_sps'), 'samples/s')}{extra}; "
                  f"bottleneck {plan.bottleneck or 'n/a'}")
    for st in plan.stages:
        layers = [n for n in st.nodes if not n.startswith(("input", "output"))]
        if layers:
            console.print(f"  {st.name} on {st.unit}: {layers[0]}..{layers[-1]} "
                          f"({len(layers)} layers), {fmt_s(st.predicted_s)}/sample predicted")


def _get_plan(lg: LayerGraph, plan_path: str | None, auto: bool,
              batch: int | None, overlay: Any = None, pin: str | None = None,
              threads: int | None = None, costs_path: str | None = None,
              objective: str = "throughput",
              min_throughput: float | None = None) -> tuple[Plan, str, Any]:
    """(plan, where it came from, the cost table it rests on when there is one)."""
    from hwpart.costs import CostTable, auto_devices, auto_plan, auto_table, parse_pins

    if plan_path and auto:
        raise HwpartError("give either --plan or --auto, not both")
    table = CostTable.load(costs_path) if costs_path else None
    if table is not None:
        table.check_matches(lg, str(costs_path))
    if plan_path:
        plan = Plan.load(plan_path)
        if plan.model != lg.name:
            raise PlanError(f"{plan_path} is a plan for model {plan.model!r}, not {lg.name!r}; "
                            "re-run `hwpart partition` for this model")
        return plan, str(plan_path), table
    if auto:
        b = batch or 1
        devices = auto_devices(None, overlay)
        if table is None:  # profiled at the run's thread count: a layer's time depends on it
            table = auto_table(lg, b, devices, None, overlay, threads=threads)
        return auto_plan(lg, batch=b, objective=objective, devices=devices, table=table,
                         overlay=overlay, pins=parse_pins(lg, pin),
                         min_throughput=min_throughput), "auto", table
    raise HwpartError("no plan: give --plan PLAN.json (from `hwpart partition`) or --auto")


def devices_command(console: Any = None) -> list[tuple[str, bool, str]]:
    """``hwpart devices``: every registered device kind, whether it is usable here, and why."""
    from rich.console import Console
    from rich.table import Table

    from hwpart.devices import available_devices

    console = console or Console()
    rows = available_devices()
    t = Table(title="devices")
    t.add_column("kind")
    t.add_column("available")
    t.add_column("details")
    for kind, ok, reason in rows:
        t.add_row(kind, "yes" if ok else "no", reason)
    console.print(t)
    return rows


# --------------------------------------------------------------------------- CLI wiring


def register_cli(sub: Any) -> None:
    """Add ``hwpart run`` and ``hwpart devices`` (called by ``hwpart.cli`` for its plugins)."""
    pr = sub.add_parser("run", help="run a model as a monitored pipeline on its plan's devices")
    pr.add_argument("model", help="path/to/file.py:factory or package.module:factory")
    pr.add_argument("--input-shape", required=True,
                    help="per-sample input shape without the batch dim, e.g. 16 or 3,32,32")
    how = pr.add_mutually_exclusive_group()
    how.add_argument("--plan", help="plan JSON from `hwpart partition`")
    how.add_argument("--auto", action="store_true", help="profile and partition now")
    pr.add_argument("--samples", type=int, default=2000, help="random samples to run (seeded)")
    pr.add_argument("--batch", type=int, help="micro-batch size (default: the plan's)")
    pr.add_argument("--report", help="write every figure of the summary to this JSON file")
    pr.add_argument("--metrics", help="JSONL log, one monitor snapshot per interval")
    pr.add_argument("--interval", type=float, help="monitor interval, s (default 0.5; 0.1 "
                                                    "with --adapt/--scenario)")
    pr.add_argument("--no-live", action="store_true", help="no live table (off when piped)")
    pr.add_argument("--threads", type=int, help="intra-op threads per CPU stage")
    pr.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY,
                    help="items each inter-stage channel holds")
    pr.add_argument("--warmup", type=int, default=2, help="unmeasured warm-up batches")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--fpga", type=_fpga_arg, metavar="{sim,board,auto,remote://HOST:PORT}",
                    help="FPGA target (default: $HWPART_FPGA, else auto = a board if PYNQ "
                         "finds one, else the simulated board); remote://HOST:PORT: a board "
                         "agent (hwpart board serve), with --key")
    pr.add_argument("--key", help="with --fpga remote://...: the host's CURVE key "
                                  "(client.key_secret from `hwpart board keys`; the agent's "
                                  "server.key beside it) (default: $HWPART_FPGA_KEY)")
    pr.add_argument("--overlay", help="overlay bundle for FPGA stages (default: "
                                      "$HWPART_OVERLAY); with --auto, the FPGA is offered "
                                      "only its RMs' layer groups")
    pr.add_argument("--pin", help="with --auto: place layers yourself, e.g. _0-_3=fpga; the "
                                  "solver places the rest")
    pr.add_argument("--costs", help="cost table JSON (from `hwpart profile`): with --auto it "
                                    "replaces profiling; with --plan, the table the plan was "
                                    "made from (for --save-costs)")
    pr.add_argument("--save-costs", help="write the cost table calibrated by this run "
                                         "(measured/predicted per stage) to this JSON file")
    pr.add_argument("--adapt", action="store_true",
                    help="live re-allocation: the NPM moves layers between the CPU, the GPU "
                         "and FPGA slots while the model runs")
    pr.add_argument("--scenario", help="inject events at set times: a YAML file or the name "
                                       "of one in host/scenarios (without --adapt: the "
                                       "static baseline under the same events)")
    pr.add_argument("--timeline", help="with --adapt/--scenario: draw throughput, p99 latency "
                                       "and device load over time, with every event, to "
                                       "this PNG")
    pr.add_argument("--margin", type=float, help="predicted throughput gain a move must "
                                                 "promise (default 1.2)")
    pr.add_argument("--settle", type=float, default=1.0, metavar="S",
                    help="with --adapt: once every stage has run S seconds, decide once on "
                         "the measured costs (default 1; 0: only departures trigger moves)")
    pr.add_argument("--objective", choices=("throughput", "latency", "energy"),
                    default="throughput", help="with --auto: what the plan optimises "
                                               "(energy: power measured, declared or "
                                               "estimated, labelled)")
    pr.add_argument("--min-throughput", type=float,
                    help="with --auto: a floor every plan must keep, samples/s")
    pr.add_argument("--cluster", type=_cluster_arg, metavar="{local-ray[:N],ray://HOST:PORT,"
                    "HOST:PORT}", help="run the stages on a Ray cluster (hwpart[cluster]): "
                    "each stage in an actor on a node with its device (docs/cluster.md)")
    pr.set_defaults(func=_cmd_run)
    pd = sub.add_parser("devices", help="list device kinds, whether usable here, and why")
    pd.add_argument("--cluster", type=_cluster_arg, metavar="SPEC",
                    help="list a Ray cluster's nodes, devices and measured links instead")
    pd.set_defaults(func=_cmd_devices)


def _console() -> Any:
    from hwpart.cli import console  # the CLI's console: wide when piped

    return console


def _cluster_arg(value: str) -> str:
    """``--cluster``: checked at parse time (the cluster package imports Ray only to connect)."""
    import argparse

    from hwpart.cluster.env import parse_cluster

    try:
        parse_cluster(value)
    except HwpartError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value.strip()


def _cmd_run(args: Any) -> int:
    if getattr(args, "cluster", None):  # the stages on a Ray cluster (hwpart.cluster)
        from hwpart.cluster.cli import run_on_cluster

        run_on_cluster(args.cluster, args.model, args.input_shape, plan_path=args.plan,
                       auto=args.auto, samples=args.samples, batch=args.batch,
                       report_path=args.report, seed=args.seed, threads=args.threads,
                       capacity=args.capacity, warmup_batches=args.warmup,
                       console=_console(), objective=args.objective, overlay=args.overlay,
                       fpga=args.fpga, adapt=args.adapt, scenario=args.scenario,
                       timeline=args.timeline, margin=args.margin, settle_s=args.settle,
                       interval_s=args.interval, metrics_path=args.metrics)
        return 0
    run_command(args.model, args.input_shape, args.plan, args.auto, args.samples, args.batch,
                args.report, False if args.no_live else None, args.metrics,
                interval_s=args.interval, seed=args.seed, threads=args.threads,
                capacity=args.capacity, warmup_batches=args.warmup, console=_console(),
                fpga=args.fpga, overlay=args.overlay, pin=args.pin, costs_path=args.costs,
                save_costs=args.save_costs, adapt=args.adapt, scenario=args.scenario,
                timeline=args.timeline, margin=args.margin, settle_s=args.settle,
                objective=args.objective,
                min_throughput=args.min_throughput, key=args.key)
    return 0


def _fpga_arg(value: str) -> str:
    """``--fpga``: sim, board, auto or remote://HOST:PORT (checked here, so a typo is a usage
    error, not a failure halfway through a run)."""
    import argparse

    v = value.strip()
    if v.lower() in ("sim", "board", "auto"):
        return v.lower()
    from hwpart.board.client import parse_remote

    try:
        host, port = parse_remote(v)
    except HwpartError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: use sim, board, auto or "
                                         "remote://HOST:PORT") from exc
    return f"remote://{host}:{port}"


def _measure_link_if_missing(overlay: str | None, console: Any) -> None:
    """A remote FPGA (``HWPART_FPGA=remote://...``) whose bundle has no measured link: measure
    it now and write it into the bundle (``hwpart board link`` does the same on demand)."""
    import os

    from hwpart.costs import fpga_is_remote

    if not fpga_is_remote() or overlay is None:
        return
    from hwpart.board.measured import load_measured

    if "link" in load_measured(Path(overlay)):
        return
    from hwpart.board.client import AgentClient
    from hwpart.board.link import measure_and_record

    key = os.environ.get("HWPART_FPGA_KEY")
    if not key:
        raise HwpartError("--fpga remote://HOST:PORT needs --key KEYFILE (the host's "
                          "client.key_secret; `hwpart board keys DIR` makes one)")
    client = AgentClient(os.environ["HWPART_FPGA"], key, os.environ.get("HWPART_FPGA_SERVER_KEY"))
    try:
        fig = measure_and_record(client, overlay)
    finally:
        client.close()
    console.print(f"link to the board agent {client.endpoint}: round trip "
                  f"{fig['rtt_s'] * 1e6:.0f} us, {fig['bandwidth_Bps'] / 1e6:.0f} MB/s "
                  f"(measured now; written to {Path(overlay) / 'measured.json'})")


def _cmd_devices(args: Any) -> int:
    if getattr(args, "cluster", None):
        from hwpart.cluster.cli import devices_on_cluster

        devices_on_cluster(args.cluster, _console())
        return 0
    devices_command(_console())
    return 0
