"""The pipeline runtime: a plan's stages on their devices, one worker thread per stage.

Threads, not processes: every device call that matters (torch ops, CUDA
launches, DMA waits) releases the GIL, so stages overlap, and tensors move
between stages by reference. A worker takes an item from its input channel,
asks the routing table which device runs its stage *for that sequence number*,
runs it, records the time and pushes the item on.

Channels sit only *between* stages: the first stage pulls micro-batches from the
source itself (so it pulls only when it has room -- that is the backpressure
that reaches the source) and the last stage hands results to the ordered
collector itself. A thread hand-off costs tens of microseconds under the GIL;
a one-stage plan therefore has none, and a k-stage plan has k-1 per batch.

Stopping: the end of input closes the first channel and each worker closes the
next one when its input is drained. A failure anywhere (a device raising, the
collector finding a gap, Ctrl-C in the main thread, which only waits) aborts
*every* channel, which wakes every blocked thread; the threads are then joined
with a timeout and are daemons, so a device call that never returns cannot keep
the process alive.
"""

from __future__ import annotations

import platform
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwpart.devices import Device, LoadedStage, get_device, unit_kind
from hwpart.energy import print_run_energy, run_energy
from hwpart.errors import DeviceError, HwpartError, PlanError
from hwpart.graph import LayerGraph
from hwpart.monitor import (
    LatencySummary,
    Monitor,
    Snapshot,
    device_row,
    device_summary,
    fmt_num,
    fmt_pct,
    fmt_s,
)
from hwpart.partition import Plan, manual_plan
from hwpart.stages import Stage, StagedModel, split
from hwpart.streams import (
    Channel,
    ChannelClosed,
    Item,
    OrderedCollector,
    RoutingTable,
    micro_batches,
)

#: Items each channel holds: enough that a stage rarely waits on a neighbour's jitter,
#: few enough that memory stays a handful of batches per stage.
DEFAULT_CAPACITY = 4


@dataclass(frozen=True)
class Route:
    """Where one stage runs: the device and its loaded handle."""

    device: Device
    handle: LoadedStage


@dataclass
class RunResult:
    """The outputs, one per micro-batch in sequence order, and the figures of the run.

    Outputs are produced under ``torch.inference_mode``: read them freely, but
    ``clone()`` one before modifying it in place outside inference mode.
    """

    outputs: list[Any]
    snapshot: Snapshot  # the monitor's final snapshot
    wall_s: float  # first item out of the source to last item at the sink
    samples: int
    batch: int
    history: list[Snapshot] = field(default_factory=list)  # this run's snapshots, final included

    @property
    def throughput_sps(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def latency(self) -> LatencySummary:
        """End-to-end time per micro-batch, source to sink (queueing included)."""
        return self.snapshot.end_to_end_total

    def output(self) -> Any:
        """The per-batch outputs joined along the batch dimension."""
        if not self.outputs:
            raise ValueError("the run produced no outputs (no samples went in)")
        return _cat(self.outputs)


def _cat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim=0)
    if isinstance(first, (list, tuple)):
        return type(first)(_cat([p[i] for p in parts]) for i in range(len(first)))
    if isinstance(first, dict):
        return {k: _cat([p[k] for p in parts]) for k in first}
    return parts


# --------------------------------------------------------------------------- the engine


@dataclass
class _Run:
    """The state of one run, shared by its worker threads."""

    items: Iterator[Item]
    base: int  # first sequence number of this run
    collector: OrderedCollector
    on_output: Callable[[int], None] | None
    issued: int = 0  # written by stage 0 only
    outputs: list[Any] = field(default_factory=list)  # written by the last stage only
    error: BaseException | None = None
    stopping: bool = False
    t_end: float | None = None
    done: threading.Event = field(default_factory=threading.Event)


