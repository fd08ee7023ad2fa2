"""One adaptive run: a plan's stages as runs of segments, the NPM watching, a scenario.

What ``hwpart run --adapt [--scenario S]`` does, as a function the command,
tests and ``bench/adapt.py`` share: cut the model once at every legal border,
build the pipeline from the plan's layout, start the NPM on the monitor's
snapshots and the scenario's injector on the run's clock, feed a timed source
(the scenario's length; its ``input_rate`` events pace it), and hand back the
run with the event log.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hwpart.devices import Device
from hwpart.monitor import Monitor
from hwpart.npm.candidates import Fabric, Layout, layout_of, padded, stages_of
from hwpart.npm.events import EventLog
from hwpart.npm.loop import Npm, NpmConfig
from hwpart.npm.scenario import Injector, RateLimiter, Scenario, Targets
from hwpart.partition import Plan
from hwpart.runtime import Pipeline, RunResult
from hwpart.stages import StagedModel, segment
from hwpart.streams import Item


@dataclass
class AdaptiveRun:
    result: RunResult
    log: EventLog
    npm: Npm | None
    layouts: list[Any]


def timed_source(bank: torch.Tensor, batch: int, seconds: float,
                 max_items: int | None = None) -> Iterator[Item]:
    """Batches cycled from ``bank`` until ``seconds`` have passed (a scenario's length)."""
    n = int(bank.shape[0]) // batch
    t_end = time.perf_counter() + seconds
    for seq in itertools.count():
        if time.perf_counter() >= t_end or (max_items is not None and seq >= max_items):
            return
        i = seq % n
        yield Item(seq, (bank[i * batch:(i + 1) * batch],), time.perf_counter(), batch)


def run_adaptive(lg: Any, plan: Plan, problem: Any, devices: Mapping[str, Device], *,
                 batch: int, seconds: float, monitor: Monitor,
                 scenario: Scenario | None = None, adapt: bool = True, seed: int = 0,
                 config: NpmConfig | None = None, warmup_batches: int = 2,
                 fabric: Fabric | None = None, max_items: int | None = None,
                 on_start: Callable[[Npm], None] | None = None,
                 layout: Layout | None = None,
                 plain: Sequence[str] = ("cpu",)) -> AdaptiveRun:
    """See the module docstring; ``adapt=False`` runs the same plan static (the baseline);
    ``layout`` replaces the plan's stages (an oracle's layout, segments of the same cut);
    ``plain``: the units besides FPGA slots a stage may move to (a cluster's CPUs on every
    node: ``cpu``, ``cpu_b``...)."""
    fpga = devices.get("fpga")
    if fabric is None:
        fabric = Fabric.of_bundle(fpga._load_bundle()) if fpga is not None else Fabric()
    segs = segment(lg, plan, groups=fabric.groups)
    if layout is None:  # the plan's stages (with idle ones around them to move into)
        layout = padded(layout_of(plan, segs)) if adapt else layout_of(plan, segs)
    s = segs.staged
    staged = StagedModel(stages_of(layout, segs), s.input_names, s.output, s.finish)
    gen = torch.Generator().manual_seed(seed)
    bank = torch.randn((batch * 64, *lg.input_shape), generator=gen)
    probe = bank[:batch]
    with torch.inference_mode():
        reference = lg.module(probe)
    pipe = Pipeline(staged, devices, monitor=monitor)
    try:
        if warmup_batches:
            real, pipe.monitor = pipe.monitor, Monitor(interval_s=None)
            try:
                pipe.run(bank[: warmup_batches * batch], batch)
            finally:
                pipe.monitor = real
        log = EventLog(clock=monitor.elapsed)
        npm = None
        if adapt:
            npm = Npm(pipe, segs, layout, problem, fabric, devices, log, probe=probe,
                      reference=reference, config=config, plain=plain)
            monitor.subscribe(npm.on_snapshot)
            npm.start()
            if on_start is not None:
                on_start(npm)
        rate = RateLimiter(timed_source(bank, batch, seconds, max_items))
        injector = None
        if scenario is not None:
            injector = Injector(scenario, Targets(fpga=fpga, rate=rate), log=log.add)
        try:
            if injector is not None:
                injector.start()
            result = pipe.run_items(rate, batch=batch)
        finally:
            if injector is not None:
                injector.stop()
            rate.close()
            if npm is not None:
                npm.stop()
        layouts = [npm.layout] if npm is not None else [layout]
        return AdaptiveRun(result, log, npm, layouts)
    finally:
        pipe.close()
