"""The device protocol, the registry, the CPU device (threads, metrics) and the GPU device."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import torch
from examples import example_graph

from hwpart.devices import (
    METRIC_KEYS,
    CpuDevice,
    Device,
    GpuDevice,
    LoadedStage,
    Rapl,
    available_devices,
    base,
    get_device,
    merge_outputs,
    register_device,
)
from hwpart.errors import DeviceError
from hwpart.runtime import chain_plan, run_pipeline
from hwpart.stages import split

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture
def registry(monkeypatch):
    """An isolated copy of the registry, so tests can add kinds."""
    monkeypatch.setattr(base, "_REGISTRY", dict(base._REGISTRY))
    return base._REGISTRY


# --------------------------------------------------------------------------- registry


def test_builtin_kinds_are_listed_with_a_reason():
    rows = {kind: (ok, reason) for kind, ok, reason in available_devices()}
    assert rows["cpu"][0] is True and "cores" in rows["cpu"][1]
    ok, reason = rows["gpu"]
    assert reason and "\n" not in reason  # one line for `hwpart devices`
    if not HAS_CUDA:
        assert not ok and "CUDA" in reason


def test_unknown_kind_names_the_known_ones():
    with pytest.raises(DeviceError, match=r"no device kind 'tpu' \(known: cpu, gpu"):
        get_device("tpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the no-CUDA refusal")
def test_unavailable_kind_is_refused_with_its_reason():
    with pytest.raises(DeviceError, match="device 'gpu' is not available here: torch .* CUDA"):
        get_device("gpu")
    dev = GpuDevice()
    assert dev.capabilities(example_graph("jet_tagger")) == set()
    assert dev.metrics() == dict.fromkeys(METRIC_KEYS)


class NumpyDmaDevice:
    """What the FPGA device will look like: data leaves torch as numpy buffers (PYNQ-style)."""

    kind = "npdma"

    def __init__(self) -> None:
        self.name = "npdma0"
        self.transfers = 0
        self.loaded: list[str] = []

    def available(self) -> tuple[bool, str]:
        return True, "simulated board"

    def capabilities(self, lg) -> set[str]:
        return {n for n in lg.compute_nodes if lg.dag.nodes[n]["op"] in ("linear", "relu")}

    def load(self, stage) -> LoadedStage:
        self.loaded.append(stage.name)
        return LoadedStage(stage, self.name, {"buffers": {}})

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]:
        stage = handle.stage
        ins = []
        for name in stage.inputs:  # "DMA" into a reused device buffer, then back
            buf = np.ascontiguousarray(env[name].numpy())
            self.transfers += 1
            ins.append(torch.from_numpy(buf.copy()))
        out = stage.module(*ins)
        return merge_outputs(stage, env, out)

    def unload(self, handle: LoadedStage) -> None:
        self.loaded.remove(handle.stage.name)

    def metrics(self) -> dict[str, float | None]:
        return {"util": None, "power_w": None, "transfers": float(self.transfers)}


def test_a_new_kind_plugs_in_by_name_and_runs_a_stage(registry):
    register_device("npdma", NumpyDmaDevice)
    with pytest.raises(ValueError, match="already registered"):
        register_device("npdma", NumpyDmaDevice)
    dev = get_device("npdma")
    assert isinstance(dev, Device)
    assert ("npdma", True, "simulated board") in available_devices()
    lg = example_graph("jet_tagger")
    caps = dev.capabilities(lg)
    assert len(caps) == len(lg.compute_nodes) - 1  # everything but the softmax
    assert all(lg.dag.nodes[n]["op"] != "softmax" for n in caps)
    staged = split(lg, chain_plan(lg, ["cpu", "npdma0", "cpu"], balance="count"))
    x = lg.example_input(40, seed=5)
    result = run_pipeline(staged, {"cpu": CpuDevice(), "npdma0": dev}, x, batch=8)
    assert torch.equal(result.output(), staged(x))
    assert dev.transfers == 5 and dev.loaded == []  # 5 batches; unloaded at the end
    assert result.snapshot.devices["npdma0"]["transfers"] == 5.0


# --------------------------------------------------------------------------- CPU


def test_cpu_runs_a_stage_like_the_reference():
    lg = example_graph("resnet_block")
    staged = split(lg, chain_plan(lg, ["cpu", "cpu"]))
    dev = CpuDevice()
    assert dev.capabilities(lg) == set(lg.compute_nodes)
    handles = [dev.load(s) for s in staged.stages]
    x = lg.example_input(4)
    env = staged.initial(x)
    ref = dict(env)
    for h, s in zip(handles, staged.stages, strict=True):
        env = dev.run(h, env)
        with torch.inference_mode():
            ref = s(ref)
        assert env.keys() == ref.keys()
    out = staged.result(env)
    assert out.is_inference()  # ran under inference_mode although the caller was not in it
    assert torch.equal(out, staged.result(ref))
    for h in handles:
        dev.unload(h)


def test_per_stage_threads_apply_to_the_worker_thread_only():
    default = torch.get_num_threads()
    lg = example_graph("jet_tagger")
    staged = split(lg, chain_plan(lg, ["cpu"]))
    dev = CpuDevice(threads=1)
    h = dev.load(staged.stages[0])
    seen: dict[str, int] = {}

    def worker():
        dev.run(h, staged.initial(lg.example_input(2)))
        seen["worker"] = torch.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == 1
    assert torch.get_num_threads() == default  # the main thread keeps its own count
    dev.unload(h)

    def fresh():
        seen["fresh"] = torch.get_num_threads()

    t = threading.Thread(target=fresh)
    t.start()
    t.join()
    assert seen["fresh"] == default  # unload put the process default back for new threads


def test_bad_thread_count_is_refused():
    lg = example_graph("jet_tagger")
    stage = split(lg, chain_plan(lg, ["cpu"])).stages[0]
    with pytest.raises(ValueError, match=">= 1"):
        CpuDevice(threads=0).load(stage)
    assert CpuDevice(stage_threads={"stage0": 2}).load(stage).state["threads"] == 2


def test_cpu_metrics_report_na_not_zero_without_rapl(tmp_path):
    dev = CpuDevice(powercap=tmp_path / "none")
    x = torch.randn(256, 256)
    for _ in range(50):
        x @ x  # some CPU work so utilization has something to see
    m = dev.metrics()
    assert m["power_w"] is None and m["energy_j"] is None
    assert "no RAPL domains" in dev.power_reason
    assert 0.0 < m["util"] <= 1.0
    assert m["mem_used_b"] > 1e6 and m["mem_total_b"] >= m["mem_used_b"]


def _rapl_tree(root, energies: dict[str, int], wrap: int = 2**32):
    for name, uj in energies.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{wrap}\n")


def test_rapl_sums_packages_only_and_handles_wraparound(tmp_path):
    # intel-rapl:0:0 is a sub-domain (cores) of package 0 and must not be added again
    _rapl_tree(tmp_path, {"intel-rapl:0": 1_000_000, "intel-rapl:1": 5_000_000,
                          "intel-rapl:0:0": 400_000}, wrap=10_000_000)
    rapl = Rapl(tmp_path)
    assert rapl.ok and [d.name for d in rapl.domains] == ["intel-rapl:0", "intel-rapl:1"]
    # package 0 +2 J; package 1 wraps: 5 J -> 10 J range -> 1 J is +6 J
    _rapl_tree(tmp_path, {"intel-rapl:0": 3_000_000, "intel-rapl:1": 1_000_000,
                          "intel-rapl:0:0": 900_000}, wrap=10_000_000)
    power, energy = rapl.sample()
    assert energy == pytest.approx(8.0)
    assert power is not None and power > 0


def test_rapl_unreadable_is_na_with_a_reason(tmp_path):
    (tmp_path / "intel-rapl:0" / "energy_uj").mkdir(parents=True)  # reading it fails (OSError)
    rapl = Rapl(tmp_path)
    assert not rapl.ok and "not readable" in rapl.reason
    assert rapl.sample() == (None, None)


# --------------------------------------------------------------------------- GPU


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
def test_gpu_stage_matches_cpu_within_tolerance():
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    dev = GpuDevice()
    ok, reason = dev.available()
    if not ok:
        pytest.skip(reason)
    lg = example_graph("inception_block")
    staged = split(lg, chain_plan(lg, ["cpu", "gpu", "cpu"]))
    x = lg.example_input(32)
    result = run_pipeline(staged, {"cpu": CpuDevice(), "gpu": dev}, x, batch=8)
    torch.testing.assert_close(result.output(), staged(x), rtol=1e-4, atol=1e-5)
    m = dev.metrics()
    assert m["mem_total_b"] and m["mem_total_b"] > 0
    assert m["util"] is not None and 0.0 <= m["util"] <= 1.0
