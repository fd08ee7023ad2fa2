"""Reaching a Ray cluster: the ``--cluster`` spec, loopback, token auth, a local cluster.

Why this module exists rather than a bare ``ray.init``:

* **Loopback stays loopback.** When Ray resolves an address to connect to, it
  maps ``127.0.0.1``/``localhost`` to the machine's own routable address
  (``resolve_ip_for_localhost``), and ``ray start --node-ip-address=127.0.0.1``
  / ``ray.init(_node_ip_address="127.0.0.1")`` go through the same mapping. A
  cluster meant to live on loopback (tests, benches, one machine) would then
  send its traffic to the machine's private address. Ray's own switch for
  single-machine clusters (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read into
  ``ray_constants.ENABLE_RAY_CLUSTER``) makes that mapping answer 127.0.0.1;
  :func:`keep_loopback` sets it, for loopback specs only.
* **Token authentication on.** Ray turns it on by default for a cluster that
  ``ray.init`` starts, with a token in ``~/.ray/auth_token``. A cluster started
  here gets the same mode and, when no token exists, a fresh one in the
  environment (its nodes inherit it) rather than a file in the user's home.
  An explicit ``RAY_AUTH_MODE`` is respected.
* **A local multi-node cluster** (``local-ray:N``, tests, benches): N Ray nodes
  on this machine, each on loopback, each labelled with its hwpart node name
  and, optionally, a CPU core its stage hosts pin themselves to -- so two
  "machines" are two processes on two cores. That is a simulation of a
  cluster, and every report says so.
"""

from __future__ import annotations

import os
import secrets
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwpart.errors import HwpartError

LOOPBACK = "127.0.0.1"
LOCAL = "local-ray"
#: Node labels hwpart reads: the node's name in plans (``cpu_b``) and the cores its
#: stage hosts pin themselves to (``0``, ``0,1`` or ``0-3``).
NODE_LABEL = "hwpart.node"
CORES_LABEL = "hwpart.cores"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "::ffff:127.0.0.1")


class ClusterError(HwpartError):
    """The cluster cannot be reached or does not offer what the run needs."""


def import_ray(loopback: bool = False) -> Any:
    """``ray``, or a one-line error naming the extra to install."""
    if loopback:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # for processes started later
    try:
        import ray
    except ImportError as exc:
        raise ClusterError(f"--cluster needs Ray, which is not installed here ({exc}): "
                           "pip install 'hwpart[cluster]'") from None
    if loopback:
        keep_loopback()
    return ray


def keep_loopback() -> None:
    """Make Ray's address resolution answer 127.0.0.1 in this process (module docstring)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    import ray._private.ray_constants as rc

    rc.ENABLE_RAY_CLUSTER = False


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return Path(path).is_file()
    return (Path.home() / ".ray" / "auth_token").is_file()


def ensure_token_auth() -> str:
    """Token authentication for a cluster started here (module docstring); returns the mode."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None and mode.lower() != "token":
        return mode.lower()  # the user's explicit choice
    if not _token_available():
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    try:  # what ray.init itself calls for a new local cluster (it refreshes Ray's config)
        from ray._private.authentication.authentication_token_setup import (
            enable_token_auth_by_default,
        )
    except ImportError:  # an older Ray: the environment alone
        os.environ["RAY_AUTH_MODE"] = "token"
    else:
        enable_token_auth_by_default()
    return "token"


# --------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``--cluster``: ``local`` (start one here, ``nodes`` of them), ``client``
    (Ray Client, ``ray://HOST:PORT``) or ``address`` (a GCS address; this process must
    run on a node of that cluster)."""

    kind: str
    address: str | None = None
    nodes: int = 1

    @property
    def loopback(self) -> bool:
        if self.kind == "local":
            return True
        host = (self.address or "").removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
        return host in LOOPBACK_HOSTS or host.startswith("127.")


def parse_cluster(spec: str) -> ClusterSpec:
    """``local-ray``, ``local-ray:N``, ``ray://HOST:PORT`` or ``HOST:PORT``; else one line."""
    s = spec.strip()
    usage = (f"--cluster {spec!r}: use local-ray (a Ray instance here), local-ray:N (N Ray "
             "nodes on this machine, on loopback), ray://HOST:PORT (Ray Client) or HOST:PORT "
             "(the cluster's GCS address, from a node of the cluster)")
    if s == LOCAL or s.startswith(LOCAL + ":"):
        n = s[len(LOCAL) + 1:] or "1"
        if not n.isdigit() or not 1 <= int(n) <= 16:
            raise ClusterError(f"{usage}; N is 1..16")
        return ClusterSpec("local", None, int(n))
    body = s.removeprefix("ray://")
    host, _, port = body.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in body:
        raise ClusterError(usage)
    return ClusterSpec("client" if s.startswith("ray://") else "address", s)


# --------------------------------------------------------------------------- a local cluster


def node_names(n: int) -> list[str]:
    """Node names a, b, ..., z, aa, ab...: letters only, so ``cpu_b``/``fpga_b0`` stay units."""
    out = []
    for i in range(n):
        name, k = "", i
        while True:
            name = string.ascii_lowercase[k % 26] + name
            k = k // 26 - 1
            if k < 0:
                break
        out.append(name)
    return out


@dataclass
class LocalNode:
    name: str
    cores: tuple[int, ...] | None
    resources: dict[str, float]
    handle: Any = None  # ray._private.node.Node


