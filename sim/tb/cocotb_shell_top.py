"""cocotb tests of the static shell (sim/rtl/shell_top.v): DMA-facing
streams, PG085 switch, per-slot decoupler + RM slot, AXI4-Lite map:
switch at 0x0000, slot k control at 0x1000 * (k + 1)."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiResp,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamMonitor,
    AxiStreamSink,
    AxiStreamSource,
)
from rm_models import RMS
from tbutil import pauses, quiet, random_packets, reset, rng, start_clock

NUM_SLOTS = 2
ALIGN = 4                       # 32-bit TDATA, no TKEEP: whole words only

SWITCH = 0x0000
CTRL, DISABLE = 0x00, 1 << 31
DECOUPLE, STATUS, RM_SELECT, RM_RESET, RM_ACTIVE, NUM_RMS = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
ST_DECOUPLED, ST_IDLE, ST_IN_RESET = 1, 2, 4

DMA = 0                         # switch port of the DMA (slave 0 = MM2S, master 0 = S2MM)


def slot_base(k: int) -> int:
    return 0x1000 * (k + 1)


def port(k: int) -> int:
    """Switch port of slot k (slave = slot output, master = slot input)."""
    return k + 1


class TB:
    def __init__(self, dut):
        self.dut = dut
        start_clock(dut)
        self.mm2s = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.s2mm = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        # what each slot's RM actually accepted (inside the decoupler)
        self.rm_in = [AxiStreamMonitor(AxiStreamBus.from_prefix(self.slot(k), "s_axis"),
                                       dut.clk, dut.rst) for k in range(NUM_SLOTS)]
        quiet(self.mm2s, self.s2mm, self.axil, *self.rm_in)

    def slot(self, k: int):
        return self.dut.g_slot[k].u_slot

    async def reset(self):
        await reset(self.dut)
        for k in range(NUM_SLOTS):
            await self.wait_status(k, ST_IN_RESET, 0)

    def backpressure(self, r, p_src=0.3, p_sink=0.3):
        self.mm2s.set_pause_generator(pauses(r, p_src))
        self.s2mm.set_pause_generator(pauses(r, p_sink))

    # ---- driver-level helpers (what the host driver does over MMIO) ----
    async def route(self, routes: dict[int, int]):
        """routes: switch master -> slave; other masters disabled; commit and
        wait until every port has applied it."""
        for m in range(NUM_SLOTS + 1):
            await self.axil.write_dword(SWITCH + 0x40 + 4 * m, routes.get(m, DISABLE))
        await self.axil.write_dword(SWITCH + CTRL, 0x2)
        for _ in range(1000):
            if not (await self.axil.read_dword(SWITCH + CTRL)) & 0x2:
                return
        raise AssertionError("switch commit never completed")

    async def wait_status(self, k: int, mask: int, value: int, timeout: int = 2000):
        for _ in range(timeout):
            st = await self.axil.read_dword(slot_base(k) + STATUS)
            if (st & mask) == (value & mask):
                return st
        raise AssertionError(f"slot {k}: STATUS & {mask:#x} never became {value:#x}")

    async def decouple(self, k: int):
        await self.axil.write_dword(slot_base(k) + DECOUPLE, 1)
        await self.wait_status(k, ST_DECOUPLED, ST_DECOUPLED)

    async def recouple(self, k: int):
        await self.axil.write_dword(slot_base(k) + DECOUPLE, 0)

    async def swap(self, k: int, rm: int):
        """PR swap: decouple -> wait idle -> select RM -> reset -> recouple."""
        await self.decouple(k)
        await self.axil.write_dword(slot_base(k) + RM_SELECT, rm)    # stands in for pr_download
        await self.axil.write_dword(slot_base(k) + RM_RESET, 1)
        await self.axil.write_dword(slot_base(k) + RM_RESET, 0)
        await self.wait_status(k, ST_IN_RESET, 0)
        assert await self.axil.read_dword(slot_base(k) + RM_ACTIVE) == rm
        await self.recouple(k)

    async def send_all(self, pkts):
        for p in pkts:
            await self.mm2s.send(AxiStreamFrame(p))


@cocotb.test()
async def test_register_map(dut):
    """Reset values and read-back of the switch and slot registers; the RO
    registers; DECERR outside the map."""
    tb = TB(dut)
    await tb.reset()
    for m in range(NUM_SLOTS + 1):
        assert await tb.axil.read_dword(SWITCH + 0x40 + 4 * m) == DISABLE
    await tb.axil.write_dword(SWITCH + 0x44, 2)
    assert await tb.axil.read_dword(SWITCH + 0x44) == 2
    for k in range(NUM_SLOTS):
        b = slot_base(k)
        assert await tb.axil.read_dword(b + DECOUPLE) == 0
        assert await tb.axil.read_dword(b + STATUS) == ST_IDLE
        assert await tb.axil.read_dword(b + RM_SELECT) == 0
        assert await tb.axil.read_dword(b + RM_ACTIVE) == 0
        assert await tb.axil.read_dword(b + NUM_RMS) == len(RMS)
        await tb.axil.write_dword(b + RM_SELECT, 1)
        assert await tb.axil.read_dword(b + RM_SELECT) == 1
        await tb.wait_status(k, ST_IN_RESET, 0)
        assert await tb.axil.read_dword(b + RM_ACTIVE) == 1
        await tb.axil.write_dword(b + DECOUPLE, 1)
        assert await tb.axil.read_dword(b + DECOUPLE) == 1
        await tb.wait_status(k, ST_DECOUPLED | ST_IDLE, ST_DECOUPLED | ST_IDLE)
    for addr in (slot_base(NUM_SLOTS), 0xF000):
        rd = await tb.axil.read(addr, 4)
        assert rd.resp == AxiResp.DECERR and rd.data == bytes(4), f"read {addr:#x}"
        wr = await tb.axil.write(addr, bytes(4))
        assert wr.resp == AxiResp.DECERR, f"write {addr:#x}"
    # the map still works after the errors
    assert await tb.axil.read_dword(SWITCH + 0x44) == 2


@cocotb.test()
async def test_dma_loopback_and_slot(dut):
    """MM2S -> S2MM directly, then MM2S -> slot 1 -> S2MM, with backpressure."""
    r = rng("loopback")
    tb = TB(dut)
    await tb.reset()
    tb.backpressure(r)
    await tb.route({DMA: DMA})
    pkts = random_packets(r, 40, 4, 48, align=ALIGN)
    await tb.send_all(pkts)
    for i, p in enumerate(pkts):
        assert (await tb.s2mm.recv()).tdata == p, f"loopback packet {i}"

    await tb.mm2s.wait()
    await tb.route({port(1): DMA, DMA: port(1)})
    pkts = random_packets(r, 40, 4, 48, align=ALIGN)
    await tb.send_all(pkts)
    for i, p in enumerate(pkts):
        assert (await tb.s2mm.recv()).tdata == RMS[0](p), f"slot 1 packet {i}"


@cocotb.test()
async def test_pr_swap_midstream(dut):
    """Stream packets through slot 0 and swap its RM four times while the stream
    runs: no accepted beat is lost or corrupted, every packet is computed by
    exactly one RM, and packets after each swap by the new RM."""
    r = rng("swap")
    tb = TB(dut)
    await tb.reset()
    tb.backpressure(r, 0.2, 0.3)
    await tb.route({port(0): DMA, DMA: port(0)})
    pkts = random_packets(r, 120, 4, 24, align=ALIGN)
    sender = cocotb.start_soon(tb.send_all(pkts))

    boundaries = []          # (packets the old RM had accepted, new RM)
    for n, (rm, after) in enumerate(((1, 15), (0, 40), (1, 70), (0, 95))):
        while tb.rm_in[0].count() < after:
            await RisingEdge(dut.clk)
        stall = n % 2 == 0   # every other swap: S2MM stalled, so the RM holds data
        if stall:
            tb.s2mm.clear_pause_generator()
            tb.s2mm.pause = True
        await ClockCycles(dut.clk, r.randint(4, 12))
        assert not tb.mm2s.idle(), "stream ended before the swap"
        dec = dut.g_slot[0].u_decoupler
        dut._log.info("swap to RM %d requested: input mid-packet=%s, output mid-packet=%s, "
                      "packets inside=%d", rm, dec.in_pkt.value, dec.out_pkt.value,
                      dec.outstanding.value.to_unsigned())
        await tb.axil.write_dword(slot_base(0) + DECOUPLE, 1)
        if stall:
            await ClockCycles(dut.clk, 10)
            tb.s2mm.set_pause_generator(pauses(r, 0.3))
        await tb.wait_status(0, ST_DECOUPLED, ST_DECOUPLED)
        boundaries.append((tb.rm_in[0].count(), rm))
        await tb.axil.write_dword(slot_base(0) + RM_SELECT, rm)
        await tb.axil.write_dword(slot_base(0) + RM_RESET, 1)
        await tb.axil.write_dword(slot_base(0) + RM_RESET, 0)
        await tb.wait_status(0, ST_IN_RESET, 0)
        await tb.recouple(0)
    await sender

    fn = [0] * len(pkts)
    for start, rm in boundaries:
        fn[start:] = [rm] * (len(pkts) - start)
    for i, p in enumerate(pkts):
        got = bytes((await tb.s2mm.recv()).tdata)
        assert got == RMS[fn[i]](p), \
            f"packet {i} (expected RM {fn[i]}): got {got.hex()} sent {p.hex()}"
    for i, p in enumerate(pkts):
        assert bytes((await tb.rm_in[0].recv()).tdata) == p, f"RM input packet {i}"
    await ClockCycles(dut.clk, 20)
    assert tb.s2mm.empty(), "extra output packets"
    starts = [b for b, _ in boundaries]
    assert 0 < starts[0] and starts == sorted(starts) and starts[-1] < len(pkts), boundaries


@cocotb.test()
async def test_swap_waits_for_held_packets(dut):
    """The RM holds complete packets whose results S2MM has not taken yet:
    decouple_status must wait until they are out, so the swap loses none."""
    tb = TB(dut)
    await tb.reset()
    await tb.route({port(0): DMA, DMA: port(0)})
    tb.s2mm.pause = True
    pkts = [bytes([i] * ALIGN) for i in range(6)]        # one beat each
    sender = cocotb.start_soon(tb.send_all(pkts))
    await ClockCycles(dut.clk, 30)
    held = tb.rm_in[0].count()
    assert held >= 1 and dut.g_slot[0].u_decoupler.outstanding.value.to_unsigned() >= 1, "RM holds nothing"

    await tb.axil.write_dword(slot_base(0) + DECOUPLE, 1)
    await ClockCycles(dut.clk, 20)
    assert not (await tb.axil.read_dword(slot_base(0) + STATUS)) & ST_DECOUPLED, \
        "decoupled while the RM still holds accepted packets"
    tb.s2mm.pause = False
    await tb.wait_status(0, ST_DECOUPLED, ST_DECOUPLED)
    accepted = tb.rm_in[0].count()
    await tb.axil.write_dword(slot_base(0) + RM_SELECT, 1)
    await tb.wait_status(0, ST_IN_RESET, 0)
    await tb.recouple(0)
    await sender

    for i, p in enumerate(pkts):
        want = RMS[0](p) if i < accepted else RMS[1](p)
        assert (await tb.s2mm.recv()).tdata == want, f"packet {i} (RM 0 took {accepted})"


@cocotb.test()
async def test_live_reroute_onto_slot(dut):
    """Move the 'layer' onto the FPGA while the stream runs: the DMA loopback
    is re-pointed through slot 0 by a commit made mid-packet.  The packet in
    flight completes on the old route; later packets go through the RM."""
    r = rng("reroute")
    tb = TB(dut)
    await tb.reset()
    tb.s2mm.set_pause_generator(pauses(r, 0.3))
    await tb.route({DMA: DMA})
    pkts = random_packets(r, 12, 24, 48, align=ALIGN)
    sender = cocotb.start_soon(tb.send_all(pkts))

    # wait for packet 3 to be mid-flight, hold the source there, commit
    while tb.s2mm.count() < 3:
        await RisingEdge(dut.clk)
    while not (dut.s_axis_tvalid.value and dut.s_axis_tready.value and not dut.s_axis_tlast.value):
        await RisingEdge(dut.clk)
    tb.mm2s.pause = True
    await tb.axil.write_dword(SWITCH + 0x40 + 4 * DMA, port(0))
    await tb.axil.write_dword(SWITCH + 0x40 + 4 * port(0), DMA)
    await tb.axil.write_dword(SWITCH + CTRL, 0x2)
    await ClockCycles(dut.clk, 10)
    assert await tb.axil.read_dword(SWITCH + CTRL) & 0x2, "route applied mid-packet"
    tb.mm2s.pause = False
    await sender

    for i, p in enumerate(pkts):
        got = bytes((await tb.s2mm.recv()).tdata)
        want = p if i <= 3 else RMS[0](p)
        assert got == want, f"packet {i}: got {got.hex()} want {want.hex()}"
    assert await tb.axil.read_dword(SWITCH + CTRL) == 0


@cocotb.test()
async def test_decoupled_slot_blocks_traffic(dut):
    """Traffic routed to a decoupled slot does not pass (it is held, not
    dropped) and the slot's RM sees nothing; recoupling releases it."""
    tb = TB(dut)
    await tb.reset()
    await tb.route({port(0): DMA, DMA: port(0)})
    await tb.decouple(0)
    pkt = bytes(range(16))
    await tb.mm2s.send(AxiStreamFrame(pkt))
    rp_in = tb.slot(0)
    for _ in range(100):
        await RisingEdge(dut.clk)
        assert not rp_in.s_axis_tvalid.value, "decoupled RM saw TVALID"
        assert not dut.m_axis_tvalid.value, "output from a decoupled slot"
    assert tb.s2mm.empty() and tb.rm_in[0].empty()
    assert not tb.mm2s.idle(), "the packet should still be held upstream"

    await tb.recouple(0)
    assert (await tb.s2mm.recv()).tdata == RMS[0](pkt)


@cocotb.test()
async def test_chain_two_slots(dut):
    """MM2S -> slot 0 (RM 0) -> slot 1 (RM 1) -> S2MM computes RM1(RM0(x))."""
    r = rng("chain")
    tb = TB(dut)
    await tb.reset()
    await tb.swap(1, 1)
    tb.backpressure(r)
    await tb.route({port(0): DMA, port(1): port(0), DMA: port(1)})
    pkts = random_packets(r, 60, 4, 48, align=ALIGN)
    await tb.send_all(pkts)
    for i, p in enumerate(pkts):
        got = (await tb.s2mm.recv()).tdata
        assert got == RMS[1](RMS[0](p)), f"packet {i}"
