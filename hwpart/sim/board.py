"""The simulated PYNQ board: a ``pynq.Device`` subclass that PYNQ code drives unmodified.

PYNQ finds devices through ``DeviceMeta``: any subclass that defines
``_probe_`` is asked for instances. :func:`install` makes a :class:`SimBoard`
the active device, after which ``pynq.allocate``, ``pynq.MMIO``,
``pynq.Overlay(shell.bit)``, ``Overlay.pr_download`` and ``pynq.lib.dma.DMA``
all reach it. It declares the ``REGISTER_RW`` capability, so every MMIO access
arrives here as ``read_registers``/``write_registers`` and is decoded against
the address map of the loaded overlay's ``.hwh`` -- generated or Vivado's,
wherever it puts each block. An address no block of the loaded design decodes
raises :class:`BusError` naming it: on a board the access would hang the
interconnect or come back as a DECERR fault, never as a quiet 0.

Stand-ins PYNQ needs off-board -- all of them, in one place (:func:`_standins`):

* ``pynq.pl_server.device.HWH``: off a Zynq CPU PYNQ binds this name to its
  abstract parser, and ``Device._update_pr_ip`` refuses any partial parser that
  is not exactly of that type; we parse with the parser of the board's PS
  family (``_HWHZynq`` for PS7, ``_HWHUltrascale`` for PS8,
  :func:`hwpart.sim.hwh.read_hwh`) and point the name there.
* ``pynq.ps.Clocks``: its real implementation programs the PS clock registers
  of a Zynq; ``Overlay.download`` sets FCLK0 through it. The stand-in records
  the requested frequency (and checks it against the board file).

Buffers are numpy views of the board's DDR (:mod:`hwpart.sim.ddr`) with no
``.memory`` attribute, so PYNQ never tries to ``munmap`` them; they are
returned to the allocator when the last view is garbage-collected.

The stream fabric moves whole packets (:mod:`hwpart.sim.stream`): MM2S ->
switch slave 0 -> (switch) -> slot input -> RM (hls4ml C simulation) -> slot
output -> ... -> master 0 -> S2MM. A packet that has nowhere to go (route
disabled, slot decoupled, in reset or empty, no S2MM buffer armed) waits where
it is, as back-pressure would hold it; any register write that may unblock it
moves it on. The slots' decouplers act as PG375's do (:mod:`hwpart.sim.decoupler`).
"""

from __future__ import annotations

import bisect
import threading
import time
import warnings
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pynq
import pynq.ps
from pynq.buffer import PynqBuffer
from pynq.pl_server import device as pynq_device
from pynq.pl_server.hwh_parser import get_hwh_name

from hwpart.board import regs
from hwpart.boards import Board, load_board
from hwpart.sim import accel, hwh
from hwpart.sim.ddr import DDR
from hwpart.sim.decoupler import SlotModel
from hwpart.sim.dma import AxiDmaModel, Packet
from hwpart.sim.hwh import read_shell_bit
from hwpart.sim.rm import SimRM, read_partial_bit
from hwpart.sim.stream import propagate
from hwpart.sim.switch import SwitchModel
from hwpart.sim.timing import POLL_SLEEP_S, ModeledLedger, TimingModel, hold_until

DEFAULT_DDR_MB = 256

_INSTALLED: list[SimBoard] = []


class SimClocks:
    """Stand-in for PYNQ's Zynq clock driver: remembers what was asked, programs nothing."""

    def __init__(self, pl_mhz: float) -> None:
        self.pl = {0: pl_mhz, 1: 0.0, 2: 0.0, 3: 0.0}
        self.cpu_mhz = 650.0

    def get_pl_clk(self, clk_idx: int) -> float:
        return self.pl[clk_idx]

    def set_pl_clk(self, clk_idx: int, div0: int | None = None, div1: int | None = None,
                   clk_mhz: float | None = None) -> None:
        if clk_mhz is not None:
            self.pl[clk_idx] = float(clk_mhz)

    def get_cpu_mhz(self) -> float:
        return self.cpu_mhz


def _standins(board: SimBoard) -> None:
    """Every stand-in PYNQ needs off-board (see the module docstring). Idempotent."""
    pynq_device.HWH = hwh.parser_class(board.board.ps)  # _HWHZynq / _HWHUltrascale
    pynq.ps.Clocks._real_instance = board.clocks
    pynq.ps.Clocks.device = board


