"""cocotb tests of the static shell (sim/rtl/shell_top.v): DMA-facing streams, PG085
switch, per slot a PG375 decoupler, hwpart's slot_ctrl, the RM slot and its rm_info,
every block in its own 4 KiB AXI4-Lite window.

The address map is hwpart's one map (:func:`hwpart.board.regs.shell_map` with base 0 for
the build's NUM_SLOTS), or, when the build moved the blocks through shell_top's address
parameters, the map in ``HWPART_SHELL_MAP`` (JSON: block name -> address), written by
tests/rtl/test_shell_top.py from the same dict it turned into parameters.

PR swaps are done the way the host driver must do them with PG375 (which decouples at
once, cutting packets): route nothing into the slot, wait for slot_ctrl's STATUS.rp_idle
(the RM's results may still leave meanwhile), route nothing out of it, decouple through
the decoupler's register, select the RM, pulse its reset, recouple, check rm_info.
"""

from __future__ import annotations

import json
import os

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
from tbutil import param, pauses, quiet, random_packets, reset, rng, start_clock

from hwpart.board.regs import (
    DECOUPLE,
    NUM_RMS,
    RM_ACTIVE,
    RM_INFO,
    RM_MAGIC,
    RM_RESET,
    RM_SELECT,
    SLOT_ID,
    SLOT_MAGIC,
    ST_DECOUPLED,
    ST_IN_RESET,
    ST_RP_IDLE,
    STATUS,
    SW_COMMIT,
    SW_CTRL,
    SW_DISABLE,
    SW_MI_MUX,
    WINDOW,
    block_names,
    rm_id,
    shell_map,
)

ALIGN = 4                       # 32-bit TDATA, no TKEEP: whole words only
#: the example bank (sim/rtl/rm_bank.v), in RM_SELECT order: name, n_in, n_out
BANK = [("rm_add_const", 1, 1), ("rm_invert", 1, 1)]
RM_EMPTY = 0xFF

DMA = 0                         # switch port of the DMA (slave 0 = MM2S, master 0 = S2MM)


def port(k: int) -> int:
    """Switch port of slot k (slave = slot output, master = slot input)."""
    return k + 1


