"""A run on the cluster: the engine's Pipeline over RayDevices, static or with the NPM.

What this module adds to the single-machine run is only what a cluster needs:

* **Faults go to a surviving node.** A stage host that dies (its process, or its
  node) fails the call in flight; the pipeline asks for a replacement route and
  retries every item routed to the failed one on it, in order (the engine's own
  ``on_fault`` path). Without the NPM, :func:`static_on_fault` loads the stage
  again on this process's node (else on another live node with the device);
  with it, the NPM's own fault handler decides. Either way the replacement is
  recorded, so a value lost with a dead node can be recomputed on it
  (:class:`hwpart.cluster.device.RemoteEnv`).
* **A dead node is taken out.** Its devices say so (``down``), so neither the
  fault handler nor the NPM places anything there again.
* **The NPM's moves include other nodes.** Its "move a stage" step offers every
  node's CPU (and GPU) as plain units (``cpu``, ``cpu_b``...), priced on the
  cluster problem's measured links (:mod:`hwpart.cluster.plan`); its FPGA moves
  stay with a board on this process's node (a plan may still place stages on
  boards anywhere).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from hwpart.cluster.device import RayDevice, Replacements
from hwpart.cluster.topology import ClusterInfo
from hwpart.devices.base import LoadedStage
from hwpart.graph import LayerGraph
from hwpart.monitor import Monitor
from hwpart.partition import Plan, unit_kind
from hwpart.runtime import DEFAULT_CAPACITY, Pipeline, Route, RunResult
from hwpart.stages import split


def alive_node_ids() -> set[str]:
    import ray

    return {n["NodeID"] for n in ray.nodes() if n.get("Alive")}


@dataclass
class Cluster:
    """The devices of a run on ``info``, and the record of what replaced what."""

    info: ClusterInfo
    devices: dict[str, RayDevice]
    replacements: Replacements

    def take_out_dead_nodes(self) -> list[str]:
        """Mark every device of a node that is gone; returns those nodes' names."""
        alive = alive_node_ids()
        gone = []
        for dev in self.devices.values():
            if dev.node.node_id not in alive and not dev._dead:
                dev.mark_dead(f"node {dev.node.name} ({dev.node.address}) is gone")
                gone.append(dev.node.name)
        return sorted(set(gone))

    def survivor(self, kind: str, avoid: str | None = None) -> RayDevice | None:
        """A live device of ``kind``: this process's node first, then the others in order;
        ``avoid``: a node to use only when nothing else has the device."""
        devs = [d for d in self.devices.values() if d.kind == kind and not d.down]
        devs.sort(key=lambda d: (d.node.name == avoid, not d.node.driver, d.node.name))
        return devs[0] if devs else None

    def record(self, failed: Route, rep: Route | None) -> Route | None:
        if rep is not None:
            with self.replacements.lock:
                self.replacements.by_handle[id(failed.handle)] = (rep.device, rep.handle)  # type: ignore[assignment]
        return rep

    def wire(self, pipe: Pipeline,
             inner: Callable[[str, Route, BaseException, int], Route | None] | None) -> None:
        """Install the fault path on ``pipe``: take out dead nodes, let ``inner`` (the NPM's
        handler, or :func:`static_on_fault`) pick the replacement, record it."""

        def on_fault(name: str, route: Route, exc: BaseException, seq: int) -> Route | None:
            self.take_out_dead_nodes()
            handler = inner or (lambda n, r, e, s: static_on_fault(self, pipe, n, r))
            return self.record(route, handler(name, route, exc, seq))

        def on_dead(handle: LoadedStage, exc: BaseException) -> tuple[RayDevice, LoadedStage] | None:
            for v in pipe.routing.versions():
                for name, route in v.routes.items():
                    if route.handle is handle:
                        rep = pipe.fault(name, route, exc, -1)
                        return None if rep is None else (rep.device, rep.handle)  # type: ignore[return-value]
            return None

        pipe.on_fault = on_fault
        self.replacements.on_dead = on_dead


def static_on_fault(cl: Cluster, pipe: Pipeline, name: str, route: Route) -> Route | None:
    """The stage again, on a surviving node (this process's first), as a new stage host."""
    dev = route.device
    kind = getattr(dev, "kind", unit_kind(route.handle.stage.unit))
    failed_node = getattr(getattr(dev, "node", None), "name", None)
    target = cl.survivor(kind, avoid=failed_node)
    if target is None:
        return None
    _, local = cl.info.node_of_unit(route.handle.stage.unit)
    stage = dataclasses.replace(route.handle.stage, unit=target.node.unit(local))
    return pipe.load(stage, target)


def make_cluster(info: ClusterInfo, devices: Mapping[str, RayDevice]) -> Cluster:
    reps = next(iter(devices.values())).replacements if devices else Replacements()
    return Cluster(info, dict(devices), reps)


def run_static(lg: LayerGraph, plan: Plan, cl: Cluster, inputs: torch.Tensor, *,
               batch: int | None = None, monitor: Monitor | None = None,
               capacity: int = DEFAULT_CAPACITY, warmup_batches: int = 0,
               on_output: Callable[[int], None] | None = None,
               on_pipeline: Callable[[Pipeline], None] | None = None) -> RunResult:
    """``plan``'s stages on their nodes, as :func:`hwpart.runtime.run_model` runs them on one
    machine (``on_pipeline`` sees the pipeline once loaded: tests kill hosts through it)."""
    batch = batch or plan.batch or 1
    staged = split(lg, plan)
    with Pipeline(staged, cl.devices, capacity=capacity, monitor=monitor) as pipe:
        cl.wire(pipe, None)
        if warmup_batches > 0:
            real, pipe.monitor = pipe.monitor, Monitor(interval_s=None)
            try:
                pipe.run(inputs[: warmup_batches * batch], batch)
            finally:
                pipe.monitor = real
        if on_pipeline is not None:
            on_pipeline(pipe)
        return pipe.run(inputs, batch, on_output=on_output)


def run_adaptive(lg: LayerGraph, plan: Plan, problem: Any, cl: Cluster, *, batch: int,
                 seconds: float, monitor: Monitor, scenario: Any = None, adapt: bool = True,
                 seed: int = 0, config: Any = None, warmup_batches: int = 2,
                 max_items: int | None = None,
                 on_start: Callable[[Any], None] | None = None) -> Any:
    """The NPM's adaptive run (:func:`hwpart.npm.session.run_adaptive`) on the cluster: its
    plain units are every node's CPU and GPU, its fault handler goes through
    :meth:`Cluster.wire`."""
    from hwpart.npm.candidates import Fabric
    from hwpart.npm.session import run_adaptive as session_run

    plain = [u.name for u in problem.units if not u.is_slot]

    def started(npm: Any) -> None:
        cl.wire(npm.pipe, npm.on_fault)
        if on_start is not None:
            on_start(npm)

    return session_run(lg, plan, problem, cl.devices, batch=batch, seconds=seconds,
                       monitor=monitor, scenario=scenario, adapt=adapt, seed=seed,
                       config=config, warmup_batches=warmup_batches, fabric=Fabric(),
                       max_items=max_items, on_start=started, plain=plain)
