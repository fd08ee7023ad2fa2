"""cocotb tests of the DFX decoupler (sim/rtl/dfx_decoupler.v)."""

import pytest


def test_dfx_decoupler_icarus(run_cocotb):
    run_cocotb("dfx_decoupler").check(expected_tests=4)


@pytest.mark.verilator
def test_dfx_decoupler_verilator(run_cocotb):
    run_cocotb("dfx_decoupler", sim="verilator").check(expected_tests=4)
