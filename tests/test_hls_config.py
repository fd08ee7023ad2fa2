"""hls4ml's own configuration through ``--hls-config``, per-layer reuse factors, build time.

Issue 12, items 6 and 7. One small build (a 8-16-4 dense RM, cold cache, run
as a subprocess so its stderr is not a terminal) carries the user's precision,
reuse factor and strategy; the tests look for them where they must arrive:
the per-board hls4ml project, the C simulation's project, and the manifest.
The reuse-factor tests need no compile. The C-simulation compile of a
400x120 dense layer (LeNet-5's), which took over 25 minutes before its
weights were stored as plain doubles, is timed here against a bound; the
full cold LeNet-5 build is measured by bench/overlay_build.py, not in the suite.
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from hwpart.boards import load_board
from hwpart.graph import capture, load_graph
from hwpart.overlay import hls
from hwpart.overlay.build import BuildOptions, build_overlay
from hwpart.overlay.hlsconfig import HLSConfigError
from hwpart.overlay.manifest import load_manifest
from hwpart.overlay.resources import estimate_group, kernel_dims

hls4ml = pytest.importorskip("hls4ml")

ROOT = Path(__file__).resolve().parents[1]
MODEL = "tests/data/overlay_models.py:dense_gelu"  # _0 Linear(8,16) _1 ReLU _2 Linear(16,4) _3 GELU
USER = {
    "LayerName": {"_0": {"Precision": {"weight": "ap_fixed<10,3>"}, "ReuseFactor": 4,
                         "Strategy": "Resource"}},
    "LayerType": {"Dense": {"Precision": {"accum": "ap_fixed<30,12>"}}},
}


def _config_struct(parameters_h: str, layer: str) -> str:
    """The ``struct configN`` block of parameters.h whose weights are ``layer``'s."""
    for block in re.split(r"\n(?=struct )", parameters_h):
        if f"typedef {layer}_weight_t weight_t;" in block:
            return block
    raise AssertionError(f"no config struct for {layer}")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict:
    """``hwpart overlay build --hls-config`` in a subprocess, stderr a pipe (not a TTY)."""
    d = tmp_path_factory.mktemp("hlscfg")
    cfg = d / "mine.yaml"
    cfg.write_text(yaml.safe_dump(USER))
    out, cache = d / "bundle", d / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "hwpart", "overlay", "build", MODEL, "--input-shape", "8",
         "--board", "pynq-z2", "--samples", "100", "--no-rtl", "--cache", str(cache),
         "--hls-config", str(cfg), "-o", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {"bundle": out, "cache": cache, "stderr": proc.stderr, "stdout": proc.stdout,
            "cfg": cfg}


def test_hls_config_reaches_the_projects_and_the_manifest(built):
    m = load_manifest(built["bundle"])
    (rm,) = m.rms
    assert rm.layers == ["_0", "_1", "_2"]
    # the per-board project (what Vitis HLS synthesizes)
    fw = built["bundle"] / rm.name / "hls4ml_prj" / "firmware"
    assert re.search(r"typedef ap_fixed<10,3> _0_weight_t;", (fw / "defines.h").read_text())
    params = (fw / "parameters.h").read_text()
    c0 = _config_struct(params, "_0")
    assert "reuse_factor = 4;" in c0 and "strategy = nnet::resource;" in c0
    c2 = _config_struct(params, "_2")  # LayerType Dense reaches every dense layer
    assert re.search(r"typedef ap_fixed<30,12> \w+_accum_t;", (fw / "defines.h").read_text())
    assert "accum_t" in c2
    # the C simulation was built from the same types (what the accuracy check ran)
    (csim_defines,) = [p for p in (built["cache"] / "csim").glob("*/prj/firmware/defines.h")]
    assert "typedef ap_fixed<10,3> _0_weight_t;" in csim_defines.read_text()
    # the manifest records what hls4ml made of each layer
    h0, h2 = rm.hls_layers["_0"], rm.hls_layers["_2"]
    assert h0.precision["weight"] == "ap_fixed<10,3>"
    assert (h0.reuse_factor, h0.strategy) == (4, "resource")
    assert h0.precision["accum"] == h2.precision["accum"] == "ap_fixed<30,12>"
    assert rm.reuse["_0"] == 4
    assert h2.reuse_factor == rm.reuse["_2"]  # hwpart's own choice where the user set none
    assert rm.hls_config.startswith("mine.yaml (sha256 ")
    assert rm.accuracy.max_abs_err <= rm.accuracy.tolerance
    assert rm.rtl is None  # da4ml's twin assumes one type for every layer


