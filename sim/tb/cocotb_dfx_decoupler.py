"""cocotb tests of dfx_decoupler (sim/rtl/dfx_decoupler.v), which behaves like Xilinx's
DFX Decoupler (PG375): decoupling acts at once, even mid-packet, and knows nothing of
packets; decouple_status = decouple.

The testbench plays both the static side (s_axis source, m_axis sink) and the
reconfigurable partition (rp_m_axis sink = RM input, rp_s_axis source = RM output).
With HAS_AXI_LITE=1 (the default build) decoupling is the IP's one register at 0x0,
written and read back through cocotbext-axi's AxiLiteMaster; with HAS_AXI_LITE=0 it is
the ``decouple`` input port.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiResp,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)
from tbutil import param, pauses, quiet, random_packets, reset, rng, settle, start_clock

REG = 0x0  # PG375's one register: bit 0 decouple; a read returns the status


class TB:
    def __init__(self, dut):
        self.dut = dut
        start_clock(dut)
        dut.decouple.value = 0
        self.axil_mode = param(dut, "HAS_AXI_LITE", 1) != 0
        self.axil = None
        if self.axil_mode:
            self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
            quiet(self.axil)
        self.static_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.rm_in = AxiStreamSink(AxiStreamBus.from_prefix(dut, "rp_m_axis"), dut.clk, dut.rst)
        self.rm_out = AxiStreamSource(AxiStreamBus.from_prefix(dut, "rp_s_axis"), dut.clk, dut.rst)
        self.static_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        quiet(self.static_src, self.rm_in, self.rm_out, self.static_sink)
        self.edge = 0  # rising edges since the testbench started
        self.landed: list[tuple[int, int]] = []  # (edge, value) of every decouple write
        cocotb.start_soon(self._count_edges())

    async def _count_edges(self):
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            self.edge += 1
            if self.axil_mode and int(d.s_axil_awvalid.value) and int(d.s_axil_awready.value) \
                    and int(d.s_axil_wvalid.value) and int(d.s_axil_wready.value) \
                    and int(d.s_axil_awaddr.value) >> 2 == REG >> 2:
                self.landed.append((self.edge, int(d.s_axil_wdata.value) & 1))

    async def reset(self):
        await reset(self.dut)

    def backpressure(self, r, p=0.3):
        for d in (self.static_src, self.rm_in, self.rm_out, self.static_sink):
            d.set_pause_generator(pauses(r, p))

    async def set_decouple(self, v: int) -> int:
        """Request (1) or release (0) decoupling; returns the rising edge at which the
        request landed: from the next edge on it is in force."""
        if self.axil_mode:
            await self.axil.write_dword(REG, v)
            return self.landed[-1][0]
        self.dut.decouple.value = v  # set between two edges: in force from the next one
        await RisingEdge(self.dut.clk)
        await settle()
        return self.edge - 1

    async def status(self) -> int:
        if self.axil_mode:
            return await self.axil.read_dword(REG)
        await settle()
        return int(self.dut.decouple_status.value)

    async def loop_back(self, count):
        """Act as an RM that returns each input packet unchanged."""
        for _ in range(count):
            frame = await self.rm_in.recv()
            await self.rm_out.send(AxiStreamFrame(frame.tdata))


def handshakes(dut) -> dict[str, bool]:
    """The four handshakes at this edge: static in, RP in, RP out, static out."""
    v = lambda s: bool(int(s.value))  # noqa: E731
    return {"static in": v(dut.s_axis_tvalid) and v(dut.s_axis_tready),
            "RP in": v(dut.rp_m_axis_tvalid) and v(dut.rp_m_axis_tready),
            "RP out": v(dut.rp_s_axis_tvalid) and v(dut.rp_s_axis_tready),
            "static out": v(dut.m_axis_tvalid) and v(dut.m_axis_tready)}


def assert_closed(dut, when: str) -> None:
    """TVALID and TREADY towards both sides are 0, and the status says decoupled."""
    for sig in ("s_axis_tready", "rp_m_axis_tvalid", "m_axis_tvalid", "rp_s_axis_tready"):
        assert not int(getattr(dut, sig).value), f"{sig} = 1 {when}"
    assert int(dut.decouple_status.value) == 1, f"decouple_status = 0 {when}"


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
    assert await tb.status() == 0


@cocotb.test()
async def test_register(dut):
    """PG375's register: reset 0; bit 0 written reads back as the status; nothing else
    in the window (other offsets read 0, every access answers OKAY)."""
    tb = TB(dut)
    await tb.reset()
    assert await tb.status() == 0
    await tb.set_decouple(1)
    assert await tb.status() == 1
    await settle()
    assert int(dut.decouple_status.value) == 1
    await tb.set_decouple(0)
    assert await tb.status() == 0
    if not tb.axil_mode:
        return
    await tb.axil.write_dword(REG, 0xFFFF_FFFE)  # only bit 0 means anything
    assert await tb.axil.read_dword(REG) == 0
    for off in (0x4, 0x8, 0x10, 0x100, 0xFFC):
        wr = await tb.axil.write(off, (1).to_bytes(4, "little"))
        assert wr.resp == AxiResp.OKAY, f"write {off:#x}"
        rd = await tb.axil.read(off, 4)
        assert rd.resp == AxiResp.OKAY and rd.data == bytes(4), f"read {off:#x}: {rd}"
        assert await tb.axil.read_dword(REG) == 0, f"a write to {off:#x} decoupled"
    await tb.axil.write_dword(REG, 0xFFFF_FFFF)
    assert await tb.axil.read_dword(REG) == 1
    for off in (0x4, 0xFFC):
        assert await tb.axil.read_dword(off) == 0, f"{off:#x} mirrors the register"


@cocotb.test()
async def test_decoupled_blocks_both_ways(dut):
    """Decoupled while idle: nothing crosses in either direction, nothing is lost;
    recoupling releases the held data."""
    tb = TB(dut)
    await tb.reset()
    await tb.set_decouple(1)
    assert await tb.status() == 1

    await tb.static_src.send(AxiStreamFrame(b"\x11\x22\x33"))
    await tb.rm_out.send(AxiStreamFrame(b"\x44\x55"))   # a stray beat from a half-loaded RP
    for _ in range(50):
        await RisingEdge(dut.clk)
        assert_closed(dut, "while decoupled")
    assert tb.rm_in.empty() and tb.static_sink.empty()

    await tb.set_decouple(0)
    assert await tb.status() == 0
    assert (await tb.rm_in.recv()).tdata == b"\x11\x22\x33"
    assert (await tb.static_sink.recv()).tdata == b"\x44\x55"


@cocotb.test()
async def test_decouple_cuts_at_once(dut):
    """Decoupling mid-packet, both directions streaming: from the cycle after the
    request lands, TVALID and TREADY towards both sides are 0 and nothing passes --
    the packets are cut (PG375 knows nothing of packets). The held beats stay held
    upstream; recoupling passes the rest of the traffic."""
    tb = TB(dut)
    await tb.reset()
    seen: list[tuple[int, dict[str, bool]]] = []  # (edge, handshakes at that edge)

    async def watch():
        while True:
            await RisingEdge(dut.clk)
            seen.append((tb.edge, handshakes(dut)))
    watcher = cocotb.start_soon(watch())
    n = 64  # bytes = beats (8-bit TDATA)
    into, out = bytes(range(n)), bytes(range(100, 100 + n))
    await tb.static_src.send(AxiStreamFrame(into))
    await tb.rm_out.send(AxiStreamFrame(out))
    for _ in range(8):  # both directions well inside their packets
        await RisingEdge(dut.clk)
    landed = await tb.set_decouple(1)
    for _ in range(30):
        await RisingEdge(dut.clk)
        assert_closed(dut, "while decoupled")
    watcher.cancel()

    at = dict(seen)
    assert all(at[landed].values()), \
        f"the test did not decouple mid-packet in both directions: {at[landed]}"
    after = [(e, h) for e, h in seen if e > landed and any(h.values())]
    assert not after, f"handshakes after decoupling at edge {landed}: {after[:3]}"
    for side in ("static in", "RP in", "RP out", "static out"):
        beats = sum(h[side] for _, h in seen)
        assert 0 < beats < n, f"{side}: {beats} of {n} beats passed; the packet was not cut"
    assert tb.rm_in.empty() and tb.static_sink.empty(), "a whole packet passed"

    await tb.set_decouple(0)
    assert await tb.status() == 0
    assert (await tb.rm_in.recv()).tdata == into  # the rest passes once recoupled
    assert (await tb.static_sink.recv()).tdata == out
