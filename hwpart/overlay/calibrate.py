"""Replace an overlay bundle's modeled RM cycles with cycles measured in RTL simulation.

``hwpart overlay build`` writes each RM's latency and II from an analytical
model (``cycles.source`` says so). For RMs with da4ml RTL the real figure is
cheap to get: build the bundle's generated ``rm_bank`` (hwpart.rtlbridge) in
the shell's slot wrapper, stream samples through it in Icarus with cocotb,
and count clock edges between AXI-Stream handshakes on the RM's ports. The
result is written back into ``manifest.yaml`` with source
``rtl-measured (icarus, da4ml twin of the RM)``; everything that reads cycles from the manifest
(the partitioner's costs, the simulated board's timing model through
:func:`hwpart.sim.bundle.load_bundle`) then uses the measured figures.

What is recorded, with the output always ready and the input never paused:

* ``latency``: edges from a lone sample's first input beat to its *last*
  output beat -- the time one sample occupies the RM, which is what the
  timing model's ``latency + (n - 1) * ii`` needs for a packet's completion;
* ``ii``: the median spacing of output samples in a back-to-back burst.

The manifest does not record its own sha256 (only the files it lists, which
calibration does not touch), so no other entry changes; the simulated
board's stand-ins under ``BUNDLE/sim`` are keyed on the manifest's hash and
regenerate on next load. RMs without RTL keep their modeled cycles.
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hwpart.overlay.manifest import Cycles, load_manifest, write_manifest

#: What was measured: the RM's da4ml RTL twin (fully parallel), not the hls4ml
#: project Vivado would build for the board (its reuse factors make it slower).
SOURCE = "rtl-measured (icarus, da4ml twin of the RM)"


@dataclass
class Calibration:
    rm: str
    modeled: Cycles  # what the manifest held before (may itself be an earlier measurement)
    measured: Cycles
    latency_first: int  # first input beat -> first output beat (reported, not recorded)
    samples: int


def measure(bundle: Path | str, work: Path | str | None = None,
            samples: int = 32) -> dict[str, dict[str, int]]:
    """RTL cycles per RM with RTL: {rm: {latency_first, latency_last, ii, ...}}."""
    from hwpart.rtlbridge import RtlError, run_cocotb, write_rm_bank, write_vectors

    bundle = Path(bundle)
    work = Path(work or tempfile.mkdtemp(prefix="hwpart_calibrate_"))
    m = load_manifest(bundle)
    bank = write_rm_bank(bundle, work / "bank", m)
    write_vectors(bank, work / "vectors.json", n=samples)
    out = work / "measured.json"
    out.unlink(missing_ok=True)
    res = run_cocotb("rm_slot", bank.slot_sources(), "cocotb_generated_rms", work,
                     parameters={"DATA_WIDTH": bank.data_width, "NUM_RMS": len(bank.rms)},
                     env={"HWPART_RTL_VECTORS": str(work / "vectors.json"),
                          "HWPART_RTL_MEASURE": str(out)},
                     testcase="test_measure_cycles")
    if not res.ok or not out.is_file():
        raise RtlError(f"RTL measurement failed ({res.failed or 'no result'})\n{res.log_tail()}")
    return json.loads(out.read_text())


def calibrate(bundle: Path | str, work: Path | str | None = None,
              samples: int = 32) -> list[Calibration]:
    """Measure every RM with RTL and write the cycles into the bundle's manifest."""
    bundle = Path(bundle)
    measured = measure(bundle, work, samples)
    m = load_manifest(bundle)
    rows = []
    for r in m.rms:
        got = measured.get(r.name)
        if got is None:
            continue
        new = Cycles(int(got["ii"]), int(got["latency_last"]), r.cycles.clock_mhz, SOURCE)
        rows.append(Calibration(r.name, r.cycles, new, int(got["latency_first"]),
                                int(got["samples"])))
        r.cycles = new
    write_manifest(bundle, m)
    load_manifest(bundle)  # what we wrote must pass our own loader (every sha256 still holds)
    return rows


def table(rows: list[Calibration]) -> str:
    lines = [f"{'RM':8} {'modeled lat/II':>16} {'source':32} {'RTL lat/II':>12} "
             f"{'first beat':>10}"]
    for c in rows:
        lines.append(f"{c.rm:8} {c.modeled.latency:>9}/{c.modeled.ii:<6} {c.modeled.source:32} "
                     f"{c.measured.latency:>7}/{c.measured.ii:<4} {c.latency_first:>10}")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m hwpart.overlay.calibrate BUNDLE
    if len(sys.argv) != 2:
        sys.exit("usage: python -m hwpart.overlay.calibrate BUNDLE")
    print(table(calibrate(sys.argv[1])))
