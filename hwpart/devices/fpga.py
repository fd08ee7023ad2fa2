"""The FPGA as a device: hls4ml RMs in DFX slots of the hwpart shell, on a local or a remote board.

The fabric is driven by the torch-free shell driver
(:class:`hwpart.board.shell.ShellDriver`: PYNQ's ``Overlay``, ``pr_download``,
``MMIO`` for the switch and each slot's decoupler, control and identity blocks at
the addresses the shell's ``.hwh`` gives them, ``pynq.allocate`` and
``pynq.lib.dma.DMA``), on the packed stream words of the RMs. This module keeps
the host's side: stages and plans, float <-> ``ap_fixed`` packing, service-time
reporting, faults. Where the driver runs, ``fpga=`` (or ``HWPART_FPGA``) says:

* ``sim``: the simulated board (:mod:`hwpart.sim.board`) in this process;
* ``board``: the board PYNQ finds here (``Device.active_device``);
* ``auto``: a board when PYNQ finds one, else the simulated board;
* ``remote://HOST:PORT``: a board agent (``hwpart board serve``) across the
  network, with ``key=`` (or ``HWPART_FPGA_KEY``) the host's CURVE key file.
  The same driver then runs on the board, behind
  :class:`hwpart.board.client.AgentClient`: one round trip per batch.

The bundle: ``overlay=`` or ``HWPART_OVERLAY``. With a remote board the host
still reads its own copy of the bundle (RM types, layers), and checks at
connection that the agent serves the same RMs and bitstreams.

Data path of one stage run: float tensor -> channels-last rows
(:func:`hwpart.overlay.hls.to_stream`) -> ``ap_fixed`` words of the first RM's
input type (:mod:`hwpart.sim.fixed`, vectorised numpy) -> the driver (DMA MM2S
-> switch -> slot(s) -> switch -> DMA S2MM) -> words of the last RM's output
type -> float. The conversion is the one hls4ml's C simulation applies, so the
result is bit-identical to the C simulation of the same float input.

Locks, PR swaps (idle the slot, decouple, sha256-checked ``pr_download``, reset,
identity check) and recovery from a failed transfer are the driver's
(:mod:`hwpart.board.shell`).

Service time: after each batch the handle carries the time the batch spent in
the device (``LoadedStage.service_s``), without lock waits; on the simulated
board -- local, or behind an agent -- that is the board's *modeled* timeline of
the round trip (MM2S issue to S2MM completion) plus any PR swap it needed, so
reports compare the plan with the modeled board, and show the simulator's host
time apart. Across the network the link's share is kept apart too
(``BatchTiming.link_s``).

Faults: :meth:`FpgaDevice.fail` takes the device down (a scenario's injected
failure, :mod:`hwpart.npm.scenario`): from then on every transfer and every
swap raises :class:`FpgaDown`, naming the slot, so the re-allocator sees a
device that raises, as it would a board that stopped answering -- which is
what a remote board that stops answering raises too. A batch already past the
check finishes. :meth:`FpgaDevice.restore` brings it back the way a board comes
back: the shell is reloaded, so every slot is empty and the next batch swaps
its RMs in again.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwpart import timing
from hwpart.board.errors import (  # noqa: F401  (re-exported: the FPGA's errors, one source)
    AgentAuthError,
    AgentError,
    BundleIntegrityError,
    DmaError,
    DmaTimeout,
    FpgaDown,
    FpgaError,
)
from hwpart.board.manifest import BoardManifest, board_manifest_of
from hwpart.board.shell import RunTiming, ShellDriver, SlotState
from hwpart.devices.base import LoadedStage, Metrics, merge_outputs, register_device
from hwpart.errors import DeviceError
from hwpart.graph import LayerGraph
from hwpart.partition import unit_slots
from hwpart.sim.bundle import Bundle, BundleRM, load_bundle
from hwpart.sim.fixed import StreamLayout
from hwpart.stages import Stage

REMOTE = "remote://"


def fpga_mode(mode: str | None = None) -> str:
    """``sim``, ``board``, ``auto`` or ``remote://HOST:PORT`` (checked), from ``mode`` or
    ``HWPART_FPGA``."""
    m = (mode or os.environ.get("HWPART_FPGA") or "auto").strip()
    if m.lower().startswith(REMOTE):
        from hwpart.board.client import parse_remote

        host, port = parse_remote(m)
        return f"{REMOTE}{host}:{port}"
    m = m.lower()
    if m not in ("sim", "board", "auto"):
        raise DeviceError(f"unknown FPGA mode {m!r} (HWPART_FPGA / --fpga): use sim, board, "
                          "auto or remote://HOST:PORT")
    return m


def board_present() -> bool:
    """True when PYNQ finds a real (embedded or remote) device, i.e. not the simulated one."""
    import pynq

    from hwpart.sim.board import SimBoard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return any(not isinstance(d, SimBoard) for d in pynq.Device.devices)
        except Exception:
            return False


@dataclass
class BatchTiming:
    """Where one batch's time went (see the module docstring)."""

    service_s: float  # in the device: modeled board time on the simulated board
    wait_s: float  # waiting for the slots' and the DMA engine's locks
    modeled: bool
    link_s: float = 0.0  # across the network to a board agent and back


