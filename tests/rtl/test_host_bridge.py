"""The same host code against RTL: FpgaDevice (PYNQ API) driving shell_top + generated RMs.

Bridged (hwpart.rtlbridge.RtlBoard): MMIO to the switch, the PG375 decouplers,
the slot controls and the RM identity blocks -> AXI-Lite transactions into
shell_top, at the addresses of the bundle's shell .hwh (shell_top is built with
that same layout and the bank's RM identities); DMA packets -> AXI-Stream frames
into its MM2S port and out of its S2MM port; pr_download -> RM_SELECT of the
generated bank in the slot's slot_ctrl. Not RTL: the AXI DMA's registers and DDR
side (the simulated board's PG021 model).

The reference is the simulated board running the same host code with its RMs
computed by da4ml's emulation (the arithmetic the RTL implements), so any
difference would come from the fabric, the word format or the bridge: the
results must be equal bit for bit. The hls4ml C simulation (the simulated
board's default) rounds differently (AP_RND_CONV, wider accumulators) and is
only compared within tolerance.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from hwpart.rtlbridge import run_cocotb, shell_layout, sim_tb, write_rm_bank

pytest.importorskip("da4ml")
pytest.importorskip("hls4ml")
pytest.importorskip("pynq")
pytestmark = pytest.mark.slow
sys.path.insert(0, str(sim_tb()))
import rtl_bundles  # noqa: E402


def simulated_board_outputs(bundle, x, emulate: bool, monkeypatch) -> dict:
    from da4ml.cmvm.types import CombLogic

    from hwpart.devices.fpga import FpgaDevice
    from hwpart.overlay.manifest import load_manifest
    from hwpart.sim.rm import CSimRunner

    if emulate:
        m = load_manifest(bundle)
        combs = {r.name: CombLogic.load(bundle / next(f.path for f in r.rtl.files
                                                      if f.path.endswith("comb.json")))
                 for r in m.rms}

        def predict(self, rows):
            x = np.asarray(rows, dtype=np.float64).reshape(-1, self.n_in)
            return combs[self.spec.name].predict(x).astype(np.float32)
        monkeypatch.setattr(CSimRunner, "predict", predict)
        monkeypatch.setenv("HWPART_SIM_ENGINE", "csim")  # dense RMs would run the fast model
    dev = FpgaDevice(overlay=bundle, fpga="sim", pace=False)
    out = rtl_bundles.run_partitioned(dev, x)
    monkeypatch.undo()
    return out


def test_fpga_device_on_rtl_equals_simulated_board(built, tmp_path, monkeypatch):
    bundle = built.bundle
    bank = write_rm_bank(bundle, tmp_path / "bank")
    x = np.random.default_rng(3).uniform(-1, 1, (24, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    ref = simulated_board_outputs(bundle, x, emulate=True, monkeypatch=monkeypatch)
    csim = simulated_board_outputs(bundle, x, emulate=False, monkeypatch=monkeypatch)
    cfg = {"bundle": str(bundle), "bank": str(bank.directory), "board": built.manifest.board.name,
           "x": str(tmp_path / "x.npy"), "out": str(tmp_path / "out.npz"),
           "report": str(tmp_path / "report.json")}
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    slots = len(built.manifest.slots)
    res = run_cocotb("shell_top", bank.shell_sources(), "cocotb_host_bridge", tmp_path,
                     parameters=bank.shell_parameters(
                         slots, layout=shell_layout(bundle),
                         DEFAULT_RM=255),  # slots start empty, as after a full download
                     env={"HWPART_BRIDGE_CONFIG": str(tmp_path / "cfg.json")})
    assert res.ok, f"{res.failed}\n{res.log_tail()}"
    rep = json.loads((tmp_path / "report.json").read_text())
    print(f"\nhost code on RTL: {res.seconds:.1f} s (icarus, incl. build), {rep}")
    got = np.load(tmp_path / "out.npz")
    assert sorted(got.files) == sorted(ref)
    for name in ref:
        assert np.array_equal(got[name], ref[name]), name  # bit-exact
        err = float(np.abs(got[name] - csim[name]).max())
        print(f"  {name}: RTL == simulated board (da4ml arithmetic); |RTL - hls4ml C sim| {err:.3g}")
        assert err <= 2 * built.manifest.rm("rm1").accuracy.tolerance
    assert rep["swaps"] == 4  # rm0->s0, rm1->s1, rm1->s0, rm0->s0
    assert rep["slots"] == ["rm0", "rm1"]
    assert rep["frames_in"] == rep["frames_out"] == 3
    assert rep["rm_selects"] == 4 and rep["axil_writes"] > 0
