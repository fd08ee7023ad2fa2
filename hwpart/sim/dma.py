"""AXI DMA (Xilinx PG021) register model: simple and scatter-gather, MM2S and S2MM.

Registers, per channel (S2MM at +0x30): DMACR 0x00 (bit 0 RS, bit 2 reset),
DMASR 0x04 (bit 0 halted, 1 idle, 3 SG included, 4 DMAIntErr, 5 DMASlvErr,
6 DMADecErr, 8 SGIntErr, 9 SGSlvErr, 10 SGDecErr, 12-14 interrupts, W1C),
CURDESC 0x08/0x0C, TAILDESC 0x10/0x14, SA/DA 0x18/0x1C, LENGTH 0x28.
Descriptors (64-byte aligned, in DDR): word 0/1 next, 2/3 buffer, 6 control
(length [25:0], SOF bit 27, EOF bit 26), 7 status (bytes [25:0], RXSOF 27,
RXEOF 26, DMAIntErr 28, DMASlvErr 29, DMADecErr 30, Cmplt 31).

Behaviour PYNQ's driver depends on (``pynq/lib/dma.py``): setting RS clears
the halted bit *at once* (``start()`` spins on it); clearing RS halts at once;
an error sets its DMASR bit and halts the channel; the idle bit rises only when
the transfer has completed -- and, with pacing on, only once the modeled
completion time has been reached on the host clock (see
:mod:`hwpart.sim.timing`). S2MM data lands in DDR at that moment, not before,
so host code can never read a result early.

Scatter-gather follows the hardware closely enough that PYNQ's SG driver works
unchanged: a channel is idle once it has processed the tail descriptor, so an
S2MM chain whose buffers a packet does not fill stays busy, as on a board.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from hwpart.board.regs import (
    ADDR,
    ADDR_MSB,
    CURDESC,
    CURDESC_MSB,
    D_CMPLT,
    D_EOF,
    D_SOF,
    DLY_IRQ,
    DMA_DEC_ERR,
    DMA_INT_ERR,
    DMACR,
    DMASR,
    ERR_IRQ,
    HALTED,
    IDLE,
    IOC_IRQ,
    LEN_MASK,
    LENGTH,
    RESET,
    RS,
    S2MM_OFFSET,
    SG_DEC_ERR,
    SG_INCLD,
    SG_INT_ERR,
    TAILDESC,
    TAILDESC_MSB,
)
from hwpart.sim.ddr import DDR, DecodeError
from hwpart.sim.timing import ModeledLedger, TimingModel, TransferRecord


@dataclass
class Flight:
    """A transfer's packet and what the fabric made of it: cut once any part of it was cut
    (a decoupler closed mid-packet, a partition reconfigured while it held it)."""

    cut: bool = False


@dataclass(eq=False)
class Packet:
    """One AXI4-Stream packet (TLAST at its end) moving through the shell."""

    data: np.ndarray  # uint8
    ready_s: float  # modeled time its last beat is available
    on_accept: Callable[[float], None] | None = None
    # held back by the fabric (no route, slot decoupled, no S2MM buffer): it moves at
    # the host time of the register write that frees it; otherwise at ``ready_s``, so
    # host scheduling never leaks into the modeled timeline
    held: bool = False
    flight: Flight = field(default_factory=Flight)

    def cut(self) -> None:
        self.flight.cut = True


@dataclass
class _Pending:
    done_s: float
    apply: Callable[[], None]


@dataclass
class _Desc:
    addr: int
    buf: int
    cap: int
    ctrl: int


@dataclass
class Channel:
    name: str  # "mm2s" / "s2mm"
    dma: AxiDmaModel
    dmacr: int = 0
    status: int = HALTED
    curdesc: int = 0
    taildesc: int = 0
    addr: int = 0
    length: int = 0
    busy_until: float = 0.0
    pending: _Pending | None = None
    waiting: int = 0  # packets issued but not yet accepted (MM2S)
    # S2MM: armed simple buffer (addr, capacity) or SG chain
    armed: tuple[int, int] | None = None
    chain: list[_Desc] = field(default_factory=list)
    chain_pos: int = 0
    inject: int = 0  # error bits to raise on the next transfer (tests)
    last: TransferRecord | None = None  # the latest transfer: the device reads its timeline
    _issued: float = 0.0

    @property
    def running(self) -> bool:
        return not self.status & HALTED

    def reset(self) -> None:
        self.dmacr, self.status = 0, HALTED
        self.curdesc = self.taildesc = self.addr = self.length = 0
        self.pending, self.armed, self.chain, self.chain_pos, self.waiting = None, None, [], 0, 0

    def fail(self, bits: int) -> None:
        """An error halts the channel (PG021) and drops what it was doing."""
        self.status = (self.status | bits | HALTED | ERR_IRQ) & ~IDLE
        self.dmacr &= ~RS
        self.pending, self.armed, self.chain, self.waiting = None, None, [], 0

    def settle(self) -> float:
        """Apply a completion whose modeled time has come; returns seconds still to wait."""
        p = self.pending
        if p is None:
            return 0.0
        left = p.done_s - time.perf_counter()
        if self.dma.timing.pace and left > 0:
            return left
        self.pending = None
        p.apply()
        return 0.0

    def complete_at(self, done_s: float, apply: Callable[[], None], nbytes: int,
                    modeled_s: float, flight: Flight | None = None) -> None:
        """The transfer completes at ``done_s`` -- unless ``flight`` was cut by then: its
        last beat never comes, so the channel stays busy until a reset, as on hardware."""
        rec = TransferRecord(self.name, nbytes, modeled_s, self._issued, done_s)

        def finish() -> None:
            if flight is not None and flight.cut:
                self.dma.cut += 1
                self.pending = _Pending(float("inf"), lambda: None)
                return
            apply()
            if not self.status & HALTED:
                self.status |= IDLE | IOC_IRQ
            rec.observed_host_s = time.perf_counter()

        self.busy_until = done_s
        self.last = rec
        self.dma.ledger.add_transfer(rec)
        self.pending = _Pending(done_s, finish)
        self.settle()


class AxiDmaModel:
    """One AXI DMA with both channels; ``sg`` as the shell's ``c_include_sg``."""

    def __init__(self, ddr: DDR, timing: TimingModel, ledger: ModeledLedger,
                 push: Callable[[Packet], None], sg: bool = False) -> None:
        self.ddr, self.timing, self.ledger, self.push = ddr, timing, ledger, push
        self.sg = sg
        self.cut = 0  # S2MM transfers left waiting for a last beat that was cut off
        self.mm2s = Channel("mm2s", self)
        self.s2mm = Channel("s2mm", self)
        self.on_armed: Callable[[], None] = lambda: None

    def reset(self) -> None:
        self.mm2s.reset()
        self.s2mm.reset()

    def channel(self, offset: int) -> tuple[Channel, int]:
        return (self.s2mm, offset - S2MM_OFFSET) if offset >= S2MM_OFFSET else (self.mm2s, offset)

    # ------------------------------------------------------------------ registers

    def read(self, offset: int) -> tuple[int, float]:
        """(value, seconds until a pending completion is due: poll again after that)."""
        ch, off = self.channel(offset)
        wait = ch.settle()
        if off == DMACR:
            return ch.dmacr, wait
        if off == DMASR:
            return ch.status | (SG_INCLD if self.sg else 0), wait
        if off == CURDESC:
            return ch.curdesc & 0xFFFF_FFFF, wait
        if off == CURDESC_MSB:
            return ch.curdesc >> 32, wait
        if off == TAILDESC:
            return ch.taildesc & 0xFFFF_FFFF, wait
        if off == TAILDESC_MSB:
            return ch.taildesc >> 32, wait
        if off == ADDR:
            return ch.addr & 0xFFFF_FFFF, wait
        if off == ADDR_MSB:
            return ch.addr >> 32, wait
        if off == LENGTH:
            return ch.length, wait
        return 0, wait

    def write(self, offset: int, value: int) -> None:
        ch, off = self.channel(offset)
        ch.settle()
        if off == DMACR:
            if value & RESET:  # soft reset resets both channels (PG021)
                self.reset()
                return
            ch.dmacr = value
            if value & RS:
                ch.status &= ~HALTED  # at once: PYNQ's start() spins on it
            else:
                ch.status = (ch.status | HALTED) & ~IDLE
                ch.pending, ch.armed, ch.chain, ch.waiting = None, None, [], 0
        elif off == DMASR:
            ch.status &= ~(value & (IOC_IRQ | DLY_IRQ | ERR_IRQ))
        elif off == CURDESC:
            ch.curdesc = (ch.curdesc & ~0xFFFF_FFFF) | value
        elif off == CURDESC_MSB:
            ch.curdesc = (ch.curdesc & 0xFFFF_FFFF) | (value << 32)
        elif off == TAILDESC:
            ch.taildesc = (ch.taildesc & ~0xFFFF_FFFF) | value
            if self.sg and ch.running:
                self._start_sg(ch)
        elif off == TAILDESC_MSB:
            ch.taildesc = (ch.taildesc & 0xFFFF_FFFF) | (value << 32)
        elif off == ADDR:
            ch.addr = (ch.addr & ~0xFFFF_FFFF) | value
        elif off == ADDR_MSB:
            ch.addr = (ch.addr & 0xFFFF_FFFF) | (value << 32)
        elif off == LENGTH:
            ch.length = value & LEN_MASK
            if not self.sg and ch.running:
                self._start_simple(ch)

    # ------------------------------------------------------------------ simple mode

    def _begin(self, ch: Channel) -> bool:
        """Leave idle and stamp the issue time; False when an injected error ends it here."""
        ch.status &= ~IDLE
        ch._issued = time.perf_counter()
        if ch.inject:
            bits, ch.inject = ch.inject, 0
            ch.fail(bits)
            return False
        return True

    def _start_simple(self, ch: Channel) -> None:
        if not self._begin(ch):
            return
        n = ch.length
        if n == 0:
            ch.fail(DMA_INT_ERR)
            return
        try:
            self.ddr.view(ch.addr, n)
        except DecodeError:
            ch.fail(DMA_DEC_ERR)
            return
        if ch is self.mm2s:
            self._send(ch, [self.ddr.read(ch.addr, n)], lambda: None)
        else:
            ch.armed = (ch.addr, n)
            self.on_armed()

    def _send(self, ch: Channel, packets: list[np.ndarray], apply: Callable[[], None]) -> None:
        """MM2S: stream ``packets`` out; the channel completes when the last one is accepted."""
        start = max(ch._issued, ch.busy_until)
        ch.waiting = len(packets)
        total = sum(p.size for p in packets)
        modeled = sum(self.timing.dma_s(p.size) for p in packets)  # latency per packet
        t = start
        for data in packets:
            t += self.timing.dma_s(data.size)

            def accepted(t_acc: float, _ch: Channel = ch) -> None:
                _ch.waiting -= 1
                if _ch.waiting == 0:
                    _ch.complete_at(max(t_acc, start + modeled), apply, total, modeled)
            self.push(Packet(data, t, accepted))

    def offer(self, pkt: Packet, now: float) -> bool:
        """S2MM: take ``pkt`` from switch master 0 if a buffer is armed (else back-pressure);
        ``now``: when the packet can move on the modeled timeline."""
        ch = self.s2mm
        if not ch.running or ch.pending is not None:
            return False
        if self.sg:
            return self._receive_sg(ch, pkt, now)
        if ch.armed is None:
            return False
        addr, cap = ch.armed
        ch.armed = None
        data = pkt.data
        err = 0
        if data.size > cap:  # more stream than buffer: the engine flags it and halts
            data, err = data[:cap], DMA_INT_ERR
        modeled = self.timing.dma_s(data.size)
        done = max(ch._issued, pkt.ready_s, now, ch.busy_until) + modeled

        def apply(_d: np.ndarray = data, _a: int = addr, _e: int = err) -> None:
            self.ddr.write(_a, _d)
            ch.length = _d.size
            if _e:
                ch.fail(_e)
        ch.complete_at(done, apply, data.size, modeled, pkt.flight)
        return True

    # ------------------------------------------------------------------ scatter-gather

    def _walk(self, ch: Channel) -> list[_Desc] | None:
        """Descriptors CURDESC..TAILDESC; None after flagging an SG error."""
        out: list[_Desc] = []
        addr = ch.curdesc
        for _ in range(1 << 16):
            try:
                w = self.ddr.words(addr, 16)
            except DecodeError:
                ch.fail(SG_DEC_ERR)
                return None
            if w[7] & D_CMPLT:  # a completed descriptor handed back again
                ch.fail(SG_INT_ERR)
                return None
            out.append(_Desc(addr, int(w[2]) | (int(w[3]) << 32), int(w[6]) & LEN_MASK, int(w[6])))
            if addr == ch.taildesc:
                return out
            addr = int(w[0]) | (int(w[1]) << 32)
        ch.fail(SG_INT_ERR)  # the chain never reaches TAILDESC
        return None

    def _start_sg(self, ch: Channel) -> None:
        if not self._begin(ch):
            return
        descs = self._walk(ch)
        if descs is None:
            return
        if ch is self.s2mm:
            ch.chain, ch.chain_pos = descs, 0
            self.on_armed()
            return
        packets, cur = [], []
        for d in descs:
            if d.cap == 0:
                ch.fail(DMA_INT_ERR)
                return
            try:
                cur.append(self.ddr.read(d.buf, d.cap))
            except DecodeError:
                ch.fail(DMA_DEC_ERR)
                return
            if d.ctrl & D_EOF:
                packets.append(np.concatenate(cur))
                cur = []
        if cur:
            packets.append(np.concatenate(cur))

        def apply() -> None:
            for d in descs:
                self.ddr.words(d.addr, 16)[7] = D_CMPLT | d.cap
            ch.curdesc = ch.taildesc
        self._send(ch, packets, apply)

    def _receive_sg(self, ch: Channel, pkt: Packet, now: float) -> bool:
        if ch.chain_pos >= len(ch.chain):
            return False
        writes: list[tuple[_Desc, np.ndarray, int]] = []
        data, pos, first = pkt.data, 0, True
        while pos < data.size:
            if ch.chain_pos >= len(ch.chain):  # packet longer than the chain: flag and halt
                ch.fail(DMA_INT_ERR)
                return True
            d = ch.chain[ch.chain_pos]
            ch.chain_pos += 1
            part = data[pos:pos + d.cap]
            pos += part.size
            st = D_CMPLT | part.size | (D_SOF if first else 0) | (D_EOF if pos >= data.size else 0)
            writes.append((d, part, st))
            first = False
        done_chain = ch.chain_pos >= len(ch.chain)
        modeled = self.timing.dma_s(data.size)
        done = max(ch._issued, pkt.ready_s, now, ch.busy_until) + modeled

        def apply() -> None:
            for d, part, st in writes:
                self.ddr.write(d.buf, part)
                self.ddr.words(d.addr, 16)[7] = st
            ch.curdesc = writes[-1][0].addr
            if not done_chain:  # more descriptors to fill: not idle yet (as on hardware)
                ch.status &= ~IDLE
        if done_chain:
            ch.complete_at(done, apply, data.size, modeled, pkt.flight)
        else:
            ch.busy_until = done
            apply()
        return True
