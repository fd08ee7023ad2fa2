"""Board-agent overhead: an FPGA stage through the agent on loopback vs the local simulated board.

    .venv/bin/python bench/agent.py [--rounds 5] [--out bench/results/agent.json]

What is compared, per batch size (1, 64, 256), on the jet tagger's ``fc3`` RM
(Linear 32->32 + ReLU, ``ap_fixed<16,6>``, 64 B in and 64 B out per sample):

* ``local``: ``FpgaDevice(fpga="sim").run_array`` -- packing, the shell driver,
  PYNQ's API, the simulated board -- in this process;
* ``agent``: the same call with ``fpga="remote://127.0.0.1:PORT"``: the words
  travel to ``hwpart board serve --sim`` in another process over ZeroMQ with
  CURVE (authenticated, encrypted), one round trip per batch, and the same
  driver and simulated board run there;
* ``overhead``: agent - local, per batch; ``ratio``: agent / local;
* ``ping``: one empty request to the agent and back, and one carrying the
  batch's bytes out and back: the transport alone, no fabric.

Where the overhead goes (measured here, this host): an empty request costs a
ZeroMQ round trip between two processes; the bytes cost CURVE's encryption,
which in pyzmq 27's wheel runs on a bundled libsodium at about 80 MB/s for
``crypto_secretbox`` (Debian's libsodium: about 700 MB/s on the same CPU), so
each direction of a batch pays about 30 us per KiB on top. A pyzmq built on the
system's libzmq (and libsodium) would pay less; the protocol does not change.

Pacing is off on both sides, so the figures are the software's cost (host CPU,
MEASURED) and not the modeled board's time, which would be the same on both
sides and hide the difference. Rounds alternate local and agent; each figure is
the median over rounds of the mean per batch within a round. Both processes
share this host's cores: on a 2-core machine the agent's process and this one
compete, as they would not on a board and a host.
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

PRECISION = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
BATCHES = (1, 64, 256)
BATCHES_PER_ROUND = {1: 400, 64: 200, 256: 100}


def compile_rm(cache: Path):
    from hwpart.overlay import hls
    from hwpart.sim.rm import rm_from_csim

    lg = capture(EXAMPLES["jet_tagger"][0](), (16,), "jet_tagger")
    nodes = ["_4", "_5"]
    pred = next(iter(lg.dag.predecessors(nodes[0])))
    ins = tuple(lg.dag.nodes[pred]["out_shape"][1:])
    outs = tuple(lg.dag.nodes[nodes[-1]]["out_shape"][1:])
    art = hls.compile_csim(hls.slice_module(lg, nodes), ins, outs, PRECISION, cache)
    return rm_from_csim("fc3", nodes, art, ins, outs)


def per_batch_s(dev, plan, x: np.ndarray, batch: int) -> float:
    n = BATCHES_PER_ROUND[batch]
    xs = [x[(i * batch) % (len(x) - batch):][:batch] for i in range(n)]
    dev.run_array(plan, xs[0])  # warm
    t0 = time.perf_counter()
    for b in xs:
        dev.run_array(plan, b)
    return (time.perf_counter() - t0) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--cache", default=str(ROOT / ".hwpart-cache"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "agent.json"))
    args = ap.parse_args()
    os.environ["HWPART_SIM_PACE"] = "0"  # both sides: the software's cost, not modeled time

    from rich.console import Console
    from rich.table import Table

    from hwpart.board.agent import spawn
    from hwpart.board.client import AgentClient
    from hwpart.board.keys import generate
    from hwpart.board.manifest import write_board_manifest
    from hwpart.devices.fpga import FpgaDevice
    from hwpart.sim.bundle import write_sim_bundle

    spec = compile_rm(Path(args.cache))
    x = np.random.default_rng(0).uniform(-2, 2, (4096, 32)).astype(np.float32)
    res: dict = {"host": platform.processor() or platform.machine(),
                 "cpus": os.cpu_count(), "python": platform.python_version(),
                 "rm": {"name": spec.name, "layers": spec.layers, "type": spec.in_type},
                 "pace": False, "rounds": args.rounds, "batches": {}}
    with tempfile.TemporaryDirectory() as tmp:
        b = write_sim_bundle(Path(tmp) / "b", "bench", [spec])
        write_board_manifest(b.root)
        keys = Path(tmp) / "keys"
        generate(keys)
        key = keys / "client.key_secret"
        with spawn(b.root, keys, "--sim") as agent:
            local = FpgaDevice(b.root, fpga="sim", pace=False)
            remote = FpgaDevice(b.root, fpga=agent.url, key=key)
            lplan, rplan = local.plan(["fc3"], 0), remote.plan(["fc3"], 0)
            client = AgentClient(agent.url, key)
            client.hello()
            in_b = spec.layout_in(64).sample_bytes
            out_b = spec.layout_out(64).sample_bytes
            for batch in BATCHES:
                ys_local, ys_agent = local.run_array(lplan, x[:batch]), remote.run_array(
                    rplan, x[:batch])
                assert np.array_equal(ys_local, ys_agent), "agent and local outputs differ"
                rows = {"local": [], "agent": [], "ping_empty": [], "ping_batch_bytes": [],
                        "agent_link_s": []}
                for r in range(args.rounds):
                    order = ("local", "agent") if r % 2 == 0 else ("agent", "local")
                    for side in order:
                        dev, plan = (local, lplan) if side == "local" else (remote, rplan)
                        rows[side].append(per_batch_s(dev, plan, x, batch))
                    rows["agent_link_s"].append(rplan.last.link_s)
                    rows["ping_empty"].append(statistics.median(
                        client.ping()[0] for _ in range(50)))
                    rows["ping_batch_bytes"].append(statistics.median(
                        client.ping(batch * in_b, batch * out_b)[0] for _ in range(50)))
                med = {k: statistics.median(v) for k, v in rows.items()}
                res["batches"][str(batch)] = {
                    "local_us_per_batch (measured, host)": med["local"] * 1e6,
                    "agent_us_per_batch (measured, host)": med["agent"] * 1e6,
                    "overhead_us_per_batch": (med["agent"] - med["local"]) * 1e6,
                    "ratio_agent_over_local": med["agent"] / med["local"],
                    "ping_empty_us (measured)": med["ping_empty"] * 1e6,
                    "ping_batch_bytes_us (measured)": med["ping_batch_bytes"] * 1e6,
                    "bytes_out_and_back": [batch * in_b, batch * out_b],
                    "range_local_us": [min(rows["local"]) * 1e6, max(rows["local"]) * 1e6],
                    "range_agent_us": [min(rows["agent"]) * 1e6, max(rows["agent"]) * 1e6],
                }
            client.close()
            res["agent"] = agent.banner
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")

    con = Console()
    t = Table(title="FPGA stage through the board agent (loopback, CURVE) vs the local simulated "
                    "board: us per batch, measured on this host, pacing off")
    for c in ("batch", "local", "agent", "overhead", "ratio", "ping empty", "ping batch bytes"):
        t.add_column(c, justify="right")
    for batch, r in res["batches"].items():
        t.add_row(batch, f"{r['local_us_per_batch (measured, host)']:.0f}",
                  f"{r['agent_us_per_batch (measured, host)']:.0f}",
                  f"{r['overhead_us_per_batch']:.0f}", f"{r['ratio_agent_over_local']:.2f}x",
                  f"{r['ping_empty_us (measured)']:.0f}",
                  f"{r['ping_batch_bytes_us (measured)']:.0f}")
    con.print(t)
    con.print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
