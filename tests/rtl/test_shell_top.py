"""cocotb tests of the static shell (sim/rtl/shell_top.v): switch + PG375 decouplers +
slot control + RM slots + RM identity blocks behind one AXI4-Lite map, with PR swaps
mid-stream; the map is hwpart's (``hwpart.board.regs.shell_map``), or any other given
through shell_top's address parameters."""

from __future__ import annotations

import json

import pytest

from hwpart.rtlbridge import layout_parameters

TESTS = 9
#: the tests that need no particular layout, run again on moved blocks
MAP_TESTS = ["test_map_probe", "test_chain_two_slots"]


#: every block somewhere else: slots in reverse order, blocks where others sit by
#: default (rm_info_0 at the switch's 0x0, slot_ctrl at the DMA's 0x1_0000), the
#: switch at the top of the 18-bit space
MOVED = {"switch": 0x3_F000,
         "decoupler_0": 0x0_5000, "decoupler_1": 0x0_2000,
         "slot_ctrl_0": 0x1_1000, "slot_ctrl_1": 0x1_0000,
         "slot_0/rm_info": 0x0_0000, "slot_1/rm_info": 0x2_7000}


def test_shell_top_icarus(run_cocotb):
    run_cocotb("shell_top").check(expected_tests=TESTS)


def test_shell_top_moved_blocks_icarus(run_cocotb, monkeypatch):
    """The same probe with every block moved through shell_top's parameters: each block
    answers at its new address, and the default addresses now answer DECERR."""
    monkeypatch.setenv("HWPART_SHELL_MAP", json.dumps(MOVED))
    run_cocotb("shell_top", parameters=layout_parameters(MOVED, 2),
               testcase=MAP_TESTS).check(expected_tests=len(MAP_TESTS))


def test_shell_top_three_slots_icarus(run_cocotb):
    """shell_top's default layout for another slot count is hwpart's map for it."""
    run_cocotb("shell_top", parameters={"NUM_SLOTS": 3},
               testcase=MAP_TESTS).check(expected_tests=len(MAP_TESTS))


@pytest.mark.verilator
def test_shell_top_verilator(run_cocotb):
    run_cocotb("shell_top", sim="verilator").check(expected_tests=TESTS)
