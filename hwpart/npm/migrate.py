"""Steps 5, 6 and 7 of the NPM: migrate, re-route, verify.

* **migrate**: load the new stages beside the old ones (``Pipeline.prepare``):
  weights copied to their device, a preloaded partial swapped into a free slot.
  When a slot the current route streams through must take another RM, the move
  cannot be made before the old route is broken: admission is paused and the
  pipeline drained first, and that downtime is measured.
* **shadow check** (part of verify, before anything is committed): a probe batch
  runs through the new stages, one after another, on their new handles (no
  worker uses them yet), and its output is compared with the model's own float
  output within the overlay's tolerance -- the old route meets that tolerance
  too, so old and new agree within twice it. A failed check discards the new
  routes; nothing was switched.
* **re-route**: ``Pipeline.switch`` at the next sequence boundary; admission
  resumes.
* **verify**: measure a window after the switch, against the window before the
  decision: worse by more than ``worse`` rolls back, better by ``better``
  recovers, anything else is verified.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hwpart.devices import Device
from hwpart.runtime import Pipeline, Route
from hwpart.stages import Stage, StagedModel


@dataclass
class Migration:
    """What step 5 prepared: the new routes, and whether admission was paused for it."""

    routes: dict[str, Route]
    paused: bool
    t_pause: float | None
    load_s: float


def migrate(pipe: Pipeline, stages: Sequence[Stage], devices: Mapping[str, Device],
            break_first: bool, drain_timeout_s: float = 10.0) -> Migration:
    """Step 5 (see the module docstring)."""
    t_pause = None
    if break_first:
        t_pause = time.perf_counter()
        pipe.pause()
        if not pipe.drain(drain_timeout_s):
            pipe.resume()
            raise TimeoutError(f"the pipeline did not drain in {drain_timeout_s} s")
    t0 = time.perf_counter()
    try:
        routes = pipe.prepare(stages, devices)
    except BaseException:
        if break_first:
            pipe.resume()
        raise
    return Migration(routes, break_first, t_pause, time.perf_counter() - t0)


def shadow_check(staged: StagedModel, routes: Mapping[str, Route], names: Sequence[str],
                 probe: Any, reference: Any, tol: float) -> tuple[bool, float]:
    """Run ``probe`` through the routes in stage order; (within ``tol``, max abs error)."""
    env = staged.initial(*probe) if isinstance(probe, tuple) else staged.initial(probe)
    with torch.inference_mode():
        for name in names:
            r = routes[name]
            env = r.device.run(r.handle, env)
    out = staged.result(env)
    err = float((out.float() - reference.float()).abs().max()) if out.numel() else 0.0
    return err <= tol, err


def reroute(pipe: Pipeline, mig: Migration) -> tuple[int, int, float]:
    """Step 6: (boundary, version, downtime in s: 0 for make-before-break)."""
    boundary, version = pipe.switch(mig.routes)
    down = 0.0
    if mig.paused:
        pipe.resume()
        down = time.perf_counter() - (mig.t_pause or time.perf_counter())
    return boundary, version, down


@dataclass
class Watch:
    """A move being verified: the throughput before it and what came after."""

    t_switch: float  # monitor time of the switch
    before_sps: float
    previous: Any  # the layout to roll back to
    predicted_gain: float
    kind: str
    after: list[tuple[float, float]] = field(default_factory=list)  # (interval s, samples/s)
    # the window opens once items from this sequence number on have been delivered: the
    # old route's drain and the new stages' first batches (a cold actor, a first call)
    # are the move's cost, already priced, not its steady rate
    from_seq: int = 0

    @property
    def span_s(self) -> float:
        return sum(dt for dt, _ in self.after)

    @property
    def rate(self) -> float:
        """Mean samples/s over the window so far (0 before any interval)."""
        span = self.span_s
        return sum(dt * v for dt, v in self.after) / span if span > 0 else 0.0


def verify(watch: Watch, window_s: float, worse: float = 0.10,
           better: float = 0.10) -> str | None:
    """Step 7, the measured half: ``None`` while the window fills, then ``rolled_back``
    (throughput fell by more than ``worse``), ``recovered`` (rose by ``better``) or
    ``verified``."""
    if watch.span_s < window_s:
        return None
    rate = watch.rate
    if watch.before_sps > 0 and rate < (1.0 - worse) * watch.before_sps:
        return "rolled_back"
    if watch.before_sps > 0 and rate >= (1.0 + better) * watch.before_sps:
        return "recovered"
    return "verified"


def window_rate(history: Sequence[Any], now_s: float, span_s: float,
                key: Callable[[Any], float | None] = lambda s: s.throughput_sps) -> float:
    """Mean samples/s over the snapshots of the last ``span_s`` before ``now_s``."""
    pairs = [(s.interval_s, key(s)) for s in history
             if now_s - span_s <= s.t_s <= now_s and key(s) is not None]
    span = sum(dt for dt, _ in pairs)
    return sum(dt * v for dt, v in pairs) / span if span > 0 else 0.0