def test_progress_lines_when_not_a_terminal(built):
    err = built["stderr"]
    assert "\x1b[" not in err and "━" not in err  # no bar, no escape codes
    lines = [ln for ln in err.splitlines() if "] rm0: " in ln]
    steps = ["start: _0.._2", "hls4ml convert", "C-sim compile (g++)", "C-sim compiled in",
             "checked ap_fixed", "done in"]
    at = [next(i for i, ln in enumerate(lines) if s in ln) for s in steps]
    assert at == sorted(at), lines
    assert re.search(r"^\[\s*\d+\.\d s\] rm0: done in \d+\.\d s$", lines[-1])


def test_cached_rebuild_with_the_same_config_compiles_nothing(built, tmp_path):
    lg = load_graph(MODEL, "8")
    opts = BuildOptions(out=tmp_path / "again", cache=built["cache"], samples=100, rtl=False,
                        hls_config=built["cfg"])
    res = build_overlay(lg, load_board("pynq-z2"), opts)
    assert res.compiles == 0
    assert res.manifest.rms[0].hls_layers == load_manifest(built["bundle"]).rms[0].hls_layers


def _write(tmp_path: Path, data: object) -> Path:
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("data, key, words", [
    ({"LayerName": {"_9": {"ReuseFactor": 2}}}, "LayerName._9", "no such layer"),
    ({"LayerName": {"_0": {"Reuse": 2}}}, "LayerName._0.Reuse", "unknown key"),
    ({"Modle": {}}, "Modle", "unknown key"),
    ({"LayerName": {"_0": {"Precision": {"weight": "ap_fixd<16,6>"}}}},
     "LayerName._0.Precision.weight", "not a type hls4ml understands"),
    ({"LayerName": {"_0": {"ReuseFactor": 3}}}, "LayerName._0.ReuseFactor",
     "not a reuse factor hls4ml accepts for layer _0's 8x16 kernel"),
    ({"LayerType": {"Dense": {"ReuseFactor": 3}}}, "LayerType.Dense.ReuseFactor",
     "nearest: 2, 4"),
    ({"LayerName": {"_0": {"Strategy": "distributed_arithmetic"}}},
     "LayerName._0.Strategy", "Latency or Resource"),
    ({"LayerName": {"_1": {"Precision": {"weight": "ap_fixed<8,3>"}}}},
     "LayerName._1.Precision.weight", "layer _1 (Activation) has no such precision"),
    ({"LayerName": {"_2": {"Precision": {"result": "ap_fixed<8,3>"}}}},
     "LayerName._2.Precision", "would change the type of an RM stream"),
    ({"LayerType": {"Dnese": {"ReuseFactor": 2}}}, "LayerType.Dnese", "no layer of this"),
    ({"Model": {"Precision": "fixed<16,6>"}}, "Model.Precision", "must be ap_fixed"),
])
def test_config_errors_name_the_file_and_the_key(tmp_path, data, key, words):
    lg = capture(_dense_gelu(), (8,), "dense_gelu")
    path = _write(tmp_path, data)
    opts = BuildOptions(out=tmp_path / "b", cache=tmp_path / "c", hls_config=path)
    with pytest.raises(HLSConfigError) as info:
        build_overlay(lg, load_board("pynq-z2"), opts)
    msg = str(info.value)
    assert msg.startswith(f"{path}: {key}"), msg
    assert words in msg and "\n" not in msg
    assert not (tmp_path / "c" / "csim").exists()  # refused before anything compiled


