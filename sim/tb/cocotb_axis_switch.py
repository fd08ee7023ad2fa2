"""cocotb tests of axis_switch (through sim/tb/hdl/tb_axis_switch.v: 3 slaves,
3 masters, 16-bit TDATA with TKEEP).

Registers follow Xilinx PG085: CTRL at 0x00 (bit 1 = commit), MI_MUX for
master i at 0x40 + 4*i (slave index, bit 31 = disable)."""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import (
    AxiLiteBus,
    AxiLiteMaster,
    AxiStreamBus,
    AxiStreamFrame,
    AxiStreamSink,
    AxiStreamSource,
)
from tbutil import no_pauses, pauses, quiet, random_packets, reset, rng, start_clock

N = 3
CTRL = 0x00
DISABLE = 1 << 31


def mi_mux(i: int) -> int:
    return 0x40 + 4 * i


class TB:
    def __init__(self, dut):
        self.dut = dut
        start_clock(dut)
        self.src = [AxiStreamSource(AxiStreamBus.from_prefix(dut, f"s{i}_axis"), dut.clk, dut.rst)
                    for i in range(N)]
        self.sink = [AxiStreamSink(AxiStreamBus.from_prefix(dut, f"m{i}_axis"), dut.clk, dut.rst)
                     for i in range(N)]
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        quiet(*self.src, *self.sink, self.axil)

    async def reset(self):
        await reset(self.dut)

    async def route(self, routes: dict[int, int | None], commit: bool = True):
        """routes: master -> slave index, or None to disable; masters not
        named are disabled."""
        for m in range(N):
            s = routes.get(m)
            await self.axil.write_dword(mi_mux(m), DISABLE if s is None else s)
        if commit:
            await self.axil.write_dword(CTRL, 0x2)

    async def wait_commit_done(self, timeout=2000):
        for _ in range(timeout):
            if not (await self.axil.read_dword(CTRL)) & 0x2:
                return
        raise AssertionError("commit never completed")

    def backpressure(self, r, p_src=0.3, p_sink=0.3):
        for s in self.src:
            s.set_pause_generator(pauses(r, p_src))
        for k in self.sink:
            k.set_pause_generator(pauses(r, p_sink))

    def no_backpressure(self):
        for p in self.src + self.sink:
            p.set_pause_generator(no_pauses())


def beat_xfer(bus) -> bool:
    return bool(bus.tvalid.value) and bool(bus.tready.value)


@cocotb.test()
async def test_pg085_register_readback(dut):
    """Reset values, read-back of programmed values, commit bit self-clears,
    writes without commit do not route."""
    tb = TB(dut)
    await tb.reset()

    for m in range(N):
        assert await tb.axil.read_dword(mi_mux(m)) == DISABLE, f"MI_MUX{m} reset value"
    assert await tb.axil.read_dword(CTRL) == 0

    values = {0: 2, 1: 0, 2: DISABLE | 1}
    for m, v in values.items():
        await tb.axil.write_dword(mi_mux(m), v)
    for m, v in values.items():
        assert await tb.axil.read_dword(mi_mux(m)) == v, f"MI_MUX{m} read-back"

    # programmed but not committed: nothing is routed
    await tb.src[2].send(AxiStreamFrame(b"\x01\x02\x03"))
    await ClockCycles(dut.clk, 20)
    assert all(k.empty() for k in tb.sink), "data routed before commit"
    assert not dut.s2_axis_tready.value, "uncommitted route accepted data"

    await tb.axil.write_dword(CTRL, 0x2)
    await tb.wait_commit_done()
    frame = await tb.sink[0].recv()
    assert frame.tdata == b"\x01\x02\x03"
    # register values are unchanged by the commit
    for m, v in values.items():
        assert await tb.axil.read_dword(mi_mux(m)) == v


@cocotb.test()
async def test_random_traffic_backpressure(dut):
    """A permutation route, random packets on every slave, random backpressure
    on both sides: every packet arrives at its master in order and intact."""
    r = rng("traffic")
    tb = TB(dut)
    await tb.reset()
    routes = {0: 2, 1: 0, 2: 1}
    await tb.route(routes)
    await tb.wait_commit_done()
    tb.backpressure(r)

    sent = {s: random_packets(r, 40, 1, 40, tag=s) for s in range(N)}
    for s in range(N):
        for p in sent[s]:
            await tb.src[s].send(AxiStreamFrame(p))
    for m, s in routes.items():
        for i, p in enumerate(sent[s]):
            frame = await tb.sink[m].recv()
            assert frame.tdata == p, f"master {m} packet {i}: {frame.tdata.hex()} != {p.hex()}"
    await ClockCycles(dut.clk, 10)
    assert all(k.empty() for k in tb.sink), "extra packets"


