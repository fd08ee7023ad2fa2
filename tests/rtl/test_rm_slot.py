"""cocotb tests of the slot wrapper and the example RMs (sim/rtl/rm_slot.v)."""

import pytest


def test_rm_slot_icarus(run_cocotb):
    run_cocotb("rm_slot").check(expected_tests=2)


@pytest.mark.verilator
def test_rm_slot_verilator(run_cocotb):
    run_cocotb("rm_slot", sim="verilator").check(expected_tests=2)
