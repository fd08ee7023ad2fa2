"""The pipeline runtime: exact outputs, completeness under load, backpressure, failures,
Ctrl-C, live re-routing, and the `hwpart run` / `hwpart devices` entry points."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from examples import example_graph
from rich.console import Console

from hwpart.devices import CpuDevice
from hwpart.errors import DeviceError, HwpartError, PlanError
from hwpart.runcli import devices_command, run_command
from hwpart.runtime import (
    Pipeline,
    Route,
    chain_plan,
    run_model,
    run_pipeline,
)
from hwpart.stages import Stage, StagedModel, split

ROOT = Path(__file__).resolve().parents[1]


def pipeline_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("hwpart-")]


def wait_until(cond, timeout: float = 5.0) -> bool:
    """Poll for a state other threads reach (not a stand-in for work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.002)
    return cond()


class Synthetic:
    """A stage whose work is a delay; logs the values it saw (values = sample numbers)."""

    def __init__(self, seed: int = 0, p_delay: float = 0.0, max_delay: float = 0.0,
                 delay: float = 0.0, fail_at: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.p_delay, self.max_delay, self.delay = p_delay, max_delay, delay
        self.fail_at = fail_at
        self.seen: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        first = int(x[0])
        self.seen.append(first)
        if self.fail_at is not None and first == self.fail_at:
            raise ValueError(f"boom on sample {first}")
        if self.delay:
            time.sleep(self.delay)
        elif self.p_delay and self.rng.random() < self.p_delay:
            time.sleep(self.rng.uniform(0.0, self.max_delay))
        return x


def synthetic(mods: list[Synthetic]) -> StagedModel:
    stages = [Stage(f"stage{i}", "cpu", [], m, ["x"], [(None, "x")], {"x"})
              for i, m in enumerate(mods)]
    return StagedModel(stages, ["x"], "x")


# --------------------------------------------------------------------------- exactness


def eager_per_batch(model, x: torch.Tensor, batch: int) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


@pytest.mark.parametrize("k", [1, 2, 3])
def test_output_equals_eager_bit_exactly(example, k):
    name, lg = example
    from host.models import EXAMPLES

    model = EXAMPLES[name][0]()
    plan = chain_plan(lg, ["cpu"] * k)
    assert len(plan.stages) == k
    x = lg.example_input(70, seed=k)
    result = run_model(lg, plan, x, batch=16)
    assert len(result.outputs) == 5 and result.samples == 70
    assert torch.equal(result.output(), eager_per_batch(model, x, 16))
    assert not pipeline_threads()


def test_one_batch_equals_eager_on_the_whole_input():
    from host.models import EXAMPLES

    lg = example_graph("inception_block")
    x = lg.example_input(24, seed=9)
    result = run_model(lg, chain_plan(lg, ["cpu", "cpu", "cpu"]), x, batch=24)
    with torch.inference_mode():
        assert torch.equal(result.output(), EXAMPLES["inception_block"][0]()(x))


# --------------------------------------------------------------------------- streaming


def test_100k_items_arrive_complete_in_order_unduplicated():
    n = 100_000
    mods = [Synthetic(seed=i, p_delay=0.002, max_delay=0.002) for i in range(3)]
    with Pipeline(synthetic(mods), {"cpu": CpuDevice()}, capacity=8) as pipe:
        result = pipe.run(torch.arange(n), batch=1)
    assert len(result.outputs) == n
    assert torch.equal(torch.cat(result.outputs), torch.arange(n))  # complete, ordered, no dups
    for m in mods:
        assert m.seen == list(range(n))  # every stage saw every item once, in order
    snap = result.snapshot
    assert snap.samples == n and all(s.batches == n for s in snap.stages)
    assert snap.stages[0].queue_capacity is None  # stage 0 pulls the source directly
    assert all(s.queue_high_water <= 8 for s in snap.stages[1:])
    assert not pipeline_threads()


def test_stalled_sink_blocks_the_source_and_bounds_memory():
    from hwpart.streams import number

    k, cap, n = 3, 4, 10_000
    # in flight at most: every channel between stages full and one item in hand per stage
    # (the last stage's is the item stalled at the sink)
    bound = (k - 1) * cap + k
    pulled = [0]

    def source():
        for i in range(n):
            pulled[0] += 1
            yield (torch.tensor([i]),)

    release = threading.Event()
    stalled: dict[str, object] = {}

    with Pipeline(synthetic([Synthetic() for _ in range(k)]), {"cpu": CpuDevice()},
                  capacity=cap) as pipe:

        def on_output(done: int) -> None:
            if done == 1:  # the sink stalls on its first item
                stalled["reached"] = wait_until(lambda: pulled[0] >= bound)
                time.sleep(0.2)  # a window in which nothing more may be pulled
                stalled.update(pulled=pulled[0], depths=[c.depth for c in pipe.channels],
                               source_blocked=pipe.channels[0].blocked_puts > 0)
                release.set()

        result = pipe.run_items(number(source()), total_samples=n, on_output=on_output)
    assert release.is_set()
    assert stalled == {"reached": True, "pulled": bound, "depths": [cap] * (k - 1),
                       "source_blocked": True}
    assert all(c.high_water <= cap for c in pipe.channels)
    assert torch.equal(torch.cat(result.outputs), torch.arange(n))


def test_a_failing_stage_is_named_and_the_run_ends_cleanly():
    mods = [Synthetic(delay=0.001), Synthetic(fail_at=37), Synthetic()]
    with pytest.raises(DeviceError) as info:
        with Pipeline(synthetic(mods), {"cpu": CpuDevice()}) as pipe:
            pipe.run(torch.arange(1000), batch=1)
    msg = str(info.value)
    assert "stage 'stage1' on cpu failed at batch 37: ValueError: boom on sample 37" in msg
    assert isinstance(info.value.__cause__, ValueError)
    assert not pipeline_threads()
    assert max(mods[0].seen) < 37 + 4 * 3 + 5  # the upstream stage stopped soon after


class Hanging(CpuDevice):
    """A device whose call for batch 3 never returns until the test lets it go."""

    def __init__(self) -> None:
        super().__init__(name="hanging")
        self.release = threading.Event()
        self.unloads = 0

    def run(self, handle, env):
        if int(env["x"][0]) == 3:
            self.release.wait(10)
        return super().run(handle, env)

    def unload(self, handle):
        self.unloads += 1
        super().unload(handle)


def test_a_stage_that_never_returns_is_reported_and_its_handle_kept():
    dev = Hanging()
    pipe = Pipeline(synthetic([Synthetic(), Synthetic(fail_at=2)]), {"cpu": dev},
                    join_timeout_s=0.3)
    try:
        with pytest.raises(DeviceError, match="boom on sample 2"):
            pipe.run(torch.arange(20), batch=1)
        assert [th.name for th in pipe._stuck] == ["hwpart-stage0"]
        pipe.close()
        assert dev.unloads == 0  # the hung call still uses its handle
    finally:
        dev.release.set()
        for th in pipe._stuck:
            th.join(5)
    assert not pipeline_threads()


def test_a_failing_source_is_reported():
    def source():
        yield (torch.tensor([0]),)
        raise RuntimeError("disk gone")

    from hwpart.streams import number

    with Pipeline(synthetic([Synthetic()]), {"cpu": CpuDevice()}) as pipe:
        with pytest.raises(DeviceError, match="input source failed at item 1: RuntimeError"):
            pipe.run_items(number(source()))
    assert not pipeline_threads()


def test_ctrl_c_stops_the_pipeline_without_hanging():
    mods = [Synthetic(delay=0.005) for _ in range(3)]
    timer: list[threading.Timer] = []

    def on_output(done: int) -> None:
        if done == 1:  # we are inside the run: deliver a real SIGINT to the main thread
            t = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT))
            timer.append(t)
            t.start()

    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        with Pipeline(synthetic(mods), {"cpu": CpuDevice()}) as pipe:
            pipe.run(torch.arange(2000), batch=1, on_output=on_output)  # 10 s if left alone
    assert time.perf_counter() - t0 < 3.0
    timer[0].join()
    assert not pipeline_threads()