@cocotb.test()
async def test_reroute_waits_for_packet_boundary(dut):
    """Commit a new route while master 0 is mid-packet: the packet completes
    from the old slave; the new slave's packet follows it, whole."""
    tb = TB(dut)
    await tb.reset()
    await tb.route({0: 0})
    await tb.wait_commit_done()

    a = bytes(range(0x10, 0x10 + 32))   # 16 beats from slave 0
    b = bytes(range(0xA0, 0xA0 + 8))    # waiting on slave 1
    await tb.src[1].send(AxiStreamFrame(b))
    await tb.src[0].send(AxiStreamFrame(a))

    # let a few beats of A through, then stall slave 0 mid-packet
    beats = 0
    while beats < 4:
        await RisingEdge(dut.clk)
        beats += beat_xfer(tb.src[0].bus)
    tb.src[0].pause = True
    await ClockCycles(dut.clk, 2)

    await tb.route({0: 1})                     # commit mid-packet
    await ClockCycles(dut.clk, 30)
    assert await tb.axil.read_dword(CTRL) & 0x2, "commit applied although master 0 is mid-packet"
    assert not dut.s1_axis_tready.value, "new source accepted mid-packet"
    assert tb.sink[0].empty()

    tb.src[0].pause = False
    first = await tb.sink[0].recv()
    assert first.tdata == a, f"packet A was cut or mixed: {first.tdata.hex()}"
    second = await tb.sink[0].recv()
    assert second.tdata == b, f"packet B: {second.tdata.hex()}"
    await tb.wait_commit_done()
    assert tb.sink[1].empty() and tb.sink[2].empty()


@cocotb.test()
async def test_random_reroutes_never_split_packets(dut):
    """Random commits (permutations and disabled ports) while all slaves
    stream under backpressure: every received packet is a whole sent packet,
    each slave's packets arrive once each and in order."""
    r = rng("reroute")
    tb = TB(dut)
    await tb.reset()
    await tb.route({m: m for m in range(N)})
    tb.backpressure(r, 0.2, 0.2)

    sent = {s: random_packets(r, 30, 2, 24, tag=s) for s in range(N)}
    for s in range(N):
        for p in sent[s]:
            await tb.src[s].send(AxiStreamFrame(p))

    for _ in range(25):
        await ClockCycles(dut.clk, r.randint(5, 60))
        perm = list(range(N))
        r.shuffle(perm)
        routes = {m: (perm[m] if r.random() < 0.8 else None) for m in range(N)}
        await tb.route(routes)

    await tb.route({m: m for m in range(N)})   # let everything drain
    for s in range(N):
        await tb.src[s].wait()
    await tb.wait_commit_done()
    await ClockCycles(dut.clk, 50)

    got = {s: [] for s in range(N)}
    for m in range(N):
        while not tb.sink[m].empty():
            data = bytes((await tb.sink[m].recv()).tdata)
            s, seq = data[0], data[1]
            assert s < N and seq < len(sent[s]) and data == sent[s][seq], \
                f"master {m} got a split or mixed packet {data.hex()}"
            got[s].append((tb.sink[m], seq))
    for s in range(N):
        seqs = [seq for _, seq in got[s]]
        assert sorted(seqs) == list(range(len(sent[s]))), f"slave {s}: lost/duplicated {seqs}"
        for m in range(N):
            per_sink = [seq for k, seq in got[s] if k is tb.sink[m]]
            assert per_sink == sorted(per_sink), f"slave {s} reordered on master {m}"


@cocotb.test()
async def test_unrouted_slave_backpressured(dut):
    """A slave no master takes sees TREADY=0 and keeps its data; a disabled
    master, an out-of-range index and the lower master winning a shared slave."""
    tb = TB(dut)
    await tb.reset()
    # master 0 and master 2 both pick slave 1 (master 0 wins); master 1 gets
    # index 7 (no such slave = disabled); slave 2 is taken by nobody.
    await tb.route({0: 1, 1: 7, 2: 1})
    await tb.wait_commit_done()

    await tb.src[2].send(AxiStreamFrame(b"\x55" * 10))
    await tb.src[1].send(AxiStreamFrame(b"\x66" * 6))
    for _ in range(40):
        await RisingEdge(dut.clk)
        assert not dut.s2_axis_tready.value, "unrouted slave was not back-pressured"
        assert not dut.m1_axis_tvalid.value and not dut.m2_axis_tvalid.value
    assert (await tb.sink[0].recv()).tdata == b"\x66" * 6
    assert tb.sink[1].empty() and tb.sink[2].empty()

    await tb.route({1: 2})
    frame = await tb.sink[1].recv()
    assert frame.tdata == b"\x55" * 10, "held data was lost"

