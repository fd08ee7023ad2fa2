"""Mutation check: build the RTL with a deliberately broken switch or
decoupler (`ifdef hooks in sim/rtl) and run the unchanged testbenches.  Each
mutant must be caught: the named cocotb tests have to FAIL."""

import pytest

# (define, toplevel, tests that must catch it, total tests in that module)
MUTANTS = [
    ("MUTANT_SWITCH_MIDPACKET", "tb_axis_switch",
     {"test_reroute_waits_for_packet_boundary"}, 5),
    ("MUTANT_SWITCH_MIDPACKET", "shell_top",
     {"test_live_reroute_onto_slot"}, 7),
    ("MUTANT_DECOUPLER_PASSTHROUGH", "dfx_decoupler",
     {"test_decoupled_blocks_both_ways", "test_decouple_is_packet_safe"}, 4),
    ("MUTANT_DECOUPLER_PASSTHROUGH", "shell_top",
     {"test_decoupled_slot_blocks_traffic"}, 7),
    # beyond the brief: a decoupler that reports idle while the RM still
    # holds complete packets (the "wait idle" step of a swap would lose them)
    ("MUTANT_DECOUPLER_IGNORE_HELD", "dfx_decoupler",
     {"test_decouple_is_packet_safe"}, 4),
    ("MUTANT_DECOUPLER_IGNORE_HELD", "shell_top",
     {"test_swap_waits_for_held_packets"}, 7),
]


@pytest.mark.parametrize(("define", "toplevel", "must_fail", "total"), MUTANTS,
                         ids=[f"{d}-{t}" for d, t, _, _ in MUTANTS])
def test_testbench_catches_mutant(run_cocotb, define, toplevel, must_fail, total):
    res = run_cocotb(toplevel, defines={define: 1})
    assert res.total == total, f"testbench did not run completely:\n{res.log_tail()}"
    missed = must_fail - set(res.failed)
    assert not missed, f"{define}: these tests did not catch the mutant: {sorted(missed)}"
