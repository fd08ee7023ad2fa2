"""Generated RMs (da4ml cores behind rm_da4ml_axis) in the slot wrapper ``rm_slot``.

The expectations come from outside the simulator (``HWPART_RTL_VECTORS``, a
JSON file written by tests/rtl/test_generated_rms.py or by
hwpart.overlay.calibrate): raw lane values in, and per reference the raw lane
values out. Keeping torch and da4ml out of the simulator process keeps it
fast; the comparison itself happens here, on the words the RTL emitted.

Measured figures (``HWPART_RTL_MEASURE``) are RTL cycles of this design in
Icarus: cycles between clock edges at which AXI-Stream handshakes happen on
the slot's ports, which are the RM's ports.
"""

from __future__ import annotations

import json
import os
import statistics

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource
from tbutil import no_pauses, pauses, quiet, reset, rng, start_clock


def load_vectors() -> dict:
    return json.loads(open(os.environ["HWPART_RTL_VECTORS"]).read())


def pack(sample: list[int], lane_bits: int, lanes: int, words: int) -> list[int]:
    mask = (1 << lane_bits) - 1
    out = []
    for w in range(words):
        v = 0
        for j, e in enumerate(sample[w * lanes:(w + 1) * lanes]):
            v |= (int(e) & mask) << (j * lane_bits)
        out.append(v)
    return out