@dataclass
class FabricStats:
    packets_in: int = 0
    packets_out: int = 0


class BusError(RuntimeError):
    """A register access no block of the loaded design decodes (AXI DECERR)."""


class SimBoard(pynq.Device):
    """A simulated Zynq board with the hwpart static shell. See the module docstring."""

    _probe_priority_ = 350

    @classmethod
    def _probe_(cls) -> list[SimBoard]:
        return list(_INSTALLED)

    def __init__(self, board: Board | str = "pynq-z2", pace: bool | None = None,
                 ddr_mb: int | None = None, batch: bool = True, index: int = 0) -> None:
        super().__init__(f"hwpart_sim{index}")
        self.board = load_board(board) if isinstance(board, str) else board
        self.name = f"hwpart-sim-{self.board.name}"
        self.capabilities = {"REGISTER_RW": True, "MEMORY_MAPPED": False, "CALLABLE": False}
        self.timing = TimingModel.from_board(self.board, pace)
        self.ledger = ModeledLedger()
        self.clocks = SimClocks(self.board.clocks.pl_mhz)
        self.batch = batch
        mb = ddr_mb or min(self.board.ddr_mb, DEFAULT_DDR_MB)
        self.ddr = DDR(mb * 1024 * 1024)
        self.lock = threading.RLock()
        self.bus_bytes = self.board.dma.data_width_bits // 8
        self.stats = FabricStats()
        self.bitfile_name = ""
        self.timestamp = ""
        self.shell: dict[str, Any] | None = None
        self.accel: Any = None  # an hls4ml VivadoAccelerator design (hwpart.sim.accel) instead
        self.ps_base = hwh.BASE["ps8" if self.board.ps == "ps8" else "ps7"]  # the board's PS map
        self._set_blocks([], "(no overlay loaded)")  # the loaded design's map, from its .hwh
        self._pending_partial: tuple[str, int] | None = None
        self.last_pr_s = 0.0  # modeled time of the latest partial reconfiguration
        self.last_pr_bytes = 0  # and the partial's modeled size
        # per-slot (clock factor, stall s) for injected slowdowns; on the board, not
        # on the shell's slot models, so it survives a shell reload (see set_slot_speed)
        self.slot_speed: dict[int, tuple[float, float]] = {}
        self._configure(slots=self.board.slots.count, sg=False)

    # ------------------------------------------------------------------ shell state

    def _configure(self, slots: int, sg: bool) -> None:
        self.switch = SwitchModel(1 + slots, 1 + slots)
        self.slots = [SlotModel(k) for k in range(slots)]
        self.dma = AxiDmaModel(self.ddr, self.timing, self.ledger, self._push_mm2s, sg=sg)
        self.dma.on_armed = self._propagate
        # switch slave s's queue: 0 the DMA's MM2S, 1 + k slot k's RM output
        self.queues: list[deque[Packet]] = [deque(), *(s.out for s in self.slots)]
        self.s2mm_queue: deque[Packet] = deque()

    def block_at(self, a: int) -> tuple[regs.Block, int]:
        """The loaded design's block that decodes address ``a``, and ``a``'s offset in it."""
        i = bisect.bisect_right(self._bases, a) - 1
        if i >= 0 and a in self.blocks[i]:
            return self.blocks[i], a - self.blocks[i].base
        near = ", ".join(f"{b.name} 0x{b.base:08X}-0x{b.base + b.range - 1:08X}"
                         for b in self.blocks) or "none"
        raise BusError(f"bus error: no block of {self.design} decodes address 0x{a:08X} "
                       f"(AXI DECERR; on a board this access faults or hangs). Its blocks: "
                       f"{near}. Take addresses from the overlay's ip_dict.")

    def _set_blocks(self, blocks: list[regs.Block], design: str) -> None:
        self.blocks = sorted(blocks, key=lambda b: b.base)
        self._bases = [b.base for b in self.blocks]
        self.design = design

    @property
    def pace(self) -> bool:
        return self.timing.pace

    @pace.setter
    def pace(self, on: bool) -> None:
        self.timing.pace = on

    # ------------------------------------------------------------------ pynq.Device API

    def allocate(self, shape: Any, dtype: Any = "u4", **kwargs: Any) -> PynqBuffer:
        """A buffer in simulated DDR: a numpy view, physical address = its DDR address."""
        dt = np.dtype(dtype)
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        nbytes = int(np.prod(shape)) * dt.itemsize
        addr = self.ddr.alloc(max(nbytes, 1))
        buf = PynqBuffer(shape, dt, buffer=self.ddr.mem, offset=addr - self.ddr.base,
                         device=self, device_address=addr, bo=None, coherent=True)
        weakref.finalize(buf, self.ddr.free, addr)
        return buf

    def flush(self, *args: Any) -> None:  # coherent buffers: nothing to do
        pass

    def invalidate(self, *args: Any) -> None:
        pass

    def read_registers(self, address: int, length: int) -> bytes:
        out = bytearray()
        wait = 0.0
        for a in range(address, address + length, 4):
            with self.lock:
                v, w = self._read32(a)
            wait = max(wait, w)
            out += int(v & 0xFFFF_FFFF).to_bytes(4, "little")
        if wait > 0:  # modeled hardware time not reached yet: wait for it, not much past it
            hold_until(time.perf_counter() + min(wait, POLL_SLEEP_S))
        return bytes(out[:length])

    def write_registers(self, address: int, data: bytes) -> None:
        data = bytes(data) + b"\0" * ((-len(data)) % 4)
        with self.lock:
            for i in range(0, len(data), 4):
                self._write32(address + i, int.from_bytes(data[i:i + 4], "little"))

    def get_bitfile_metadata(self, bitfile_name: str, partial: bool = False) -> Any:
        """Parse the ``.hwh`` next to the bitstream with PYNQ's own parser for its PS
        family (``_HWHZynq`` / ``_HWHUltrascale``); a design for another family or part
        is refused, as the board's configuration port would refuse its bitstream."""
        name = get_hwh_name(bitfile_name)
        if not Path(name).is_file():
            raise RuntimeError(f"no .hwh next to {bitfile_name} (expected {name})")
        ps, device = hwh.hwh_family(name)
        want = hwh.part_info(self.board.part)[0]
        if ps != self.board.ps or (device and device.lower() != want):
            raise RuntimeError(f"{name}: a {ps} design for {device or '?'}; board "
                               f"{self.board.name} is a {self.board.ps} {want} "
                               f"({self.board.part})")
        return hwh.read_hwh(name, partial)

    def download(self, bitstream: Any, parser: Any = None) -> None:
        if not bitstream.partial and parser is None:
            parser = self.get_bitfile_metadata(bitstream.bitfile_name)
        hwh_name = get_hwh_name(bitstream.bitfile_name)
        design = Path(hwh_name).name
        if not bitstream.partial and accel.is_accel_bit(bitstream.bitfile_name):
            fabric = accel.AccelFabric.load(bitstream.bitfile_name, parser, self)
            with self.lock:  # the design replaces the shell: DMA -> core -> DMA, no slots
                self.shell, self.accel = None, fabric
                self.dma = fabric.dma
                self._set_blocks([regs.Block("dma", "dma", None, fabric.base, fabric.range)], design)
            self.post_download(bitstream, parser, self.name)
            return
        if not bitstream.partial:
            info = read_shell_bit(bitstream.bitfile_name)
            blocks = regs.shell_blocks(parser.ip_dict, int(info["slots"]), hwh_name)
            with self.lock:
                self.shell, self.accel = info, None
                self._configure(int(info["slots"]), bool(info.get("sg", False)))
                self._set_blocks(blocks, design)
            fclk = self.clocks.get_pl_clk(0)
            if abs(fclk - self.board.clocks.pl_mhz) > 1e-6:
                warnings.warn(f"shell sets FCLK0 to {fclk} MHz but board {self.board.name} "
                              f"is modeled at {self.board.clocks.pl_mhz} MHz", stacklevel=2)
            self.post_download(bitstream, parser, self.name)
            return
        if self.shell is None:
            raise RuntimeError("partial bitstream before a shell: load the Overlay first")
        spec = read_partial_bit(bitstream.bitfile_name)
        k = int(spec.extra.get("slot", -1))
        if not 0 <= k < len(self.slots):  # refused before any (modeled) time is spent
            raise RuntimeError(f"{bitstream.bitfile_name}: partial for slot {k}, the shell has "
                               f"{len(self.slots)} slots")
        modeled = self.timing.pr_s(spec.partial_bytes)
        t0 = time.perf_counter()
        rm = SimRM(spec, batch=self.batch)
        if self.timing.pace:  # the configuration port's modeled time, not a stand-in for work
            hold_until(t0 + modeled)
        with self.lock:  # the partial lands in the partition it was built for, as on a board
            self.slots[k].install(rm, self._rp_now())
            self._propagate()
        self.ledger.add_pr(modeled)  # counted once it took effect
        self.last_pr_s = modeled
        self.last_pr_bytes = spec.partial_bytes or self.board.slots.partial_bitstream_bytes
        self._pending_partial = (bitstream.bitfile_name, k)

    def update_partial_region(self, hier: str, parser: Any) -> None:
        super().update_partial_region(hier, parser)
        if self._pending_partial is not None:
            name, k = self._pending_partial
            self._pending_partial = None
            if slot_of_region(hier) != k:
                warnings.warn(f"{name} was built for slot {k} but downloaded into {hier}; "
                              f"it configured slot {k}", stacklevel=2)

    # ------------------------------------------------------------------ register decode

    def _read32(self, a: int) -> tuple[int, float]:
        blk, off = self.block_at(a)
        if blk.kind == "dma":
            return self.dma.read(off)
        if blk.kind == "switch":
            return self.switch.read(off), 0.0
        slot = self.slots[blk.slot]  # type: ignore[index]
        if blk.kind == "decoupler":
            return slot.read_decoupler(off), 0.0
        if blk.kind == "slot_ctrl":
            return slot.read_ctrl(off, self._rp_now()), 0.0
        return slot.read_info(off), 0.0

    def _write32(self, a: int, v: int) -> None:
        blk, off = self.block_at(a)
        if blk.kind == "dma":
            self.dma.write(off, v)
            return
        if blk.kind == "switch":
            if self.switch.write(off, v):
                self._propagate()
            return
        slot = self.slots[blk.slot]  # type: ignore[index]
        now = self._rp_now()
        if blk.kind == "decoupler" and slot.write_decoupler(off, v, now):
            self._propagate()
        elif blk.kind == "slot_ctrl" and slot.write_ctrl(off, v, now):
            self._propagate()

    def _rp_now(self) -> float:
        """The time a slot's contents are judged at (RP idle, a cut): the host clock when the
        board is paced; unpaced, every modeled event has already happened for the host (a
        DMA completes without waiting for it), so the modeled timeline may run ahead of
        the host clock and must not keep a slot busy."""
        return time.perf_counter() if self.timing.pace else float("inf")

    # ------------------------------------------------------------------ stream fabric

    def _push_mm2s(self, pkt: Packet) -> None:
        self.stats.packets_in += 1
        self.queues[0].append(pkt)
        self._propagate()

    def _propagate(self) -> None:
        """Move every packet that can move; called under ``self.lock`` after any change."""
        if self.accel is not None:
            self.accel.propagate()
            return
        propagate(self.queues, self._take, time.perf_counter())

    def _take(self, s: int, pkt: Packet, t_acc: float) -> bool:
        """Switch slave ``s``'s head packet to the master that takes ``s``, if it can."""
        m = self.switch.master_for(s)
        if m is None:
            return False
        if m == 0:
            if not self.dma.offer(pkt, t_acc):
                return False
            self.stats.packets_out += 1
        else:
            slot = self.slots[m - 1]
            if not slot.accepting:
                return False
            rm_s, n = slot.accept(pkt, 8 * self.bus_bytes, t_acc, lambda rm, n: self.slot_rm_s(
                m - 1, self.timing.rm_s(rm.spec.cycles(n))))
            self.ledger.add_rm(rm_s, n)
        if s > 0:
            self.slots[s - 1].leave(pkt)
        return True

    # ------------------------------------------------------------------ injected slowdowns

    def slot_rm_s(self, k: int, rm_s: float) -> float:
        """Slot ``k``'s modeled time for RM work of ``rm_s`` at full speed (per packet)."""
        factor, stall_s = self.slot_speed.get(k, (1.0, 0.0))
        return rm_s * factor + stall_s

    def set_slot_speed(self, k: int, factor: float = 1.0, stall_s: float = 0.0) -> None:
        """Price slot ``k``'s RM time ``factor`` times longer plus ``stall_s`` per packet.

        A clock-down of one reconfigurable partition (``factor``) or a stall on
        each packet through it (``stall_s``), as a scenario injects them
        (:mod:`hwpart.npm.scenario`). It changes the *modeled* timeline only: the
        RM still computes the same words, the slot is busy longer, so the S2MM
        completion (and, when paced, the host's wait for it) moves out. ``(1.0,
        0.0)`` restores the slot. It is kept across shell reloads (a clock is not
        part of the bitstream) and applies from the next packet the slot accepts.
        """
        if not 0 <= k < len(self.slots):
            raise ValueError(f"slot {k}: the shell has slots 0..{len(self.slots) - 1}")
        if not factor > 0 or not stall_s >= 0:
            raise ValueError(f"slot {k}: speed factor must be > 0 and stall >= 0, got "
                             f"factor={factor}, stall_s={stall_s}")
        with self.lock:
            if factor == 1.0 and stall_s == 0.0:
                self.slot_speed.pop(k, None)
            else:
                self.slot_speed[k] = (float(factor), float(stall_s))

    # ------------------------------------------------------------------ modeled timeline
    # (what the shell driver asks of a simulated board: hwpart.board.shell.BoardModel)

    def round_trip_budget_s(self, slots: Sequence[int], samples: int, nbytes: int) -> float:
        """Modeled time of one round trip of ``nbytes`` (``samples`` samples) through
        ``slots`` as configured now, each slot at its own speed, so an injected clock-down
        or stall is not a time-out; ``slots`` empty: a DMA loopback."""
        if not slots:
            return 2 * self.timing.dma_s(nbytes)
        width = 8 * self.bus_bytes
        total = self.timing.dma_s(nbytes)
        out = nbytes
        for k in slots:
            rm = self.slots[k].rm if 0 <= k < len(self.slots) else None
            if rm is not None:  # an empty slot holds the packet: the transfer times out
                total += self.slot_rm_s(k, self.timing.rm_s(rm.spec.cycles(samples)))
                out = samples * rm.spec.layout_out(width).sample_bytes
        return total + self.timing.dma_s(out)

    def last_round_trip_s(self) -> float:
        """Modeled time of the latest round trip: MM2S issue to S2MM completion."""
        sent, got = self.dma.mm2s.last, self.dma.s2mm.last
        return got.done_model_s - sent.issued_host_s

    def modeled_busy_s(self) -> float:
        s = self.modeled()
        return s["modeled_dma_s"] + s["modeled_rm_s"] + s["modeled_pr_s"]

    # ------------------------------------------------------------------ reports

    def modeled(self) -> dict[str, float]:
        """Totals of the timing model (labelled modeled: never hardware measurements)."""
        return self.ledger.summary()


