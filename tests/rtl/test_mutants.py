"""Mutation check: build the RTL with a deliberately broken switch, decoupler, slot
control or address decoder (`ifdef hooks in sim/rtl) and run the unchanged testbenches.
Each mutant must be caught: the named cocotb tests have to FAIL."""

import pytest

DECOUPLER_TESTS, SHELL_TESTS = 4, 9

# (define, toplevel, tests that must catch it, total tests in that module)
MUTANTS = [
    ("MUTANT_SWITCH_MIDPACKET", "tb_axis_switch",
     {"test_reroute_waits_for_packet_boundary"}, 5),
    ("MUTANT_SWITCH_MIDPACKET", "shell_top",
     {"test_live_reroute_onto_slot"}, SHELL_TESTS),
    # PG375 decouples at once: a decoupler that lets data pass while decoupled
    ("MUTANT_DECOUPLER_PASSTHROUGH", "dfx_decoupler",
     {"test_decoupled_blocks_both_ways", "test_decouple_cuts_at_once"}, DECOUPLER_TESTS),
    ("MUTANT_DECOUPLER_PASSTHROUGH", "shell_top",
     {"test_decoupled_slot_blocks_traffic", "test_decouple_cuts_packet"}, SHELL_TESTS),
    # slot_ctrl reports the RP idle while the RM still holds complete packets (the
    # "wait idle" step before decoupling would then lose them)
    ("MUTANT_SLOT_IDLE_IGNORE_HELD", "shell_top",
     {"test_swap_waits_for_held_packets"}, SHELL_TESTS),
    # an address decoder with a default target: the gaps between blocks answer OKAY
    ("MUTANT_DEMUX_DEFAULT_TARGET", "shell_top", {"test_map_probe"}, SHELL_TESTS),
]


@pytest.mark.parametrize(("define", "toplevel", "must_fail", "total"), MUTANTS,
                         ids=[f"{d}-{t}" for d, t, _, _ in MUTANTS])
def test_testbench_catches_mutant(run_cocotb, define, toplevel, must_fail, total):
    res = run_cocotb(toplevel, defines={define: 1})
    assert res.total == total, f"testbench did not run completely:\n{res.log_tail()}"
    missed = must_fail - set(res.failed)
    assert not missed, f"{define}: these tests did not catch the mutant: {sorted(missed)}"
    print(f"{define} on {toplevel}: caught by {sorted(res.failed)}")