class TB:
    def __init__(self, dut):
        self.dut = dut
        self.slots = param(dut, "NUM_SLOTS", 2)
        self.addr_width = param(dut, "ADDR_WIDTH", 18)
        env = os.environ.get("HWPART_SHELL_MAP")
        if env:
            self.map = {k: int(v) for k, v in json.loads(env).items()}
        else:
            self.map = {k: a for k, (a, _) in shell_map(0, self.slots).items()}
        self.sw = self.map["switch"]
        start_clock(dut)
        self.mm2s = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.s2mm = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        # what each slot's RM actually accepted (inside the decoupler)
        self.rm_in = [AxiStreamMonitor(AxiStreamBus.from_prefix(self.slot(k), "s_axis"),
                                       dut.clk, dut.rst) for k in range(self.slots)]
        quiet(self.mm2s, self.s2mm, self.axil, *self.rm_in)
        self.routes: dict[int, int] = {}

    def slot(self, k: int):
        return self.dut.g_slot[k].u_slot

    def dec(self, k: int) -> int:
        return self.map[block_names(k)[0]]

    def ctrl(self, k: int) -> int:
        return self.map[block_names(k)[1]]

    def info(self, k: int) -> int:
        return self.map[block_names(k)[2]]

    async def reset(self):
        await reset(self.dut)
        for k in range(self.slots):
            await self.wait_status(k, ST_IN_RESET, 0)

    def backpressure(self, r, p_src=0.3, p_sink=0.3):
        self.mm2s.set_pause_generator(pauses(r, p_src))
        self.s2mm.set_pause_generator(pauses(r, p_sink))

    # ---- driver-level helpers (what the host driver does over MMIO) ----
    async def route(self, routes: dict[int, int]):
        """routes: switch master -> slave; other masters disabled; commit and
        wait until every port has applied it."""
        for m in range(self.slots + 1):
            await self.axil.write_dword(self.sw + SW_MI_MUX + 4 * m, routes.get(m, SW_DISABLE))
        await self.axil.write_dword(self.sw + SW_CTRL, SW_COMMIT)
        for _ in range(1000):
            if not (await self.axil.read_dword(self.sw + SW_CTRL)) & SW_COMMIT:
                self.routes = dict(routes)
                return
        raise AssertionError("switch commit never completed")

    async def wait_status(self, k: int, mask: int, value: int, timeout: int = 2000):
        for _ in range(timeout):
            st = await self.axil.read_dword(self.ctrl(k) + STATUS)
            if (st & mask) == (value & mask):
                return st
        raise AssertionError(f"slot {k}: STATUS & {mask:#x} never became {value:#x}")

    async def decouple(self, k: int, v: int = 1):
        """PG375: the decoupler's register at 0x0; it acts at once and reads back."""
        await self.axil.write_dword(self.dec(k) + DECOUPLE, v)
        assert await self.axil.read_dword(self.dec(k) + DECOUPLE) == v, f"decoupler {k}"
        assert (await self.axil.read_dword(self.ctrl(k) + STATUS)) & ST_DECOUPLED == v

    async def recouple(self, k: int):
        await self.decouple(k, 0)

    async def idle_slot(self, k: int):
        """Route nothing into slot k (the switch waits for the packet going in to end),
        wait until the RP holds nothing (its results may leave meanwhile), then route
        nothing out of it. Returns the routes to restore."""
        keep = dict(self.routes)
        await self.route({m: s for m, s in keep.items() if m != port(k)})
        await self.wait_status(k, ST_RP_IDLE, ST_RP_IDLE)
        await self.route({m: s for m, s in keep.items() if m != port(k) and s != port(k)})
        return keep

    async def swap(self, k: int, rm: int, between=None):
        """The PR swap as the host driver does it (module docstring). ``between``, if
        given, is awaited once the slot is idle, before it is decoupled."""
        keep = await self.idle_slot(k)
        if between is not None:
            await between()
        await self.decouple(k)
        await self.axil.write_dword(self.ctrl(k) + RM_SELECT, rm)    # stands in for pr_download
        await self.axil.write_dword(self.ctrl(k) + RM_RESET, 1)
        await self.axil.write_dword(self.ctrl(k) + RM_RESET, 0)
        await self.wait_status(k, ST_IN_RESET, 0)
        assert await self.axil.read_dword(self.ctrl(k) + RM_ACTIVE) == rm
        await self.recouple(k)
        await self.check_rm_info(k, rm)
        await self.route(keep)

    async def check_rm_info(self, k: int, rm: int):
        got = [await self.axil.read_dword(self.info(k) + RM_INFO + 4 * i) for i in range(4)]
        if rm >= len(BANK):
            want = [0, 0, 0, 0]
        else:
            name, n_in, n_out = BANK[rm]
            want = [RM_MAGIC, rm_id(name), n_in, n_out]
        assert got == want, f"slot {k} rm_info: {[hex(v) for v in got]}, want RM {rm} " \
                            f"{[hex(v) for v in want]}"

    async def send_all(self, pkts):
        for p in pkts:
            await self.mm2s.send(AxiStreamFrame(p))