def unpack(words: list[int], n: int, lane_bits: int, lanes: int) -> list[int]:
    out = []
    for i in range(n):
        e = (words[i // lanes] >> ((i % lanes) * lane_bits)) & ((1 << lane_bits) - 1)
        out.append(e - (1 << lane_bits) if e >> (lane_bits - 1) else e)
    return out


class TB:
    def __init__(self, dut, width: int) -> None:
        self.dut, self.nbytes = dut, width // 8
        start_clock(dut)
        self.src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        quiet(self.src, self.sink)
        dut.rm_reset.value = 0
        dut.rm_select.value = 0

    async def select(self, index: int) -> None:
        """Swap RM ``index`` in (rm_slot resets it) and wait until it is out of reset."""
        self.dut.rm_select.value = index
        await RisingEdge(self.dut.clk)
        while int(self.dut.rm_in_reset.value):
            await RisingEdge(self.dut.clk)

    def frame(self, words: list[int]) -> AxiStreamFrame:
        return AxiStreamFrame(b"".join(w.to_bytes(self.nbytes, "little") for w in words))

    def words(self, frame: AxiStreamFrame) -> list[int]:
        data = bytes(frame.tdata)
        return [int.from_bytes(data[i:i + self.nbytes], "little")
                for i in range(0, len(data), self.nbytes)]


async def run_packets(tb: TB, rm: dict, samples: list[list[int]], sizes: list[int]) -> list:
    """Send ``samples`` as packets of ``sizes`` samples; returns the output samples (raw lanes)."""
    pos = 0
    for n in sizes:
        words = [w for s in samples[pos:pos + n]
                 for w in pack(s, rm["lane_bits"], rm["lanes"], rm["in_words"])]
        await tb.src.send(tb.frame(words))
        pos += n
    out = []
    for n in sizes:
        frame = await tb.sink.recv()
        words = tb.words(frame)
        assert len(words) == n * rm["out_words"], \
            f"{rm['name']}: packet of {n} samples gave {len(words)} words"
        for s in range(n):
            ws = words[s * rm["out_words"]:(s + 1) * rm["out_words"]]
            out.append(unpack(ws, rm["n_out"], rm["lane_bits"], rm["lanes"]))
    return out


def packet_sizes(r, total: int) -> list[int]:
    sizes = []
    while total > 0:
        sizes.append(min(total, r.randint(1, 9)))
        total -= sizes[-1]
    return sizes


def compare(rm: dict, got: list[list[int]], ref: str) -> None:
    want = rm[ref]
    bad = [i for i, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
    assert not bad, (f"{rm['name']}: {len(bad)}/{len(want)} samples differ from {ref}; "
                     f"first: sample {bad[0]} got {got[bad[0]]} want {want[bad[0]]}")


@cocotb.test(timeout_time=2, timeout_unit="ms")  # a hang fails, not blocks CI
async def test_bit_exact_every_rm(dut):
    """Every RM of the bank, random inputs, random packet sizes, random back-pressure:
    RTL words == da4ml emulation == quantized torch, bit for bit; float torch within
    the RM's accuracy tolerance."""
    vec = load_vectors()
    tb = TB(dut, vec["data_width"])
    await reset(dut)
    report = {}
    for rm in vec["rms"]:
        r = rng(rm["name"])
        tb.src.set_pause_generator(pauses(r, 0.2))
        tb.sink.set_pause_generator(pauses(r, 0.3))
        await tb.select(rm["index"])
        got = await run_packets(tb, rm, rm["inputs"], packet_sizes(r, len(rm["inputs"])))
        compare(rm, got, "expect_emulation")
        compare(rm, got, "expect_qtorch")
        scale = 2.0 ** -rm["lane_frac"]
        n_f = len(rm["torch_float"])
        err = max(abs(g * scale - t) for gs, ts in zip(got[-n_f:], rm["torch_float"], strict=True)
                  for g, t in zip(gs, ts, strict=True))
        assert err <= rm["tolerance"], f"{rm['name']}: |RTL - float torch| {err} > {rm['tolerance']}"
        report[rm["name"]] = {"samples": len(got), "max_abs_err_float_torch": err}
    tb.src.set_pause_generator(no_pauses())
    tb.sink.set_pause_generator(no_pauses())
    if os.environ.get("HWPART_RTL_REPORT"):
        with open(os.environ["HWPART_RTL_REPORT"], "w") as f:
            json.dump(report, f)


@cocotb.test(timeout_time=2, timeout_unit="ms")  # a hang fails, not blocks CI
async def test_swap_midstream_keeps_packets_whole(dut):
    """Swap between RMs after each packet: every output is the new RM's, nothing is lost."""
    vec = load_vectors()
    tb = TB(dut, vec["data_width"])
    await reset(dut)
    for rnd in range(2):
        for rm in vec["rms"][::(-1) ** rnd]:
            await tb.select(rm["index"])
            k = 3 + rnd
            got = await run_packets(tb, rm, rm["inputs"][:k], [k])
            assert got == rm["expect_emulation"][:k], rm["name"]


class Handshakes:
    """Clock-edge numbers of every input and output handshake (the RM's ports)."""

    def __init__(self, dut) -> None:
        self.dut = dut
        self.cycle = 0
        self.ins: list[int] = []
        self.outs: list[tuple[int, bool]] = []
        self._task = cocotb.start_soon(self._watch())

    async def _watch(self) -> None:
        d = self.dut
        while True:
            await RisingEdge(d.clk)
            self.cycle += 1
            if int(d.s_axis_tvalid.value) and int(d.s_axis_tready.value):
                self.ins.append(self.cycle)
            if int(d.m_axis_tvalid.value) and int(d.m_axis_tready.value):
                self.outs.append((self.cycle, bool(int(d.m_axis_tlast.value))))

    def stop(self) -> None:
        self._task.cancel()


@cocotb.test(timeout_time=2, timeout_unit="ms")  # a hang fails, not blocks CI
async def test_measure_cycles(dut):
    """RTL-measured latency and II of every RM (Icarus), output always ready.

    latency: edges from the first input beat of a lone sample to its first
    output beat (``latency_first``) and its last (``latency_last``); II: the
    median spacing of output samples in a back-to-back packet of 32 samples.
    """
    vec = load_vectors()
    tb = TB(dut, vec["data_width"])
    await reset(dut)
    measured = {}
    for rm in vec["rms"]:
        await tb.select(rm["index"])
        await ClockCycles(dut.clk, 4)
        hs = Handshakes(dut)
        await run_packets(tb, rm, rm["inputs"][:1], [1])
        await ClockCycles(dut.clk, 2)
        hs.stop()
        first_in = hs.ins[0]
        lat_first, lat_last = hs.outs[0][0] - first_in, hs.outs[-1][0] - first_in
        n = min(32, len(rm["inputs"]))
        hs = Handshakes(dut)
        await run_packets(tb, rm, rm["inputs"][:n], [n])
        hs.stop()
        ends = [c for i, (c, _) in enumerate(hs.outs) if i % rm["out_words"] == rm["out_words"] - 1]
        gaps = [b - a for a, b in zip(ends, ends[1:], strict=False)]
        ii = int(statistics.median(gaps[len(gaps) // 4:])) if gaps else lat_last
        measured[rm["name"]] = {"latency_first": lat_first, "latency_last": lat_last, "ii": ii,
                                "samples": n, "burst_cycles": hs.outs[-1][0] - hs.ins[0]}
        dut._log.info("%s measured (icarus): latency %d/%d cycles (first/last beat), II %d",
                      rm["name"], lat_first, lat_last, ii)
    if os.environ.get("HWPART_RTL_MEASURE"):
        with open(os.environ["HWPART_RTL_MEASURE"], "w") as f:
            json.dump(measured, f, indent=1)
