"""The stage host: a Ray actor that holds one stage on its node's device and runs batches.

Inside the actor the stage runs on an ordinary hwpart device (``cpu``, ``gpu``,
``fpga`` -- a simulated board, a board driven locally, or a board agent on the
node's loopback), so what a stage computes on a node is what it computes on one
machine: same device code, same bits. The actor reports, per batch, the time
the device call took inside it (the stage's service time: what the monitor
compares with the plan), apart from the time the call spent crossing to it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import torch

from hwpart.stages import Stage


def _picklable(module: torch.nn.Module) -> None:
    """Drop string type annotations from fx placeholders (``x: "torch.Tensor"`` in a model
    written with ``from __future__ import annotations``): a GraphModule pickles its code's
    globals by name, and torch fails on an annotation that is a string. Annotations do
    not change what the code computes."""
    from torch import fx

    for m in module.modules():
        if isinstance(m, fx.GraphModule):
            changed = False
            for node in m.graph.nodes:
                if isinstance(node.type, str):
                    node.type = None
                    changed = True
            if changed:
                m.recompile()


def local_copy(stage: Stage, unit: str) -> Stage:
    """``stage`` as the node's own device sees it (``cpu_b`` -> ``cpu``), without the
    per-process forward cache (it is rebuilt in the actor), ready to pickle."""
    _picklable(stage.module)
    segs = getattr(stage, "segments", None)
    kw: dict[str, Any] = {"unit": unit}
    if segs is not None:
        kw["segments"] = [dataclasses.replace(s) for s in segs]
    return dataclasses.replace(stage, **kw)


class StageHost:
    """The actor's body (wrapped with ``ray.remote`` by :mod:`hwpart.cluster.device`)."""

    def __init__(self, stage: Stage, kind: str, options: dict[str, Any],
                 cores: tuple[int, ...] | None, threads: int | None,
                 env: dict[str, str] | None = None) -> None:
        for k, v in (env or {}).items():  # device settings (HWPART_SIM_PACE...) for this host
            os.environ[k] = v
        if cores:  # one process per core, as on a machine of its own
            os.sched_setaffinity(0, set(cores))
        n = threads or (len(cores) if cores else None)
        if n:
            torch.set_num_threads(n)
        from hwpart.devices import get_device

        self.device = get_device(kind, **options)
        self.handle = self.device.load(stage)
        self.calls = 0

    def where(self) -> dict[str, Any]:
        import ray

        return {"pid": os.getpid(), "node_id": ray.get_runtime_context().get_node_id(),
                "cores": sorted(os.sched_getaffinity(0)), "device": self.device.name,
                "threads": torch.get_num_threads()}

    def run(self, env: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """(figures of this batch, the env for the next stage)."""
        t = time.perf_counter()
        with torch.inference_mode():
            out = self.device.run(self.handle, env)
        wall = time.perf_counter() - t
        h = self.handle
        self.calls += 1
        return ({"service_s": wall if h.service_s is None else h.service_s, "wall_s": wall,
                 "wait_s": h.wait_s, "modeled": h.service_modeled, "calls": self.calls}, out)

    def ping(self, x: Any = None) -> Any:
        return x

    def metrics(self) -> dict[str, float | None]:
        return dict(self.device.metrics())

    def close(self) -> None:
        try:
            self.device.unload(self.handle)
        except Exception:  # best effort, as Pipeline.close
            pass
