"""Overlay bundles built end to end (hls4ml compiles, da4ml RTL, manifest, CLI).

The bundles are built once per session with one content cache, in the order a
user would: pynq-z2 first, then kv260, which must reuse every compiled RM
(same groups, same precision). Cold, the session costs about four hls4ml
compiles; da4ml's first trace on a fresh machine also JIT-compiles numba code
(minutes, once; cached in its package folder afterwards).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from examples import example_graph

from hwpart.boards import load_board
from hwpart.graph import capture
from hwpart.overlay import hls, rtl
from hwpart.overlay.build import BuildOptions, build_overlay
from hwpart.overlay.manifest import ManifestError, load_manifest

pytest.importorskip("hls4ml")
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "data"))
from overlay_models import dense_gelu  # noqa: E402

CNN_GROUPS = "_0-_2,_3-_7"


@pytest.fixture(scope="session")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("hwpart-cache")


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, cache) -> dict[str, object]:
    out = tmp_path_factory.mktemp("bitstreams")
    dense = capture(dense_gelu(), (8,), "dense_gelu")
    jobs = [
        ("jet-pynq-z2", example_graph("jet_tagger"), "pynq-z2", None),
        ("cnn-pynq-z2", example_graph("small_cnn"), "pynq-z2", CNN_GROUPS),
        ("dense-pynq-z2", dense, "pynq-z2", None),
        ("jet-kv260", example_graph("jet_tagger"), "kv260", None),
        ("cnn-kv260", example_graph("small_cnn"), "kv260", CNN_GROUPS),
    ]
    built = {}
    for name, lg, board, groups in jobs:
        built[name] = build_overlay(lg, load_board(board), BuildOptions(
            out=out / name, groups=groups, cache=cache, samples=100, jobs=2))
    return built


def test_every_rm_within_tolerance_of_torch(bundles):
    for name, res in bundles.items():
        m = res.manifest
        assert m.rms, name
        for r in m.rms:
            assert r.accuracy.max_abs_err <= r.accuracy.tolerance, (name, r.name)
            if r.accuracy.argmax_agreement is not None:
                assert r.accuracy.argmax_agreement >= 0.97


def test_bundle_csim_library_reproduces_torch_independently(bundles):
    """Run the bundle's own .so (not the cache's) on fresh inputs, compare with torch."""
    res = bundles["cnn-pynq-z2"]
    lg = example_graph("small_cnn")
    x = np.random.default_rng(42).uniform(-1, 1, (30, 3, 16, 16)).astype(np.float32)
    for r in res.manifest.rms:
        x_in, ref = hls.group_io(lg, r.layers, x)
        sim = hls.CSim(res.bundle / r.csim.library, r.csim.symbol.removesuffix("_float"),
                       int(np.prod(r.in_shape)), int(np.prod(r.out_shape)))
        y = hls.from_stream(sim.predict(hls.to_stream(x_in)), tuple(r.out_shape))
        assert y.shape == ref.shape
        assert np.abs(y - ref).max() <= r.accuracy.tolerance
    # chaining the two RMs in stream order equals the whole model
    r0, r1 = res.manifest.rms
    s0 = hls.CSim(res.bundle / r0.csim.library, "hwpart_rm", 3 * 256, 8 * 64)
    s1 = hls.CSim(res.bundle / r1.csim.library, "hwpart_rm", 8 * 64, 10)
    y = s1.predict(s0.predict(hls.to_stream(x)))  # no transpose between RMs
    ref = lg.module(torch.as_tensor(x)).detach().numpy()
    assert np.abs(y - ref).max() < 0.05


def test_second_board_reuses_compiled_rms(bundles):
    assert bundles["jet-kv260"].compiles == 0
    assert bundles["cnn-kv260"].compiles == 0
    kv = bundles["jet-kv260"].manifest.rms[0]
    z2 = bundles["jet-pynq-z2"].manifest.rms[0]
    assert kv.precision == z2.precision and kv.reuse != z2.reuse  # same RM, board pragmas


def test_unchanged_model_rebuilds_from_cache(bundles, cache, tmp_path):
    res = build_overlay(example_graph("jet_tagger"), load_board("pynq-z2"), BuildOptions(
        out=tmp_path / "again", cache=cache, samples=100))
    assert res.compiles == 0 and res.seconds < 15
    assert [r.accuracy for r in res.manifest.rms] == [
        r.accuracy for r in bundles["jet-pynq-z2"].manifest.rms]


def test_fast_model_check_is_cached_until_its_source_changes(bundles, cache, tmp_path,
                                                             monkeypatch):
    from hwpart.sim import fastrm

    calls = []
    real = fastrm.verify
    monkeypatch.setattr(fastrm, "verify", lambda *a, **k: calls.append(1) or real(*a, **k))
    lg = capture(dense_gelu(), (8,), "dense_gelu")
    opts = {"cache": cache, "samples": 100, "rtl": False}
    res = build_overlay(lg, load_board("pynq-z2"), BuildOptions(out=tmp_path / "a", **opts))
    assert calls == [] and res.manifest.rms[0].fast_model == \
        bundles["dense-pynq-z2"].manifest.rms[0].fast_model
    monkeypatch.setattr(fastrm, "_OWN", "an edited fastrm.py")  # what its source hash becomes
    res = build_overlay(lg, load_board("pynq-z2"), BuildOptions(out=tmp_path / "b", **opts))
    assert calls == [1] and res.manifest.rms[0].fast_model.exact


def test_unsupported_layer_stays_off_and_dense_rtl_is_bit_exact(bundles):
    m = bundles["dense-pynq-z2"].manifest
    assert "gelu" in m.off_fpga["_3"] and "no hls4ml" in m.off_fpga["_3"]
    (r,) = m.rms
    assert r.layers == ["_0", "_1", "_2"]
    assert r.rtl is not None and r.rtl.bit_exact is True and r.rtl.checked_samples == 64
    assert r.rtl.source.startswith("estimated (da4ml")
    # RTL without a dense group: the jet RM ends in softmax
    assert bundles["jet-pynq-z2"].manifest.rms[0].rtl is None


def test_manifest_records_the_fast_model_verdict(bundles, tmp_path):
    """Dense RMs: exact on 10,000 inputs, the model a checked file, the board runs it;
    softmax and conv RMs: not modeled, with the reason, and the board runs the C sim."""
    from hwpart.sim.bundle import load_bundle
    from hwpart.sim.rm import SimRM

    (r,) = bundles["dense-pynq-z2"].manifest.rms
    fm = r.fast_model
    assert fm is not None and fm.exact and fm.checked >= 10_000 and fm.mismatches == 0
    assert "bit-exact" in fm.reason and "seeded" in fm.inputs
    assert [f.kind for f in r.files if f.path == fm.file] == ["fast-model"]
    for name in ("jet-pynq-z2", "cnn-pynq-z2"):
        for q in bundles[name].manifest.rms:
            assert not q.fast_model.exact and q.fast_model.file is None
            assert "not modeled" in q.fast_model.reason
    b = load_bundle(_copy(bundles["dense-pynq-z2"].bundle, tmp_path))
    assert SimRM(b.rms[0].spec).engine == "vectorised"
    cnn = load_bundle(_copy(bundles["cnn-pynq-z2"].bundle, tmp_path))
    assert {SimRM(q.spec).engine for q in cnn.rms} == {"csim"}


def test_fast_model_file_is_checked_and_old_manifests_load(bundles, tmp_path):
    from hwpart.sim.bundle import load_bundle
    from hwpart.sim.rm import SimRM

    b = _copy(bundles["dense-pynq-z2"].bundle, tmp_path)
    f = b / "rm0" / "fastrm.json"
    f.write_text(f.read_text().replace('"bias":[', '"bias":[1,', 1))
    with pytest.raises(ManifestError, match=r"rm0/fastrm\.json: sha256 mismatch"):
        load_manifest(b)
    data = yaml.safe_load((b / "manifest.yaml").read_text())  # as written before fast models
    for r in data["rms"]:
        r.pop("fast_model")
        r["files"] = [e for e in r["files"] if e["kind"] != "fast-model"]
    (b / "manifest.yaml").write_text(yaml.safe_dump(data))
    assert load_manifest(b).rms[0].fast_model is None
    assert SimRM(load_bundle(b).rms[0].spec).engine == "csim"


def test_fast_model_of_the_per_board_project(bundles):
    """The bundle's per-board project (Resource kernels, weights stored transposed) gives
    the same model: the layout is read from the project, not assumed."""
    from hwpart.sim import fastrm
    from hwpart.sim.rm import CSimRunner, RmSpec

    res = bundles["dense-pynq-z2"]
    (r,) = res.manifest.rms
    m = fastrm.from_firmware(res.bundle / r.name / "hls4ml_prj" / "firmware", r.top)
    dense = [d for d in m.layers if isinstance(d, fastrm.Dense)]
    assert any(not d.ordered_kernel for d in dense)  # at least one Resource kernel
    ref = fastrm.load_model(res.bundle / r.fast_model.file)
    assert all(np.array_equal(d.weight, e.weight) for d, e in zip(
        dense, [e for e in ref.layers if isinstance(e, fastrm.Dense)], strict=True))
    spec = RmSpec(r.name, r.layers, tuple(r.in_shape), tuple(r.out_shape), r.precision,
                  r.precision, str(res.bundle / r.csim.library))
    x, _ = fastrm.check_inputs(m, 2000, seed=4)
    assert np.array_equal(m.predict(x), CSimRunner(spec).predict(x))


def test_da4ml_rtl_bit_exact_on_fresh_inputs(bundles, cache):
    """Icarus run of the generated Verilog vs da4ml's emulation, new random inputs."""
    pytest.importorskip("da4ml")
    if not shutil.which("iverilog"):
        pytest.skip("iverilog not installed")
    lg = capture(dense_gelu(), (8,), "dense_gelu")
    m = hls.slice_module(lg, ["_0", "_1", "_2"])
    prec = bundles["dense-pynq-z2"].manifest.rms[0].precision
    res = rtl.generate(m, 8, prec, hls.module_digest(m, (8,)), cache)
    assert res.cached
    x = np.random.default_rng(7).uniform(-4, 4, (40, 8))  # beyond [-1, 1]: saturation paths
    res = rtl.check_bit_exact(res, x)
    assert res.bit_exact and res.mismatches == 0
    emu = rtl.load_comb(res).predict(x)
    ref = m(torch.as_tensor(x, dtype=torch.float32)).detach().numpy()
    assert np.abs(emu - ref).max() < 0.05


