"""RM cycles measured in RTL (cocotb, Icarus) written back to the bundle, and used by the
simulated board's timing model."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pytest.importorskip("da4ml")
pytest.importorskip("hls4ml")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def calibrated(built, tmp_path_factory):
    from hwpart.overlay.calibrate import calibrate

    bundle = tmp_path_factory.mktemp("cal") / "mlp"
    shutil.copytree(built.bundle, bundle)
    rows = calibrate(bundle, tmp_path_factory.mktemp("cal-work"))
    return built, bundle, rows


def test_manifest_records_measured_cycles(calibrated):
    from hwpart.overlay.calibrate import SOURCE, table
    from hwpart.overlay.manifest import load_manifest

    built, bundle, rows = calibrated
    print("\n" + table(rows))
    m = load_manifest(bundle)  # every sha256 still checks
    assert [c.rm for c in rows] == [r.name for r in m.rms if r.rtl is not None] == ["rm0", "rm1"]
    for c in rows:
        r = m.rm(c.rm)
        assert r.cycles == c.measured and r.cycles.source == SOURCE
        assert c.modeled == built.manifest.rm(c.rm).cycles  # the builder's figure, reported
        # the adapter cannot beat its own word rate: one word per cycle on each side
        assert c.measured.ii == max(r.stream.in_words, r.stream.out_words)
        stages = r.rtl.stages + 1
        assert c.latency_first >= r.stream.in_words + stages
        assert c.measured.latency == c.latency_first + r.stream.out_words - 1


def test_calibration_is_idempotent(calibrated, tmp_path):
    from hwpart.overlay.calibrate import calibrate

    _, bundle, rows = calibrated
    again = calibrate(bundle, tmp_path)
    assert [c.measured for c in again] == [c.measured for c in rows]
    assert [c.modeled for c in again] == [c.measured for c in rows]  # now the recorded figure


def test_simulated_board_times_rms_with_measured_cycles(calibrated):
    """The simulated board reads cycles from the manifest: after calibration its modeled
    RM time for a batch is exactly (latency + (n-1)*II) / f_PL of the measured figures."""
    from hwpart.devices.fpga import FpgaDevice
    from hwpart.sim.bundle import load_bundle

    _, bundle, rows = calibrated
    b = load_bundle(bundle)
    for c in rows:
        spec = b.rm(c.rm).spec
        assert (spec.latency_cycles, spec.ii_cycles) == (c.measured.latency, c.measured.ii)
    dev = FpgaDevice(overlay=bundle, fpga="sim", pace=False)
    dev.open()
    plan = dev.plan(["rm0"])
    n = 10
    before = dev.sim.modeled()["modeled_rm_s"]
    dev.run_array(plan, np.zeros((n, 8), dtype=np.float32))
    got = dev.sim.modeled()["modeled_rm_s"] - before
    m = rows[0].measured
    assert got == pytest.approx((m.latency + (n - 1) * m.ii) / (m.clock_mhz * 1e6), rel=1e-9)