async def probe_map(tb: TB):
    """Every block answers at its address in tb.map with its own registers, each slot's
    blocks belong to that slot, and every 4 KiB window the map leaves free answers
    DECERR (reads return 0)."""
    ax = tb.axil
    for m in range(tb.slots + 1):
        assert await ax.read_dword(tb.sw + SW_MI_MUX + 4 * m) == SW_DISABLE, f"MI_MUX {m}"
    assert await ax.read_dword(tb.sw + SW_CTRL) == 0
    # a distinct RM per slot (some empty), so each rm_info must be its own slot's
    picks = [(k + 1) % (len(BANK) + 1) for k in range(tb.slots)]
    picks = [RM_EMPTY if p == len(BANK) else p for p in picks]
    for k in range(tb.slots):
        assert await ax.read_dword(tb.ctrl(k) + SLOT_ID) == SLOT_MAGIC, f"slot_ctrl_{k}"
        assert await ax.read_dword(tb.ctrl(k) + NUM_RMS) == len(BANK)
        assert await ax.read_dword(tb.dec(k) + DECOUPLE) == 0, f"decoupler_{k}"
        await tb.check_rm_info(k, 0)
        await ax.write_dword(tb.ctrl(k) + RM_SELECT, picks[k])
    for k in range(tb.slots):
        await tb.wait_status(k, ST_IN_RESET, 0)
        assert await ax.read_dword(tb.ctrl(k) + RM_ACTIVE) == picks[k]
        await tb.check_rm_info(k, picks[k])
    # each decoupler drives its own slot's STATUS bit 0, no other
    for k in range(tb.slots):
        await ax.write_dword(tb.dec(k) + DECOUPLE, 1)
        assert await ax.read_dword(tb.dec(k) + DECOUPLE) == 1
        for j in range(tb.slots):
            st = await ax.read_dword(tb.ctrl(j) + STATUS)
            assert st & ST_DECOUPLED == (1 if j == k else 0), f"decoupler_{k}: slot {j} {st:#x}"
        await ax.write_dword(tb.dec(k) + DECOUPLE, 0)
    # the switch: MI_MUX reads back
    await ax.write_dword(tb.sw + SW_MI_MUX + 4, 2)
    assert await ax.read_dword(tb.sw + SW_MI_MUX + 4) == 2
    await ax.write_dword(tb.sw + SW_MI_MUX + 4, SW_DISABLE)
    # every window inside a block answers OKAY up to its last word
    blocks = {a for name, a in tb.map.items() if name != "dma"}
    for a in sorted(blocks):
        rd = await ax.read(a + WINDOW - 4, 4)
        assert rd.resp == AxiResp.OKAY, f"block at {a:#x}: last word {rd.resp}"
    # every other window: DECERR, reads 0, writes change nothing
    gaps = [w for w in range(0, 1 << tb.addr_width, WINDOW) if w not in blocks]
    assert len(gaps) == (1 << tb.addr_width) // WINDOW - len(blocks)
    for w in gaps:
        for off in (0, 0x40, WINDOW - 4):
            rd = await ax.read(w + off, 4)
            assert rd.resp == AxiResp.DECERR and rd.data == bytes(4), f"read {w + off:#x}: {rd}"
        wr = await ax.write(w, (1).to_bytes(4, "little"))
        assert wr.resp == AxiResp.DECERR, f"write {w:#x}"
        wr = await ax.write(w + 0x40, (1).to_bytes(4, "little"))
        assert wr.resp == AxiResp.DECERR, f"write {w + 0x40:#x}"
    for k in range(tb.slots):  # the gap writes reached no block
        assert await ax.read_dword(tb.dec(k) + DECOUPLE) == 0
        assert await ax.read_dword(tb.ctrl(k) + RM_ACTIVE) == picks[k]
    for m in range(tb.slots + 1):
        assert await ax.read_dword(tb.sw + SW_MI_MUX + 4 * m) == SW_DISABLE, f"MI_MUX {m}"
    return len(gaps)


@cocotb.test()
async def test_register_map(dut):
    """Reset values and read-back of every block's registers at the default layout;
    RO registers ignore writes; rm_info follows RM_SELECT (empty slot: all 0)."""
    tb = TB(dut)
    await tb.reset()
    ax = tb.axil
    for m in range(tb.slots + 1):
        assert await ax.read_dword(tb.sw + SW_MI_MUX + 4 * m) == SW_DISABLE
    await ax.write_dword(tb.sw + SW_MI_MUX + 4, 2)
    assert await ax.read_dword(tb.sw + SW_MI_MUX + 4) == 2
    for k in range(tb.slots):
        c, i = tb.ctrl(k), tb.info(k)
        assert await ax.read_dword(tb.dec(k) + DECOUPLE) == 0
        assert await ax.read_dword(c + SLOT_ID) == SLOT_MAGIC
        assert await ax.read_dword(c + STATUS) == ST_RP_IDLE
        assert await ax.read_dword(c + RM_SELECT) == 0
        assert await ax.read_dword(c + RM_RESET) == 0
        assert await ax.read_dword(c + RM_ACTIVE) == 0
        assert await ax.read_dword(c + NUM_RMS) == len(BANK)
        assert await ax.read_dword(c + 0x18) == 0 and await ax.read_dword(c + 0xFFC) == 0
        await tb.check_rm_info(k, 0)
        for off in (SLOT_ID, STATUS, RM_ACTIVE, NUM_RMS):  # read-only
            await ax.write_dword(c + off, 0x5A)
        await ax.write_dword(i + RM_INFO + 4, 0x5A)        # rm_info: accepted, ignored
        assert await ax.read_dword(c + SLOT_ID) == SLOT_MAGIC
        assert await ax.read_dword(c + NUM_RMS) == len(BANK)
        await tb.check_rm_info(k, 0)
        await ax.write_dword(c + RM_SELECT, 1)
        assert await ax.read_dword(c + RM_SELECT) == 1
        await tb.wait_status(k, ST_IN_RESET, 0)
        assert await ax.read_dword(c + RM_ACTIVE) == 1
        await tb.check_rm_info(k, 1)
        await ax.write_dword(c + RM_SELECT, RM_EMPTY)
        await tb.wait_status(k, ST_IN_RESET, 0)
        assert await ax.read_dword(c + RM_ACTIVE) == RM_EMPTY
        await tb.check_rm_info(k, RM_EMPTY)
        await ax.write_dword(c + RM_RESET, 1)
        assert await ax.read_dword(c + RM_RESET) == 1
        assert await ax.read_dword(c + STATUS) == ST_RP_IDLE | ST_IN_RESET
        await ax.write_dword(c + RM_RESET, 0)
        await tb.wait_status(k, ST_IN_RESET, 0)
        await tb.decouple(k)
        assert await ax.read_dword(c + STATUS) == ST_DECOUPLED | ST_RP_IDLE
        await tb.recouple(k)
    assert await ax.read_dword(tb.sw + SW_MI_MUX + 4) == 2