def test_unknown_or_unavailable_units_are_refused_before_running():
    lg = example_graph("jet_tagger")
    staged = split(lg, chain_plan(lg, ["cpu", "tpu0"]))
    with pytest.raises(DeviceError, match="no device kind 'tpu'"):
        run_pipeline(staged, None, lg.example_input(4), batch=2)
    with pytest.raises(DeviceError, match=r"stage 'stage1' is planned on 'tpu0', but no device"):
        run_pipeline(staged, {"cpu": CpuDevice()}, lg.example_input(4), batch=2)
    if not torch.cuda.is_available():
        staged = split(lg, chain_plan(lg, ["cpu", "gpu"]))
        with pytest.raises(DeviceError, match="not available here: .*CUDA"):
            run_pipeline(staged, None, lg.example_input(4), batch=2)


# --------------------------------------------------------------------------- routing


class Recording(CpuDevice):
    """A CPU device that logs (stage, first sample) for every batch it runs."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name)
        self.log: list[tuple[str, int]] = []

    def run(self, handle, env):
        self.log.append((handle.stage.name, int(env["x"][0])))
        return super().run(handle, env)


def test_routes_swap_exactly_at_a_sequence_boundary():
    a, b = Recording("cpu-a"), Recording("cpu-b")
    staged = synthetic([Synthetic() for _ in range(3)])
    with Pipeline(staged, {"cpu": a}) as pipe:
        new = {s.name: pipe.load(s, b) for s in staged.stages}
        pipe.routing.swap_at(500, new)
        result = pipe.run(torch.arange(1000), batch=1)
        assert torch.equal(torch.cat(result.outputs), torch.arange(1000))
        assert result.snapshot.stage("stage2").device == "cpu-b"
    for s in staged.stages:
        assert [i for st, i in a.log if st == s.name] == list(range(500))
        assert [i for st, i in b.log if st == s.name] == list(range(500, 1000))
    assert not b.log or b._loaded == 0  # the re-route's handles were unloaded too


def test_live_swap_mid_run_keeps_every_stage_consistent():
    a, b = Recording("cpu-a"), Recording("cpu-b")
    staged = synthetic([Synthetic(delay=0.0005) for _ in range(3)])
    boundary: list[int] = []
    with Pipeline(staged, {"cpu": a}) as pipe:
        new = {s.name: pipe.load(s, b) for s in staged.stages}

        def on_output(done: int) -> None:
            if done == 100:
                boundary.append(pipe.routing.swap_next(new)[0])

        result = pipe.run(torch.arange(400), batch=1, on_output=on_output)
    assert torch.equal(torch.cat(result.outputs), torch.arange(400))
    (cut,) = boundary
    assert 100 <= cut < 400
    for s in staged.stages:
        assert [i for st, i in a.log if st == s.name] == list(range(cut))
        assert [i for st, i in b.log if st == s.name] == list(range(cut, 400))


def test_sequence_numbers_continue_across_runs():
    staged = synthetic([Synthetic()])
    with Pipeline(staged, {"cpu": CpuDevice()}) as pipe:
        pipe.run(torch.arange(10), batch=3)
        assert pipe.next_seq == 4
        route: Route = pipe.routing.current["stage0"]
        pipe.routing.swap_at(6, {"stage0": route})  # lands in the second run
        result = pipe.run(torch.arange(10), batch=3)
        assert torch.equal(result.output(), torch.arange(10)) and pipe.next_seq == 8


# --------------------------------------------------------------------------- CLI entries


def test_run_command_prints_and_writes_every_figure(tmp_path):
    lg = example_graph("jet_tagger")
    plan = chain_plan(lg, ["cpu", "cpu"], batch=32)
    plan.predicted = {"throughput_sps": 50_000.0, "latency_s": 2e-5, "bottleneck_s": 2e-5}
    plan.unit_load_s = {"cpu": 2e-5}
    for st in plan.stages:
        st.predicted_s = 1e-5
    plan_path = tmp_path / "plan.json"
    plan.save(plan_path)
    out = io.StringIO()
    report = run_command(f"{ROOT}/host/models.py:jet_tagger", "16", str(plan_path),
                         samples=1000, report_path=str(tmp_path / "r.json"), live=False,
                         metrics_path=str(tmp_path / "m.jsonl"), interval_s=0.05,
                         console=Console(file=out, width=160))
    assert report == json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 1000 and report["batch"] == 32 and report["batches"] == 32
    assert report["throughput_sps"] > 0 and [s["name"] for s in report["stages"]] == [
        "stage0", "stage1"]
    assert all(s["batches"] == 32 for s in report["stages"])  # warm-up not counted
    pvm = {r["figure"]: r for r in report["predicted_vs_measured"]}
    assert pvm["throughput_sps (wall)"]["predicted"] == 50_000.0
    assert pvm["throughput_sps (wall)"]["measured"] == pytest.approx(report["throughput_sps"])
    for st in report["stages"]:  # service time measured per stage, calibrated from it
        row = pvm[f"{st['name']} on cpu (per sample)"]
        assert row["predicted"] == 1e-5 and row["measured"] == st["service_per_sample_s"] > 0
        cal = report["calibration"][st["name"]]
        assert cal["samples"] == 1000 and row["calibrated"] == pytest.approx(1e-5 * cal["ratio"])
        # the CPU's service time is its wall time in the device: no lock waits
        assert st["service_per_sample_s"] == pytest.approx(st["per_sample_s"])
    cpu = report["devices"]["cpu"]
    # a 30 ms run is within psutil's 10 ms tick, so only the range is certain here
    assert 0.0 <= cpu["util_mean"] <= 1.05 and cpu["mem_used_peak_b"] > 0
    text = out.getvalue()
    assert "stage1" in text and "predicted (plan) vs measured" in text
    assert f"{report['samples']} samples" in text
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert lines and json.loads(lines[-1])["samples"] == 1000


def test_run_command_live_table_and_plan_errors(tmp_path):
    lg = example_graph("small_cnn")
    plan_path = tmp_path / "plan.json"
    chain_plan(lg, ["cpu"], batch=8).save(plan_path)
    out = io.StringIO()
    spec = f"{ROOT}/host/models.py:small_cnn"
    run_command(spec, "3,16,16", str(plan_path), samples=200, live=True, interval_s=0.05,
                console=Console(file=out, width=160, force_terminal=True))
    assert "200/200 samples" in out.getvalue()
    with pytest.raises(HwpartError, match="--plan .* or --auto"):
        run_command(spec, "3,16,16", None, console=Console(file=io.StringIO()))
    with pytest.raises(PlanError, match="plan for model 'small_cnn', not 'jet_tagger'"):
        run_command(f"{ROOT}/host/models.py:jet_tagger", "16", str(plan_path),
                    console=Console(file=io.StringIO()))


def test_run_command_auto_plan(tmp_path):
    try:
        from hwpart.costs import auto_plan  # noqa: F401
    except ImportError:
        with pytest.raises(PlanError, match="--auto needs hwpart.costs.auto_plan"):
            run_command(f"{ROOT}/host/models.py:jet_tagger", "16", auto=True,
                        console=Console(file=io.StringIO()))
        return
    report = run_command(f"{ROOT}/host/models.py:jet_tagger", "16", auto=True, samples=256,
                         batch=32, live=False, console=Console(file=io.StringIO()))
    assert report["plan"]["source"] == "auto" and report["samples"] == 256


def test_hwpart_run_and_devices_through_the_cli(tmp_path, capsys):
    from hwpart.cli import main

    lg = example_graph("jet_tagger")
    chain_plan(lg, ["cpu", "cpu"], batch=16).save(tmp_path / "plan.json")
    spec = f"{ROOT}/host/models.py:jet_tagger"
    rc = main(["run", spec, "--input-shape", "16", "--plan", str(tmp_path / "plan.json"),
               "--samples", "300", "--no-live", "--report", str(tmp_path / "r.json")])
    assert rc == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["samples"] == 300 and report["batch"] == 16
    assert "stage1" in capsys.readouterr().out
    assert main(["run", spec, "--input-shape", "16"]) == 2  # neither --plan nor --auto
    assert "--plan" in capsys.readouterr().err
    assert main(["devices"]) == 0
    assert "cpu" in capsys.readouterr().out


def test_empty_input_runs_and_says_so():
    with Pipeline(synthetic([Synthetic(), Synthetic()]), {"cpu": CpuDevice()}) as pipe:
        result = pipe.run(torch.arange(0), batch=4)
    assert result.outputs == [] and result.samples == 0
    with pytest.raises(ValueError, match="no outputs"):
        result.output()


def test_devices_command_lists_each_kind():
    out = io.StringIO()
    rows = devices_command(Console(file=out, width=160))
    kinds = {r[0] for r in rows}
    assert {"cpu", "gpu"} <= kinds
    text = out.getvalue()
    assert "cpu" in text and "yes" in text
    if not torch.cuda.is_available():
        assert "no" in text and "CUDA" in text


def test_plan_file_survives_a_round_trip(tmp_path):
    lg = example_graph("resnet_block")
    plan = chain_plan(lg, ["cpu", "cpu", "cpu"])
    plan.save(tmp_path / "p.json")
    again = type(plan).load(tmp_path / "p.json")
    x = lg.example_input(8)
    assert torch.equal(run_model(lg, again, x, batch=4).output(),
                       run_model(lg, plan, x, batch=4).output())
    assert Path(tmp_path / "p.json").stat().st_size > 0


def test_report_busy_figures_agree_with_the_monitor_and_the_wall_time():
    """Each stage sleeps a known 2 ms per batch: its reported busy time is at least that,
    no more than the run's wall time, and the monitor's per-stage time."""
    from hwpart.report import build_report

    class SlowCpu(CpuDevice):
        def run(self, handle, env):
            time.sleep(0.002)
            return super().run(handle, env)

    lg = example_graph("jet_tagger")
    plan = chain_plan(lg, ["cpu", "cpu"])
    batches, batch = 15, 8
    result = run_model(lg, plan, lg.example_input(batches * batch), batch=batch,
                       devices={"cpu": SlowCpu(threads=1)})
    report = build_report("jet_tagger", lg, plan, "test", result)
    wall = report["wall_s"]
    assert wall == result.wall_s > 0
    for st, snap in zip(report["stages"], result.snapshot.stages, strict=True):
        monitor_s = snap.latency_total.mean_s * snap.latency_total.count
        assert st["busy_s"] == pytest.approx(monitor_s, rel=1e-9)
        assert batches * 0.002 <= st["busy_s"] <= wall
        assert 0 < st["busy"] <= 1.0
        assert st["per_sample_s"] * st["samples"] == pytest.approx(st["busy_s"])


def test_run_auto_saves_a_calibrated_cost_table_that_plans_again(tmp_path):
    """`hwpart run --auto --save-costs T.json`: the profile, scaled per stage by what the
    run measured, with the factors recorded; `hwpart partition --costs T.json` plans on it."""
    from hwpart.costs import CostTable, auto_plan

    out = io.StringIO()
    path = tmp_path / "cal.json"
    report = run_command(f"{ROOT}/host/models.py:small_cnn", "3,16,16", auto=True, samples=256,
                         batch=32, live=False, interval_s=0.05, threads=1,
                         console=Console(file=out, width=160), save_costs=str(path))
    table = CostTable.load(path)
    cal = table.env["calibration"]["stages"]
    assert set(cal) == {s["name"] for s in report["stages"]}
    for name, f in cal.items():  # each stage's layers scaled by its own measured factor
        assert f["ratio"] == pytest.approx(report["calibration"][name]["ratio"])
        assert f["samples"] == 256 and f["nodes"]
    assert "calibrated cost table written" in out.getvalue()
    lg = example_graph("small_cnn")
    assert auto_plan(lg, batch=32, devices=["cpu"], table=table).predicted["throughput_sps"] > 0


def test_save_costs_with_a_plan_needs_its_table(tmp_path):
    lg = example_graph("jet_tagger")
    plan_path = tmp_path / "plan.json"
    chain_plan(lg, ["cpu"], batch=8).save(plan_path)
    with pytest.raises(HwpartError, match="--save-costs with --plan needs --costs"):
        run_command(f"{ROOT}/host/models.py:jet_tagger", "16", str(plan_path), samples=16,
                    live=False, console=Console(file=io.StringIO()),
                    save_costs=str(tmp_path / "x.json"))


def test_run_auto_energy_objective_says_why(tmp_path):
    out = io.StringIO()
    report = run_command(f"{ROOT}/host/models.py:jet_tagger", "16", auto=True, samples=128,
                         batch=32, live=False, console=Console(file=out, width=160),
                         objective="energy", min_throughput=1.0)
    assert report["plan"]["objective"] == "energy"
    assert "the least energy per sample" in out.getvalue() and "µJ/sample" in out.getvalue()