def slot_of_region(hier: str) -> int:
    name = hier.rsplit("/", 1)[-1]
    if not name.startswith("slot_") or not name[5:].isdigit():
        raise ValueError(f"{hier!r} is not a reconfigurable partition of the hwpart shell "
                         "(slot_N)")
    return int(name[5:])


def install(board: Board | str = "pynq-z2", pace: bool | None = None,
            ddr_mb: int | None = None, batch: bool = True) -> SimBoard:
    """Make a fresh simulated board PYNQ's active device; returns it.

    Clears PYNQ's device cache (``Device.devices`` is probed once and kept), so
    it may be called after PYNQ has already looked for devices.
    """
    return activate(SimBoard(board, pace=pace, ddr_mb=ddr_mb, batch=batch))


def activate(dev: SimBoard) -> SimBoard:
    """Make ``dev`` (a :class:`SimBoard` or a subclass, e.g. the RTL bridge's) the one
    device PYNQ probes and its active device, with the off-board stand-ins; returns it."""
    _INSTALLED[:] = [dev]
    for cls in {pynq.Device, SimBoard, type(dev)}:
        for attr in ("_devices", "_active_device"):
            if attr in cls.__dict__:
                delattr(cls, attr)
    pynq.Device.active_device = dev
    _standins(dev)
    return dev


def installed() -> SimBoard | None:
    return _INSTALLED[0] if _INSTALLED else None
