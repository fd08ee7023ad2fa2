"""Cluster benchmark: what a Ray stage host costs per batch, and what a second node gains.

    python bench/cluster.py [--out bench/results/cluster.json] [--rounds 3] [--quick]

Both on a local Ray cluster of two nodes on this machine (loopback; each node's stage
hosts pinned to a core of their own: a *simulated* cluster, labelled so in the JSON).

* overhead -- a two-stage pipeline of stages that cost next to nothing (three
  negations), at batch 1 and 64: the threaded runtime (two worker threads, this
  process) against the same plan with both stages in Ray actors on one node.
  Per batch: wall time per batch with the pipeline kept full, minus the model's
  plain forward. The ratio is Ray over threads.
* scale-out -- a chain of 8 x (Linear(1024, 1024) + ReLU) at batch 256 (about 60 ms
  per batch on one core here: a Ray call costs milliseconds on this 2-core machine, so
  a stage must be worth more than that to gain from a second node): one stage on
  node a (one core) against two equal stages, one on node a's core and one on node
  b's (two processes pinned to one core each). Target >= 1.6x. The threaded
  runtime's own two-stage run on the same two cores (one intra-op thread per stage)
  is shown beside it, as the single-machine reference.

Rounds: every variant once per round, the order rotating; figures are medians over
rounds with their range.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Cheap(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.neg(torch.neg(torch.neg(x)))


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(*[m for _ in range(8) for m in (nn.Linear(1024, 1024), nn.ReLU())])


def per_batch_s(run, x: torch.Tensor, batch: int) -> float:
    res = run(x, batch)
    return res.wall_s / len(res.outputs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "cluster.json"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="few batches, one round (a smoke run)")
    args = ap.parse_args()
    rounds = 1 if args.quick else args.rounds
    from hwpart.cluster.env import LocalCluster
    from hwpart.cluster.plan import cluster_devices
    from hwpart.cluster.run import make_cluster, run_static
    from hwpart.devices import CpuDevice
    from hwpart.graph import capture
    from hwpart.runtime import Pipeline, chain_plan
    from hwpart.stages import split

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lc = LocalCluster(nodes=2).start()
    from hwpart.cluster.topology import discover, measure

    info = measure(discover())
    start_s = time.perf_counter() - t0
    out: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "torch": torch.__version__,
                             "ray": __import__("ray").__version__},
                 "cluster": {**info.to_json(), "start_s": start_s,
                             "note": "simulated cluster: two Ray nodes on this machine, "
                                     "on loopback, one core each"}}
    try:
        # ------------------------------------------------------------ overhead
        cheap = capture(Cheap(), (64,), "cheap")
        rows = []
        for batch in (1, 64):
            n = 300 if not args.quick else 60
            x = torch.zeros(batch * n, 64)
            xb = x[:batch]
            with torch.inference_mode():
                t = time.perf_counter()
                for _ in range(200):
                    cheap.module(xb)
                plain = (time.perf_counter() - t) / 200
            plan = chain_plan(cheap, ["cpu", "cpu"], batch=batch)
            ray_dev = make_cluster(info, cluster_devices(info))
            th, ry = [], []
            with Pipeline(split(cheap, plan), {"cpu": CpuDevice(threads=1)}) as pipe:
                pipe.run(x[: batch * 20], batch)
                for _ in range(rounds):
                    th.append(per_batch_s(pipe.run, x, batch) - plain)
            with Pipeline(split(cheap, plan), ray_dev.devices) as pipe:
                pipe.run(x[: batch * 20], batch)
                for _ in range(rounds):
                    ry.append(per_batch_s(pipe.run, x, batch) - plain)
            t_med, r_med = statistics.median(th), statistics.median(ry)
            rows.append({"batch": batch, "threads_us": t_med * 1e6, "ray_us": r_med * 1e6,
                         "ratio": r_med / t_med if t_med > 0 else None,
                         "plain_forward_us": plain * 1e6,
                         "threads_range_us": [min(th) * 1e6, max(th) * 1e6],
                         "ray_range_us": [min(ry) * 1e6, max(ry) * 1e6]})
        out["overhead"] = rows
        # ------------------------------------------------------------ scale-out
        lg = capture(mlp(), (1024,), "mlp8")
        batch = 256
        n = 60 if not args.quick else 12
        x = torch.randn(batch * n, 1024)
        one = chain_plan(lg, ["cpu"], batch=batch)
        two = chain_plan(lg, ["cpu", "cpu_b"], batch=batch)
        local_two = chain_plan(lg, ["cpu", "cpu"], batch=batch)
        figures: dict[str, list[float]] = {"ray_1_stage": [], "ray_2_nodes": [],
                                           "threads_2_stages": []}

        def ray_run(plan):
            cl = make_cluster(info, cluster_devices(info, threads=1))
            return run_static(lg, plan, cl, x, batch=batch, warmup_batches=3).throughput_sps

        def thread_run(plan):
            with Pipeline(split(lg, plan), {"cpu": CpuDevice(threads=1)}) as pipe:
                pipe.run(x[: batch * 3], batch)
                return pipe.run(x, batch).throughput_sps

        variants = [("ray_1_stage", lambda: ray_run(one)), ("ray_2_nodes", lambda: ray_run(two)),
                    ("threads_2_stages", lambda: thread_run(local_two))]
        for r in range(rounds):
            for name, fn in variants[r % 3:] + variants[: r % 3]:
                figures[name].append(fn())
        med = {k: statistics.median(v) for k, v in figures.items()}
        out["scale_out"] = {
            "model": "8 x (Linear(1024,1024)+ReLU)", "batch": batch, "samples": len(x),
            "samples_per_s": med, "ranges": {k: [min(v), max(v)] for k, v in figures.items()},
            "ratio_2_nodes_vs_1_stage": med["ray_2_nodes"] / med["ray_1_stage"],
            "ratio_2_nodes_vs_threads_2_stages": med["ray_2_nodes"] / med["threads_2_stages"],
            "target": 1.6}
    finally:
        lc.shutdown()
    print(f"cluster: {len(info.nodes)} Ray nodes on this machine (simulated, loopback), "
          f"started and measured in {start_s:.1f} s; link a-b round trip "
          f"{info.link('a', 'b').rtt_s * 1e6:.0f} us, "
          f"{info.link('a', 'b').bandwidth_Bps / 1e6:.0f} MB/s")
    print("\nper-batch overhead, two cheap stages (pipeline full)")
    print(f"{'batch':>6} {'threads us':>11} {'ray us':>9} {'ray/threads':>12}")
    for r in out["overhead"]:
        ratio = f"{r['ratio']:>11.1f}x" if r["ratio"] is not None else f"{'-':>12}"
        print(f"{r['batch']:>6} {r['threads_us']:>11.0f} {r['ray_us']:>9.0f} {ratio}")
    so = out["scale_out"]
    print(f"\nscale-out, {so['model']}, batch {so['batch']} (samples/s)")
    for k, v in so["samples_per_s"].items():
        print(f"  {k:<18} {v:>10.0f}")
    print(f"  2 nodes / 1 stage: {so['ratio_2_nodes_vs_1_stage']:.2f}x (target >= 1.6x); "
          f"2 nodes / threaded 2 stages: {so['ratio_2_nodes_vs_threads_2_stages']:.2f}x")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
