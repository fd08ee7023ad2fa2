"""The FPGA device (hwpart.devices.fpga) on the simulated board.

Bit-exactness is the point: a model split CPU | FPGA | CPU must give exactly
torch for the CPU stages composed with the hls4ml C simulation for the FPGA
stage -- no tolerance.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from test_fpga_support import graph, jet_rms, make_plan, other_rm, rm_spec

pytest.importorskip("pynq")

from hwpart.devices.fpga import (  # noqa: E402
    BundleIntegrityError,
    DmaError,
    DmaTimeout,
    FpgaDevice,
    FpgaError,
)
from hwpart.overlay.hls import from_stream, to_stream  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.sim.rm import CSimRunner  # noqa: E402
from hwpart.stages import split  # noqa: E402


@pytest.fixture(scope="module")
def jet_bundle(tmp_path_factory):
    rms = [*jet_rms(), other_rm()]
    return write_sim_bundle(tmp_path_factory.mktemp("jet") / "b", "jet", rms)


@pytest.fixture(scope="module")
def jet_sg_bundle(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("jetsg") / "b", "jet", jet_rms(), sg=True)


def run_staged(staged, devices, x):
    """Each stage on its device, in order (what the runtime does, without threads)."""
    env = staged.initial(x)
    for st in staged.stages:
        dev = devices[st.device]
        h = dev.load(st)
        env = dev.run(h, env)
        dev.unload(h)
    return staged.result(env)


def csim(spec, x: np.ndarray) -> np.ndarray:
    return from_stream(CSimRunner(spec).predict(to_stream(x)), spec.out_shape)


def jet_reference(lg, x: torch.Tensor, fpga_specs) -> torch.Tensor:
    """torch for _0,_1 and _6,_7; the RMs' C simulation (chained) for _2.._5."""
    m = lg.module
    with torch.no_grad():
        h = torch.relu(m.get_submodule("0")(x)).numpy() if hasattr(m, "0") else None
    if h is None:  # fx names the submodules after the Sequential's indices
        raise AssertionError("unexpected module layout")
    for spec in fpga_specs:
        h = csim(spec, h)
    with torch.no_grad():
        return torch.softmax(m.get_submodule("6")(torch.from_numpy(h)), dim=1)


@pytest.mark.parametrize("sg", [False, True], ids=["simple", "sg"])
def test_jet_split_bit_exact(jet_bundle, jet_sg_bundle, sg):
    """CPU | FPGA (two RMs chained through the switch) | CPU == torch + C sim, bit for bit."""
    from hwpart.devices.cpu import CpuDevice

    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])])
    dev = FpgaDevice(jet_sg_bundle.root if sg else jet_bundle.root, fpga="sim", pace=False)
    assert dev.available()[0]
    x = torch.from_numpy(np.random.default_rng(0).uniform(-3, 3, (33, 16)).astype(np.float32))
    y = run_staged(split(lg, plan), {"cpu": CpuDevice(), "fpga": dev}, x)
    ref = jet_reference(lg, x, jet_rms())
    assert torch.equal(y, ref)
    assert [s.rm for s in dev._slots] == ["fc2", "fc3"]  # chained over both slots
    assert dev.sim.dma.sg == sg


def test_small_cnn_split_bit_exact(tmp_path):
    """Conv/ReLU/pool on the FPGA (channels-last stream), the rest on the CPU."""
    from hwpart.devices.cpu import CpuDevice

    lg = graph("small_cnn")
    spec = rm_spec("small_cnn", ("_0", "_1", "_2"), "conv1")
    b = write_sim_bundle(tmp_path / "cnn", "cnn", [spec])
    plan = make_plan(lg, [("fpga0", ["_0", "_1", "_2"]), ("cpu", lg.compute_nodes[3:])])
    dev = FpgaDevice(b.root, fpga="sim", pace=False)
    x = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (5, 3, 16, 16)).astype(np.float32))
    staged = split(lg, plan)
    y = run_staged(staged, {"cpu": CpuDevice(), "fpga": dev}, x)
    h = torch.from_numpy(csim(spec, x.numpy()).copy())
    env = {staged.stages[1].inputs[0]: h}
    ref = staged.result(staged.stages[1](env))
    assert torch.equal(y, ref)