@dataclass
class LocalCluster:
    """N Ray nodes on this machine, on loopback (``ray.cluster_utils.Cluster``): a simulated
    cluster for tests, benches and ``--cluster local-ray:N``. ``pin``: node i's stage hosts
    pin themselves to core ``i mod cores`` (one process per core, as two machines would
    have); ``resources``: extra custom resources per node name (``{"b": {"board:pynq-z2":
    1, "fpga_slot": 2}}``)."""

    nodes: int = 2
    cpus_per_node: float = 1.0
    pin: bool = True
    resources: dict[str, dict[str, float]] = field(default_factory=dict)
    object_store_mb: int = 100
    cluster: Any = field(default=None, init=False)
    members: dict[str, LocalNode] = field(default_factory=dict, init=False)
    auth: str = field(default="", init=False)

    def start(self) -> LocalCluster:
        ray = import_ray(loopback=True)
        from ray.cluster_utils import Cluster

        if ray.is_initialized():
            raise ClusterError("Ray is already initialised in this process: shut it down "
                               "before starting a local cluster")
        self.auth = ensure_token_auth()
        names = node_names(self.nodes)
        self.cluster = Cluster(initialize_head=False, shutdown_at_exit=True)
        try:
            for i, name in enumerate(names):
                self.add_node(name, i)
            ray.init(address=self.cluster.address, _node_ip_address=LOOPBACK,
                     log_to_driver=False, include_dashboard=False)
            check_loopback()
        except BaseException:
            self.shutdown()
            raise
        return self

    def add_node(self, name: str, index: int | None = None) -> LocalNode:
        """Start one more node (a node that joins mid-run, or a replacement)."""
        ncpu = os.cpu_count() or 1
        i = len(self.members) if index is None else index
        cores = (i % ncpu,) if self.pin else None
        labels = {NODE_LABEL: name}
        if cores is not None:
            labels[CORES_LABEL] = ",".join(map(str, cores))
        args: dict[str, Any] = {
            "node_ip_address": LOOPBACK, "num_cpus": self.cpus_per_node,
            "resources": dict(self.resources.get(name, {})), "labels": labels,
            "object_store_memory": self.object_store_mb * 2**20,
        }
        if self.cluster.head_node is None:
            args.update(include_dashboard=False)
        node = LocalNode(name, cores, args["resources"])
        node.handle = self.cluster.add_node(**args)
        self.members[name] = node
        return node

    def remove_node(self, name: str) -> None:
        """Stop node ``name`` at once, as a machine that is lost (its processes killed)."""
        node = self.members.pop(name)
        self.cluster.remove_node(node.handle, allow_graceful=False)

    @property
    def address(self) -> str:
        return str(self.cluster.address)

    def shutdown(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = None


# --------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """A connection made for one command; :meth:`close` undoes what it started."""

    spec: ClusterSpec
    local: LocalCluster | None = None
    owns: bool = False  # this session connected (or started Ray): close undoes it

    def close(self) -> None:
        import ray

        if self.local is not None:
            self.local.shutdown()
        elif self.owns and ray.is_initialized():
            ray.shutdown()


def connect(spec: str | ClusterSpec, *, cpus: float | None = None) -> Session:
    """Connect to (or start) the cluster ``spec`` names; a one-line error when it cannot."""
    cs = parse_cluster(spec) if isinstance(spec, str) else spec
    ray = import_ray(loopback=cs.loopback)
    if ray.is_initialized():  # a caller (a test) already connected: use that
        return Session(cs)
    if cs.kind == "local" and cs.nodes > 1:
        return Session(cs, LocalCluster(nodes=cs.nodes).start(), True)
    try:
        if cs.kind == "local":
            ensure_token_auth()
            ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=cpus,
                     log_to_driver=False)
            check_loopback()
            return Session(cs, None, True)
        kw: dict[str, Any] = {"log_to_driver": False}
        if cs.loopback and cs.kind == "address":
            kw["_node_ip_address"] = LOOPBACK
        ray.init(address=cs.address, **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ClusterError(f"--cluster {cs.address or LOCAL}: cannot connect: "
                           f"{type(exc).__name__}: {str(exc).splitlines()[0]}") from None
    return Session(cs, None, True)


# --------------------------------------------------------------------------- loopback


def _is_loopback(ip: str) -> bool:
    return ip in LOOPBACK_HOSTS or ip.startswith("127.") or ip.startswith("::ffff:127.")


def node_addresses() -> list[str]:
    """Every live node's address as the cluster knows it."""
    import ray

    return [n["NodeManagerAddress"] for n in ray.nodes() if n.get("Alive")]


def ray_listeners() -> list[tuple[str, str, int]]:
    """(process, address, port) of every socket listening in the Ray processes this process
    started (its descendants) and in this process itself."""
    import psutil

    me = psutil.Process()
    out = []
    for p in [me, *me.children(recursive=True)]:
        try:
            conns = p.net_connections(kind="inet")
            name = p.name()
        except (psutil.Error, OSError):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN:
                out.append((name, c.laddr.ip, c.laddr.port))
    return out


def check_loopback(listeners: bool = True) -> None:
    """Raise unless every node of the cluster, and every server this process started, is on
    loopback (for clusters started here)."""
    bad = [a for a in node_addresses() if not _is_loopback(a)]
    if listeners:
        bad += [f"{name} listening on {ip}:{port}" for name, ip, port in ray_listeners()
                if not _is_loopback(ip)]
    if bad:
        raise ClusterError("a cluster started here must stay on loopback, but: "
                           + ", ".join(bad))
