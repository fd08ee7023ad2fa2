"""The board agent seen from the host: a shell driver across the network.

:class:`AgentClient` offers :class:`hwpart.board.shell.ShellDriver`'s
interface (open, swap, ensure, run, restore, metrics, the slot table), so the
host's FPGA device drives a remote board exactly as it drives a local one;
each call is one request and one reply (:mod:`hwpart.board.protocol`), a batch
included. It needs only numpy and pyzmq, so ``hwpart board link`` and
``hwpart board check --remote`` use it without torch too.

Failures are one clear line each: an agent that does not answer within the
time-out raises :class:`~hwpart.board.errors.FpgaDown` naming ``HOST:PORT``
and what was seen (no connection; a connection but no CURVE handshake, i.e. a
wrong agent key; or an agent that stopped answering), which the runtime and
the NPM treat as the device failing; a refused client key raises
:class:`~hwpart.board.errors.AgentAuthError`; the agent's own errors are
raised again here as the same classes, with its message.

Calls are serialised (one socket, one request in flight): the board has one
DMA engine, so a second request would wait on the board anyway.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.board import protocol as proto
from hwpart.board.errors import (
    BY_NAME,
    AgentAuthError,
    AgentError,
    DmaError,
    FpgaDown,
    FpgaError,
)
from hwpart.board.keys import client_keys
from hwpart.board.manifest import BoardManifest
from hwpart.board.shell import RunTiming, SlotState
from hwpart.errors import ConfigError

SCHEME = "remote://"


def parse_remote(url: str) -> tuple[str, int]:
    """``remote://HOST:PORT`` -> (host, port), or :class:`ConfigError` saying what is wrong."""
    s = url.strip()
    if not s.lower().startswith(SCHEME):
        raise ConfigError(f"{url!r}: a board agent is given as remote://HOST:PORT")
    rest = s[len(SCHEME):]
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{url!r}: a board agent is given as remote://HOST:PORT "
                          "(e.g. remote://127.0.0.1:7970)")
    return host, int(port)


