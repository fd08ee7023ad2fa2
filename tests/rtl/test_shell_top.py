"""cocotb tests of the static shell (sim/rtl/shell_top.v): switch + decouplers
+ RM slots behind one AXI4-Lite map, with PR swaps mid-stream."""

import pytest


def test_shell_top_icarus(run_cocotb):
    run_cocotb("shell_top").check(expected_tests=7)


@pytest.mark.verilator
def test_shell_top_verilator(run_cocotb):
    run_cocotb("shell_top", sim="verilator").check(expected_tests=7)
