"""Throughput of the jet MLP through the simulated board, and the timing model against the host.

    .venv/bin/python bench/fpga_sim.py [--board pynq-z2] [--samples 4096] [--out bench/results/fpga_sim.json]

What each figure is (nothing here is measured on an FPGA):

* ``csim_*_sps``: the hls4ml C simulation alone on this host -- hls4ml's own
  per-sample ctypes loop vs hwpart's batch loop (``hwpart.sim.rm``). MEASURED
  on the host CPU.
* ``engines``: side by side, in this process, at batch 64 and 256: the C
  simulation (batch loop) vs the vectorised fixed-point model
  (``hwpart.sim.fastrm``, bit-exact to it: the outputs are compared here too),
  and their ratio. MEASURED on the host CPU.
* ``unpaced_sps``: samples/s through the whole simulated board (PYNQ driver,
  register models, DMA, switch, the RM's engine, fixed-point packing) with
  pacing off: the simulator's own speed, with the engine the board picked
  (``board_engine``) and, at batch 256, with the C simulation forced.
  MEASURED on the host CPU.
* ``paced_sps``: the same with each DMA completion held back to the modeled
  hardware time; capped by the model where the model is slower than the
  simulator. MEASURED on the host, but the waits are MODELED hardware time.
* ``modeled_*``: the timing model from the board file (DMA latency + bytes /
  bandwidth, RM cycles at the PL clock, partial bytes / config-port throughput).
  MODELED, never measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from host.models import EXAMPLES  # noqa: E402
from hwpart.graph import capture  # noqa: E402
from hwpart.overlay import hls  # noqa: E402
from hwpart.sim import fastrm  # noqa: E402
from hwpart.sim.rm import CSimRunner, rm_from_csim  # noqa: E402

PRECISION = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
JET_RM = ["_0", "_1", "_2", "_3", "_4", "_5", "_6"]  # everything but the softmax


def compile_rms(cache: Path):
    lg = capture(EXAMPLES["jet_tagger"][0](), (16,), "jet_tagger")
    specs = []
    for name, nodes in (("jet", JET_RM), ("fc3", ["_4", "_5"])):
        pred = next(iter(lg.dag.predecessors(nodes[0])))
        ins = tuple(lg.dag.nodes[pred]["out_shape"][1:])
        outs = tuple(lg.dag.nodes[nodes[-1]]["out_shape"][1:])
        art = hls.compile_csim(hls.slice_module(lg, nodes), ins, outs, PRECISION, cache)
        specs.append(rm_from_csim(name, nodes, art, ins, outs))
    return specs


def rate(fn, samples: int, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = max(best, samples / (time.perf_counter() - t))
    return best


def batched_rate(predict, x: np.ndarray, batch: int) -> float:
    """Samples/s of ``predict`` called on consecutive batches of ``batch`` rows."""
    n = len(x) - len(x) % batch
    predict(x[:batch])  # warm

    def go() -> None:
        for i in range(0, n, batch):
            predict(x[i:i + batch])
    return rate(go, n)


def engines(jet, x: np.ndarray) -> dict:
    """The C simulation (batch loop) vs the vectorised model, side by side."""
    fm = jet.fast_model or {}
    if not fm.get("exact"):
        return {"vectorised": f"not used: {fm.get('reason', 'no verdict')}"}
    csim, fast = CSimRunner(jet), fastrm.load_model(Path(fm["file"]), fm["sha256"])
    out: dict = {"bit_identical": bool(np.array_equal(csim.predict(x), fast.predict(x))),
                 "verdict": f"{fm['checked']} checked, {fm['mismatches']} mismatches"}
    for batch in (64, 256):
        c, v = batched_rate(csim.predict, x, batch), batched_rate(fast.predict, x, batch)
        out[f"batch{batch}"] = {"csim_sps (measured, host)": c,
                                "vectorised_sps (measured, host)": v, "ratio": v / c}
    return out


def board_rate(dev, plan, x: np.ndarray, batch: int) -> float:
    dev.run_array(plan, x[:batch])  # warm: buffers, route, RM in place

    def go() -> None:
        for i in range(0, len(x), batch):
            dev.run_array(plan, x[i:i + batch])
    return rate(go, len(x) - len(x) % batch if batch > 1 else len(x))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--board", default="pynq-z2")
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--samples-b1", type=int, default=400)
    ap.add_argument("--cache", default=str(ROOT / ".hwpart-cache"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "fpga_sim.json"))
    args = ap.parse_args()

    from hwpart.devices.fpga import FpgaDevice
    from hwpart.sim.bundle import write_sim_bundle

    specs = compile_rms(Path(args.cache))
    jet = specs[0]
    x = np.random.default_rng(0).uniform(-2, 2, (args.samples, 16)).astype(np.float32)
    res: dict = {"board": args.board, "host": platform.processor() or platform.machine(),
                 "rm": {"name": jet.name, "layers": jet.layers, "in": jet.in_type,
                        "latency_cycles (est.)": jet.latency_cycles,
                        "ii_cycles (est.)": jet.ii_cycles}}

    per_sample = hls.CSim(Path(jet.library), jet.top, jet.n_in, jet.n_out)
    batched = CSimRunner(jet)
    res["csim_hls4ml_loop_sps (measured, host)"] = rate(lambda: per_sample.predict(x), len(x))
    res["csim_batch_loop_sps (measured, host)"] = rate(lambda: batched.predict(x), len(x))
    res["engines"] = engines(jet, x)

    with tempfile.TemporaryDirectory() as tmp:
        b = write_sim_bundle(Path(tmp) / "b", "bench", specs, board=args.board)
        for paced in (False, True):
            dev = FpgaDevice(b.root, fpga="sim", pace=paced)
            plan = dev.plan(["jet"])
            key = "paced" if paced else "unpaced"
            for batch in (1, 256):
                xs = x[: args.samples_b1] if batch == 1 else x
                res[f"{key}_sps_batch{batch} (measured, host)"] = board_rate(dev, plan, xs, batch)
            # one labelled transfer record per direction at batch 256
            dev.sim.ledger.transfers.clear()
            dev.run_array(plan, x[:256])
            for rec in dev.sim.ledger.transfers:
                host = (rec.observed_host_s or float("nan")) - rec.issued_host_s
                res.setdefault("dma_batch256", {})[f"{key} {rec.channel}"] = {
                    "bytes": rec.nbytes, "modeled_s": rec.modeled_s,
                    "host_issue_to_idle_s (measured)": host}
            res[f"{key}_board_engine"] = dev.sim.slots[0].rm.engine
            if not paced:  # the same board with the C simulation forced
                os.environ[fastrm.ENGINE_ENV] = "csim"
                try:
                    dev.swap(0, "fc3")
                    dev.swap(0, "jet")  # a fresh SimRM: it reads the variable
                    assert dev.sim.slots[0].rm.engine == "csim"
                    res["unpaced_sps_batch256_csim_forced (measured, host)"] = \
                        board_rate(dev, plan, x, 256)
                finally:
                    del os.environ[fastrm.ENGINE_ENV]
            if paced:
                t = dev.sim.timing
                res["modeled_rm_s_batch256"] = t.rm_s(jet.cycles(256))
                res["modeled_dma_s_batch256"] = t.dma_s(256 * jet.layout_in(64).sample_bytes) + \
                    t.dma_s(256 * jet.layout_out(64).sample_bytes)
                res["modeled_cap_sps_batch256"] = 256 / (res["modeled_rm_s_batch256"]
                                                         + res["modeled_dma_s_batch256"])
                res["modeled_cap_sps_batch1"] = 1 / (t.rm_s(jet.cycles(1)) + t.dma_s(
                    jet.layout_in(64).sample_bytes) + t.dma_s(jet.layout_out(64).sample_bytes))
                swaps = []
                for _ in range(3):
                    for name in ("fc3", "jet"):
                        t0 = time.perf_counter()
                        dev.swap(0, name)
                        swaps.append(time.perf_counter() - t0)
                res["pr_swap"] = {
                    "partial_bytes (board file, est.)": t.board.slots.partial_bitstream_bytes,
                    "config_port_mb_s (board file)": t.board.config_port.throughput_mb_s,
                    "modeled_s_per_rm": {s.name: t.pr_s(s.partial_bytes) for s in specs},
                    "host_s_median (measured, paced to the modeled time)": statistics.median(swaps)}

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    w = max(len(k) for k in res)
    for k, v in res.items():
        if k != "engines":
            print(f"{k:<{w}}  {v if not isinstance(v, float) else f'{v:,.6g}'}")
    eng = res["engines"]
    print(f"\nengines, jet RM {jet.layers[0]}..{jet.layers[-1]}, one process (measured, host); "
          f"outputs bit-identical: {eng.get('bit_identical', '-')}")
    print(f"{'batch':>6}  {'C sim (batch loop) sps':>24}  {'vectorised sps':>16}  {'ratio':>7}")
    for batch in (64, 256):
        e = eng.get(f"batch{batch}")
        if e:
            print(f"{batch:>6}  {e['csim_sps (measured, host)']:>24,.0f}  "
                  f"{e['vectorised_sps (measured, host)']:>16,.0f}  {e['ratio']:>6.1f}x")
    if "vectorised" in eng:
        print(f"vectorised model {eng['vectorised']}")
    print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
