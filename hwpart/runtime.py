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

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hwpart.devices import Device, LoadedStage, get_device, unit_kind
from hwpart.errors import DeviceError, HwpartError, PlanError
from hwpart.graph import LayerGraph
from hwpart.monitor import (
    LatencySummary,
    Monitor,
    Snapshot,
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
        # Admission: stage 0 pulls the source only while this is set (pause/drain/resume).
        self._admit = threading.Event()
        self._admit.set()
        self._run: _Run | None = None
        # ``on_fault(stage, route, exc, seq)`` -> a replacement Route, or None to fail the
        # run: the re-allocator's hook. A replacement takes over every item routed to the
        # failed route (RoutingTable.replace) and the failing item is retried on it.
        self.on_fault: Callable[[str, Route, BaseException, int], Route | None] | None = None
        self._replaced: dict[int, Route] = {}  # id(failed route) -> its replacement
        self._fault_lock = threading.Lock()
        self.released: list[Route] = []  # routes unloaded after their last item left

    # ------------------------------------------------------------------ migration

    def prepare(self, stages: Sequence[Stage], devices: Mapping[str, Device]) -> dict[str, Route]:
        """Load every stage that changed (its unit or its layers) on its device while the
        current routes keep running (make-before-break); unchanged stages keep their
        handles. Same stage names as now: the workers stay. Returns the new routes,
        for :meth:`switch`; :meth:`discard` them instead to give up."""
        current = self.routing.current
        if sorted(s.name for s in stages) != sorted(current):
            raise PlanError(f"re-route names stages {sorted(s.name for s in stages)}, the "
                            f"pipeline has {sorted(current)}")
        new: dict[str, Route] = {}
        try:
            for st in stages:
                old = current[st.name]
                if old.handle.stage.unit == st.unit and old.handle.stage.nodes == st.nodes:
                    new[st.name] = old  # unchanged: keep the loaded handle
                else:
                    new[st.name] = self.load(st, resolve_device(st, devices))
        except BaseException:
            self.discard(new)
            raise
        return new

    def switch(self, routes: Mapping[str, Route]) -> tuple[int, int]:
        """Give ``routes`` to every item from the next sequence boundary on; the old routes
        drain and are released after their last item leaves. Returns (boundary, version)."""
        return self.routing.swap_next(routes)

    def discard(self, routes: Mapping[str, Route]) -> None:
        """Release prepared routes that will not be used (those not routed now)."""
        live = {id(r) for v in self.routing.versions() for r in v.routes.values()}
        for r in routes.values():
            if id(r) not in live:
                self._release(r)

    def reroute(self, stages: Sequence[Stage], devices: Mapping[str, Device]) -> tuple[int, int]:
        """:meth:`prepare` then :meth:`switch`: a make-before-break move in one call."""
        return self.switch(self.prepare(stages, devices))

    @property
    def delivered_seq(self) -> int:
        """The sequence number the collector waits for next: every item before it has left
        the pipeline (0 before a run)."""
        run = self._run
        return run.collector.next_seq if run is not None else 0

    def pause(self) -> None:
        """Stop admitting new items (break-before-make); items already in go on."""
        self._admit.clear()

    def resume(self) -> None:
        self._admit.set()

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every admitted item has left the pipeline (after :meth:`pause`)."""
        run = self._run
        deadline = time.monotonic() + timeout_s
        while run is not None and not run.done.is_set():
            if run.collector.next_seq >= run.base + run.issued:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(1e-3)
        return True

    def _release(self, route: Route) -> None:
        try:
            route.device.unload(route.handle)
        except Exception:  # best effort, as in close()
            pass
        if route in self._handles:
            self._handles.remove(route)
        self.released.append(route)

    def _fault(self, name: str, route: Route, exc: BaseException, seq: int) -> Route | None:
        """The replacement for a failed route (asked once per failed route), or None."""
        with self._fault_lock:
            rep = self._replaced.get(id(route))
            if rep is None and self.on_fault is not None:
                rep = self.on_fault(name, route, exc, seq)
                if rep is not None:
                    self._replaced[id(route)] = rep
                    self.routing.replace(route, rep)
            return rep

    def fault(self, name: str, route: Route, exc: BaseException, seq: int) -> Route | None:
        """The replacement for ``route`` of stage ``name``, which failed (``on_fault`` is asked
        once per failed route): for a caller that finds a route dead outside its stage's
        worker, e.g. a cluster recomputing a value that a lost node held."""
        return self._fault(name, route, exc, seq)

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
        self._run = run
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
                    while not self._admit.is_set():  # paused (a break-before-make move)
                        if run.stopping:
                            return
                        self._admit.wait(0.05)
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
                    stats.device, stats.unit = route.device.name, route.handle.stage.unit
                t = perf()
                payload = item.payload
                while True:
                    try:
                        item.payload = route.device.run(route.handle, payload)
                        break
                    except BaseException as exc:  # a replacement route retries this item
                        rep = (self._fault(name, route, exc, item.seq)
                               if isinstance(exc, Exception) else None)  # not Ctrl-C
                        if rep is None or run.stopping:
                            self._fail(run, f"stage {name!r} on {route.device.name} failed at "
                                            f"batch {item.seq}: {type(exc).__name__}: {exc}", exc)
                            return
                        route = last = rep
                        stats.device, stats.unit = route.device.name, route.handle.stage.unit
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
        if self.routing.depth > 1:  # a re-route drained: release what nothing uses now
            for route in self.routing.prune(run.collector.next_seq):
                self._release(route)

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
