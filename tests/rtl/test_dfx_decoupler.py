"""cocotb tests of the DFX decoupler (sim/rtl/dfx_decoupler.v, PG375 behaviour), with
its AXI4-Lite register (HAS_AXI_LITE=1, as in the shell) and with the port instead."""

import pytest

TESTS = 4


@pytest.mark.parametrize("axil", [1, 0], ids=["axi_lite", "port"])
def test_dfx_decoupler_icarus(run_cocotb, axil):
    run_cocotb("dfx_decoupler", parameters={"HAS_AXI_LITE": axil}).check(expected_tests=TESTS)


@pytest.mark.verilator
def test_dfx_decoupler_verilator(run_cocotb):
    run_cocotb("dfx_decoupler", sim="verilator").check(expected_tests=TESTS)
