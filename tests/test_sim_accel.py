"""hls4ml VivadoAccelerator projects on the simulated board, driven by hls4ml's own driver.

The projects are generated here with hls4ml 1.3.0 (a small MLP, pynq-z2,
io_stream). ``hwpart sim load`` writes the simulated bitstream and ``.hwh``;
hls4ml's generated ``axi_stream_driver.py`` -- checked to be hls4ml's template,
byte for byte -- runs in a fresh Python whose script imports only numpy, pynq
and the driver, in a virtual environment where ``hwpart sim discovery
--install`` put the startup hook; ``HWPART_SIM_BOARD`` is all that asks for the
simulated board. Its outputs must equal ``hls_model.predict`` bit for bit.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import venv
from pathlib import Path

import numpy as np
import pytest
import torch

hls4ml = pytest.importorskip("hls4ml")
pynq = pytest.importorskip("pynq")

from hwpart.cli import main as hwpart_main  # noqa: E402
from hwpart.errors import ConfigError  # noqa: E402
from hwpart.sim import accel, autoload  # noqa: E402

PRECISION = "ap_fixed<16,6>"
FRAC = 10  # 16 - 6


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                               torch.nn.Linear(16, 4)).eval()


def _convert(out: Path, **accel_kw):
    m = _mlp()
    cfg = hls4ml.utils.config_from_pytorch_model(m, input_shape=(8,), granularity="name",
                                                 backend="VivadoAccelerator",
                                                 default_precision=PRECISION)
    return hls4ml.converters.convert_from_pytorch_model(
        m, output_dir=str(out), backend="VivadoAccelerator", board="pynq-z2",
        io_type="io_stream", hls_config=cfg, **accel_kw)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A float-interface project (hls4ml's default): written and compiled (~10-30 s)."""
    out = tmp_path_factory.mktemp("hls4ml") / "prj"
    hm = _convert(out)
    hm.write()
    hm.compile()
    return out, hm


@pytest.fixture(scope="module")
def env_dir(tmp_path_factory):
    """A fresh virtual environment on top of this one, with the discovery hook installed
    the way a user installs it (``hwpart sim discovery --install``)."""
    root = tmp_path_factory.mktemp("venv")
    venv.create(root, with_pip=False, symlinks=True)
    site = Path(subprocess.run([_python(root), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], capture_output=True, text=True,
                               check=True, timeout=60).stdout.strip())
    assert site.is_dir()
    here = sysconfig.get_paths()["purelib"]  # this environment: numpy, pynq, hwpart (editable)
    (site / "_parent_env.pth").write_text(f"import site; site.addsitedir({here!r})\n")
    assert hwpart_main(["sim", "discovery", "--install", "--site-dir", str(site)]) == 0
    return root


def _python(root: Path) -> str:
    return str(root / "bin" / "python")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONSTARTUP") and not k.startswith("HWPART_SIM")}
    env.update(extra)
    return env


DRIVER_SCRIPT = textwrap.dedent("""\
    import json, sys
    import numpy as np
    from pynq import Device
    from axi_stream_driver import NeuralNetworkOverlay

    X = np.load(sys.argv[2])
    nn = NeuralNetworkOverlay(sys.argv[1], X.shape, (X.shape[0], 4))
    y1 = np.array(nn.predict(X))
    y2 = np.array(nn.predict(X[::-1].copy()))
    np.save(sys.argv[3], np.stack([y1, y2]))
    dma = nn.ip_dict["hier_0/axi_dma_0"]
    print(json.dumps({"device": type(Device.active_device).__name__,
                      "dma": dma["phys_addr"], "ips": sorted(nn.ip_dict)}))
""")