@cocotb.test()
async def test_map_probe(dut):
    """Every block at its address in hwpart's map (or the moved map the build was given);
    every gap between blocks answers DECERR."""
    tb = TB(dut)
    await tb.reset()
    gaps = await probe_map(tb)
    dut._log.info("%d blocks answer at their addresses, %d free 4 KiB windows answer DECERR",
                  len([n for n in tb.map if n != "dma"]), gaps)


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
    """Stream packets through slot 0 and swap its RM four times while the stream runs,
    idle first as the driver does: no accepted beat is lost or corrupted, every packet
    is computed by exactly one RM, and packets after each swap by the new RM."""
    r = rng("swap")
    tb = TB(dut)
    await tb.reset()
    tb.backpressure(r, 0.2, 0.3)
    await tb.route({port(0): DMA, DMA: port(0)})
    pkts = random_packets(r, 120, 4, 24, align=ALIGN)
    sender = cocotb.start_soon(tb.send_all(pkts))

    boundaries = []          # (packets the old RM had accepted, new RM)
    ctrl = dut.g_slot[0].u_ctrl
    for n, (rm, after) in enumerate(((1, 15), (0, 40), (1, 70), (0, 95))):
        while tb.rm_in[0].count() < after:
            await RisingEdge(dut.clk)
        stall = n % 2 == 0   # every other swap: S2MM stalled, so the RM holds data
        if stall:
            tb.s2mm.clear_pause_generator()
            tb.s2mm.pause = True
        await ClockCycles(dut.clk, r.randint(4, 12))
        assert not tb.mm2s.idle(), "stream ended before the swap"
        dut._log.info("swap to RM %d requested: input mid-packet=%s, output mid-packet=%s, "
                      "packets inside=%d", rm, ctrl.in_pkt.value, ctrl.out_pkt.value,
                      ctrl.outstanding.value.to_unsigned())
        if stall:
            async def unstall():
                await ClockCycles(dut.clk, 10)
                tb.s2mm.set_pause_generator(pauses(r, 0.3))
            cocotb.start_soon(unstall())

        async def mark(rm=rm):
            boundaries.append((tb.rm_in[0].count(), rm))
        await tb.swap(0, rm, between=mark)
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
    """The RM holds complete packets whose results S2MM has not taken yet: with nothing
    routed into the slot, STATUS.rp_idle must stay 0 until they are out, so the swap
    (decoupling cuts at once) loses none."""
    tb = TB(dut)
    await tb.reset()
    await tb.route({port(0): DMA, DMA: port(0)})
    tb.s2mm.pause = True
    pkts = [bytes([i] * ALIGN) for i in range(6)]        # one beat each
    sender = cocotb.start_soon(tb.send_all(pkts))
    await ClockCycles(dut.clk, 30)
    held = tb.rm_in[0].count()
    assert held >= 1 and dut.g_slot[0].u_ctrl.outstanding.value.to_unsigned() >= 1, \
        "RM holds nothing"

    keep = dict(tb.routes)
    await tb.route({DMA: port(0)})                       # nothing more into the slot
    accepted = tb.rm_in[0].count()
    for _ in range(10):
        assert not (await tb.axil.read_dword(tb.ctrl(0) + STATUS)) & ST_RP_IDLE, \
            "rp_idle while the RM still holds accepted packets"
    tb.s2mm.pause = False
    await tb.wait_status(0, ST_RP_IDLE, ST_RP_IDLE)
    assert tb.rm_in[0].count() == accepted
    await tb.route({})
    await tb.decouple(0)
    await tb.axil.write_dword(tb.ctrl(0) + RM_SELECT, 1)
    await tb.wait_status(0, ST_IN_RESET, 0)
    await tb.recouple(0)
    await tb.route(keep)
    await sender

    for i, p in enumerate(pkts):
        want = RMS[0](p) if i < accepted else RMS[1](p)
        assert (await tb.s2mm.recv()).tdata == want, f"packet {i} (RM 0 took {accepted})"