def test_pr_swap_between_batches(jet_bundle):
    """Swapping slot 0 between batches changes the function; no sample of either batch is off."""
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=True)
    lg = graph("jet_tagger")
    st = split(lg, make_plan(lg, [("cpu", ["_0", "_1", "_2", "_3"]), ("fpga0", ["_4", "_5"]),
                                  ("cpu", ["_6", "_7"])])).stages[1]
    h = dev.load(st)
    plan = h.state["plan"]
    rng = np.random.default_rng(2)
    a, b = (rng.uniform(-4, 4, (64, 32)).astype(np.float32) for _ in range(2))
    ya = dev.run_array(plan, a)
    swaps = dev.sim.ledger.swaps
    dev.swap(0, "other32")
    yb_other = dev.run_array(_plan_for(dev, "other32"), b)
    ya2 = dev.run_array(plan, a)  # the stage's own RM is swapped back in
    assert np.array_equal(ya, csim(jet_rms()[1], a))
    assert np.array_equal(yb_other, csim(other_rm(), b))
    assert not np.array_equal(yb_other, csim(jet_rms()[1], b))
    assert np.array_equal(ya2, ya)
    assert dev.sim.ledger.swaps == swaps + 2
    assert all(s.unsafe_swaps == 0 for s in dev.sim.slots)  # always decoupled when swapped
    assert dev.sim.modeled()["modeled_pr_s"] > 0


def _plan_for(dev, rm_name):
    return dev.plan([rm_name], 0)


def test_dma_error_is_typed_and_recovers(jet_bundle):
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    plan = _plan_for(dev, "fc3")
    dev.open()
    x = np.ones((4, 32), np.float32)
    dev.sim.dma.s2mm.inject = 0x40  # DMADecErr on the next S2MM transfer
    with pytest.raises(DmaError, match=r"slot 0 \(RM fc3\).*DMADecErr") as err:
        dev.run_array(plan, x)
    assert err.value.slot == 0 and err.value.rm == "fc3" and err.value.status & 0x40
    assert np.array_equal(dev.run_array(plan, x), csim(jet_rms()[1], x))  # shell reloaded


def test_timeout_is_typed_and_recovers(jet_bundle):
    """A slot that stays decoupled (a hung partition) times out; the next batch is clean."""
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False, timeout_s=0.2)
    plan = _plan_for(dev, "fc3")
    x = np.random.default_rng(4).uniform(-1, 1, (8, 32)).astype(np.float32)
    dev.run_array(plan, x)
    dev.sim.slots[0].decouple = True  # behind the driver's back
    with pytest.raises(DmaTimeout, match=r"slot 0 \(RM fc3\)"):
        dev.run_array(plan, x)
    assert dev.sim.slots[0].processed == 1  # the held batch was never computed
    y = dev.run_array(plan, x)  # shell reloaded: nothing stale leaks into this batch
    assert np.array_equal(y, csim(jet_rms()[1], x))


def test_any_transfer_failure_is_typed_and_recovers(jet_bundle, monkeypatch):
    """A failure that is no DMA status bit (here the channel raising) still names the
    slot and RM, and the next batch runs on a reloaded shell."""
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    plan = _plan_for(dev, "fc3")
    x = np.random.default_rng(5).uniform(-1, 1, (4, 32)).astype(np.float32)
    dev.run_array(plan, x)
    send = type(dev.dma.sendchannel)

    def broken(self, *a, **k):
        raise ValueError("value out of range for the RM's input type")

    monkeypatch.setattr(send, "transfer", broken)
    with pytest.raises(FpgaError, match=r"slot 0 \(RM fc3\): DMA transfer failed: ValueError"):
        dev.run_array(plan, x)
    monkeypatch.undo()
    assert np.array_equal(dev.run_array(plan, x), csim(jet_rms()[1], x))