@dataclass
class _Plan:
    """A loaded stage on the fabric: the RMs in stream order and their slots."""

    rms: list[BundleRM]
    slots: list[int]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    layouts: dict[int, tuple[StreamLayout, StreamLayout]] = field(default_factory=dict)
    last: BatchTiming | None = None  # the latest batch (one worker per plan)

    @property
    def names(self) -> list[str]:
        return [r.spec.name for r in self.rms]

    def layout(self, word_bits: int) -> tuple[StreamLayout, StreamLayout]:
        """(stream layout in, out) for the shell's DMA word width, built once."""
        if word_bits not in self.layouts:
            self.layouts[word_bits] = (self.rms[0].spec.layout_in(word_bits),
                                       self.rms[-1].spec.layout_out(word_bits))
        return self.layouts[word_bits]


class FpgaDevice:
    """See the module docstring. ``timeout_s``: per transfer, beyond the modeled time;
    ``key``/``server_key``: CURVE key files for a remote board, ``remote_timeout_s`` how long
    its agent may take to answer one request before the device counts as failed."""

    kind = "fpga"

    def __init__(self, overlay: str | Path | None = None, fpga: str | None = None,
                 board: str | None = None, timeout_s: float = 2.0, pace: bool | None = None,
                 name: str = "fpga", key: str | Path | None = None,
                 server_key: str | Path | None = None, remote_timeout_s: float = 10.0) -> None:
        self.name = name
        self.mode = fpga_mode(fpga)
        self.overlay_path = overlay or os.environ.get("HWPART_OVERLAY")
        self.board_name = board
        self.timeout_s = timeout_s
        self.remote_timeout_s = remote_timeout_s  # a board agent's answer to one request
        self.pace = pace
        self.key = key or os.environ.get("HWPART_FPGA_KEY")
        self.server_key = server_key or os.environ.get("HWPART_FPGA_SERVER_KEY")
        self.bundle: Bundle | None = None
        self.sim: Any = None  # the SimBoard when simulated here
        self.pdev: Any = None  # the pynq.Device a local driver goes to
        self.driver: Any = None  # ShellDriver (local) or AgentClient (remote)
        self._t_metrics = time.perf_counter()
        self._busy_last = 0.0
        self._down: str | None = None  # why the device is down (fail()), None when up

    @property
    def remote(self) -> bool:
        return self.mode.startswith(REMOTE)

    # ------------------------------------------------------------------ bring-up

    def _load_bundle(self) -> Bundle:
        if self.bundle is None:
            if not self.overlay_path:
                raise DeviceError("no overlay bundle for the FPGA: pass --overlay BUNDLE "
                                  "or set HWPART_OVERLAY")
            self.bundle = load_bundle(self.overlay_path)
        return self.bundle

    def available(self) -> tuple[bool, str]:
        if self.remote:
            where = f"board agent {self.mode[len(REMOTE):]}"
            if not self.key:
                return False, f"{where}; no key (--key KEYFILE / HWPART_FPGA_KEY)"
        else:
            try:
                import pynq  # noqa: F401
            except ImportError:
                return False, "pynq is not installed (pip install hwpart[sim] or [board])"
            where = "simulated board" if self.mode == "sim" else (
                "PYNQ board" if self.mode == "board" else "PYNQ board or simulated board")
        if not self.overlay_path:
            return False, f"{where}; no overlay bundle (--overlay BUNDLE / HWPART_OVERLAY)"
        try:
            b = self._load_bundle()
        except Exception as exc:
            return False, f"overlay bundle unreadable: {exc}"
        return True, f"{where}, bundle {b.name} ({len(b.rms)} RMs, {b.slots} slots)"

    def open(self) -> None:
        """Bring the driver up and load the shell (once, and again after a failure)."""
        if self.driver is None:
            self.driver = self._remote_driver() if self.remote else self._local_driver()
        self.driver.open()

    def _local_driver(self) -> ShellDriver:
        b = self._load_bundle()
        if self.pdev is None:
            mode = self.mode
            if mode == "auto":
                mode = "board" if board_present() else "sim"
            if mode == "sim":
                from hwpart.sim.board import install

                self.sim = install(self.board_name or b.board, pace=self.pace)
                self.pdev = self.sim
                self.name = f"fpga ({self.sim.name}, simulated)"
            else:
                import pynq

                self.pdev = pynq.Device.active_device
                self.name = f"fpga ({self.pdev.name})"
        return ShellDriver(board_manifest_of(b), self.pdev, self.timeout_s, model=self.sim)

    def _remote_driver(self) -> Any:
        from hwpart.board.client import AgentClient

        b = self._load_bundle()
        if not self.key:
            raise DeviceError(f"FPGA {self.mode} needs the host's key: --key KEYFILE (or "
                              "HWPART_FPGA_KEY); `hwpart board keys DIR` makes one")
        client = AgentClient(self.mode, self.key, self.server_key,
                             timeout_s=max(self.remote_timeout_s, 2 * self.timeout_s))
        client.hello()
        _same_bundle(board_manifest_of(b), client.manifest, client.endpoint)
        what = "simulated board" if client.simulated else f"PYNQ {client.info.get('pynq')}"
        self.name = f"fpga ({what} at {client.endpoint})"
        return client

    # ------------------------------------------------------------------ the driver's state

    @property
    def _slots(self) -> list[SlotState]:
        """The slot table (which RM each slot holds), as the driver last saw it."""
        return list(self.driver.slots) if self.driver is not None else []

    @property
    def swaps(self) -> int:
        return self.driver.swaps if self.driver is not None else 0

    @property
    def dma(self) -> Any:
        """The local shell's ``pynq.lib.dma.DMA`` (None across the network)."""
        return getattr(self.driver, "dma", None)

    @property
    def word_bits(self) -> int:
        self.open()
        return int(self.driver.word_bits)

    # ------------------------------------------------------------------ Device protocol

    def capabilities(self, lg: LayerGraph) -> set[str]:
        try:
            b = self._load_bundle()
        except Exception:
            return set()
        nodes = set(lg.dag.nodes)
        return {n for r in b.rms for n in r.spec.layers if n in nodes}

    def _chain_for(self, nodes: list[str]) -> list[BundleRM]:
        """RMs whose layers, in order, are exactly ``nodes`` (one RM, or a chain of them)."""
        b = self._load_bundle()
        chain = timing.rm_chain([r.spec.layers for r in b.rms], nodes)
        if chain is None:
            raise DeviceError(f"no RM (or chain of RMs) in bundle {b.name} implements layers "
                              f"{nodes}; available: {[r.spec.layers for r in b.rms]}")
        return [b.rms[i] for i in chain]

    def load(self, stage: Stage) -> LoadedStage:
        self.open()
        b = self._load_bundle()
        chain = self._chain_for(list(stage.nodes))
        if len(chain) > b.slots:
            raise DeviceError(f"stage {stage.name} needs {len(chain)} slots, the shell has {b.slots}")
        for a, c in zip(chain, chain[1:], strict=False):
            if a.spec.tout != c.spec.tin or a.spec.n_out != c.spec.n_in:
                raise DeviceError(f"RMs {a.spec.name} -> {c.spec.name} cannot be chained: "
                                  f"{a.spec.out_type}x{a.spec.n_out} vs {c.spec.in_type}x{c.spec.n_in}")
        acts = [n for n in stage.inputs if n not in stage.consts]
        if len(acts) != 1:
            raise DeviceError(f"stage {stage.name}: an FPGA stage takes one activation input, "
                              f"got {acts}")
        slots = list(unit_slots(stage.unit)) or [0]  # "fpga0+1": the plan's own slots
        plan = self.plan([r.spec.name for r in chain], slots)
        for r, k in zip(plan.rms, plan.slots, strict=True):
            self.driver.ensure(k, r.spec.name)
        return LoadedStage(stage, self.name, {"plan": plan, "input": acts[0]})

    def plan(self, rm_names: list[str], slots: int | list[int] = 0) -> _Plan:
        """RMs chained in stream order (for :meth:`run_array`): in ``slots`` when it names
        one per RM, else in consecutive slots from the first one given."""
        b = self._load_bundle()
        chain = [b.rm(n) for n in rm_names]
        given = timing.chain_slots([slots] if isinstance(slots, int) else list(slots),
                                   len(chain), b.slots)
        if any(not 0 <= k < b.slots for k in given):
            raise DeviceError(f"slots {given} for RMs {rm_names}: the shell of bundle {b.name} "
                              f"has slots 0..{b.slots - 1}")
        return _Plan(chain, given, tuple(chain[0].spec.in_shape), tuple(chain[-1].spec.out_shape))

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]:
        plan: _Plan = handle.state["plan"]
        x = env[handle.state["input"]]
        out = self.run_array(plan, x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
        if plan.last is not None:
            handle.service_s, handle.service_modeled = plan.last.service_s, plan.last.modeled
            handle.wait_s = plan.last.wait_s
        return merge_outputs(handle.stage, env, torch.from_numpy(out))

    def unload(self, handle: LoadedStage) -> None:
        plan: _Plan = handle.state["plan"]
        if self.driver is not None:  # RMs stay in their slots: a reload is free
            self.driver.release(plan.names, plan.slots)

    def metrics(self) -> Metrics:
        """Utilisation is the board's busy time per wall second: *modeled* busy time on the
        simulated board (local or behind an agent), measured in transfers on a board."""
        m: Metrics = {"util": None, "power_w": None, "energy_j": None,
                      "mem_used_b": None, "mem_total_b": None, "modeled_busy_s": None}
        if self.driver is None or (self.remote and self._down is not None):
            return m
        try:
            d = self.driver.metrics()
        except FpgaError:  # a remote board that does not answer has nothing to report
            return m
        busy = float(d.get("busy_s") or 0.0)
        now = time.perf_counter()
        dt, self._t_metrics = now - self._t_metrics, now
        m["util"] = min(1.0, max(0.0, busy - self._busy_last) / dt) if dt > 0 else None
        self._busy_last = busy
        if d.get("modeled"):
            m["modeled_busy_s"] = busy
        if self.sim is not None:
            m["mem_used_b"] = float(self.sim.ddr.used_bytes)
            m["mem_total_b"] = float(self.sim.ddr.size)
        elif d.get("mem_total_b") is not None:
            m["mem_used_b"], m["mem_total_b"] = (float(d["mem_used_b"]),
                                                 float(d["mem_total_b"]))
        return m

    # ------------------------------------------------------------------ fabric control

    def swap(self, k: int, rm_name: str) -> None:
        """Put RM ``rm_name`` into slot ``k`` (the driver's PR sequence)."""
        self.open()
        b = self._load_bundle()
        r = b.rm(rm_name)
        if k not in r.partials:
            raise FpgaError(f"bundle has no partial of this RM for slot {k}", k, rm_name)
        self.driver.swap(k, rm_name, admit=lambda: self._check_up([k], rm_name))

    # ------------------------------------------------------------------ data path

    def run_array(self, plan: _Plan, x: np.ndarray) -> np.ndarray:
        """(N, *in_shape) float -> (N, *out_shape) float32 through the fabric."""
        from hwpart.overlay.hls import from_stream, to_stream

        if tuple(x.shape[1:]) != plan.in_shape:
            raise DeviceError(f"RM {plan.rms[0].spec.name} takes per-sample shape {plan.in_shape}, "
                              f"got {tuple(x.shape[1:])}")
        n = x.shape[0]
        rows = to_stream(np.asarray(x, dtype=np.float32))
        first = plan.rms[0].spec.name
        self._check_up(plan.slots, first)
        self.open()  # no-op unless a failure dropped the shell
        lin, lout = plan.layout(self.driver.word_bits)
        words = lin.pack(rows)  # host work, outside the locks
        out, t = self.driver.run(plan.names, plan.slots, words,
                                 admit=lambda: self._check_up(plan.slots, first))
        plan.last = _batch_timing(t)
        y = lout.unpack(out, n)
        return from_stream(y, plan.out_shape).astype(np.float32, copy=False)

    # ------------------------------------------------------------------ faults

    @property
    def down(self) -> str | None:
        """Why the device is down (the reason given to :meth:`fail`), or None when up."""
        return self._down

    def fail(self, reason: str = "device failure") -> None:
        """Take the device down: every later transfer or swap raises :class:`FpgaDown`.

        No lock is taken: a batch already past its check completes, as one already
        in the fabric would when a board stops answering after it.
        """
        self._down = reason or "device failure"

    def restore(self) -> None:
        """Bring the device back: clear the fault and reload the shell, with no transfer or
        swap in flight (the driver holds every lock meanwhile). A device that was never
        opened is only marked up (its first use opens it)."""
        def clear() -> None:
            self._down = None

        if self.driver is None:
            clear()
            return
        self.driver.restore(while_idle=clear)

    def _check_up(self, slots: list[int], rm: str) -> None:
        if self._down is not None:
            raise FpgaDown(f"device is down ({self._down}); slots {list(slots)} unavailable "
                           "until it is restored", slots[0] if slots else None, rm)


def _batch_timing(t: RunTiming) -> BatchTiming:
    return BatchTiming(t.service_s, t.wait_s, t.modeled, t.link_s)


def _same_bundle(host: BoardManifest, agent: BoardManifest | None, where: str) -> None:
    """The agent must serve the bundle the host plans with: same RMs (identity, stream bytes)
    and the same bitstreams (by sha256) for each slot."""
    if agent is None:
        raise AgentError(f"board agent {where} sent no board.json")

    def digest(m: BoardManifest, rel: str) -> str | None:
        return m.files.get(rel)

    problems = []
    if agent.slots != host.slots or agent.data_width_bits != host.data_width_bits:
        problems.append(f"{agent.slots} slots of {agent.data_width_bits}-bit words vs the "
                        f"host's {host.slots} of {host.data_width_bits}")
    if digest(agent, agent.shell_bit) != digest(host, host.shell_bit):
        problems.append("the shell bitstream differs")
    theirs = {r.name: r for r in agent.rms}
    for r in host.rms:
        a = theirs.get(r.name)
        if a is None:
            problems.append(f"RM {r.name} is missing")
            continue
        if (a.identity, a.in_bytes, a.out_bytes) != (r.identity, r.in_bytes, r.out_bytes):
            problems.append(f"RM {r.name} differs (identity or stream bytes)")
        for k, bit in r.partials.items():
            if k not in a.partials or digest(agent, a.partials[k]) != digest(host, bit):
                problems.append(f"RM {r.name}'s partial for slot {k} differs")
    if problems:
        raise AgentError(f"board agent {where} serves bundle {agent.name}, which is not the "
                         f"host's {host.name} ({host.source}): {'; '.join(problems[:4])}. "
                         "Deploy the same bundle to the board, or point --overlay at it")


def configure(fpga: str | None = None, overlay: str | Path | None = None,
              key: str | Path | None = None) -> None:
    """What ``hwpart run --fpga MODE --overlay BUNDLE --key KEYFILE`` sets: the defaults the
    registry's factory reads (``HWPART_FPGA``, ``HWPART_OVERLAY``, ``HWPART_FPGA_KEY``), so
    plans built anywhere get them."""
    if fpga is not None:
        os.environ["HWPART_FPGA"] = fpga_mode(fpga)
    if overlay is not None:
        os.environ["HWPART_OVERLAY"] = str(overlay)
    if key is not None:
        os.environ["HWPART_FPGA_KEY"] = str(key)


def _factory(**options: Any) -> FpgaDevice:
    return FpgaDevice(**options)


register_device("fpga", _factory, replace=True)
