"""cocotb tests of dfx_decoupler.  The testbench plays both the static side
(s_axis source, m_axis sink) and the reconfigurable partition (rp_m_axis
sink = RM input, rp_s_axis source = RM output)."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from tbutil import pauses, quiet, random_packets, reset, rng, settle, start_clock, wait_for


class TB:
    def __init__(self, dut):
        self.dut = dut
        start_clock(dut)
        dut.decouple.value = 0
        dut.rp_reset.value = 0
        self.static_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.rm_in = AxiStreamSink(AxiStreamBus.from_prefix(dut, "rp_m_axis"), dut.clk, dut.rst)
        self.rm_out = AxiStreamSource(AxiStreamBus.from_prefix(dut, "rp_s_axis"), dut.clk, dut.rst)
        self.static_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        quiet(self.static_src, self.rm_in, self.rm_out, self.static_sink)

    async def reset(self):
        await reset(self.dut)

    def backpressure(self, r, p=0.3):
        for d in (self.static_src, self.rm_in, self.rm_out, self.static_sink):
            d.set_pause_generator(pauses(r, p))

    async def loop_back(self, count):
        """Act as an RM that returns each input packet unchanged."""
        for _ in range(count):
            frame = await self.rm_in.recv()
            await self.rm_out.send(AxiStreamFrame(frame.tdata))


@cocotb.test()
async def test_coupled_passes_both_ways(dut):
    r = rng("coupled")
    tb = TB(dut)
    await tb.reset()
    tb.backpressure(r)
    pkts = random_packets(r, 60, 1, 24)
    cocotb.start_soon(tb.loop_back(len(pkts)))
    for p in pkts:
        await tb.static_src.send(AxiStreamFrame(p))
    for i, p in enumerate(pkts):
        assert (await tb.static_sink.recv()).tdata == p, f"packet {i}"
    await ClockCycles(dut.clk, 5)
    assert dut.rp_idle.value == 1


@cocotb.test()
async def test_decoupled_blocks_both_ways(dut):
    """Decoupled while idle: status is 1 at once, nothing crosses in either
    direction, nothing is lost; recoupling releases the held data."""
    tb = TB(dut)
    await tb.reset()
    dut.decouple.value = 1
    await RisingEdge(dut.clk)
    await settle()
    assert dut.decouple_status.value == 1

    await tb.static_src.send(AxiStreamFrame(b"\x11\x22\x33"))
    await tb.rm_out.send(AxiStreamFrame(b"\x44\x55"))   # a stray beat from a half-loaded RP
    for _ in range(50):
        await RisingEdge(dut.clk)
        assert not dut.s_axis_tready.value, "static side accepted data while decoupled"
        assert not dut.rp_m_axis_tvalid.value, "RP saw valid while decoupled"
        assert not dut.m_axis_tvalid.value, "static side saw valid while decoupled"
        assert not dut.rp_s_axis_tready.value, "RP output accepted while decoupled"
    assert tb.rm_in.empty() and tb.static_sink.empty()

    dut.decouple.value = 0
    assert (await tb.rm_in.recv()).tdata == b"\x11\x22\x33"
    assert (await tb.static_sink.recv()).tdata == b"\x44\x55"


@cocotb.test()
async def test_decouple_is_packet_safe(dut):
    """Decouple requested mid-packet: the input packet completes, the RP may
    still emit the result of every packet it accepted, then both sides close
    and decouple_status rises."""
    tb = TB(dut)
    await tb.reset()
    pkt = bytes(range(12))
    await tb.static_src.send(AxiStreamFrame(pkt))
    await wait_for(lambda: dut.rp_m_axis_tvalid.value and dut.rp_m_axis_tready.value,
                   dut.clk, 50, "first beat")
    await RisingEdge(dut.clk)
    tb.static_src.pause = True                       # stall mid-packet
    await ClockCycles(dut.clk, 3)
    dut.decouple.value = 1
    await ClockCycles(dut.clk, 10)
    assert dut.decouple_status.value == 0, "decoupled in the middle of a packet"

    tb.static_src.pause = False
    frame = await tb.rm_in.recv()
    assert frame.tdata == pkt, "input packet was chopped by decoupling"
    await tb.static_src.send(AxiStreamFrame(b"\x99"))  # must now be held back
    await ClockCycles(dut.clk, 10)
    assert tb.rm_in.empty(), "new packet entered while decoupling"
    assert dut.decouple_status.value == 0, "RP still owes an output packet"

    await tb.rm_out.send(AxiStreamFrame(b"\xaa\xbb\xcc"))   # the RP drains
    assert (await tb.static_sink.recv()).tdata == b"\xaa\xbb\xcc"
    await wait_for(lambda: dut.decouple_status.value == 1, dut.clk, 20, "decouple_status")

    dut.decouple.value = 0
    assert (await tb.rm_in.recv()).tdata == b"\x99"


@cocotb.test()
async def test_rp_reset_clears_tracking(dut):
    """A reset RP holds nothing: rp_reset clears the outstanding-packet count."""
    tb = TB(dut)
    await tb.reset()
    await tb.static_src.send(AxiStreamFrame(b"\x01\x02"))
    await tb.rm_in.recv()
    await ClockCycles(dut.clk, 2)
    assert dut.rp_idle.value == 0
    dut.rp_reset.value = 1
    await RisingEdge(dut.clk)
    dut.rp_reset.value = 0
    await RisingEdge(dut.clk)
    await settle()
    assert dut.rp_idle.value == 1