def test_tampered_partial_is_refused_before_download(jet_bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(jet_bundle.root, root)
    bad = root / "partials" / "slot0_other32.bit"
    bad.write_bytes(bad.read_bytes() + b" ")
    dev = FpgaDevice(root, fpga="sim", pace=False)
    dev.run_array(_plan_for(dev, "fc3"), np.zeros((2, 32), np.float32))
    before = dev.sim.ledger.swaps
    with pytest.raises(BundleIntegrityError, match="slot0_other32.bit.*sha256") as err:
        dev.swap(0, "other32")
    assert err.value.slot == 0 and err.value.rm == "other32"
    assert dev.sim.ledger.swaps == before  # nothing was downloaded
    assert dev.sim.slots[0].rm.spec.name == "fc3"


def test_capabilities_and_availability(jet_bundle):
    lg = graph("jet_tagger")
    dev = FpgaDevice(jet_bundle.root, fpga="sim")
    assert dev.capabilities(lg) == {"_2", "_3", "_4", "_5"}
    ok, why = FpgaDevice(None, fpga="sim").available()
    assert not ok and "--overlay" in why


def test_rounding_and_saturation_edges_bit_exact(jet_bundle):
    """Half-LSB ties (round-to-even) and values far outside the range (saturation):
    what the host puts on the wire is what the C simulation's own conversion gives."""
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=False)
    lsb = 2.0 ** -10  # ap_fixed<16,6>
    ties = (np.arange(-40, 40) + 0.5) * lsb
    x = np.concatenate([ties, [-1e9, 1e9, 31.99, -32.0, 32.5, -33.0, 0.0, -0.0],
                        np.random.default_rng(5).uniform(-40, 40, 1000)]).astype(np.float32)
    x = np.resize(x, (len(x) // 32 + 1) * 32).reshape(-1, 32)
    assert np.array_equal(dev.run_array(_plan_for(dev, "fc3"), x), csim(jet_rms()[1], x))


def test_overlay_builder_bundle_runs_on_the_simulated_board(tmp_path):
    """A bundle from `hwpart overlay build` (scripts only, no Vivado): stand-ins generated
    under BUNDLE/sim/, and the split model is still bit-exact."""
    from test_fpga_support import CACHE

    from hwpart.boards import load_board
    from hwpart.devices.cpu import CpuDevice
    from hwpart.overlay.build import BuildOptions, build_overlay

    lg = graph("jet_tagger")
    jet_rms()  # compiled into the cache the builder reads
    threads = torch.get_num_threads()
    build_overlay(lg, load_board("pynq-z2"), BuildOptions(
        out=tmp_path / "ob", slots=2, groups="_2-_3,_4-_5", rtl=False, samples=50,
        cache=CACHE, jobs=1))
    assert torch.get_num_threads() == threads  # an in-process build leaves torch as it was
    dev = FpgaDevice(tmp_path / "ob", fpga="sim", pace=False)
    assert dev.capabilities(lg) == {"_2", "_3", "_4", "_5"}
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])])
    x = torch.from_numpy(np.random.default_rng(6).uniform(-3, 3, (20, 16)).astype(np.float32))
    y = run_staged(split(lg, plan), {"cpu": CpuDevice(), "fpga": dev}, x)
    assert torch.equal(y, jet_reference(lg, x, [r.spec for r in dev.bundle.rms]))
    assert (tmp_path / "ob" / "sim" / "manifest.yaml").is_file()


def test_runtime_pipeline_with_registry(jet_bundle, monkeypatch):
    """`hwpart run --fpga sim --overlay BUNDLE` path: the registry builds the FPGA device
    from HWPART_FPGA / HWPART_OVERLAY, the threaded pipeline runs it, still bit-exact."""
    from hwpart.runtime import run_model

    monkeypatch.setenv("HWPART_FPGA", "sim")
    monkeypatch.setenv("HWPART_OVERLAY", str(jet_bundle.root))
    monkeypatch.setenv("HWPART_SIM_PACE", "0")
    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])], batch=16)
    x = torch.from_numpy(np.random.default_rng(7).uniform(-3, 3, (100, 16)).astype(np.float32))
    res = run_model(lg, plan, x, batch=16)
    assert torch.equal(res.output(), jet_reference(lg, x, jet_rms()))


def test_two_fpga_stages_share_the_board(jet_bundle):
    """fpga0 and fpga1 as separate pipeline stages (two worker threads, one DMA):
    the switch is re-pointed for each batch and every sample is still exact."""
    from hwpart.devices.cpu import CpuDevice
    from hwpart.runtime import run_model

    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3"]), ("fpga1", ["_4", "_5"]),
                          ("cpu", ["_6", "_7"])], batch=8)
    dev = FpgaDevice(jet_bundle.root, fpga="sim", pace=True)
    x = torch.from_numpy(np.random.default_rng(8).uniform(-3, 3, (96, 16)).astype(np.float32))
    res = run_model(lg, plan, x, batch=8, devices={"cpu": CpuDevice(), "fpga": dev})
    assert torch.equal(res.output(), jet_reference(lg, x, jet_rms()))
    assert [s.processed for s in dev.sim.slots] == [12, 12]
    assert dev.sim.switch.commits >= 2


def test_swaps_hash_each_file_once_and_a_changed_file_is_rehashed(jet_bundle, tmp_path,
                                                                    monkeypatch):
    import hwpart.board.shell as shell_mod  # the shell driver hashes the bundle files

    root = tmp_path / "b"
    shutil.copytree(jet_bundle.root, root)
    hashed: list[str] = []
    real = shell_mod.sha256_file
    monkeypatch.setattr(shell_mod, "sha256_file", lambda p: hashed.append(p.name) or real(p))
    dev = FpgaDevice(root, fpga="sim", pace=False)
    dev.run_array(_plan_for(dev, "fc3"), np.zeros((2, 32), np.float32))
    for rm in ("other32", "fc3", "other32", "fc3"):
        dev.swap(0, rm)
    assert hashed.count("slot0_other32.bit") == 1  # verified once, unchanged since
    bad = root / "partials" / "slot0_other32.bit"
    bad.write_bytes(bad.read_bytes() + b" ")
    with pytest.raises(BundleIntegrityError, match="slot0_other32.bit.*sha256"):
        dev.swap(0, "other32")
    assert hashed.count("slot0_other32.bit") == 2