def test_hls4ml_driver_runs_unmodified_in_a_fresh_process(project, env_dir, tmp_path, capsys):
    prj, hm = project
    driver = prj / "axi_stream_driver.py"
    template = (Path(hls4ml.__file__).parent / "templates" / "vivado_accelerator" / "pynq-z2"
                / "python_drivers" / "axi_stream_driver.py")
    assert driver.read_bytes() == template.read_bytes()  # hls4ml's driver, as generated

    assert hwpart_main(["sim", "load", str(prj)]) == 0
    said = capsys.readouterr().out
    assert "hls4ml_nn.hwh (generated)" in said and "float -> float, 8 -> 4" in said
    bit = prj / "hwpart_sim" / "hls4ml_nn.bit"

    rng = np.random.default_rng(1)
    x = rng.uniform(-4, 4, (37, 8)).astype(np.float32)
    x[0] = [40.0, -40.0, 31.99, -32.0, 1e-4, -1e-4, 0.0, 2 ** -11]  # saturation/truncation edges
    np.save(tmp_path / "x.npy", x)
    script = prj / "run_driver.py"  # next to the driver, as a notebook would sit
    script.write_text(DRIVER_SCRIPT)
    assert "hwpart" not in DRIVER_SCRIPT
    r = subprocess.run([_python(env_dir), str(script), str(bit), str(tmp_path / "x.npy"),
                        str(tmp_path / "y.npy")], cwd=prj, capture_output=True, text=True,
                       timeout=120, env=_env(HWPART_SIM_BOARD="pynq-z2", HWPART_SIM_PACE="0"))
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["device"] == "EnvSimBoard"  # PYNQ's own probing found it
    assert info["dma"] == 0x4040_0000 and "hier_0/axi_dma_0" in info["ips"]

    y = np.load(tmp_path / "y.npy")
    ref1 = hm.predict(x)
    ref2 = hm.predict(x[::-1].copy())
    assert y.dtype == np.float32 and ref1.dtype == np.float32
    assert np.array_equal(y[0].view(np.uint32), ref1.view(np.uint32))  # bit for bit
    assert np.array_equal(y[1].view(np.uint32), ref2.view(np.uint32))
    assert not np.array_equal(y[0], y[1])


