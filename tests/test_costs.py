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


def test_pins_place_layers_and_the_solver_places_the_rest() -> None:
    from hwpart.costs import parse_pins
    from hwpart.partition import solve

    lg = example_graph("jet_tagger")
    board = load_board("pynq-z2")
    table = profile(lg, [8], ["cpu", "fpga"], board, **QUICK)
    pins = parse_pins(lg, "_0-_2=fpga,_7=cpu")
    assert pins == {"_0": "fpga", "_1": "fpga", "_2": "fpga", "_7": "cpu"}
    problem = build_problem(lg, table, 8, ["cpu", "fpga"], board, pins=pins)
    for objective in ("latency", "throughput"):
        sol = solve(problem, objective, "milp")
        assert all(sol.assign[n].startswith("fpga") for n in ("_0", "_1", "_2"))
        assert sol.assign["_7"] == "cpu"


@pytest.mark.parametrize("spec,match", [
    ("_0-_3=tpu", "should be LAYERS=DEVICE"),
    ("_9=fpga", "unknown layer '_9'"),
    ("_3-_0=cpu", "runs backwards"),
])
def test_bad_pins_are_clear_errors(spec: str, match: str) -> None:
    from hwpart.costs import parse_pins
    from hwpart.errors import HwpartError

    with pytest.raises(HwpartError, match=match):
        parse_pins(example_graph("jet_tagger"), spec)


def test_pin_to_a_device_that_cannot_run_the_layer() -> None:
    from hwpart.costs import parse_pins
    from hwpart.errors import PlanError

    lg = example_graph("resnet_block")
    board = load_board("pynq-z2")
    table = profile(lg, [1], ["cpu", "fpga"], board, **QUICK)
    with pytest.raises(PlanError, match="pinned to fpga, which cannot run it"):
        build_problem(lg, table, 1, ["cpu", "fpga"], board, pins=parse_pins(lg, "pool=fpga"))


def test_time_call_is_the_median_of_a_heavy_tailed_sequence(monkeypatch) -> None:
    """A fake clock: each call of ``fn`` lasts the next duration of a known sequence."""
    import hwpart.costs as costs

    warm = [50.0, 50.0]  # warm-up calls: never in the figure
    durations = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 400.0, 900.0, 7.0]  # median 5, max 900
    seq = iter(warm + durations)
    now = [0.0]
    monkeypatch.setattr(costs.time, "perf_counter", lambda: now[0])

    def fn() -> None:
        now[0] += next(seq)

    assert costs.time_call(fn, warmup=2, repeats=len(durations), min_total_s=0.0) == 5.0


def _fake_device_table(lg, device: str, batch: int, board=None) -> CostTable:
    """A measured table whose CPU is made 1000x slower; ``device`` keeps the CPU's real
    times (a hand-made entry for the GPU, the board's model for the FPGA), so it wins
    by far whatever its links cost."""
    measured = ["cpu", "fpga"] if device == "fpga" else ["cpu"]
    table = profile(lg, [batch], measured, board, **QUICK)
    for n in lg.compute_nodes:
        t = table.times[n]["cpu"][str(batch)]
        if device == "gpu" or device in table.times[n]:
            table.times[n][device] = {str(batch): t}
        table.times[n]["cpu"] = {str(batch): 1000.0 * t}
    table.source.setdefault(device, "fake (test)")
    return table


def test_auto_plan_offers_the_gpu_and_picks_it_when_it_is_clearly_better(monkeypatch) -> None:
    import torch

    lg = example_graph("small_cnn")
    table = _fake_device_table(lg, "gpu", 32)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    plan = auto_plan(lg, batch=32, table=table)  # devices: what auto_plan finds here
    assert {plan.unit_of(n) for n in lg.compute_nodes} == {"gpu"}, plan.stages


def test_auto_plan_offers_the_fpga_with_a_board_and_picks_it_when_it_is_clearly_better(
        monkeypatch) -> None:
    import torch

    lg = example_graph("jet_tagger")
    board = load_board("kv260")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    plan = auto_plan(lg, batch=32, table=_fake_device_table(lg, "fpga", 32, board),
                     board=board)
    assert any(plan.unit_of(n).startswith("fpga") for n in lg.compute_nodes), plan.stages


def test_profile_times_layers_in_context_and_the_pipeline_overhead() -> None:
    """The layers of one forward pass add up to that forward's time (the one-stage call),
    and the table carries the pipeline's own per-batch cost, charged by build_problem."""
    from hwpart.costs import predict_plan
    from hwpart.runtime import chain_plan

    lg = example_graph("inception_block")
    table = profile(lg, [8], ["cpu"], threads=1, **QUICK)
    assert table.env["threads"] == 1
    assert table.overhead["first_stage_s"] > 0 and table.overhead["extra_stage_s"] >= 0
    assert all(table.times[n]["cpu"]["8"] > 0 for n in lg.compute_nodes
               if lg.dag.nodes[n]["op"] not in ("getitem",))
    problem = build_problem(lg, table, 8, ["cpu"])
    layers = sum(table.times[n]["cpu"]["8"] for n in lg.compute_nodes) / 8
    one = predict_plan(problem, chain_plan(lg, ["cpu"]))
    two = predict_plan(problem, chain_plan(lg, ["cpu", "cpu"]))
    first, extra = table.overhead["first_stage_s"] / 8, table.overhead["extra_stage_s"] / 8
    assert one.latency_s == pytest.approx(layers + first)
    assert two.latency_s == pytest.approx(layers + first + extra)
    assert two.unit_load_s["cpu"] == pytest.approx(layers + first + extra)