def test_cli_reports_a_config_error_in_one_line(tmp_path, capsys):
    from hwpart.cli import main

    path = _write(tmp_path, {"LayerName": {"_0": {"ReuseFactor": 0}}})
    rc = main(["overlay", "build", MODEL, "--input-shape", "8", "--hls-config", str(path),
               "--cache", str(tmp_path / "c"), "-o", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "bad.yaml: LayerName._0.ReuseFactor: expected a whole number >= 1" in err


def test_a_dump_of_hls4mls_own_config_is_accepted_as_it_is(tmp_path):
    """What config_from_pytorch_model returns, dumped to YAML, loads unchanged; its
    ReuseFactor: 1 on every layer is the user's choice then, and is sized as such."""
    from hwpart.overlay.build import _kernel_dims, _node_classes
    from hwpart.overlay.hlsconfig import load_hls_config

    lg = _lenet()
    cfg = hls4ml.utils.config_from_pytorch_model(lg.module, input_shape=(1, 32, 32),
                                                 granularity="name", backend="Vitis")
    cfg.pop("PytorchModel")
    path = tmp_path / "dumped.yaml"
    path.write_text(yaml.safe_dump(json.loads(json.dumps(cfg))))  # tuples -> lists
    user = load_hls_config(path, list(lg.compute_nodes), (1, 32, 32))
    assert user.model["ChannelsLastConversion"] == "full"  # read, and ignored (layout)
    fixed, bits = user.sizing(_node_classes(lg), _kernel_dims(lg, list(lg.compute_nodes)))
    assert fixed == {"_0": 1, "_3": 1, "_7": 1, "_9": 1, "_11": 1} and bits == {}
    est = estimate_group(lg, list(lg.compute_nodes), load_board("kv260"), fixed=fixed)
    assert not est.fits(load_board("kv260"))  # fully unrolled LeNet-5: no slot holds it


def _dense_gelu() -> nn.Module:
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    from overlay_models import dense_gelu

    return dense_gelu()


# ------------------------------------------------------------------ reuse factors (no compile)

def _lenet():
    sys.path.insert(0, str(ROOT))
    from host.models import lenet5

    return capture(lenet5(), (1, 32, 32), "lenet5")


def _greedy(lg, est, target: int) -> dict[str, int]:
    """Each kernel layer's largest legal reuse factor whose II meets ``target``."""
    backend = hls4ml.backends.get_backend("Vitis")
    out = {}
    for le in est.layers:
        dims = kernel_dims(lg, le.node)
        if dims is None:
            continue
        pos = le.ii_cycles // le.reuse
        valid = backend.get_valid_reuse_factors(*dims)
        fit = [r for r in valid if pos * r <= target]
        out[le.node] = fit[-1] if fit else valid[0]
    return out


@pytest.mark.parametrize("board_name", ["kv260", "pynq-z2", "zcu104"])
def test_reuse_factors_fit_the_slot_and_are_legal_in_hls4ml(board_name):
    lg, board = _lenet(), load_board(board_name)
    backend = hls4ml.backends.get_backend("Vitis")
    est = estimate_group(lg, list(lg.compute_nodes), board)
    slot = board.slots.resources
    assert est.fits(board), est.over_text(board)
    assert est.resources.dsp <= slot.dsp and est.resources.lut <= slot.lut
    kernels = [le for le in est.layers if kernel_dims(lg, le.node)]
    assert len(kernels) == 5
    for le in kernels:
        n_in, n_out = kernel_dims(lg, le.node)
        assert le.reuse in backend.get_valid_reuse_factors(n_in, n_out), le
        assert le.resources.dsp == math.ceil(n_in * n_out / le.reuse)  # multipliers / R
    # the smallest II that fits: one cycle less, every layer at its largest legal R
    # that meets it, is over the slot
    kernel_ii = max(le.ii_cycles for le in kernels)
    tighter = estimate_group(lg, list(lg.compute_nodes), board,
                             reuse=_greedy(lg, est, kernel_ii - 1))
    assert not tighter.fits(board)
    # per layer, not one factor for all: the 784-pixel convolution gets the least reuse
    conv0 = est.layers[0]
    assert conv0.reuse < min(le.reuse for le in kernels[2:])


def test_per_layer_reuse_beats_one_common_factor():
    """kv260: the previous rule (one common R, snapped per layer) chose these factors,
    which left LeNet-5's 784-pixel first convolution at one multiplier."""
    lg, board = _lenet(), load_board("kv260")
    est = estimate_group(lg, list(lg.compute_nodes), board)
    common = estimate_group(lg, list(lg.compute_nodes), board,
                            reuse={"_0": 150, "_3": 150, "_7": 200, "_9": 120, "_11": 168})
    assert common.fits(board) and common.ii_cycles == 784 * 150
    assert est.ii_cycles * 50 < common.ii_cycles  # 1,500 vs 117,600 cycles per sample


def test_user_reuse_is_kept_and_the_rest_chosen_around_it():
    lg, board = _lenet(), load_board("kv260")
    est = estimate_group(lg, list(lg.compute_nodes), board, fixed={"_7": 4000})
    assert est.reuse["_7"] == 4000 and est.fits(board)
    assert est.ii_cycles == 4000  # the user's layer is now the slowest; the rest need no more


# ------------------------------------------------------------------ the C simulation's compile

def test_fast_weight_headers_are_bit_exact_with_hls4mls_own(tmp_path):
    """The library compiled from rewritten headers equals hls4ml's own compile bit for bit."""
    torch.manual_seed(7)
    m = nn.Sequential()
    m.add_module("_0", nn.Linear(12, 9))
    m.add_module("_1", nn.ReLU())
    m.add_module("_2", nn.Linear(9, 5))
    m = m.eval()
    prec = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
    art = hls.compile_csim(m, (12,), (5,), prec, tmp_path / "c")
    text = (art.directory / "prj" / "firmware" / "weights" / "w2.h").read_text()
    assert "static const double w2_literals[108]" in text
    own = hls.convert(m, (12,), prec, tmp_path / "own" / "prj", "hwpart_rm")
    with hls._quiet(tmp_path / "own" / "compile.log"):
        own.compile()  # hls4ml's headers as written: ap_fixed arrays with initialisers
    assert "_literals" not in (tmp_path / "own/prj/firmware/weights/w2.h").read_text()
    (lib,) = (tmp_path / "own" / "prj" / "firmware").glob("hwpart_rm-*.so")
    x = np.random.default_rng(0).uniform(-40, 40, (3000, 12)).astype(np.float32)
    a = hls.CSim(art.library, art.top, 12, 5).predict(x)
    b = hls.CSim(lib, "hwpart_rm", 12, 5).predict(x)
    assert np.array_equal(a, b)
    assert np.abs(a).max() > 1  # not all zeros: the weights were loaded


_COMPILE_400x120 = """
import json, sys, torch
from pathlib import Path
from torch import nn
from hwpart.overlay import hls
torch.manual_seed(0)
m = nn.Sequential(); m.add_module("_7", nn.Linear(400, 120)); m = m.eval()
art = hls.compile_csim(m, (400,), (120,), "ap_fixed<16,6,AP_RND_CONV,AP_SAT>", Path(sys.argv[1]))
print(json.dumps({"compile_s": art.compile_s}))
"""


def test_c_simulation_of_a_400x120_dense_layer_compiles_in_seconds(tmp_path):
    """LeNet-5's 400x120 layer: over 25 min of g++ with hls4ml's initialisers, 3 s CPU now."""
    # its own session: on a timeout, g++ (a grandchild) is stopped too
    proc = subprocess.Popen([sys.executable, "-c", _COMPILE_400x120, str(tmp_path / "c")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the C-simulation compile of a 400x120 dense layer ran past 240 s")
    assert proc.returncode == 0, err[-2000:]
    assert json.loads(out.strip().splitlines()[-1])["compile_s"] < 120


_CRASH = """
import sys, numpy as np, torch
from torch import nn
from hwpart.overlay import hls
from hwpart.overlay.build import _run_jobs
x = np.random.default_rng(0).uniform(-1, 1, (4, 2, 6, 6)).astype(np.float32)
bad = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1)).eval()  # asserts in io_stream
job = {"name": "rm9", "module": bad, "in_shape": (2, 6, 6), "out_shape": (2, 6, 6),
       "x_in": x, "ref": bad(torch.as_tensor(x)).numpy(), "tolerance": 0.1,
       "classifier": False, "precisions": [hls.DEFAULT_PRECISIONS[0]], "cache": sys.argv[1]}
out = _run_jobs([job], 1, lambda rm, what, frac: print(rm, what, flush=True))
print("error:", out["rm9"]["error"])
"""


def test_a_worker_that_aborts_in_cpp_does_not_hang_the_build(tmp_path):
    """A worker aborts (hls4ml's C++ assert) right after sending a progress line; the
    build reports it and exits (a multiprocessing.Queue here once hung it at exit)."""
    proc = subprocess.Popen([sys.executable, "-c", _CRASH, str(tmp_path / "c")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the build did not exit after a worker crashed")
    assert proc.returncode == 0, err[-2000:]
    lines = out.splitlines()
    assert any(ln.startswith("rm9 C-sim compiled in") for ln in lines), out
    assert "crashed" in lines[-1] and any("rm9 hls4ml failed: " in ln for ln in lines)