def test_without_the_variable_nothing_is_found(env_dir, tmp_path):
    """The hook is inert unless asked: no hwpart import, PYNQ finds no device."""
    code = ("import sys, warnings\nwarnings.simplefilter('ignore')\nimport pynq\n"
            "print(len(pynq.Device.devices), any(m.startswith('hwpart') for m in sys.modules))")
    r = subprocess.run([_python(env_dir), "-c", code], capture_output=True, text=True,
                       timeout=60, env=_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["0", "False"]
    r = subprocess.run([_python(env_dir), "-c", "import pynq; pynq.Device.devices"],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env=_env(HWPART_SIM_BOARD="pynq-z9"))
    assert r.returncode != 0
    assert "BoardError: HWPART_SIM_BOARD=pynq-z9: unknown board 'pynq-z9'" in r.stderr


def test_probe_only_when_asked_and_never_over_a_real_device(monkeypatch):
    from hwpart.sim import discover

    monkeypatch.delenv("HWPART_SIM_BOARD", raising=False)
    assert discover.EnvSimBoard._probe_() == []
    monkeypatch.setenv("HWPART_SIM_BOARD", "kv260")
    [dev] = discover.EnvSimBoard._probe_()
    assert dev.board.name == "kv260" and discover.EnvSimBoard._probe_() == [dev]  # one board
    monkeypatch.setattr(pynq.Device, "_devices", [pynq.Device("real0")], raising=False)
    with pytest.warns(UserWarning, match="HWPART_SIM_BOARD=kv260 ignored: PYNQ found a real "
                                         "device"):
        assert discover.EnvSimBoard._probe_() == []


def test_discovery_cli_installs_and_removes(tmp_path, capsys):
    assert hwpart_main(["sim", "discovery", "--site-dir", str(tmp_path)]) == 0
    assert "not installed" in capsys.readouterr().out
    assert hwpart_main(["sim", "discovery", "--install", "--site-dir", str(tmp_path)]) == 0
    assert (tmp_path / autoload.PTH_NAME).read_text() == autoload.PTH_TEXT
    assert hwpart_main(["sim", "discovery", "--remove", "--site-dir", str(tmp_path)]) == 0
    assert not (tmp_path / autoload.PTH_NAME).exists()
    assert hwpart_main(["sim", "discovery", "--install", "--site-dir",
                        str(tmp_path / "nope")]) == 2  # one line, exit 2


def _driver_module(prj: Path):
    spec = importlib.util.spec_from_file_location("axi_stream_driver_" + prj.parent.name,
                                                  prj / "axi_stream_driver.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_vivado_handoff_is_used_with_its_addresses(project, tmp_path):
    """A project built by Vivado brings its .hwh: the board serves the DMA where it says."""
    from hwpart.sim.board import install

    prj, hm = project
    work = tmp_path / "prj"
    shutil.copytree(prj, work, ignore=shutil.ignore_patterns("hwpart_sim", "*.tar.gz"))
    # the handoff of a Vivado run (design_1.hwh), whose address editor put the DMA elsewhere
    p = accel.read_project(work)
    text = accel.accel_hwh(p, accel.board_for(p)).replace("0x40400000", "0x40410000")
    text = text.replace("0x4040FFFF", "0x4041FFFF").replace("hwpart-sim", "2020.1")
    hand = work / "myproject_vivado_accelerator/project_1.gen/sources_1/bd/design_1/hw_handoff"
    hand.mkdir(parents=True)
    (hand / "design_1.hwh").write_text(text)
    loaded = accel.load_project(work)
    assert loaded.design.hwh_source == str(hand / "design_1.hwh")
    assert "0x40410000" in loaded.hwh.read_text()

    board = install("pynq-z2", pace=False)
    nn = _driver_module(work).NeuralNetworkOverlay(str(loaded.bit), (5, 8), (5, 4))
    x = np.random.default_rng(2).uniform(-2, 2, (5, 8)).astype(np.float32)
    y = np.array(nn.predict(x))
    assert [(b.name, b.base) for b in board.blocks] == [("dma", 0x4041_0000)]
    assert board.accel is not None
    assert np.array_equal(y.view(np.uint32), hm.predict(x).view(np.uint32))
    assert board.accel.core.samples == 5
    m = board.modeled()
    assert m["modeled_rm_s"] > 0 and m["modeled_dma_s"] > 0  # modeled, as everywhere


def test_samples_span_packets_and_tlast_ends_the_output(project):
    """As the generated wrapper: a sample is any N_IN words; TLAST inside a sample ends the
    output packet after that sample; S2MM completes only then."""
    from pynq import Overlay, allocate

    from hwpart.sim.board import install

    prj, hm = project
    loaded = accel.load_project(prj)
    install("pynq-z2", pace=False)
    ol = Overlay(str(loaded.bit))
    dma = ol.hier_0.axi_dma_0
    x = np.random.default_rng(3).uniform(-3, 3, (2, 8)).astype(np.float32)
    flat = x.reshape(-1)
    a, b = allocate((12,), np.float32), allocate((4,), np.float32)
    out = allocate((8,), np.float32)
    a[:], b[:] = flat[:12], flat[12:]
    dma.recvchannel.transfer(out)
    dma.sendchannel.transfer(a)  # 1.5 samples, TLAST on word 11 (inside sample 1)
    dma.sendchannel.wait()
    assert not dma.recvchannel.idle  # sample 0 done, but no TLAST yet: S2MM still open
    dma.sendchannel.transfer(b)  # the rest of sample 1
    dma.sendchannel.wait()
    assert dma.recvchannel.idle
    dma.recvchannel.wait()
    assert dma.recvchannel.transferred == 32
    assert np.array_equal(np.asarray(out).reshape(2, 4).view(np.uint32),
                          hm.predict(x).view(np.uint32))


def test_fixed_point_words(project, tmp_path):
    """An ap_fixed<16,6> interface: 16-bit words, hls4ml's driver with dtype=int16.

    hls4ml 1.3.0 writes the interface typedefs as ``fixed<16,6,TRN,WRAP,0>``,
    which is not a C++ type, so such a project does not compile as written; the
    test writes the C++ spelling of the same type (``ap_fixed<16,6,AP_TRN,
    AP_WRAP,0>``) into that one header and builds with the project's own
    build_lib.sh. Reference: the float project's ``hls_model.predict`` (the same
    model) on the words' values, in float64 so its ``ap_fixed<37,17>`` result
    is exact, then cast to the interface type as ``T_out`` does (AP_TRN: floor;
    AP_WRAP: modulo 2^16).
    """
    from hwpart.sim.board import install

    _, hm_float = project
    out = tmp_path / "fx"
    hm = _convert(out, input_type=PRECISION, output_type=PRECISION)
    hm.write()
    header = out / "firmware" / "myproject_axi.h"
    text = header.read_text()
    assert "typedef fixed<16,6,TRN,WRAP,0> T_in;" in text  # the hls4ml 1.3.0 spelling
    header.write_text(re.sub(r"typedef fixed<16,6,TRN,WRAP,0> (T_in|T_out);",
                             r"typedef ap_fixed<16,6,AP_TRN,AP_WRAP,0> \1;", text))
    r = subprocess.run(["bash", "build_lib.sh"], cwd=out, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]

    loaded = accel.load_project(out)
    assert (loaded.design.t_in, loaded.design.t_out) == ("ap_fixed<16,6,AP_TRN,AP_WRAP,0>",) * 2
    assert 'c_m_axi_mm2s_data_width" VALUE="16"' in loaded.hwh.read_text()
    install("pynq-z2", pace=False)
    nn = _driver_module(out).NeuralNetworkOverlay(str(loaded.bit), (40, 8), (40, 4),
                                                  dtype=np.int16)
    rng = np.random.default_rng(4)
    words_in = rng.integers(-2 ** 15, 2 ** 15, (40, 8), dtype=np.int16)  # the whole range
    y = np.array(nn.predict(words_in))  # the driver writes the words as they are
    assert y.dtype == np.int16
    ref = hm_float.predict(words_in.astype(np.float64) * 2.0 ** -FRAC)
    assert ref.dtype == np.float64
    q = np.floor(ref * 2.0 ** FRAC).astype(np.int64)
    assert np.array_equal(y, ((q + 2 ** 15) % 2 ** 16 - 2 ** 15).astype(np.int16))
    assert len(np.unique(y)) > 100  # many distinct words, not a constant


def test_project_errors_name_the_file(project, tmp_path):
    prj, _ = project
    bad = tmp_path / "bad"
    bad.mkdir()
    with pytest.raises(ConfigError, match=r"bad: no hls4ml_config.yml"):
        accel.read_project(bad)
    cfg = (prj / "hls4ml_config.yml").read_text()
    (bad / "hls4ml_config.yml").write_text(cfg.replace("Backend: VivadoAccelerator",
                                                       "Backend: Vivado"))
    with pytest.raises(ConfigError, match=r"hls4ml_config.yml: Backend is 'Vivado'"):
        accel.read_project(bad)
    (bad / "hls4ml_config.yml").write_text(cfg)
    shutil.copytree(prj / "firmware", bad / "firmware",
                    ignore=shutil.ignore_patterns("*.so", "ap_types", "nnet_utils"))
    with pytest.raises(ConfigError, match=r"myproject-\w+\.so: not compiled"):
        accel.read_project(bad)
    assert hwpart_main(["sim", "load", str(bad)]) == 2  # one line, exit 2
    (bad / "hls4ml_config.yml").write_text(cfg.replace("Interface: axi_stream",
                                                       "Interface: axi_lite"))
    with pytest.raises(ConfigError, match=r"Interface is 'axi_lite'"):
        accel.read_project(bad)


def test_a_rebuilt_library_is_refused(project, tmp_path):
    from pynq import Overlay

    from hwpart.sim.board import install

    prj, _ = project
    work = tmp_path / "prj"
    shutil.copytree(prj, work, ignore=shutil.ignore_patterns("hwpart_sim"))
    loaded = accel.load_project(work)
    lib = Path(loaded.design.library)
    lib.write_bytes(lib.read_bytes() + b"\0")
    install("pynq-z2", pace=False)
    with pytest.raises(RuntimeError, match=r"missing or was rebuilt.*hwpart sim load"):
        Overlay(str(loaded.bit))


def test_word_types():
    assert accel.parse_word_type("fixed<16,6,RND,SAT,0>") == accel.parse_word_type(
        "ap_fixed<16,6,AP_RND,AP_SAT>")
    assert accel.WordFormat("ap_ufixed<8,0>").dtype == np.dtype("<u1")
    with pytest.raises(ValueError, match="24-bit words"):
        accel.parse_word_type("ap_fixed<24,8>")
    w = accel.WordFormat("ap_fixed<16,6>")
    words = np.array([-32768, -1, 0, 1, 32767], dtype="<i2")
    v = w.values(words.view(np.uint8))
    assert list(v) == [-32.0, -2 ** -10, 0.0, 2 ** -10, 32 - 2 ** -10]
    assert np.array_equal(w.words(v).view("<i2"), words)
    assert sys.byteorder == "little"  # the DMA's words are little-endian in DDR, as numpy's
