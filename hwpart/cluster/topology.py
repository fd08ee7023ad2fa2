"""What the cluster offers: its nodes, the devices on each, and the links between them.

Devices come from each node's Ray resources: ``CPU``, ``GPU``, and two custom
resources a node with a board declares when it joins -- ``board:<name>`` (the
board's YAML name, e.g. ``board:pynq-z2``) and ``fpga_slot`` (its slots). A
stage host asks for a sliver of the resource its device needs, so Ray places it
only on a node that has one.

Links are measured at start-up between probe actors, one per node (the same
processes-and-object-store path the stages' tensors take): a round trip is the
median of small actor-to-actor calls, bandwidth is a few MiB fetched from the
other node's object store, minus the round trip. They are what the planner
prices a crossing with (:mod:`hwpart.cluster.plan`), as :class:`hwpart.timing.NetLink`
prices the host <-> board-agent link.

Names: the node this process runs on is the plain ``cpu``/``gpu``/``fpga0`` of a
single-machine plan (a one-node cluster plans exactly like the machine); every
other node has a name of letters (its ``hwpart.node`` label, else a, b, ... in
address order), and its units carry it: ``cpu_b``, ``gpu_b``, ``fpga_b0``.
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from hwpart.cluster.env import CORES_LABEL, NODE_LABEL, ClusterError, node_names
from hwpart.partition import chain_unit, unit_kind, unit_slots
from hwpart.timing import NetLink

BOARD_RESOURCE = "board:"
SLOT_RESOURCE = "fpga_slot"
_NAME = re.compile(r"[a-z]+")


@dataclass(frozen=True)
class NodeInfo:
    """One node: its name in plans, Ray id, address, devices and labels."""

    name: str
    node_id: str
    address: str
    cpus: float
    gpus: float
    boards: dict[str, float]  # board name -> count
    slots: int
    labels: dict[str, str]
    driver: bool = False  # the node this process runs on

    @property
    def suffix(self) -> str:
        return "" if self.driver else f"_{self.name}"

    @property
    def cores(self) -> tuple[int, ...] | None:
        return parse_cores(self.labels.get(CORES_LABEL))

    def kinds(self) -> list[str]:
        """Device kinds this node offers (the CPU always: every node runs Python)."""
        return ["cpu"] + (["gpu"] if self.gpus >= 1 else []) + (
            ["fpga"] if self.boards and self.slots > 0 else [])

    def unit(self, base: str) -> str:
        """``cpu``/``fpga0+1`` as placed on this node: ``cpu_b``, ``fpga_b0+1``."""
        kind, slots = unit_kind(base), unit_slots(base)
        return chain_unit(kind + self.suffix, slots) if slots else kind + self.suffix


def parse_cores(spec: str | None) -> tuple[int, ...] | None:
    """``0``, ``0,2`` or ``0-3`` -> cores; None when absent; a bad label is an error."""
    if not spec:
        return None
    out: list[int] = []
    try:
        for part in spec.split(","):
            a, _, b = part.partition("-")
            out += list(range(int(a), int(b) + 1)) if b else [int(a)]
    except ValueError:
        raise ClusterError(f"node label {CORES_LABEL}={spec!r}: use 0, 0,2 or 0-3") from None
    return tuple(out)


@dataclass
class ClusterInfo:
    """The nodes, and the measured links between them (``links[{a, b}]``)."""

    nodes: list[NodeInfo]
    links: dict[frozenset[str], NetLink] = field(default_factory=dict)
    # per node: round trip of one call from this process to a stage host there (the
    # pipeline's own cost per stage and batch on that node)
    call_s: dict[str, float] = field(default_factory=dict)
    simulated: bool = False  # every node on this machine (a local cluster)

    @property
    def driver(self) -> NodeInfo:
        return next(n for n in self.nodes if n.driver)

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"no node {name!r} in the cluster (nodes: "
                           f"{', '.join(n.name for n in self.nodes)})")

    def node_of_unit(self, unit: str) -> tuple[NodeInfo, str]:
        """(node, the unit as that node's own device sees it): ``fpga_b0+1`` -> (b, fpga0+1)."""
        kind, slots = unit_kind(unit), unit_slots(unit)
        base, _, name = kind.partition("_")
        node = self.driver if not name else self.node(name)
        return node, (chain_unit(base, slots) if slots else base)

    def link(self, a: str, b: str) -> NetLink | None:
        return None if a == b else self.links.get(frozenset((a, b)))

    def to_json(self) -> dict[str, Any]:
        return {
            "simulated": self.simulated,
            "nodes": [{"name": n.name, "node_id": n.node_id, "address": n.address,
                       "driver": n.driver, "cpus": n.cpus, "gpus": n.gpus,
                       "boards": n.boards, "fpga_slots": n.slots, "cores": n.cores,
                       "units": [n.unit(k) for k in n.kinds()],
                       "call_s": self.call_s.get(n.name)} for n in self.nodes],
            "links": [{"a": sorted(k)[0], "b": sorted(k)[-1], "rtt_s": v.rtt_s,
                       "bandwidth_Bps": v.bandwidth_Bps} for k, v in self.links.items()],
        }


def discover() -> ClusterInfo:
    """The live nodes and their devices (no links: :func:`measure` adds them)."""
    import ray

    me = ray.get_runtime_context().get_node_id()
    alive = [n for n in ray.nodes() if n.get("Alive")]
    alive.sort(key=lambda n: (n["NodeID"] != me, n["NodeManagerAddress"],
                              n.get("NodeManagerPort", 0), n["NodeID"]))
    taken = {n.get("Labels", {}).get(NODE_LABEL) for n in alive}
    free = iter(x for x in node_names(len(alive) + len(taken) + 1) if x not in taken)
    nodes = []
    for n in alive:
        labels = dict(n.get("Labels") or {})
        name = labels.get(NODE_LABEL) or next(free)
        if not _NAME.fullmatch(name):
            raise ClusterError(f"node {n['NodeID'][:8]}: label {NODE_LABEL}={name!r}: use "
                               "lower-case letters only (it becomes part of unit names, "
                               "cpu_NAME)")
        res = n.get("Resources", {})
        boards = {k[len(BOARD_RESOURCE):]: float(v) for k, v in res.items()
                  if k.startswith(BOARD_RESOURCE)}
        nodes.append(NodeInfo(name, n["NodeID"], n["NodeManagerAddress"],
                              float(res.get("CPU", 0)), float(res.get("GPU", 0)), boards,
                              int(res.get(SLOT_RESOURCE, 0)), labels, n["NodeID"] == me))
    if not any(n.driver for n in nodes):
        raise ClusterError("this process is not on a node of the cluster (Ray Client?): "
                           "its node cannot be found among ray.nodes()")
    names = [n.name for n in nodes]
    dup = {x for x in names if names.count(x) > 1}
    if dup:
        raise ClusterError(f"two nodes are both named {sorted(dup)[0]!r} ({NODE_LABEL} label)")
    addresses = {n.address for n in nodes}
    return ClusterInfo(nodes, simulated=len(addresses) == 1 and len(nodes) > 1)


# --------------------------------------------------------------------------- measuring


class Probe:
    """A probe actor's body (one per node): answers pings and hands out fresh blobs."""

    def ping(self, x: Any = None) -> Any:
        return x

    def blob(self, nbytes: int) -> list[Any]:
        """A new object of ``nbytes`` in this node's object store, returned by reference
        (in a list, so the caller gets the ref and fetches it when it chooses)."""
        import numpy as np
        import ray

        return [ray.put(np.ones(nbytes, dtype=np.uint8))]

    def measure(self, peer: Any, pings: int, nbytes: int, repeats: int) -> dict[str, float]:
        """Round trip and bandwidth from this actor to ``peer`` (another Probe)."""
        import ray

        ray.get(peer.ping.remote())  # connect once
        rtts = []
        for _ in range(pings):
            t = time.perf_counter()
            ray.get(peer.ping.remote())
            rtts.append(time.perf_counter() - t)
        rtt = statistics.median(rtts)
        fetch = []
        for _ in range(repeats):
            ref = ray.get(peer.blob.remote(nbytes))[0]
            t = time.perf_counter()
            ray.get(ref)
            fetch.append(time.perf_counter() - t)
        best = min(fetch)
        return {"rtt_s": rtt, "bandwidth_Bps": nbytes / max(best - rtt, best * 0.05, 1e-9)}


def measure(info: ClusterInfo, *, pings: int = 15, nbytes: int = 4 << 20,
            repeats: int = 3) -> ClusterInfo:
    """Measure every link between two nodes, and each node's call round trip from here."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(num_cpus=0)(Probe)
    probes = {n.name: remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n.node_id, soft=False), name=None).remote() for n in info.nodes}
    try:
        ray.get([p.ping.remote() for p in probes.values()], timeout=120)
        for n in info.nodes:
            p = probes[n.name]
            ts = []
            for _ in range(pings):
                t = time.perf_counter()
                ray.get(p.ping.remote())
                ts.append(time.perf_counter() - t)
            info.call_s[n.name] = statistics.median(ts)
        names = [n.name for n in info.nodes]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                fig = ray.get(probes[a].measure.remote(probes[b], pings, nbytes, repeats),
                              timeout=120)
                info.links[frozenset((a, b))] = NetLink(fig["rtt_s"], fig["bandwidth_Bps"])
    except ray.exceptions.GetTimeoutError:
        raise ClusterError("measuring the links between nodes timed out (a node that "
                           "cannot start actors?)") from None
    finally:
        for p in probes.values():
            ray.kill(p)
    return info
