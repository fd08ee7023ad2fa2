"""cocotb tests of the AXI4-Stream switch (sim/rtl/axis_switch.v)."""

import pytest


def test_axis_switch_icarus(run_cocotb):
    run_cocotb("tb_axis_switch").check(expected_tests=5)


@pytest.mark.verilator
def test_axis_switch_verilator(run_cocotb):
    run_cocotb("tb_axis_switch", sim="verilator").check(expected_tests=5)
