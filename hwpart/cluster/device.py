"""A node's device as a hwpart Device: stages load into actors there, batches run there.

Why a Device and not a second engine: :class:`hwpart.runtime.Pipeline` already
gives ordering (sequence numbers, the ordered collector), back-pressure (bounded
channels; each stage's worker holds one item in flight on its actor, so at most
``capacity + 1`` batches per stage are outstanding), lossless faults (a failed
call asks ``on_fault`` for a replacement route and retries the item there, the
routing table re-pointing every item routed to the failed route) and live
re-routing for the NPM. A stage on a cluster node only changes *where* the device
call runs, which is what a Device is for.

Tensors go from actor to actor as Ray objects: a stage's call returns an
``ObjectRef`` to its output, which the next stage's call takes as its argument,
so Ray moves the bytes between the two nodes' object stores (small values travel
inline with the call); this process holds only references. :class:`RemoteEnv`
is that reference, read lazily where a value is needed here (the sink, a stage
this process runs itself).

A node lost mid-run takes with it the outputs stored there. A stage whose input
was lost asks :class:`RemoteEnv` to recompute it: the producing stage's call is
made again, on its replacement when its host died too -- lineage replay, bounded
by the items in flight (each keeps a reference to what it was computed from
until it leaves the pipeline).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from hwpart.cluster.host import StageHost, local_copy
from hwpart.cluster.topology import BOARD_RESOURCE, SLOT_RESOURCE, ClusterInfo, NodeInfo
from hwpart.devices.base import LoadedStage, Metrics
from hwpart.errors import DeviceError
from hwpart.partition import unit_slots
from hwpart.stages import Stage

#: How much of a resource one stage host asks for: enough that Ray places it only on a
#: node that has the device, little enough that a make-before-break move can load a
#: second host beside the first (the planner, not Ray, decides how busy a device is).
SLIVER = 0.001


def _lost_errors() -> tuple[type[BaseException], ...]:
    from ray import exceptions as rx

    return tuple(getattr(rx, n) for n in ("ObjectLostError", "ObjectFetchTimedOutError",
                                          "OwnerDiedError", "ReferenceCountingAssertionError")
                 if hasattr(rx, n))


class RemoteEnv(Mapping[str, Any]):
    """A stage's output env, held as a Ray object; fetched on first read (then kept).

    ``source``/``producer``: what it was computed from and by whom, for recomputing it
    when the node that stored it is lost (module docstring).
    """

    __slots__ = ("ref", "source", "producer", "_value", "_lock")

    def __init__(self, ref: Any, source: Mapping[str, Any] | None = None,
                 producer: tuple[RayDevice, LoadedStage] | None = None) -> None:
        self.ref = ref
        self.source = source
        self.producer = producer
        self._value: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def value(self) -> dict[str, Any]:
        with self._lock:
            if self._value is None:
                import ray

                try:
                    self._value = ray.get(self.ref)
                except _lost_errors():
                    self.ref = self.recompute().ref
                    self._value = ray.get(self.ref)
                self.source = self.producer = None  # nothing to recompute any more
            return self._value

    def recompute(self) -> RemoteEnv:
        """Make the producing call again (on its replacement if its host died)."""
        if self.producer is None or self.source is None:
            raise DeviceError("a value between stages was lost and cannot be recomputed "
                              "(its producer is unknown)")
        dev, handle = self.producer
        return dev.rerun(handle, self.source)

    def __getitem__(self, key: str) -> Any:
        return self.value()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.value())

    def __len__(self) -> int:
        return len(self.value())


@dataclass
class Replacements:
    """Failed stage hosts and what replaced them, shared by a run's devices: a recompute
    for a lost value goes to the producer's replacement. ``on_dead(handle, exc)``: ask the
    run for a replacement of a host found dead outside its own stage's worker."""

    by_handle: dict[int, tuple[RayDevice, LoadedStage]] = field(default_factory=dict)
    on_dead: Callable[[LoadedStage, BaseException], tuple[RayDevice, LoadedStage] | None] | None \
        = None
    lock: threading.RLock = field(default_factory=threading.RLock)
    recomputed: int = 0  # values recomputed after their node was lost

    def current(self, dev: RayDevice, handle: LoadedStage) -> tuple[RayDevice, LoadedStage]:
        with self.lock:
            seen = 0
            while id(handle) in self.by_handle and seen < 100:
                dev, handle = self.by_handle[id(handle)]
                seen += 1
            return dev, handle