def test_rm_missing_tolerance_is_reported_and_left_out(bundles, cache, tmp_path):
    lg = capture(dense_gelu(), (8,), "dense_gelu")
    prec = bundles["dense-pynq-z2"].manifest.rms[0].precision
    res = build_overlay(lg, load_board("pynq-z2"), BuildOptions(
        out=tmp_path / "strict", cache=cache, samples=100, tolerance=1e-9, precisions=(prec,),
        rtl=False))
    assert res.manifest.rms == [] and res.compiles == 0
    (rej,) = res.manifest.rejected
    assert "max abs error" in rej.reason and "> tolerance 1e-09" in rej.reason


def _copy(bundle: Path, tmp_path: Path) -> Path:
    dst = tmp_path / bundle.name
    shutil.copytree(bundle, dst)
    return dst


def test_tampered_file_is_refused(bundles, tmp_path):
    b = _copy(bundles["jet-pynq-z2"].bundle, tmp_path)
    load_manifest(b)
    target = b / "rm0" / "rm_axis.cpp"
    target.write_text(target.read_text() + "// edited\n")
    with pytest.raises(ManifestError, match=r"rm0/rm_axis\.cpp: sha256 mismatch \(manifest "
                                            r"[0-9a-f]{12}…, file [0-9a-f]{12}…\); rebuild"):
        load_manifest(b)
    target.unlink()
    with pytest.raises(ManifestError, match="rm_axis.cpp: listed in manifest.yaml but missing"):
        load_manifest(b)