@cocotb.test()
async def test_decouple_cuts_packet(dut):
    """What the idle-first sequence avoids: decoupling mid-packet cuts the packet at
    once (PG375). The RP holds part of a packet (rp_idle = 0), nothing more enters; an RM
    reset clears the tracking (a reset RM holds nothing) and what was inside is lost:
    after recoupling, the RM computes only the rest of the packet."""
    tb = TB(dut)
    await tb.reset()
    await tb.route({port(0): DMA, DMA: port(0)})
    n = 64
    pkt = bytes(range(n * ALIGN))
    await tb.mm2s.send(AxiStreamFrame(pkt))
    rp = tb.slot(0)
    beats = 0
    while beats < 8:
        await RisingEdge(dut.clk)
        beats += int(rp.s_axis_tvalid.value) and int(rp.s_axis_tready.value)
    await tb.axil.write_dword(tb.dec(0) + DECOUPLE, 1)
    st = await tb.axil.read_dword(tb.ctrl(0) + STATUS)
    assert st & ST_DECOUPLED and not st & ST_RP_IDLE, f"STATUS {st:#x} after a mid-packet cut"
    for _ in range(20):
        await RisingEdge(dut.clk)
        assert not int(rp.s_axis_tvalid.value), "the RM saw TVALID while decoupled"
    assert not tb.mm2s.idle(), "the rest of the packet should be held upstream"
    await tb.axil.write_dword(tb.ctrl(0) + RM_RESET, 1)
    await tb.axil.write_dword(tb.ctrl(0) + RM_RESET, 0)
    st = await tb.wait_status(0, ST_IN_RESET, 0)
    assert st & ST_RP_IDLE, f"STATUS {st:#x}: an RM reset must clear the tracking"
    await tb.recouple(0)
    got = bytes((await tb.s2mm.recv()).tdata)
    want, lost = RMS[0](pkt), len(pkt) - len(got)
    assert 0 < lost < len(pkt) - beats * ALIGN, f"{len(got)} of {len(pkt)} bytes came out"
    # what came out: the results that left before the cut, then those of the rest
    assert any(got == want[:s] + want[s + lost:] for s in range(beats * ALIGN, len(got) + 1)), \
        f"not a cut packet: {got.hex()}"


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
    await tb.axil.write_dword(tb.sw + SW_MI_MUX + 4 * DMA, port(0))
    await tb.axil.write_dword(tb.sw + SW_MI_MUX + 4 * port(0), DMA)
    await tb.axil.write_dword(tb.sw + SW_CTRL, SW_COMMIT)
    await ClockCycles(dut.clk, 10)
    assert await tb.axil.read_dword(tb.sw + SW_CTRL) & SW_COMMIT, "route applied mid-packet"
    tb.mm2s.pause = False
    await sender

    for i, p in enumerate(pkts):
        got = bytes((await tb.s2mm.recv()).tdata)
        want = p if i <= 3 else RMS[0](p)
        assert got == want, f"packet {i}: got {got.hex()} want {want.hex()}"
    assert await tb.axil.read_dword(tb.sw + SW_CTRL) == 0


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