class RayDevice:
    """One device kind on one node of the cluster, as a hwpart Device (module docstring).

    ``kind``: the device the stage host uses there (cpu, gpu, fpga); ``options``: its
    constructor arguments (an FPGA's overlay and mode); ``board``: the board resource an
    FPGA stage needs (``board:<name>``). ``timeout_s``: how long one batch may take before
    the host counts as hung (a device failure).
    """

    def __init__(self, info: ClusterInfo, node: NodeInfo, kind: str, *,
                 options: dict[str, Any] | None = None, threads: int | None = None,
                 board: str | None = None, timeout_s: float = 60.0,
                 replacements: Replacements | None = None,
                 host_env: dict[str, str] | None = None) -> None:
        self.info, self.node, self.kind_ = info, node, kind
        self.kind = kind  # the registry's kind of the device behind the actor
        self.name = f"{kind}@{node.name}"
        self.options = dict(options or {})
        self.threads = threads
        self.board = board
        self.timeout_s = timeout_s
        self.replacements = replacements or Replacements()
        self.host_env = dict(host_env or {})
        self._dead: str | None = None
        self._suspect = False  # a call failed here: check the node's liveness when asked

    # ------------------------------------------------------------------ the protocol

    def available(self) -> tuple[bool, str]:
        if self._dead:
            return False, self._dead
        if self.kind == "gpu" and self.node.gpus < 1:
            return False, f"node {self.node.name} has no GPU"
        if self.kind == "fpga" and not self.node.boards:
            return False, f"node {self.node.name} has no board ({BOARD_RESOURCE}<name> resource)"
        return True, f"node {self.node.name} ({self.node.address})"

    def capabilities(self, lg: Any) -> set[str]:
        return set(lg.compute_nodes) if self.kind in ("cpu", "gpu") else set()

    @property
    def down(self) -> str | None:
        """Why this device cannot take stages (its node is gone), or None. After a failed
        call the node's liveness is asked of the cluster until a call goes through again or
        the node is gone (a node's death takes the cluster some seconds to notice)."""
        if self._dead is None and self._suspect:
            import ray

            alive = any(n["NodeID"] == self.node.node_id and n.get("Alive")
                        for n in ray.nodes())
            if not alive:
                self._dead = f"node {self.node.name} ({self.node.address}) is gone"
        return self._dead

    def suspect(self) -> None:
        self._suspect = True

    def mark_dead(self, why: str) -> None:
        self._dead = why

    def _resources(self, stage: Stage) -> dict[str, Any]:
        opts: dict[str, Any] = {"num_cpus": 0}
        if self.kind == "cpu":
            opts["num_cpus"] = SLIVER
        elif self.kind == "gpu":
            opts["num_gpus"] = SLIVER  # Ray then sets the actor's visible devices
        elif self.kind == "fpga":
            board = self.board or next(iter(self.node.boards), None)
            res = {SLOT_RESOURCE: SLIVER * max(1, len(unit_slots(stage.unit)))}
            if board:
                res[BOARD_RESOURCE + board] = SLIVER
            opts["resources"] = res
        return opts

    def load(self, stage: Stage) -> LoadedStage:
        """A stage host on this node (an idle stage, with no layers, stays here: nothing
        to host, and a pass-through call across the network would only cost)."""
        if not stage.nodes:
            return LoadedStage(stage, self.name, state={"local": True})
        if self._dead:
            raise DeviceError(f"{self.name}: {self._dead}")
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        _, unit = self.info.node_of_unit(stage.unit)
        actor_cls = ray.remote(StageHost)
        actor = actor_cls.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(self.node.node_id, soft=False),
            max_restarts=0, max_task_retries=0, **self._resources(stage),
        ).remote(local_copy(stage, unit), self.kind, self.options, self.node.cores,
                 self.threads, self.host_env)
        try:
            where = ray.get(actor.where.remote(), timeout=self.timeout_s)
        except Exception as exc:
            ray.kill(actor)
            raise DeviceError(f"stage {stage.name!r} on {self.name}: the stage host did not "
                              f"start: {_short(exc)}") from None
        return LoadedStage(stage, self.name, state={"actor": actor, "where": where})

    def run(self, handle: LoadedStage, env: Mapping[str, Any]) -> Mapping[str, Any]:
        actor = handle.state.get("actor")
        if actor is None:  # an idle stage: what it passes on, here
            return handle.stage(env)  # type: ignore[arg-type]
        return self._call(handle, actor, env, retry_lost=True)

    def _call(self, handle: LoadedStage, actor: Any, env: Mapping[str, Any],
              retry_lost: bool) -> RemoteEnv:
        import ray
        from ray import exceptions as rx

        arg = env.ref if isinstance(env, RemoteEnv) else _compact(env)
        info_ref, out_ref = actor.run.options(num_returns=2).remote(arg)
        try:
            info = ray.get(info_ref, timeout=self.timeout_s)
        except rx.RayActorError as exc:
            self._suspect = True
            raise DeviceError(f"{self.name}: the stage host died ({_short(exc)})") from None
        except rx.GetTimeoutError:
            raise DeviceError(f"{self.name}: no answer in {self.timeout_s:g} s") from None
        except _lost_errors() as exc:  # our input was stored on a node that is gone
            if not (retry_lost and isinstance(env, RemoteEnv)):
                raise DeviceError(f"{self.name}: a value was lost ({_short(exc)})") from None
            return self._call(handle, actor, env.recompute(), retry_lost=False)
        except rx.RayTaskError as exc:  # the stage itself raised: what a local device raises
            cause = exc.as_instanceof_cause()
            raise DeviceError(f"{self.name}: {_short(cause)}") from None
        self._suspect = False  # a call went through: the node is there
        handle.service_s = float(info["service_s"])
        handle.service_modeled = bool(info["modeled"])
        handle.wait_s = float(info["wait_s"])
        return RemoteEnv(out_ref, env, (self, handle))

    def rerun(self, handle: LoadedStage, source: Mapping[str, Any]) -> RemoteEnv:
        """Run ``source`` through ``handle``'s stage again (recomputing a lost value), on its
        replacement when it has one or when its host turns out to be dead."""
        from ray import exceptions as rx

        with self.replacements.lock:
            self.replacements.recomputed += 1
        dev, h = self.replacements.current(self, handle)
        actor = h.state.get("actor")
        if actor is None:
            raise DeviceError(f"{dev.name}: a lost value's producer has no host")
        try:
            return dev._call(h, actor, source, retry_lost=True)
        except DeviceError as exc:
            if not isinstance(exc.__context__, rx.RayActorError) and "died" not in str(exc):
                raise
            on_dead = self.replacements.on_dead
            rep = on_dead(h, exc) if on_dead is not None else None
            if rep is None:
                raise
            dev2, h2 = rep
            return dev2._call(h2, h2.state["actor"], source, retry_lost=True)

    def unload(self, handle: LoadedStage) -> None:
        actor = handle.state.pop("actor", None)
        if actor is None:
            return
        import ray

        try:
            ray.get(actor.close.remote(), timeout=5)
        except Exception:  # a dead or hung host: killing it is all there is to do
            pass
        ray.kill(actor)

    def metrics(self) -> Metrics:
        return {}


def _compact(env: Mapping[str, Any]) -> dict[str, Any]:
    """``env`` with every tensor that is a view into a larger storage copied out: torch
    pickles a tensor's whole storage, so a micro-batch (a view of the run's whole input)
    would otherwise ship the whole input with every batch."""
    import torch

    out = {}
    for k, v in env.items():
        if isinstance(v, torch.Tensor) and v.untyped_storage().nbytes() > v.nbytes:
            v = v.clone()
        out[k] = v
    return out


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = next((x for x in reversed(text) if x.strip()), "") if text else ""
    return f"{type(exc).__name__}: {line[:300]}"
