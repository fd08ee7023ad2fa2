"""Online calibration (hwpart.calibration): factors from the monitor's service times."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hwpart.calibration import Calibrator, calibrate_table, stage_prediction
from hwpart.costs import CostTable
from hwpart.partition import manual_plan


def plan2():
    plan = manual_plan("m", (4,), [("cpu", ["a"]), ("fpga0", ["b"]), ("cpu", ["c"])], batch=8)
    for st, t in zip(plan.stages, (2e-6, 1e-6, 1e-6), strict=True):
        st.predicted_s = t
    plan.unit_load_s = {"cpu": 3.5e-6, "fpga0": 0.6e-6}  # 0.5 us of overhead on the cpu
    plan.link_load_s = {"cpu-fpga": 0.4e-6}
    plan.predicted = {"latency_s": 5e-6, "bottleneck_s": 3.5e-6, "throughput_sps": 1 / 3.5e-6}
    return plan


def snap(samples: int, per_sample: dict[str, float]):
    """Cumulative figures, as the monitor reports them."""
    stages = [SimpleNamespace(name=n, unit=u, samples=samples, service_per_sample_s=t,
                              service_modeled=u.startswith("fpga"))
              for n, u, t in (("stage0", "cpu", per_sample["stage0"]),
                              ("stage1", "fpga0", per_sample["stage1"]),
                              ("stage2", "cpu", per_sample["stage2"]))]
    return SimpleNamespace(stages=stages)


def test_factors_learn_measured_over_predicted_and_weigh_by_samples():
    cal = Calibrator(plan2())
    cal.update(snap(2000, {"stage0": 4e-6, "stage1": 1e-6, "stage2": 1e-6}))
    assert cal.ratio("stage0") == pytest.approx(2.0) and cal.ratio("stage1") == pytest.approx(1.0)
    assert cal.factors["stage1"].modeled and not cal.factors["stage0"].modeled
    # a spike over 10 samples (cumulative mean barely moves) moves the factor a little
    tot = 2000 * 4e-6 + 10 * 400e-6
    cal.update(snap(2010, {"stage0": tot / 2010, "stage1": 1e-6, "stage2": 1e-6}))
    assert 2.0 < cal.ratio("stage0") < 2.0 + 0.01 * 198  # alpha = 0.5 per 1000 samples
    assert cal.factors["stage0"].samples == 2010 and cal.factors["stage0"].intervals == 2
    # no new samples: no update
    before = cal.ratio("stage0")
    cal.update(snap(2010, {"stage0": tot / 2010, "stage1": 1e-6, "stage2": 1e-6}))
    assert cal.ratio("stage0") == before


def test_calibrated_prediction_keeps_what_no_stage_covers():
    plan = plan2()
    cal = Calibrator(plan)
    assert cal.prediction()["bottleneck_s"] == pytest.approx(3.5e-6)  # no data: the plan
    cal.update(snap(5000, {"stage0": 6e-6, "stage1": 1e-6, "stage2": 1e-6}))
    p = cal.prediction()
    # cpu: 3.5 us + (3 - 1) x 2 us; the overhead (0.5 us) stays; fpga = slot + DMA link
    assert p["bottleneck_s"] == pytest.approx(7.5e-6)
    assert p["latency_s"] == pytest.approx(9e-6)
    cal.update(snap(10000, {"stage0": 2e-6, "stage1": 21e-6, "stage2": 1e-6}))  # slow board
    assert cal.ratio("stage1") > 5
    p = cal.prediction()
    assert p["bottleneck_s"] == pytest.approx(0.6e-6 + 0.4e-6 + (cal.ratio("stage1") - 1) * 1e-6)


def test_stage_level_prediction_for_hand_plans():
    plan = plan2()
    plan.unit_load_s = {}
    assert stage_prediction(plan)["bottleneck_s"] == pytest.approx(3e-6)  # cpu stages add up
    assert stage_prediction(plan, {"stage1": 5.0})["bottleneck_s"] == pytest.approx(5e-6)


def test_calibrated_table_scales_each_stages_layers_on_its_device():
    plan = plan2()
    table = CostTable("m", [4], [8], {n: {"cpu": {"8": 8e-6}} for n in "abc"},
                      {"cpu": "measured"})
    cal = Calibrator(plan)
    cal.update(snap(5000, {"stage0": 6e-6, "stage1": 1e-6, "stage2": 0.5e-6}))
    out = calibrate_table(table, plan, cal)
    assert out.times["a"]["cpu"]["8"] == pytest.approx(24e-6)
    assert out.times["c"]["cpu"]["8"] == pytest.approx(4e-6)
    assert out.times["b"] == table.times["b"]  # on the fpga in the plan: its cpu time stays
    assert table.times["a"]["cpu"]["8"] == 8e-6  # the input table is not changed
    assert out.env["calibration"]["stages"]["stage0"]["ratio"] == pytest.approx(3.0)
