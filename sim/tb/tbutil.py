"""Small helpers shared by the cocotb testbenches in sim/tb."""

from __future__ import annotations

import itertools
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer


def rng(salt: str = "") -> random.Random:
    """A random generator seeded from cocotb's seed (printed in the log)."""
    return random.Random(f"{cocotb.RANDOM_SEED}:{salt}")


def start_clock(dut, period_ns: int = 10) -> None:
    cocotb.start_soon(Clock(dut.clk, period_ns, unit="ns").start())


async def reset(dut, cycles: int = 4) -> None:
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def pauses(r: random.Random, p: float):
    """Endless pause pattern for cocotbext-axi's set_pause_generator:
    each cycle is paused with probability p, in bursts of 1-4 cycles."""
    while True:
        if r.random() < p:
            for _ in range(r.randint(1, 4)):
                yield True
        else:
            yield False


def no_pauses():
    return itertools.repeat(False)


def random_packets(r: random.Random, count: int, min_len: int, max_len: int, align: int = 1,
                   tag: int | None = None) -> list[bytes]:
    """count random packets, length in [min_len, max_len] rounded up to align.
    With tag, byte 0 = tag and byte 1 = sequence number (mod 256)."""
    out = []
    for seq in range(count):
        n = r.randint(min_len, max_len)
        n = -(-n // align) * align
        data = bytearray(r.getrandbits(8) for _ in range(n))
        if tag is not None:
            data[0] = tag
            if n > 1:
                data[1] = seq & 0xFF
        out.append(bytes(data))
    return out


async def wait_for(cond, clk, timeout_cycles: int, what: str) -> None:
    """Wait until cond() is true at a rising edge, fail after timeout_cycles."""
    for _ in range(timeout_cycles):
        if cond():
            return
        await RisingEdge(clk)
    assert cond(), f"timeout after {timeout_cycles} cycles waiting for {what}"


def quiet(*drivers) -> None:
    """Silence cocotbext-axi's per-transfer INFO logging."""
    for d in drivers:
        for obj in (d, getattr(d, "write_if", None), getattr(d, "read_if", None)):
            if obj is not None and hasattr(obj, "log"):
                obj.log.setLevel("WARNING")


def param(dut, name: str, default: int) -> int:
    """An HDL parameter of the toplevel, or ``default`` where the simulator hides
    parameters (Verilator without public parameters)."""
    try:
        return int(getattr(dut, name).value)
    except (AttributeError, ValueError, TypeError):
        return default


async def settle() -> None:
    await Timer(1, unit="ns")
