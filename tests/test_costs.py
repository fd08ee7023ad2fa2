"""Cost tables: measurement, the FPGA model, persistence, and the problem they build."""

from __future__ import annotations

import pytest
from examples import example_graph

from hwpart.boards import load_board
from hwpart.costs import CostTable, auto_plan, build_problem, fpga_model, profile, time_call
from hwpart.errors import ConfigError

QUICK = {"repeats": 3, "min_total_s": 0.0, "warmup": 1}


def test_profile_roundtrip_and_problem(tmp_path) -> None:
    lg = example_graph("jet_tagger")
    board = load_board("pynq-z2")
    table = profile(lg, [1, 16], ["cpu", "fpga"], board, **QUICK)
    assert set(table.times) == set(lg.compute_nodes)
    for n in lg.compute_nodes:
        assert table.times[n]["cpu"]["1"] > 0 and table.times[n]["cpu"]["16"] > 0
    assert table.source == {"cpu": "measured", "fpga": "modeled (pynq-z2, 100 MHz)"}
    table.save(tmp_path / "c.json")
    again = CostTable.load(tmp_path / "c.json")
    assert again == table
    problem = build_problem(lg, again, 16, ["cpu", "fpga"], board)
    assert [u.name for u in problem.units] == ["cpu", "fpga0", "fpga1"]
    fc1 = lg.compute_nodes[0]
    assert problem.compute[fc1]["cpu"] == pytest.approx(table.times[fc1]["cpu"]["16"] / 16)
    # a DMA batch pays the per-transfer latency once: per sample it is latency / batch
    link = problem.links[frozenset(("cpu", "fpga"))]
    assert link.latency_s == pytest.approx(board.dma.latency_us * 1e-6 / 16)
    assert problem.resources[fc1]["dsp"] > 0


def test_fpga_model_rejects_unsupported_and_oversized() -> None:
    lg = example_graph("resnet_block")
    model = fpga_model(lg, load_board("pynq-z2"))
    pool = next(n for n in lg.compute_nodes if lg.dag.nodes[n]["op"] == "adaptive_avgpool2d")
    assert not model[pool]["supported"]
    assert "no hls4ml PyTorch converter" in model[pool]["reason"]
    conv = model["conv1"]
    assert conv["supported"] and conv["ii_cycles"] >= 16 * 16  # one pixel per II
    assert conv["resources"]["dsp"] <= load_board("pynq-z2").slots.resources.dsp


def test_table_for_another_model_is_refused(tmp_path) -> None:
    lg = example_graph("jet_tagger")
    table = profile(lg, [1], ["cpu"], **QUICK)
    other = example_graph("resnet_block")
    with pytest.raises(ConfigError, match="another model or input shape"):
        build_problem(other, table, 1, ["cpu"])
    (tmp_path / "bad.json").write_text('{"model": 1}')
    with pytest.raises(ConfigError, match="not a hwpart cost table"):
        CostTable.load(tmp_path / "bad.json")


def test_auto_plan_is_feasible_and_beats_or_ties_cpu() -> None:
    lg = example_graph("inception_block")
    board = load_board("kv260")
    plan = auto_plan(lg, batch=4, objective="throughput", devices=["cpu", "fpga"], board=board,
                     **QUICK)
    assert {st.unit for st in plan.stages} <= {"cpu", "fpga0", "fpga1"}
    assert plan.predicted["throughput_sps"] > 0
    covered = [n for st in plan.stages for n in st.nodes]
    assert sorted(covered) == sorted(lg.nodes)


def test_time_call_takes_the_median() -> None:
    calls = []
    t = time_call(lambda: calls.append(1), repeats=7, warmup=2, min_total_s=0.0)
    assert len(calls) == 9 and t >= 0