@pytest.mark.parametrize("edit,match", [
    (lambda d: d["rms"][0].update(precision=16), r"field 'rms\.0\.precision': expected .*, got 16"),
    (lambda d: d.update(colour="red"), r"unknown field 'colour'"),
    (lambda d: d["slots"][0].pop("decoupler_address"), r"slots\.0\.decoupler_address': missing"),
    (lambda d: d["rms"][0].update(compatible_slots=[0, 5]), r"slots \[5\] do not exist"),
    (lambda d: d["rms"][0]["files"][0].update(path="../../etc/passwd"), "outside the bundle"),
    (lambda d: d["rms"][0]["csim"].update(library="../elsewhere/lib.so"),
     r"csim\.library': '\.\./elsewhere/lib\.so' is not among the RM's files"),
    (lambda d: d["rms"][0]["fast_model"].update(exact=True, file="rm0/model.json"),
     r"fast_model\.file': 'rm0/model\.json' is not among the RM's files"),
])
def test_malformed_manifest_is_a_clear_error(bundles, tmp_path, edit, match):
    b = _copy(bundles["jet-pynq-z2"].bundle, tmp_path)
    data = yaml.safe_load((b / "manifest.yaml").read_text())
    edit(data)
    (b / "manifest.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ManifestError, match=match):
        load_manifest(b)


def test_tcl_addresses_match_manifest(bundles):
    for name in ("cnn-pynq-z2", "cnn-kv260"):
        b = bundles[name].bundle
        m = load_manifest(b)
        shell = (b / "vivado" / "shell_bd.tcl").read_text()
        dfx = (b / "vivado" / "dfx.tcl").read_text()
        assert f"-offset 0x{m.shell.switch_address:08X} -range 0x1000 " \
               "[get_bd_addr_segs switch/S_AXI_CTRL/Reg]" in shell
        assert f"-offset 0x{m.shell.dma_address:08X}" in shell
        n = len(m.slots)
        assert f"CONFIG.NUM_SI {{{n + 1}}} CONFIG.NUM_MI {{{n + 1}}}" in shell
        for s in m.slots:
            assert f"decoupler_{s.index}" in shell
            assert f"-offset 0x{s.decoupler_address:08X}" in shell
            assert f"switch/M{s.switch_master:02d}_AXIS" in shell
            assert f"switch/S{s.switch_slave:02d}_AXIS" in shell
        for r in m.rms:
            assert (b / r.name / "hls.tcl").is_file() and f"rm_{r.name}.bd" in shell
            for k, part in r.partials.items():
                assert f"$bundle/{part}" in dfx and f"shell_i_slot_{k}_rm_{r.name}_inst_0" in dfx
        ps = (b / "vivado" / "ps.tcl").read_text()
        assert ("processing_system7" if m.board.ps == "ps7" else "zynq_ultra_ps_e") in ps


def test_cli_build_and_show(bundles, cache, tmp_path, capsys):
    from hwpart.cli import main

    out = tmp_path / "jet"
    rc = main(["overlay", "build", "host/models.py:jet_tagger", "--input-shape", "16",
               "--board", "pynq-z2", "--samples", "100", "--cache", str(cache), "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "rm0" in text and "estimated" in text and "bitstreams need Vivado" in text
    assert main(["overlay", "show", str(out)]) == 0
    assert "every sha256 checked" in capsys.readouterr().out
    (out / "rm0" / "hls.tcl").write_text("tampered\n")
    assert main(["overlay", "show", str(out)]) == 2
    err = capsys.readouterr().err
    assert "sha256 mismatch" in err and len(err.strip().splitlines()) == 1
    assert main(["overlay", "build", "host/models.py:jet_tagger", "--input-shape", "16",
                 "--groups", "_0-_9", "-o", str(tmp_path / "x")]) == 2
    assert "unknown layer '_9'" in capsys.readouterr().err


def test_axis_adapter_packs_lanes_and_mirrors_tlast(bundles, tmp_path):
    """g++ run of rm_axis.cpp around the per-board project (Resource strategy, board
    reuse factors) equals the cached C simulation bit for bit; one packet in, one out."""
    from hwpart.overlay import adapter

    if not shutil.which("g++"):
        pytest.skip("g++ not installed")
    res = bundles["cnn-pynq-z2"]
    r = res.manifest.rms[0]  # conv: 3-channel pixels per beat, 4 lanes per 64-bit word
    x = np.random.default_rng(3).uniform(-1, 1, (3, *r.in_shape)).astype(np.float32)
    xs = hls.to_stream(x)
    n_out = int(np.prod(r.out_shape))
    run = adapter.run_adapter(res.bundle / r.name, r.top, xs, n_out, tmp_path)
    sim = hls.CSim(res.bundle / r.csim.library, "hwpart_rm", xs.shape[1], n_out).predict(xs)
    assert np.array_equal(run.outputs, sim)
    assert len(run.last_flags) == 3 * r.stream.out_words
    assert run.last_flags == [0] * (len(run.last_flags) - 1) + [1]


def test_yosys_estimate_of_the_dense_core(bundles):
    """With yosys installed, the da4ml core gets synth_xilinx counts next to da4ml's own."""
    info = bundles["dense-pynq-z2"].manifest.rms[0].rtl
    if not shutil.which("yosys"):
        assert info.yosys is None
        pytest.skip("yosys not installed (apt-get install yosys)")
    assert info.yosys is not None and "synth_xilinx -family xc7" in info.yosys.source
    assert info.yosys.source.startswith("estimated")
    assert 0.5 < info.yosys.lut / info.lut_estimate < 2  # two estimates of the same netlist


def test_crashing_c_simulation_rejects_only_that_rm(cache):
    """hls4ml's C++ asserts abort their process; the build isolates and names the RM."""
    from torch import nn

    from hwpart.overlay.build import _run_jobs

    x = np.random.default_rng(0).uniform(-1, 1, (4, 2, 6, 6)).astype(np.float32)
    bad = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1)).eval()  # asserts in io_stream
    job = {"name": "rm9", "module": bad, "in_shape": (2, 6, 6), "out_shape": (2, 6, 6),
           "x_in": x, "ref": bad(torch.as_tensor(x)).numpy(), "tolerance": 0.1,
           "classifier": False, "precisions": [hls.DEFAULT_PRECISIONS[0]], "cache": str(cache)}
    out = _run_jobs([job], 1, None)
    assert out["rm9"]["trials"] == [] and "crashed" in out["rm9"]["error"]


def test_seal_twice_replaces_entries(bundles, tmp_path):
    from hwpart.overlay.build import seal

    b = _copy(bundles["jet-pynq-z2"].bundle, tmp_path)
    m = load_manifest(b)
    outs = [m.shell.bitstream, m.shell.hwh]
    outs += [q for r in m.rms for p in r.partials.values() for q in (p, p[:-4] + ".hwh")]
    for rnd in ("first", "second"):  # fake Vivado outputs, rebuilt between the seals
        for q in outs:
            (b / q).parent.mkdir(parents=True, exist_ok=True)
            (b / q).write_text(f"{rnd} build of {q}\n")
        sealed = seal(b)
    paths = [f.path for f in sealed.all_files()]
    assert sealed.status == "built"
    assert sorted(set(paths)) == sorted(paths)
    assert set(outs) <= set(paths)
    load_manifest(b)  # every sha256 matches the second build


def test_warm_only_search_loads_no_new_library(tmp_path):
    """A job runs in the parent only while every library it reaches has run before."""
    from torch import nn

    x = np.random.default_rng(0).uniform(-1, 1, (4, 3)).astype(np.float32)
    m = nn.Sequential(nn.Linear(3, 2)).eval()
    job = {"name": "rm0", "module": m, "in_shape": (3,), "out_shape": (2,), "x_in": x,
           "ref": m(torch.as_tensor(x)).detach().numpy(), "tolerance": 0.1,
           "classifier": False, "precisions": list(hls.DEFAULT_PRECISIONS),
           "cache": str(tmp_path)}
    assert not hls.job_is_warm(job)
    assert hls.run_job(job, warm_only=True) is None
    assert not (tmp_path / "csim").exists()  # nothing compiled in this process


def test_yosys_time_out_is_cached(tmp_path, monkeypatch):
    """A rebuild does not wait for Yosys again after it ran out of time."""
    import subprocess

    calls = []

    def slow(*args, **kwargs):
        calls.append(kwargs["timeout"])
        raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])

    monkeypatch.setattr(rtl.shutil, "which", lambda exe: "/usr/bin/yosys")
    monkeypatch.setattr(rtl.subprocess, "run", slow)
    monkeypatch.setattr(rtl, "verilog_sources", lambda res: [])
    res = rtl.RTLResult(tmp_path, "rm_core", 3, 2, 1, 0.0, 0, 0.0, cached=False)
    assert rtl.yosys_estimate(res, "xc7", timeout_s=5) is None
    assert rtl.yosys_estimate(res, "xc7", timeout_s=5) is None
    assert calls == [5]
    assert rtl.yosys_estimate(res, "xc7", timeout_s=10) is None  # longer: tried again
    assert calls == [5, 10]
