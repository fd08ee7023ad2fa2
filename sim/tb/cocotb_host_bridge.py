"""hwpart's FPGA device code (PYNQ API calls, unchanged) driving the shell RTL.

``shell_top`` is built with a bundle's generated ``rm_bank``, the bank's RM
identities (each slot's ``rm_info``) and the block layout of the bundle's shell
``.hwh``; an ``RtlBoard`` (hwpart.rtlbridge) turns the host's MMIO to the
shell's blocks into AXI-Lite transactions at the ``.hwh``'s addresses and its
DMA packets into AXI-Stream frames. The host code runs
in a cocotb ``bridge`` thread: while it runs the simulator waits, and each of
its register accesses ``resume``s the simulator for that access.

Configuration comes from ``HWPART_BRIDGE_CONFIG`` (JSON: bundle, bank, board,
inputs ``.npy``, outputs ``.npz``), written by tests/rtl/test_host_bridge.py.
"""

from __future__ import annotations

import json
import os
import time

import cocotb
import numpy as np
from cocotb.task import bridge
from tbutil import reset, start_clock


def host_program(board, bundle: str, x: np.ndarray) -> dict:
    """What ``hwpart run --fpga`` does per stage: FpgaDevice.load/run/unload, over PYNQ."""
    import rtl_bundles

    from hwpart.devices.fpga import FpgaDevice

    dev = FpgaDevice(overlay=bundle, fpga="sim", timeout_s=120.0, pace=False)
    dev.pdev = dev.sim = board  # the device PYNQ reaches: the RTL board, not a fresh SimBoard
    t0 = time.perf_counter()
    out = rtl_bundles.run_partitioned(dev, x)
    return {"outputs": out, "swaps": dev.swaps, "host_s": time.perf_counter() - t0,
            "slots": [s.rm for s in dev._slots]}


@cocotb.test(timeout_time=2, timeout_unit="ms")  # a hang fails, not blocks CI
async def test_fpga_device_on_rtl(dut):
    """A partitioned model through FpgaDevice -> PYNQ -> AXI-Lite/AXI-Stream -> shell RTL."""
    from hwpart.rtlbridge import GeneratedBank, make_rtl_board

    cfg = json.loads(open(os.environ["HWPART_BRIDGE_CONFIG"]).read())
    start_clock(dut)
    dut.s_axis_tvalid.value = 0
    dut.m_axis_tready.value = 0
    await reset(dut)
    board = make_rtl_board(dut, GeneratedBank.load(cfg["bank"]), cfg["board"])
    t_sim = cocotb.utils.get_sim_time("ns")
    res = await bridge(host_program)(board, cfg["bundle"], np.load(cfg["x"]))
    cycles = int((cocotb.utils.get_sim_time("ns") - t_sim) / 10)
    np.savez(cfg["out"], **res["outputs"])
    with open(cfg["report"], "w") as f:
        json.dump({"swaps": res["swaps"], "slots": res["slots"], "host_s": res["host_s"],
                   "sim_cycles": cycles, **board.counts}, f)
    dut._log.info("host code on RTL: %d PR swaps, %d cycles simulated, %s", res["swaps"],
                  cycles, board.counts)
