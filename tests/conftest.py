"""Shared fixtures: the example models, captured once per session."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # host/ is a folder of examples, not an installed package
sys.path.insert(0, str(ROOT / "tests"))

from examples import example_graph  # noqa: E402

from host.models import EXAMPLES  # noqa: E402
from hwpart.graph import LayerGraph  # noqa: E402


@pytest.fixture(params=sorted(EXAMPLES))
def example(request) -> tuple[str, LayerGraph]:
    return request.param, example_graph(request.param)


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


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say it plainly when the FPGA half did not run: a green suite without it is half a
    suite (the modules skip themselves with importorskip, which is easy to miss)."""
    missing = fpga_half_missing()
    if missing:
        terminalreporter.write_sep(
            "!", f"FPGA HALF SKIPPED: {', '.join(missing)} not installed -- the simulated "
                 "board, overlay and cocotb RTL tests did not run (install the [sim] extra "
                 "and iverilog/g++, as `make test` does)", red=True, bold=True)