class AgentClient:
    """See the module docstring. ``key_file``: the host's ``client.key_secret`` (the agent's
    public key is read from ``server.key`` beside it unless ``server_key`` is given)."""

    model = None  # the host models nothing of a remote board: it reports its own times

    def __init__(self, url: str, key_file: Path | str, server_key: Path | str | None = None,
                 timeout_s: float = 10.0, load_timeout_s: float = 120.0) -> None:
        self.host, self.port = parse_remote(url)
        self.endpoint = f"{self.host}:{self.port}"
        self.key_file = Path(key_file)
        self.server_key = server_key
        self.keys = client_keys(key_file, server_key)
        self.timeout_s, self.load_timeout_s = timeout_s, load_timeout_s
        self.manifest: BoardManifest | None = None
        self.info: dict[str, Any] = {}
        self.max_bytes = proto.DEFAULT_MAX_BYTES
        self.word_bits = 0
        self.sg = False
        self.simulated = False
        self.slots: list[SlotState] = []
        self.swaps = 0
        self.last_pr_bytes = 0
        self._swaps_base: int | None = None
        self._loaded = False
        self._lock = threading.Lock()
        self._seq = 0
        self._ctx: Any = None
        self.sock: Any = None
        self.mon: Any = None
        self._seen = {"connected": False, "handshake": False}

    # ------------------------------------------------------------------ transport

    def _connect(self) -> None:
        import zmq

        if self._ctx is None:
            self._ctx = zmq.Context()
        pub, sec, srv = self.keys
        s = self._ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = pub, sec, srv
        self.mon = s.get_monitor_socket(zmq.EVENT_CONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                                        | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                        | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                                        | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
        s.connect(f"tcp://{self.host}:{self.port}")
        self.sock = s
        self._seen = {"connected": False, "handshake": False}

    def _reset(self) -> None:
        """Drop the socket and whatever it still queues (a later request starts clean, and a
        late reply to a timed-out request is never taken for a new one's)."""
        if self.sock is not None:
            try:
                self.sock.disable_monitor()
            except Exception:
                pass
            self.mon.close(0)
            self.sock.close(0)
        self.sock = self.mon = None

    def close(self) -> None:
        with self._lock:
            self._reset()
            if self._ctx is not None:
                self._ctx.term()
                self._ctx = None

    def request(self, header: dict[str, Any], arrays: Sequence[np.ndarray] = (),
                timeout_s: float | None = None) -> tuple[dict[str, Any], list[np.ndarray]]:
        """One operation: send, wait for its reply (or raise, see the module docstring)."""
        with self._lock:
            return self._request(header, arrays, timeout_s)

    def _request(self, header: dict[str, Any], arrays: Sequence[np.ndarray],
                 timeout_s: float | None) -> tuple[dict[str, Any], list[np.ndarray]]:
        import zmq
        from zmq.utils.monitor import recv_monitor_message

        nbytes = sum(int(a.nbytes) for a in arrays)
        if nbytes > self.max_bytes:
            raise AgentError(f"board agent {self.endpoint}: a message of {nbytes} bytes is over "
                             f"its limit of {self.max_bytes} bytes: use a smaller batch, or "
                             "start the agent with a larger --max-mb")
        if self.sock is None:
            self._connect()
        self._seq += 1
        seq = self._seq
        self.sock.send_multipart(proto.encode({**header, "seq": seq}, arrays), copy=False)
        wait = self.timeout_s if timeout_s is None else timeout_s
        deadline = time.perf_counter() + wait
        poller = zmq.Poller()
        poller.register(self.sock, zmq.POLLIN)
        poller.register(self.mon, zmq.POLLIN)
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                why = ("it stopped answering" if self._seen["handshake"] else
                       "a connection was made but the CURVE handshake did not complete: is "
                       f"{self.server_key or self.key_file.parent / 'server.key'} the agent's "
                       "public key?" if self._seen["connected"] else
                       "nothing accepted a connection there: is `hwpart board serve` running, "
                       "and are the host, port and tunnel right?")
                self._reset()
                raise FpgaDown(f"board agent {self.endpoint} did not answer "
                               f"{header.get('op')!r} in {wait:g} s ({why})")
            events = dict(poller.poll(max(1, int(left * 1000))))
            if self.mon in events:
                ev = recv_monitor_message(self.mon)
                e = ev["event"]
                if e == zmq.EVENT_CONNECTED:
                    self._seen["connected"] = True
                elif e == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                    self._seen["handshake"] = True
                elif e == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
                    self._reset()
                    raise AgentAuthError(
                        f"board agent {self.endpoint} refused our key {self.key_file} (CURVE "
                        f"authentication failed, status {ev.get('value')}): put its public "
                        "key (client.key) in the agent's authorized/ folder")
            if self.sock in events:
                frames = self.sock.recv_multipart(copy=False)
                try:
                    reply, out = proto.decode(frames, self.max_bytes + proto.MAX_HEADER_BYTES)
                except proto.ProtocolError as exc:
                    self._reset()
                    raise AgentError(f"board agent {self.endpoint} sent a malformed reply: "
                                     f"{exc}") from None
                if reply.get("seq") != seq:
                    continue  # a late reply to an earlier request: not ours
                if not reply.get("ok"):
                    raise self._relayed(reply)
                return reply, out

    def _relayed(self, reply: dict[str, Any]) -> FpgaError:
        """The agent's error as the same class, its message and where it happened."""
        cls = BY_NAME.get(str(reply.get("error")), AgentError)
        msg = f"{reply.get('message')} [board agent {self.endpoint}]"
        slot = reply.get("slot") if isinstance(reply.get("slot"), int) else None
        rm = reply.get("rm") if isinstance(reply.get("rm"), str) else None
        if cls is DmaError:
            return DmaError(msg, slot, rm, int(reply.get("status") or 0))
        return cls(msg, slot, rm)

    # ------------------------------------------------------------------ driver interface

    def hello(self) -> dict[str, Any]:
        """What the agent serves (its board.json, board, limits); connects first."""
        reply, _ = self.request({"op": "hello"})
        if reply.get("protocol") != proto.PROTOCOL:
            raise AgentError(f"board agent {self.endpoint} speaks {reply.get('protocol')!r}, "
                             f"not {proto.PROTOCOL}: install the same hwpart on both sides")
        self.info = reply
        self.manifest = BoardManifest.from_json(reply["manifest"], ".",
                                                f"board.json of agent {self.endpoint}")
        self.max_bytes = int(reply["max_bytes"])
        self.word_bits = self.manifest.data_width_bits
        self.simulated = bool(reply.get("simulated"))
        self._slots_from(reply)
        return reply

    def _slots_from(self, reply: dict[str, Any]) -> None:
        rms = reply.get("slots")
        if isinstance(rms, list):
            if len(self.slots) != len(rms):
                self.slots = [SlotState() for _ in rms]
            for s, r in zip(self.slots, rms, strict=True):
                s.rm = r if isinstance(r, str) else None
        if isinstance(reply.get("swaps"), int):
            if self._swaps_base is None:
                self._swaps_base = reply["swaps"]
            self.swaps = reply["swaps"] - self._swaps_base

    @property
    def is_open(self) -> bool:
        return self._loaded

    def open(self) -> float:
        if self._loaded:
            return 0.0
        if self.manifest is None:
            self.hello()
        reply, _ = self.request({"op": "load"}, timeout_s=self.load_timeout_s)
        self.word_bits, self.sg = int(reply["word_bits"]), bool(reply.get("sg"))
        self._slots_from(reply)
        self._loaded = True
        return float(reply.get("load_s", 0.0))

    def recover(self) -> None:
        self._loaded = False

    def restore(self, while_idle: Callable[[], None] | None = None) -> None:
        with self._lock:
            if while_idle is not None:
                while_idle()
        if self.manifest is None:
            self.hello()
        reply, _ = self.request({"op": "load", "reload": True}, timeout_s=self.load_timeout_s)
        self._slots_from(reply)
        self._loaded = True

    def slot_rms(self) -> list[str | None]:
        return [s.rm for s in self.slots]

    def _swap_op(self, k: int, rm: str, force: bool,
                 admit: Callable[[], None] | None) -> float:
        self.open()
        if admit is not None:
            admit()
        reply, _ = self.request({"op": "swap", "slot": k, "rm": rm, "force": force},
                                timeout_s=self.load_timeout_s)
        self._slots_from(reply)
        self.last_pr_bytes = int(reply.get("pr_bytes") or 0)
        return float(reply["swap_s"])

    def swap(self, k: int, rm_name: str, admit: Callable[[], None] | None = None) -> float:
        return self._swap_op(k, rm_name, True, admit)

    def ensure(self, k: int, rm_name: str, admit: Callable[[], None] | None = None) -> float:
        return self._swap_op(k, rm_name, False, admit)

    def run(self, rms: Sequence[str], slots: Sequence[int], words: np.ndarray,
            admit: Callable[[], None] | None = None) -> tuple[np.ndarray, RunTiming]:
        """One batch, one round trip; the timing is the board's (``modeled`` when the agent
        serves a simulated board), with the network's share in ``link_s``."""
        self.open()
        words = np.ascontiguousarray(words).reshape(-1).view(np.uint8)
        t_ask = time.perf_counter()
        with self._lock:
            t_got = time.perf_counter()
            if admit is not None:
                admit()
            reply, out = self._request({"op": "run", "rms": list(rms), "slots": list(slots)},
                                       [words], None)
            wall = time.perf_counter() - t_got
        self._slots_from(reply)
        if len(out) != 1 or out[0].dtype != np.uint8:
            raise AgentError(f"board agent {self.endpoint}: a run reply needs one uint8 array")
        timing = RunTiming(float(reply["service_s"]), float(reply["swap_s"]),
                           float(reply["wait_s"]) + (t_got - t_ask), bool(reply["modeled"]),
                           max(0.0, wall - float(reply.get("agent_s", 0.0))))
        return out[0], timing

    def release(self, rms: Sequence[str], slots: Sequence[int]) -> None:
        """The agent keeps a bounded set of buffers itself: nothing to send."""

    def metrics(self) -> dict[str, Any]:
        """The agent's counters; a short time-out, as the monitor asks often."""
        reply, _ = self.request({"op": "metrics"}, timeout_s=min(2.0, self.timeout_s))
        self._slots_from(reply)
        return reply

    # ------------------------------------------------------------------ the link

    def ping(self, send_bytes: int = 0, reply_bytes: int = 0) -> tuple[float, float]:
        """One round trip carrying ``send_bytes`` out and ``reply_bytes`` back: (wall seconds
        on the host, seconds the agent spent on it)."""
        if self.manifest is None:
            self.hello()  # learns the agent's limits first
        arrays = [np.zeros(send_bytes, np.uint8)] if send_bytes else []
        t0 = time.perf_counter()
        reply, _ = self.request({"op": "ping", "reply_bytes": reply_bytes}, arrays)
        return time.perf_counter() - t0, float(reply.get("agent_s", 0.0))

    def measure_link(self, rounds: int = 20,
                     sizes: Sequence[int] = (65536, 262144, 1 << 20, 4 << 20)) -> dict[str, Any]:
        """Round trip (median of ``rounds`` empty pings) and bandwidth (least-squares slope of
        the round trip against bytes moved, each size sent out and back) of the host <->
        agent link, as a request of the FPGA device sees it (the agent's handling included)."""
        if self.manifest is None:
            self.hello()
        for _ in range(3):  # warm: connection, buffers
            self.ping()
        rtt = statistics.median(self.ping()[0] for _ in range(rounds))
        pts = [(0.0, rtt)]
        for s in sizes:
            s = min(int(s), self.max_bytes)
            reps = max(3, rounds // 4)
            t = statistics.median(self.ping(s, s)[0] for _ in range(reps))
            pts.append((2.0 * s, t))
        xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
        slope = float(np.polyfit(xs, ys, 1)[0]) if len(set(xs)) > 1 else 0.0
        if not slope > 0:
            raise AgentError(f"board agent {self.endpoint}: round trips did not grow with the "
                             f"bytes moved ({pts}); the link's bandwidth cannot be measured "
                             "like this (retry on a quieter machine, or with larger sizes)")
        bw = 1.0 / slope
        return {"rtt_s": rtt, "bandwidth_Bps": bw,
                "points": [{"bytes": int(x), "round_trip_s": y} for x, y in pts]}
