"""What the suite says at its end: whether the FPGA half ran.

A module of its own, not conftest: ``tests/`` and ``tests/rtl/`` both have a
conftest, and ``import conftest`` reaches whichever Python imported first.
"""

from __future__ import annotations

import importlib.util
import shutil
from typing import Any

#: What the FPGA half of the suite needs: the [sim] extra's packages and the simulators.
FPGA_PACKAGES = ("pynq", "hls4ml", "cocotb", "cocotbext.axi")
FPGA_TOOLS = ("iverilog", "g++")


def fpga_half_missing() -> list[str]:
    """What is missing for the FPGA half (simulated board, overlays, cocotb RTL)."""
    missing = []
    for m in FPGA_PACKAGES:
        try:
            found = importlib.util.find_spec(m) is not None
        except ModuleNotFoundError:  # a dotted name whose parent is absent
            found = False
        if not found:
            missing.append(m)
    return missing + [t for t in FPGA_TOOLS if shutil.which(t) is None]


def report(terminalreporter: Any) -> None:
    """Say it plainly when the FPGA half did not run: a green suite without it is half a
    suite (the modules skip themselves with importorskip, which is easy to miss)."""
    missing = fpga_half_missing()
    if missing:
        terminalreporter.write_sep(
            "!", f"FPGA HALF SKIPPED: {', '.join(missing)} not installed -- the simulated "
                 "board, overlay and cocotb RTL tests did not run (install the [sim] extra "
                 "and iverilog/g++, as `make test` does)", red=True, bold=True)
