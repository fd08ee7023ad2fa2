"""The vectorised model of dense RMs (hwpart.sim.fastrm) against the hls4ml C simulation.

The C simulation is the reference everywhere: the model must equal it bit for
bit, a model that does not must be caught by the check, and the simulated
board must run the model only on an exact verdict (and refuse a changed file).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_fpga_support import jet_rms, rm_spec

pytest.importorskip("pynq")

from hwpart.devices.fpga import FpgaDevice, FpgaError  # noqa: E402
from hwpart.sim import fastrm  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.sim.rm import CSimRunner, RmSpec, SimRM  # noqa: E402

JET_DENSE = ("_0", "_1", "_2", "_3", "_4", "_5", "_6")  # the jet MLP without its softmax


@pytest.fixture(scope="module")
def specs() -> dict[str, RmSpec]:
    """The jet tagger's dense RMs (C simulations cached in .hwpart-cache, as the bench's)."""
    fc2, fc3 = jet_rms()
    return {"jet": rm_spec("jet_tagger", JET_DENSE, "jet"), "fc2": fc2, "fc3": fc3}


def firmware(spec: RmSpec) -> Path:
    return Path(spec.library).parent  # cache/csim/KEY/prj/firmware/hwpart_rm-*.so


def model_of(spec: RmSpec) -> fastrm.FastModel:
    return fastrm.from_firmware(firmware(spec), spec.top)


@pytest.mark.parametrize("name", ["jet", "fc2", "fc3"])
def test_bit_exact_to_the_c_simulation_on_10k_inputs(specs, name):
    """Fresh seed (the build's verdict used seed 0): 10,000 inputs, every output bit equal."""
    spec = specs[name]
    m = model_of(spec)
    x, _ = fastrm.check_inputs(m, 10_000, seed=11)
    assert x.shape == (10_000, spec.n_in)
    t = m.input_t
    assert np.any(np.abs(x) > t.hi * 2.0 ** -t.frac)  # inputs saturate
    ties = np.abs(x * 2.0**t.frac % 1 - 0.5) == 0
    assert ties.sum() >= 1000  # and sit on rounding ties
    ref = CSimRunner(spec).predict(x)
    y = m.predict(x)
    assert np.array_equal(y, ref) and y.dtype == np.float32
    assert np.any(ref == 0) and np.any(ref != 0)
    v = fastrm.verify(m, CSimRunner(spec).predict, x)
    assert v.exact and v.checked == 10_000 and v.mismatches == 0


def test_ordered_sum_equals_the_matmul(specs):
    """The input-by-input accumulation (used when a matmul is not provably exact) is exact too."""
    spec = specs["jet"]
    m = model_of(spec)
    assert all(d.matmul for d in m.layers if isinstance(d, fastrm.Dense))
    for d in m.layers:
        if isinstance(d, fastrm.Dense):
            d.matmul = False
    x, _ = fastrm.check_inputs(m, 2000, seed=3)
    assert np.array_equal(m.predict(x), CSimRunner(spec).predict(x))


def _replace(m: fastrm.FastModel, i: int, **changes) -> fastrm.FastModel:
    """A copy of ``m`` whose layer ``i`` differs in ``changes`` (types or weights)."""
    d = m.layers[i]
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    layers = list(m.layers)
    layers[i] = type(d)(**{**fields, **changes})
    return fastrm.FastModel(m.input_t, layers, m.n_in)


def _wrong_models(m: fastrm.FastModel) -> dict[str, fastrm.FastModel]:
    d0 = m.layers[0]
    w = d0.weight.copy()
    w[3, 5] += 1  # one LSB of one weight
    return {
        "result rounding": _replace(m, 0, result_t=dataclasses.replace(d0.result_t, quant="AP_TRN")),
        "one weight": _replace(m, 0, weight=w),
        "input rounding": fastrm.FastModel(dataclasses.replace(m.input_t, quant="AP_RND"),
                                           m.layers, m.n_in),
        "input overflow": fastrm.FastModel(dataclasses.replace(m.input_t, overflow="AP_WRAP"),
                                           m.layers, m.n_in),
        "accumulator width": _replace(m, 0, accum_t=dataclasses.replace(
            d0.accum_t, width=d0.accum_t.width - 12, integer=d0.accum_t.integer - 12)),
    }


@pytest.fixture(scope="module")
def jet_check(specs) -> tuple[np.ndarray, np.ndarray]:
    """The build's check inputs for the jet RM and the C simulation's outputs (run once)."""
    x, _ = fastrm.check_inputs(model_of(specs["jet"]), fastrm.CHECK_SAMPLES, seed=0)
    return x, CSimRunner(specs["jet"]).predict(x)


@pytest.mark.parametrize("wrong", ["result rounding", "one weight", "input rounding",
                                   "input overflow", "accumulator width"])
def test_a_wrong_model_is_not_exact(specs, jet_check, wrong):
    x, ref = jet_check
    m = _wrong_models(model_of(specs["jet"]))[wrong]
    v = fastrm.verify(m, lambda _: ref, x)
    assert not v.exact and v.mismatches > 0 and v.checked == fastrm.CHECK_SAMPLES
    assert "differ from the C simulation" in v.reason
    assert fastrm.verify(model_of(specs["jet"]), lambda _: ref, x).exact  # the right one is


def _with_model(spec: RmSpec, m: fastrm.FastModel, path: Path, exact: bool) -> RmSpec:
    sha = m.save(path)
    return dataclasses.replace(spec, fast_model={"exact": exact, "checked": 1, "mismatches": 0,
                                                 "reason": "test", "file": str(path),
                                                 "sha256": sha})


def test_the_board_runs_the_model_only_on_an_exact_verdict(specs, tmp_path):
    spec = specs["fc3"]
    wrong = _wrong_models(model_of(spec))["one weight"]
    x = np.random.default_rng(5).uniform(-8, 8, (200, spec.n_in)).astype(np.float32)
    ref = CSimRunner(spec).predict(x)
    assert not np.array_equal(wrong.predict(x), ref)
    rejected = _with_model(spec, wrong, tmp_path / "wrong.json", exact=False)
    rm = SimRM(rejected)
    assert rm.engine == "csim" and np.array_equal(rm.runner.predict(x), ref)
    # the verdict is the gate: the same wrong file with an 'exact' verdict would be run
    assert SimRM(_with_model(spec, wrong, tmp_path / "w2.json", exact=True)).engine == "vectorised"
    assert SimRM(spec).engine == "vectorised"  # the RM's own, checked model


def test_board_results_bit_identical_through_the_vectorised_engine(specs, tmp_path, monkeypatch):
    """FpgaDevice -> simulated board -> vectorised model == C simulation, and the C
    simulation is not what ran (it would raise)."""
    spec = specs["jet"]
    wrong = _with_model(specs["fc3"], _wrong_models(model_of(specs["fc3"]))["one weight"],
                        tmp_path / "wrong.json", exact=False)
    b = write_sim_bundle(tmp_path / "b", "jet", [spec, wrong])
    x = np.random.default_rng(6).uniform(-6, 6, (300, spec.n_in)).astype(np.float32)
    x32 = np.random.default_rng(7).uniform(-6, 6, (100, 32)).astype(np.float32)
    ref, ref32 = CSimRunner(spec).predict(x), CSimRunner(specs["fc3"]).predict(x32)
    calls = []
    real = CSimRunner.predict
    monkeypatch.setattr(CSimRunner, "predict", lambda self, r: calls.append(self.spec.name)
                        or real(self, r))
    dev = FpgaDevice(b.root, fpga="sim", pace=False)
    assert np.array_equal(dev.run_array(dev.plan(["jet"]), x), ref)
    assert dev.sim.slots[0].rm.engine == "vectorised" and calls == []
    assert np.array_equal(dev.run_array(dev.plan(["fc3"], 1), x32), ref32)  # inexact: C sim
    assert dev.sim.slots[1].rm.engine == "csim" and calls == ["fc3"]
    monkeypatch.setenv(fastrm.ENGINE_ENV, "csim")  # forced: the C simulation everywhere
    dev.swap(0, "fc3")
    dev.swap(0, "jet")
    assert dev.sim.slots[0].rm.engine == "csim"
    assert np.array_equal(dev.run_array(dev.plan(["jet"]), x), ref) and calls[-1] == "jet"


def test_tampered_model_file_is_refused(specs, tmp_path):
    b = write_sim_bundle(tmp_path / "b", "jet", [specs["fc3"]])
    f = b.root / "fast" / "fc3.json"
    d = json.loads(f.read_text())
    d["layers"][0]["bias"][0] += 1
    f.write_text(json.dumps(d))
    dev = FpgaDevice(b.root, fpga="sim", pace=False)
    with pytest.raises(FpgaError, match=r"slot 0 \(RM fc3\).*fc3\.json: sha256 .* does not match"):
        dev.run_array(dev.plan(["fc3"]), np.zeros((2, 32), np.float32))
    with pytest.raises(fastrm.FastModelError, match="fc3.json: sha256"):
        write_sim_bundle(tmp_path / "c", "jet", [b.rm("fc3").spec])  # nor copied on


def test_unsupported_projects_say_why(specs, tmp_path):
    src = firmware(specs["fc2"])
    fw = tmp_path / "firmware"
    shutil.copytree(src, fw, ignore=shutil.ignore_patterns("*.so", "ap_types", "nnet_utils"))
    top = fw / "hwpart_rm.cpp"
    text = top.read_text()
    top.write_text(text.replace("nnet::relu<", "nnet::sigmoid<"))
    with pytest.raises(fastrm.Unsupported, match=r"nnet::sigmoid is not modeled"):
        fastrm.from_firmware(fw, "hwpart_rm")
    top.write_text(text)
    defines = fw / "defines.h"
    defines.write_text(defines.read_text().replace("AP_SAT,0>", "AP_SAT,3>"))
    with pytest.raises(fastrm.Unsupported, match="saturates with N=3 bits"):
        fastrm.from_firmware(fw, "hwpart_rm")
    with pytest.raises(fastrm.Unsupported, match="no nope.cpp"):
        fastrm.from_firmware(fw, "nope")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(fastrm.FastModelError, match=r"bad\.json: not a valid fast model") as err:
        fastrm.load_model(bad)
    assert len(str(err.value).splitlines()) == 1


def test_verdict_is_cached_until_the_module_changes(specs, tmp_path, monkeypatch):
    spec = specs["fc3"]
    calls = []

    def ref(x):
        calls.append(len(x))
        return CSimRunner(spec).predict(x)

    a = fastrm.prepare(firmware(spec), spec.top, Path(spec.library), ref, tmp_path, n=500)
    b = fastrm.prepare(firmware(spec), spec.top, Path(spec.library), ref, tmp_path, n=500)
    assert a.verdict.exact and a == b and calls == [500]  # the second: from the cache
    monkeypatch.setattr(fastrm, "_OWN", "edited-source")
    fastrm.prepare(firmware(spec), spec.top, Path(spec.library), ref, tmp_path, n=500)
    assert calls == [500, 500]
