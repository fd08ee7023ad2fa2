"""cocotb tests of rm_slot with the example RM bank (RM 0 = add 1 to every
byte, RM 1 = invert), 16-bit TDATA."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from rm_models import RMS
from tbutil import pauses, quiet, random_packets, reset, rng, settle, start_clock, wait_for

ALIGN = 2  # bytes per beat


class TB:
    def __init__(self, dut, rm: int = 0):
        self.dut = dut
        start_clock(dut)
        dut.rm_select.value = rm
        dut.rm_reset.value = 0
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        quiet(self.src, self.sink)

    async def reset(self):
        await reset(self.dut)
        await wait_for(lambda: not self.dut.rm_in_reset.value, self.dut.clk, 20, "RM out of reset")


@cocotb.test()
async def test_each_rm_under_backpressure(dut):
    """Both RMs compute their function on random packets, with random
    backpressure on both sides; TLAST passes through."""
    r = rng("rms")
    tb = TB(dut)
    await tb.reset()
    tb.src.set_pause_generator(pauses(r, 0.3))
    tb.sink.set_pause_generator(pauses(r, 0.4))
    for rm, model in enumerate(RMS):
        dut.rm_select.value = rm
        await ClockCycles(dut.clk, 2)
        await wait_for(lambda: not dut.rm_in_reset.value, dut.clk, 20, "RM out of reset")
        assert dut.rm_active.value == rm
        pkts = random_packets(r, 50, 1, 24, align=ALIGN)
        for p in pkts:
            await tb.src.send(AxiStreamFrame(p))
        for i, p in enumerate(pkts):
            got = (await tb.sink.recv()).tdata
            assert got == model(p), f"RM {rm} packet {i}: {got.hex()} != {model(p).hex()}"
        await tb.src.wait()


@cocotb.test()
async def test_swap_resets_and_empty_slot(dut):
    """A swap holds the new RM in reset (nothing accepted); an out-of-range
    rm_select is an empty slot; rm_reset holds the RM in reset."""
    tb = TB(dut)
    await tb.reset()
    dut.rm_select.value = 1
    await RisingEdge(dut.clk)
    await RisingEdge(dut.clk)
    await settle()
    assert dut.rm_in_reset.value == 1 and dut.s_axis_tready.value == 0
    await wait_for(lambda: not dut.rm_in_reset.value, dut.clk, 20, "RM out of reset")

    dut.rm_select.value = 5                      # no such RM
    await ClockCycles(dut.clk, 10)
    await tb.src.send(AxiStreamFrame(b"\x10\x20"))
    for _ in range(20):
        await RisingEdge(dut.clk)
        assert not dut.s_axis_tready.value, "empty slot accepted data"
    dut.rm_select.value = 1
    assert (await tb.sink.recv()).tdata == RMS[1](b"\x10\x20")

    dut.rm_reset.value = 1
    await ClockCycles(dut.clk, 10)
    await tb.src.send(AxiStreamFrame(b"\x30\x40"))
    for _ in range(10):
        await RisingEdge(dut.clk)
        assert not dut.s_axis_tready.value, "RM accepted data while in reset"
    dut.rm_reset.value = 0
    assert (await tb.sink.recv()).tdata == RMS[1](b"\x30\x40")
