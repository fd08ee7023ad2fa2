"""``hwpart board serve``: the board agent, serving the FPGA device's operations to a host.

The host's FPGA device (``--fpga remote://HOST:PORT --key KEYFILE``) sends one
request per operation and the agent runs it on the board with
:class:`hwpart.board.shell.ShellDriver`: *load* the shell, *swap* an RM into a
slot, *run* a batch of stream words through a chain of slots (one round trip
per batch: the words in, the result's words and the board's service time
out), *metrics*, *ping* (round trip and bandwidth of the link), and *hello*
(what the agent serves).

Transport: ZeroMQ (pyzmq, on every PYNQ image), a ROUTER socket with CURVE
encryption and authentication. Only clients whose public keys are in the keys
folder's ``authorized/`` get through the handshake (a ZAP handler,
``zmq.auth.thread.ThreadAuthenticator``); messages are a JSON header and raw
array bytes (:mod:`hwpart.board.protocol`), never pickles.

Limits: the agent binds to 127.0.0.1 unless ``--bind`` says otherwise (reach
it through an SSH tunnel, or bind the board's address on a trusted network);
it serves only the bitstreams ``board.json`` lists, and checks every listed
file's sha256 before it starts (and each file again before it is downloaded);
a message's arrays are bounded by ``--max-mb`` (ZeroMQ's ``MAXMSGSIZE`` drops a
peer that sends a bigger frame; a message over the limit by less than that is
answered with an error); a malformed message is answered with an error and the
agent carries on.

Requests run one at a time, in arrival order: the fabric has one DMA engine,
so a second request would only wait for it. With ``--sim`` the simulated board
(:mod:`hwpart.sim.board`, host modules) stands behind PYNQ's API and the times
the agent reports are its *modeled* timeline, labelled so in every reply.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.board import protocol as proto
from hwpart.board.errors import FpgaError
from hwpart.board.keys import AUTHORIZED, SERVER, load_pair
from hwpart.board.manifest import BoardManifest, load_board_manifest, verify
from hwpart.board.shell import ShellDriver
from hwpart.errors import ConfigError, HwpartError

DEFAULT_PORT = 7970
#: how many verification problems a refusal lists before it counts the rest
SHOW_PROBLEMS = 5


def pynq_version() -> str:
    try:
        import pynq
    except ImportError:
        return "not installed"
    return str(getattr(pynq, "__version__", "unknown"))


class Agent:
    """One agent: a bound, authenticated ROUTER socket in front of one shell driver."""

    def __init__(self, manifest: BoardManifest, driver: ShellDriver, keys_dir: Path | str,
                 bind: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 max_bytes: int = proto.DEFAULT_MAX_BYTES, simulated: bool = False,
                 sim: Any = None, log: Any = None) -> None:
        import zmq
        import zmq.auth.thread

        self.manifest, self.driver = manifest, driver
        self.max_bytes = int(max_bytes)
        self.simulated, self.sim = simulated, sim
        self.log = log or sys.stderr
        self.requests = self.errors = 0
        keys = Path(keys_dir)
        pub, sec = load_pair(keys / f"{SERVER}.key_secret", "agent")
        allowed = keys / AUTHORIZED
        if not allowed.is_dir() or not any(allowed.glob("*.key")):
            raise ConfigError(f"{allowed}: no authorized client keys (*.key); the agent lets "
                              "nobody in without them (`hwpart board keys DIR` writes one)")
        self.authorized = len(list(allowed.glob("*.key")))
        self.ctx = zmq.Context()
        self.auth = zmq.auth.thread.ThreadAuthenticator(self.ctx)
        self.auth.start()
        self.auth.configure_curve(domain="*", location=str(allowed))
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        # ZeroMQ drops a peer whose frame is bigger than this, before buffering it
        self.sock.setsockopt(zmq.MAXMSGSIZE, self.max_bytes + proto.MAX_HEADER_BYTES)
        self.sock.curve_secretkey, self.sock.curve_publickey = sec, pub
        self.sock.curve_server = True
        try:
            if port:
                self.sock.bind(f"tcp://{bind}:{port}")
                self.port = port
            else:
                self.port = self.sock.bind_to_random_port(f"tcp://{bind}")
        except zmq.ZMQError as exc:
            self.close()
            raise ConfigError(f"cannot bind tcp://{bind}:{port}: {exc}") from exc
        self.bind = bind
        self._stop = threading.Event()

    # ------------------------------------------------------------------ loop

    def serve(self, stop: threading.Event | None = None) -> None:
        """Answer requests until ``stop`` (or :meth:`stop`) is set."""
        import zmq

        stop = stop or self._stop
        while not stop.is_set() and not self._stop.is_set():
            if not self.sock.poll(100, zmq.POLLIN):
                continue
            ident, frames, problem = self._receive()
            reply = self._handle(frames, problem)
            try:
                self.sock.send_multipart([ident, *reply], copy=False)
            except zmq.ZMQError as exc:  # the peer went away: nothing to answer
                print(f"hwpart agent: reply not sent: {exc}", file=self.log, flush=True)

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.sock.close(0)
        self.auth.stop()
        self.ctx.term()

    def _receive(self) -> tuple[bytes, list[Any], str | None]:
        """One whole message, part by part, keeping at most the limits' worth of it."""
        import zmq

        ident = self.sock.recv()
        frames: list[Any] = []
        total, problem = 0, None
        while self.sock.getsockopt(zmq.RCVMORE):
            f = self.sock.recv(copy=False)
            total += len(f.buffer)
            if len(frames) >= 1 + proto.MAX_ARRAYS:
                problem = f"message of more than {1 + proto.MAX_ARRAYS} frames"
            elif total > self.max_bytes + proto.MAX_HEADER_BYTES:
                problem = (f"message of more than {total} bytes exceeds the limit of "
                           f"{self.max_bytes} bytes (hwpart board serve --max-mb)")
            if problem is None:
                frames.append(f)
        return ident, frames, problem

    def _handle(self, frames: list[Any], problem: str | None) -> list[Any]:
        t0 = time.perf_counter()
        self.requests += 1
        seq: Any = None
        try:
            if problem is not None:
                raise proto.ProtocolError(problem)
            header, arrays = proto.decode(frames, self.max_bytes)
            seq = header.get("seq")
            op = header.get("op")
            if op not in proto.OPS:
                raise proto.ProtocolError(f"unknown operation {op!r}; this agent serves "
                                          f"{', '.join(proto.OPS)}")
            out, out_arrays = getattr(self, f"op_{op}")(header, arrays)
            out.setdefault("swaps", self.driver.swaps)
            out.update(ok=True, seq=seq, agent_s=time.perf_counter() - t0)
            return proto.encode(out, out_arrays)
        except Exception as exc:  # every failure is an answer, never a dead agent
            self.errors += 1
            return proto.encode(self._error(exc, seq, t0))

    def _error(self, exc: Exception, seq: Any, t0: float) -> dict[str, Any]:
        if isinstance(exc, proto.ProtocolError):
            name, message = "AgentError", f"bad request: {exc}"
        elif isinstance(exc, FpgaError):
            name, message = type(exc).__name__, exc.detail
        elif isinstance(exc, HwpartError):
            name, message = "AgentError", str(exc)
        else:  # a bug or an unexpected PYNQ failure: keep its traceback in the agent's log
            traceback.print_exc(file=self.log)
            name, message = "FpgaError", f"agent error: {type(exc).__name__}: {exc}"
        print(f"hwpart agent: refused: {name}: {message}", file=self.log, flush=True)
        return {"ok": False, "seq": seq if isinstance(seq, int) else None, "error": name,
                "message": message, "slot": getattr(exc, "slot", None),
                "rm": getattr(exc, "rm", None), "status": getattr(exc, "status", None),
                "agent_s": time.perf_counter() - t0}

    # ------------------------------------------------------------------ operations

    def op_hello(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        return {"protocol": proto.PROTOCOL, "manifest": self.manifest.to_json(),
                "simulated": self.simulated, "pynq": pynq_version(),
                "python": sys.version.split()[0], "max_bytes": self.max_bytes,
                "slots": self.driver.slot_rms()}, []

    def op_load(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        if proto.field(h, "reload", bool, False):
            t0 = time.perf_counter()
            self.driver.restore()
            took = time.perf_counter() - t0
        else:
            took = self.driver.open()
        return {"load_s": took, "word_bits": self.driver.word_bits, "sg": self.driver.sg,
                "slots": self.driver.slot_rms()}, []

    def op_swap(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        k, rm = proto.field(h, "slot", int), proto.field(h, "rm", str)
        force = proto.field(h, "force", bool, True)
        took = self.driver.swap(k, rm) if force else self.driver.ensure(k, rm)
        return {"swap_s": took, "modeled": self.driver.model is not None,
                "pr_bytes": self.driver.last_pr_bytes, "slots": self.driver.slot_rms()}, []

    def op_run(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        rms, slots = proto.str_list(h, "rms"), proto.int_list(h, "slots")
        if len(a) != 1 or a[0].dtype != np.uint8:
            raise proto.ProtocolError("a run takes one uint8 array of stream words")
        out, t = self.driver.run(rms, slots, a[0])
        return {"service_s": t.service_s, "swap_s": t.swap_s, "wait_s": t.wait_s,
                "modeled": t.modeled, "slots": self.driver.slot_rms()}, [out]

    def op_metrics(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        m = self.driver.metrics()
        m.update(requests=self.requests, errors=self.errors, simulated=self.simulated)
        if self.sim is not None:
            m["sim_modeled"] = self.sim.modeled()
            m["mem_used_b"], m["mem_total_b"] = self.sim.ddr.used_bytes, self.sim.ddr.size
        return m, []

    def op_ping(self, h: dict[str, Any], a: list[np.ndarray]) -> tuple[dict[str, Any], list]:
        n = proto.field(h, "reply_bytes", int, 0)
        if not 0 <= n <= self.max_bytes:
            raise proto.ProtocolError(f"field 'reply_bytes' must be 0..{self.max_bytes}")
        return {"received_bytes": int(sum(x.nbytes for x in a))}, (
            [np.zeros(n, np.uint8)] if n else [])


# --------------------------------------------------------------------------- bring-up


def open_bundle(bundle: Path, sim: bool) -> BoardManifest:
    """The bundle's board.json, every file checked against it; the simulated board may write
    a missing board.json from manifest.yaml (host modules)."""
    if not (bundle / "board.json").is_file():
        if not sim:
            raise ConfigError(f"{bundle}: no board.json; deploy the bundle (hwpart deploy "
                              "writes it) or write it on the host with "
                              "hwpart.board.manifest.write_board_manifest")
        from hwpart.board.manifest import write_board_manifest

        write_board_manifest(bundle)
    m = load_board_manifest(bundle)
    problems = verify(m)
    if problems:
        more = len(problems) - SHOW_PROBLEMS
        raise ConfigError(f"{bundle}: the bundle does not match board.json, refusing to use "
                          f"it: {'; '.join(problems[:SHOW_PROBLEMS])}"
                          f"{f' (and {more} more)' if more > 0 else ''}")
    return m


def make_agent(bundle: Path | str, keys: Path | str, bind: str = "127.0.0.1",
               port: int = DEFAULT_PORT, sim: bool = False, pace: bool | None = None,
               max_bytes: int = proto.DEFAULT_MAX_BYTES, timeout_s: float = 2.0) -> Agent:
    """An agent for ``bundle`` with its shell loaded: on the board PYNQ finds, or on a fresh
    simulated board (``sim``)."""
    root = Path(bundle)
    m = open_bundle(root, sim)
    if m.simulated and not sim:
        raise ConfigError(f"{root}: its bitstreams are the simulated board's stand-ins "
                          "(board.json: simulated); serve it with --sim, or deploy a bundle "
                          "Vivado built")
    if sim and not m.simulated:
        raise ConfigError(f"{root}: its bitstreams are Vivado's; the simulated board runs only "
                          "simulated bundles (drop --sim on the board)")
    board = None
    if sim:
        from hwpart.sim.board import install

        board = install(m.board, pace=pace)
    driver = ShellDriver(m, device=board, timeout_s=timeout_s, model=board)
    driver.open()
    return Agent(m, driver, keys, bind, port, max_bytes, simulated=sim, sim=board)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the deployed overlay bundle (with board.json)")
    p.add_argument("--keys", required=True,
                   help="folder with server.key_secret and authorized/*.key "
                        "(`hwpart board keys DIR` makes them)")
    p.add_argument("--bind", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: reach it through an SSH "
                        "tunnel; 0.0.0.0 exposes it to the network, keys still required)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help=f"TCP port (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--sim", action="store_true",
                   help="serve a simulated board (host only; also HWPART_FPGA=sim)")
    p.add_argument("--pace", choices=("on", "off"),
                   help="simulated board: hold completions to the modeled time (default: "
                        "$HWPART_SIM_PACE, else on)")
    p.add_argument("--max-mb", type=float, default=proto.DEFAULT_MAX_BYTES / 2**20,
                   help="largest message's arrays, MiB (default %(default)g)")
    p.add_argument("--timeout", type=float, default=2.0,
                   help="per transfer, beyond its modeled time, seconds (default %(default)g)")


def run(args: argparse.Namespace) -> int:
    sim = args.sim or os.environ.get("HWPART_FPGA", "").strip().lower() == "sim"
    _warn_exposed(args.bind)
    pace = None if args.pace is None else args.pace == "on"
    agent = make_agent(args.bundle, args.keys, args.bind, args.port, sim, pace,
                       int(args.max_mb * 2**20), args.timeout)
    m = agent.manifest
    what = (f"simulated board {m.board} (modeled times)" if sim
            else f"PYNQ {pynq_version()} board")
    print(f"hwpart board serve: bundle {m.name} ({len(m.rms)} RMs, {m.slots} slots) on {what}; "
          f"listening on {agent.bind}:{agent.port} (CURVE, {agent.authorized} authorized "
          f"client key(s))", flush=True)
    stop = threading.Event()
    prev = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        agent.serve(stop)
    finally:
        signal.signal(signal.SIGTERM, prev)
        agent.close()
    print("hwpart board serve: stopped", flush=True)
    return 0


def _warn_exposed(bind: str) -> None:
    try:
        loopback = ipaddress.ip_address(bind).is_loopback
    except ValueError:
        loopback = bind == "localhost"
    if not loopback:
        print(f"hwpart board serve: warning: binding {bind} exposes the agent beyond this "
              "machine; only CURVE keys in authorized/ are let in", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- a child agent


class AgentProcess:
    """An agent in a child process on loopback (tests, benches, a local simulated board):
    started by :func:`spawn`, ended by :meth:`stop` (SIGTERM, then SIGKILL). ``log``: the
    last lines it wrote to stderr (its refusals), drained so it never blocks on a pipe."""

    def __init__(self, proc: Any, port: int, banner: str, log: Any) -> None:
        self.proc, self.port, self.banner, self.log = proc, port, banner, log
        self.url = f"remote://127.0.0.1:{port}"

    def stop(self, timeout_s: float = 10.0) -> int | None:
        import subprocess

        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout_s)
        return self.proc.returncode

    def __enter__(self) -> AgentProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def spawn(bundle: Path | str, keys: Path | str, *args: str, env: dict[str, str] | None = None,
          timeout_s: float = 120.0) -> AgentProcess:
    """``hwpart board serve BUNDLE --keys KEYS --port 0 ARGS...`` in a child process, bound to
    127.0.0.1; returns once it listens (its banner read), or raises with what it said."""
    import collections
    import queue
    import re
    import subprocess

    cmd = [sys.executable, "-m", "hwpart.board", "serve", str(bundle), "--keys", str(keys),
           "--bind", "127.0.0.1", "--port", "0", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    out: queue.Queue[str] = queue.Queue()
    log: collections.deque[str] = collections.deque(maxlen=200)

    def drain(stream: Any, sink: Any) -> None:
        for line in stream:
            sink(line.rstrip("\n"))

    drains = [threading.Thread(target=drain, args=(proc.stdout, out.put), daemon=True),
              threading.Thread(target=drain, args=(proc.stderr, log.append), daemon=True)]
    for th in drains:
        th.start()
    deadline = time.monotonic() + timeout_s
    banner = ""
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            banner = out.get(timeout=0.2)
            break
        except queue.Empty:
            continue
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", banner)
    if m is None:
        if proc.poll() is None:
            proc.kill()
        proc.wait(30)
        drains[1].join(5)  # its last words: the pipe closes when it exits
        said = [ln for ln in log if ln.strip()][-1:] or [banner or "no output"]
        raise HwpartError(f"the agent did not start ({' '.join(cmd)}): {said[0]}")
    return AgentProcess(proc, int(m.group(1)), banner, log)