class Pipeline:
    """Stages loaded on their devices, runnable many times; unloads on :meth:`close`.

    ``devices`` maps a plan unit (``cpu``, ``gpu``, ``fpga0``) or a device kind
    to a device. ``routing`` maps stage name -> :class:`Route`; swap it (at a
    sequence boundary) to move a stage to another loaded handle mid-run.
    """

    def __init__(self, staged: StagedModel, devices: Mapping[str, Device], *,
                 capacity: int = DEFAULT_CAPACITY, monitor: Monitor | None = None,
                 join_timeout_s: float = 10.0) -> None:
        if not staged.stages:
            raise PlanError("the plan has no stage with computation in it")
        self.staged = staged
        self.capacity = capacity
        self.monitor = monitor if monitor is not None else Monitor(interval_s=None)
        self.join_timeout_s = join_timeout_s
        self._handles: list[Route] = []
        self._stuck: list[threading.Thread] = []  # workers that outlived the join time-out
        routes: dict[str, Route] = {}
        try:
            for stage in staged.stages:
                dev = resolve_device(stage, devices)
                routes[stage.name] = self.load(stage, dev)
        except BaseException:
            self.close()
            raise
        self.routing = RoutingTable(routes)
        self.channels: list[Channel] = []
        self._err_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.next_seq = 0  # sequence numbers continue across runs, so routing stays unambiguous

    def load(self, stage: Stage, device: Device) -> Route:
        """Load ``stage`` on ``device``; the pipeline unloads it on close (also for re-routes)."""
        try:
            handle = device.load(stage)
        except Exception as exc:
            raise DeviceError(f"stage {stage.name!r} on {device.name}: loading failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        route = Route(device, handle)
        self._handles.append(route)
        return route

    def close(self) -> None:
        if any(th.is_alive() for th in self._stuck):
            # a device call that never returned still uses its handle: unloading it
            # underneath would crash that call; the handles go with the process
            return
        handles, self._handles = self._handles, []
        for r in reversed(handles):
            try:
                r.device.unload(r.handle)
            except Exception:  # unloading is best effort; the run's own error matters more
                pass

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ running

    def run(self, inputs: torch.Tensor | Sequence[torch.Tensor], batch: int,
            on_output: Callable[[int], None] | None = None) -> RunResult:
        """Run every sample of ``inputs`` (dim 0) through the stages in micro-batches of ``batch``."""
        tensors = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
        n = int(tensors[0].shape[0])
        items = micro_batches(tensors, batch)
        return self.run_items(items, batch=batch, total_samples=n, on_output=on_output)

    def run_items(self, items: Iterable[Item], *, batch: int = 1, total_samples: int | None = None,
                  on_output: Callable[[int], None] | None = None) -> RunResult:
        """Run items whose payloads are the model's input tuples (the generic entry).

        Items are renumbered from :attr:`next_seq` (a pipeline's sequence numbers
        never restart, so a route swapped at a boundary means one thing).
        ``on_output(samples_done)`` is called on the last stage's thread after
        each batch is collected (progress bars; a test may stall the sink with it).
        """
        staged, mon = self.staged, self.monitor
        stages = staged.stages
        k = len(stages)
        self.channels = [Channel(self.capacity, f"{stages[i].name} -> {stages[i + 1].name}")
                         for i in range(k - 1)]
        routes0 = self.routing.current
        recorders = mon.attach(
            [(s.name, s.unit, routes0[s.name].device.name, self.channels[i - 1] if i else None)
             for i, s in enumerate(stages)],
            list({id(r.device): r.device for r in self._handles}.values()),
            total_samples=total_samples,
        )
        run = _Run(iter(items), self.next_seq, OrderedCollector(start=self.next_seq), on_output)
        self._threads = [
            threading.Thread(target=self._worker, args=(i, stage, recorders[i], run),
                             name=f"hwpart-{stage.name}", daemon=True)
            for i, stage in enumerate(stages)]
        owns_monitor = not mon.running
        if owns_monitor:
            mon.start()
        try:
            for th in self._threads:
                th.start()
            while not run.done.wait(0.25):  # a timeout keeps Ctrl-C prompt
                pass
            if run.error is not None:
                raise run.error
        except BaseException:
            run.stopping = True
            self._abort()
            raise
        finally:
            self._join(run)
            self.next_seq += run.issued
            snap = mon.stop() if owns_monitor else mon.snapshot()
        if run.error is not None:  # set while joining: a stage that never returned
            raise run.error
        first = mon.first_t
        wall = (run.t_end - first) if (run.t_end is not None and first is not None) else 0.0
        return RunResult(run.outputs, snap, wall, mon.samples, batch, list(mon.history))

    def _worker(self, i: int, stage: Stage, stats: Any, run: _Run) -> None:
        """Stage ``i``'s loop; stage 0 also pulls the source, the last stage also collects."""
        name = stage.name
        inp = self.channels[i - 1] if i > 0 else None
        out = self.channels[i] if i < len(self.channels) else None
        lookup = self.routing.lookup
        perf = time.perf_counter
        record, waited = stats.record, stats.record_wait
        started, initial = self.monitor.started, self.staged.initial
        last: Route | None = None
        with torch.inference_mode():
            while True:
                if inp is None:  # the source: pulled only when this stage has room
                    if run.stopping:
                        return
                    try:
                        item = next(run.items)
                        started()
                        item.seq = run.base + run.issued
                        item.payload = initial(*item.payload)
                    except StopIteration:
                        break
                    except BaseException as exc:
                        self._fail(run, f"the input source failed at item {run.issued}: "
                                        f"{type(exc).__name__}: {exc}", exc)
                        return
                    run.issued += 1
                else:
                    t = perf()
                    try:
                        item = inp.get()
                    except ChannelClosed:
                        if inp.aborted:
                            return
                        break
                    waited(perf() - t)
                route = lookup(item.seq)[name]
                if route is not last:  # a re-route: the monitor shows where the stage runs now
                    last = route
                    stats.device = route.device.name
                t = perf()
                try:
                    item.payload = route.device.run(route.handle, item.payload)
                except BaseException as exc:
                    self._fail(run, f"stage {name!r} on {route.device.name} failed at batch "
                                    f"{item.seq}: {type(exc).__name__}: {exc}", exc)
                    return
                h = route.handle  # the device's own account of the batch, if it keeps one
                record(perf() - t, item.samples, h.service_s, h.wait_s, h.service_modeled)
                if out is not None:
                    t = perf()
                    try:
                        out.put(item)
                    except ChannelClosed:
                        return
                    waited(perf() - t)
                else:
                    try:
                        self._collect(run, item)
                    except BaseException as exc:
                        self._fail(run, f"the sink failed at batch {item.seq}: "
                                        f"{type(exc).__name__}: {exc}", exc)
                        return
        # the input ended normally
        if out is not None:
            out.close()
            return
        try:
            run.collector.finish(expected=run.issued)  # stage 0 is done: `issued` is final
        except BaseException as exc:
            self._fail(run, str(exc), exc)
            return
        run.t_end = time.perf_counter()
        run.done.set()

    def _collect(self, run: _Run, item: Item) -> None:
        mon, result = self.monitor, self.staged.result
        for it in run.collector.add(item):
            mon.record_output(time.perf_counter() - it.t0, it.samples)
            run.outputs.append(result(it.payload))
            if run.on_output is not None:
                run.on_output(mon.samples)
        if self.routing.depth > 1:
            self.routing.prune(run.collector.next_seq)

    def _fail(self, run: _Run, message: str, exc: BaseException) -> None:
        with self._err_lock:
            if run.error is None:
                err = exc if isinstance(exc, HwpartError) and str(exc) == message else (
                    DeviceError(message))
                if err is not exc:
                    err.__cause__ = exc
                run.error = err
        run.stopping = True
        self._abort()
        run.done.set()

    def _abort(self) -> None:
        for ch in self.channels:
            ch.abort()

    def _join(self, run: _Run) -> None:
        deadline = time.monotonic() + self.join_timeout_s
        for th in self._threads:
            if th.ident is not None:
                th.join(timeout=max(0.0, deadline - time.monotonic()))
        self._stuck = [th for th in self._threads if th.is_alive()]
        self._threads = []
        if self._stuck and run.error is None:
            run.error = DeviceError(
                f"threads did not stop within {self.join_timeout_s}s: "
                f"{', '.join(th.name for th in self._stuck)} (a device call that never returns)")

    @property
    def threads(self) -> list[threading.Thread]:
        return list(self._threads)


def resolve_device(stage: Stage, devices: Mapping[str, Device]) -> Device:
    dev = devices.get(stage.unit) or devices.get(unit_kind(stage.unit))
    if dev is None:
        raise DeviceError(f"stage {stage.name!r} is planned on {stage.unit!r}, but no device "
                          f"was given for it (have: {', '.join(devices) or 'none'})")
    ok, reason = dev.available()
    if not ok:
        raise DeviceError(f"stage {stage.name!r} is planned on {dev.name}, which is not "
                          f"available here: {reason}")
    return dev


def devices_for(units: Iterable[str], cpu_threads: int | None = None,
                stage_threads: Mapping[str, int] | None = None,
                options: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Device]:
    """One device per kind from the registry (FPGA slots share their board's device).

    ``options`` passes constructor arguments per kind, e.g.
    ``{"fpga": {"overlay": "bitstreams/jet", "fpga": "sim"}}``.
    """
    out: dict[str, Device] = {}
    by_kind: dict[str, Device] = {}
    for unit in units:
        kind = unit_kind(unit)
        if kind not in by_kind:
            opts: dict[str, Any] = dict((options or {}).get(kind, {}))
            if kind == "cpu" and (cpu_threads is not None or stage_threads):
                opts.update(threads=cpu_threads, stage_threads=dict(stage_threads or {}))
            by_kind[kind] = get_device(kind, **opts)
        out[unit] = by_kind[kind]
    return out


def run_pipeline(staged: StagedModel, devices: Mapping[str, Device] | None,
                 inputs: torch.Tensor | Sequence[torch.Tensor], batch: int,
                 monitor: Monitor | None = None, *, capacity: int = DEFAULT_CAPACITY,
                 on_output: Callable[[int], None] | None = None) -> RunResult:
    """Load, run once, unload. ``devices=None`` takes each stage's kind from the registry."""
    if devices is None:
        devices = devices_for(s.unit for s in staged.stages)
    with Pipeline(staged, devices, capacity=capacity, monitor=monitor) as pipe:
        return pipe.run(inputs, batch, on_output=on_output)


def run_model(lg: LayerGraph, plan: Plan, inputs: torch.Tensor, *, batch: int | None = None,
              devices: Mapping[str, Device] | None = None, threads: int | None = None,
              monitor: Monitor | None = None, capacity: int = DEFAULT_CAPACITY,
              warmup_batches: int = 0,
              device_options: Mapping[str, Mapping[str, Any]] | None = None,
              on_output: Callable[[int], None] | None = None) -> RunResult:
    """Split ``lg`` by ``plan`` and run ``inputs``; ``batch`` defaults to the plan's.

    ``threads`` sets the intra-op threads of every CPU stage (None: torch's
    default). ``warmup_batches`` are run first and not measured (lazy kernel
    selection and allocator growth would otherwise land in the first batches).
    """
    batch = batch or plan.batch or 1
    staged = split(lg, plan)
    if devices is None:
        devices = devices_for((s.unit for s in staged.stages), cpu_threads=threads,
                              options=device_options)
    with Pipeline(staged, devices, capacity=capacity, monitor=monitor) as pipe:
        if warmup_batches > 0:  # measured by a throwaway monitor: no warm-up in the log
            real, pipe.monitor = pipe.monitor, Monitor(interval_s=None)
            try:
                pipe.run(inputs[: warmup_batches * batch], batch)
            finally:
                pipe.monitor = real
        return pipe.run(inputs, batch, on_output=on_output)


# --------------------------------------------------------------------------- hand plans


def chain_plan(lg: LayerGraph, units: Sequence[str], *, batch: int = 1,
               balance: str = "macs") -> Plan:
    """A plan that cuts the graph's execution order into ``len(units)`` contiguous stages.

    For tests, benchmarks and the no-solver case: ``chain_plan(lg, ["cpu"])`` is
    the whole model on the CPU; ``["cpu", "cpu"]`` a two-stage CPU pipeline.
    ``balance="macs"`` puts the cuts where the MAC counts are even (by node
    count when the graph has no MACs); ``"count"`` by node count.
    """
    nodes = lg.compute_nodes
    k = len(units)
    if k < 1 or k > len(nodes):
        raise PlanError(f"cannot cut {len(nodes)} layers into {k} stages")
    weights = [float(lg.dag.nodes[n].get("macs", 0)) for n in nodes]
    if balance != "macs" or sum(weights) <= 0:
        weights = [1.0] * len(nodes)
    cuts = _even_cuts(weights, k)
    plan = manual_plan(lg.name, lg.input_shape,
                       [(units[i], nodes[a:b]) for i, (a, b) in
                        enumerate(zip([0, *cuts], [*cuts, len(nodes)], strict=True))], batch)
    plan.solver = f"chain_plan({balance})"
    return plan


def _even_cuts(weights: list[float], k: int) -> list[int]:
    """k-1 cut positions, each stage non-empty, splitting the prefix sums as evenly as possible."""
    total = sum(weights)
    cuts: list[int] = []
    acc, i = 0.0, 0
    prefix = []
    for w in weights:
        acc += w
        prefix.append(acc)
    for j in range(1, k):
        target = total * j / k
        lo = (cuts[-1] + 1) if cuts else 1
        hi = len(weights) - (k - j)
        i = min(range(lo, hi + 1), key=lambda c: abs(prefix[c - 1] - target))
        cuts.append(i)
    return cuts


# --------------------------------------------------------------------------- CLI entry points


def run_command(model_spec: str, input_shape: str | tuple[int, ...], plan_path: str | None = None,
                auto: bool = False, samples: int = 2000, batch: int | None = None,
                report_path: str | None = None, live: bool | None = None,
                metrics_path: str | None = None, *, interval_s: float = 0.5, seed: int = 0,
                threads: int | None = None, capacity: int = DEFAULT_CAPACITY,
                warmup_batches: int = 2, console: Any = None, fpga: str | None = None,
                overlay: str | None = None, pin: str | None = None,
                costs_path: str | None = None, save_costs: str | None = None) -> dict[str, Any]:
    """``hwpart run``: load, plan (file or --auto), run N seeded random samples, report.

    The run calibrates its plan as it goes (:mod:`hwpart.calibration`): the summary
    shows the calibrated prediction beside the raw one, and ``save_costs`` writes the
    calibrated cost table (``costs_path`` is the table a ``--plan`` was made from; with
    ``--auto`` it replaces profiling).

    ``fpga`` (sim / board / auto) and ``overlay`` (a bundle folder) select what
    FPGA stages run on; with ``auto`` planning, the overlay's RMs are the only
    layer groups the FPGA is offered.

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
    if fpga is not None or overlay is not None:
        from hwpart.devices.fpga import configure

        configure(fpga, overlay)
    if overlay is not None and (auto or costs_path):
        from hwpart.overlay import load_manifest

        manifest = load_manifest(overlay)
    if pin and not auto:
        raise HwpartError("--pin places layers for --auto planning; with --plan, edit the plan")
    if save_costs and plan_path and not costs_path:
        raise HwpartError("--save-costs with --plan needs --costs TABLE.json, the cost table "
                          "the plan was made from")
    plan, plan_source, table = _get_plan(lg, plan_path, auto, batch, manifest, pin, threads,
                                         costs_path)
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
    try:
        result = run_model(lg, plan, x, batch=batch, threads=threads, monitor=monitor,
                           capacity=capacity, warmup_batches=warmup_batches,
                           on_output=on_output)
    finally:
        if progress is not None:
            progress.stop()
        if monitor.running:
            monitor.stop()
    calibrator.update(result.snapshot)
    report = build_report(model_spec, lg, plan, plan_source, result, calibrator, seed=seed,
                          threads=threads, warmup_batches=warmup_batches, capacity=capacity)
    print_summary(report, console)
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


def _get_plan(lg: LayerGraph, plan_path: str | None, auto: bool,
              batch: int | None, overlay: Any = None, pin: str | None = None,
              threads: int | None = None,
              costs_path: str | None = None) -> tuple[Plan, str, Any]:
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
        return auto_plan(lg, batch=b, objective="throughput", devices=devices, table=table,
                         overlay=overlay, pins=parse_pins(lg, pin)), "auto", table
    raise HwpartError("no plan: give --plan PLAN.json (from `hwpart partition`) or --auto")


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
    pr.add_argument("--interval", type=float, default=0.5, help="monitor interval, s")
    pr.add_argument("--no-live", action="store_true", help="no live table (off when piped)")
    pr.add_argument("--threads", type=int, help="intra-op threads per CPU stage")
    pr.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY,
                    help="items each inter-stage channel holds")
    pr.add_argument("--warmup", type=int, default=2, help="unmeasured warm-up batches")
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--fpga", choices=("sim", "board", "auto"),
                    help="FPGA target (default: $HWPART_FPGA, else auto = a board if PYNQ "
                         "finds one, else the simulated board)")
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
    pr.set_defaults(func=_cmd_run)
    pd = sub.add_parser("devices", help="list device kinds, whether usable here, and why")
    pd.set_defaults(func=_cmd_devices)


def _console() -> Any:
    from hwpart.cli import console  # the CLI's console: wide when piped

    return console


def _cmd_run(args: Any) -> int:
    run_command(args.model, args.input_shape, args.plan, args.auto, args.samples, args.batch,
                args.report, False if args.no_live else None, args.metrics,
                interval_s=args.interval, seed=args.seed, threads=args.threads,
                capacity=args.capacity, warmup_batches=args.warmup, console=_console(),
                fpga=args.fpga, overlay=args.overlay, pin=args.pin, costs_path=args.costs,
                save_costs=args.save_costs)
    return 0


def _cmd_devices(args: Any) -> int:
    devices_command(_console())
    return 0
