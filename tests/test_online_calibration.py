"""Online calibration (hwpart.calibration): factors from the monitor's service times."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

from hwpart.calibration import TAU_S, Calibrator, calibrate_table, stage_prediction
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
    return SimpleNamespace(stages=stages, interval_s=0.25)


def test_factors_learn_measured_over_predicted_and_weigh_by_samples():
    cal = Calibrator(plan2())
    cal.update(snap(2000, {"stage0": 4e-6, "stage1": 1e-6, "stage2": 1e-6}))
    assert cal.ratio("stage0") == pytest.approx(2.0) and cal.ratio("stage1") == pytest.approx(1.0)
    assert cal.factors["stage1"].modeled and not cal.factors["stage0"].modeled
    # a spike: 10 samples at 200x. The factor is decayed service over decayed predicted
    # service, so it moves by the device time the spike held, not by its ratio alone
    tot = 2000 * 4e-6 + 10 * 400e-6
    cal.update(snap(2010, {"stage0": tot / 2010, "stage1": 1e-6, "stage2": 1e-6}))
    keep = math.exp(-0.25 / TAU_S)
    expect = (keep * 8e-3 + 4e-3) / (keep * 4e-3 + 10 * 2e-6)
    assert cal.ratio("stage0") == pytest.approx(expect) and expect < 4
    # steady again: the spike decays away
    t = tot
    for k in range(1, 21):
        t += 2000 * 4e-6
        cal.update(snap(2010 + 2000 * k, {"stage0": t / (2010 + 2000 * k), "stage1": 1e-6,
                                          "stage2": 1e-6}))
    assert cal.ratio("stage0") == pytest.approx(2.0, rel=0.01)
    assert cal.factors["stage0"].samples == 42010 and cal.factors["stage0"].intervals == 22
    # no new samples: no update
    before = cal.ratio("stage0")
    cal.update(snap(42010, {"stage0": t / 42010, "stage1": 1e-6, "stage2": 1e-6}))
    assert cal.ratio("stage0") == before


def test_calibrated_prediction_prices_each_stage_thread_and_the_shared_engine():
    plan = plan2()
    plan.predicted.update(overhead_first_s=0.5e-6, overhead_stage_s=0.25e-6)
    cal = Calibrator(plan)
    # no data: the stages as planned, stage0 + the first stage's overhead is the slowest
    assert cal.prediction()["bottleneck_s"] == pytest.approx(2.5e-6)
    cal.update(snap(5000, {"stage0": 6e-6, "stage1": 1e-6, "stage2": 1e-6}))
    p = cal.prediction()
    assert p["bottleneck_s"] == pytest.approx(6.5e-6)  # each stage is a thread of its own
    assert p["throughput_sps"] == pytest.approx(1 / 6.5e-6)
    # latency: every stage and its overhead (the DMA link is inside the FPGA stage)
    assert p["latency_s"] == pytest.approx(6.5e-6 + 1e-6 + 1.25e-6)
    cal.update(snap(10000, {"stage0": 2e-6, "stage1": 21e-6, "stage2": 1e-6}))  # slow board
    assert cal.ratio("stage1") > 5
    p = cal.prediction()
    assert p["bottleneck_s"] == pytest.approx(cal.ratio("stage1") * 1e-6)  # the engine


def test_the_engine_is_shared_by_every_fpga_stage():
    plan = manual_plan("m", (4,), [("fpga0", ["a"]), ("cpu", ["b"]), ("fpga1", ["c"])])
    for st, t in zip(plan.stages, (2e-6, 1e-6, 2e-6), strict=True):
        st.predicted_s = t
    assert stage_prediction(plan)["bottleneck_s"] == pytest.approx(4e-6)
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
