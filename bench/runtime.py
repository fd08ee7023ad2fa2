"""Runtime benchmark: what the pipeline costs, and what it gains, on this machine's CPUs.

    python bench/runtime.py [--out bench/results/runtime.json] [--repeats 5] [--quick]

Rows (targets from issue #3, reported, not asserted):

* overhead -- plain torch eager vs hwpart with a one-stage CPU plan, same model,
  same batch, same intra-op threads (1, so the two-stage row below compares
  like with like). Throughput: all batches back to back (the pipeline kept
  full). Latency: one batch in flight at a time (the source waits for each
  result), so the pipeline's own hand-offs are measured, not its queueing.
  Targets: throughput >= 0.95x eager; p50 <= 1.05x eager + 100 us.
* pipeline -- a two-stage CPU plan (cut where the MACs balance, one thread per
  stage) vs the one-stage run. Target >= 1.7x on 2 cores. A one-stage run with
  2 intra-op threads is shown beside it: that is the other way to use 2 cores.

The model for both is a chain of Linear(512, 512)+ReLU, big enough that compute
dominates a batch. A small model (the jet tagger, ~80 us per batch of 64) is
also measured, to show where the per-batch overhead starts to matter.
Variants are interleaved repeat by repeat (rotating order) and each ratio is
the median of per-repeat ratios with its range, because the machine may be
shared (load averages are recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from host.models import jet_tagger  # noqa: E402
from hwpart.devices import CpuDevice  # noqa: E402
from hwpart.graph import LayerGraph, capture  # noqa: E402
from hwpart.runtime import Pipeline, chain_plan  # noqa: E402
from hwpart.stages import split  # noqa: E402
from hwpart.streams import Item  # noqa: E402


def linear_chain(width: int = 512, depth: int = 8) -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers).eval()


# --------------------------------------------------------------------------- measurements


def eager_throughput(model: nn.Module, x: torch.Tensor, batch: int) -> float:
    with torch.inference_mode():
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
        return len(x) / (time.perf_counter() - t)


def eager_p50(model: nn.Module, x: torch.Tensor, batch: int) -> float:
    times = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            t = time.perf_counter()
            model(x[i:i + batch])
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def one_at_a_time(x: torch.Tensor, batch: int, done: threading.Event) -> Iterator[Item]:
    """Yield the next batch only after the previous one reached the sink."""
    for seq, i in enumerate(range(0, len(x), batch)):
        if seq:
            done.wait()
        done.clear()
        yield Item(seq, (x[i:i + batch],), time.perf_counter(), min(batch, len(x) - i))


def pipe_throughput(pipe: Pipeline, x: torch.Tensor, batch: int) -> float:
    return pipe.run(x, batch).throughput_sps


def pipe_p50(pipe: Pipeline, x: torch.Tensor, batch: int) -> float:
    done = threading.Event()
    res = pipe.run_items(one_at_a_time(x, batch, done), batch=batch,
                         on_output=lambda _: done.set())
    p50 = res.snapshot.end_to_end_total.p50_s
    assert p50 is not None
    return p50


def pipeline_for(lg: LayerGraph, k: int, threads: int) -> Pipeline:
    staged = split(lg, chain_plan(lg, ["cpu"] * k))
    return Pipeline(staged, {"cpu": CpuDevice(threads=threads)})


def interleave(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Each repeat runs every variant back to back, in an order that rotates per repeat, so
    a neighbour's load hits all variants alike; ratios are then taken per repeat (paired)."""
    out: dict[str, list[float]] = {k: [] for k in variants}
    names = list(variants)
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            out[name].append(variants[name]())
    return out


def paired(num: list[float], den: list[float]) -> dict[str, float]:
    """Median and range of the per-repeat ratios num/den."""
    return summary([a / b for a, b in zip(num, den, strict=True)])


def summary(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --------------------------------------------------------------------------- the bench


def bench(repeats: int, batches: int, batch: int) -> dict:
    torch.set_num_threads(1)  # eager's threads; the hwpart stages set theirs per stage
    results: dict = {"rows": []}
    chain = linear_chain()
    lg_chain = capture(chain, (512,), "linear_chain")
    jet = jet_tagger()
    lg_jet = capture(jet, (16,), "jet_tagger")

    for label, model, lg, width, nb in (
        ("linear_chain 8x512", chain, lg_chain, 512, batches),
        ("jet_tagger", jet, lg_jet, 16, batches * 10),
    ):
        x = torch.randn(batch * nb, width, generator=torch.Generator().manual_seed(0))
        one = pipeline_for(lg, 1, threads=1)
        warm = x[: batch * 10]
        eager_throughput(model, warm, batch)
        one.run(warm, batch)
        thr = interleave({
            "eager": lambda m=model, x=x: eager_throughput(m, x, batch),
            "hwpart": lambda p=one, x=x: pipe_throughput(p, x, batch),
        }, repeats)
        lat = interleave({
            "eager": lambda m=model, x=x: eager_p50(m, x, batch),
            "hwpart": lambda p=one, x=x: pipe_p50(p, x, batch),
        }, repeats)
        one.close()
        thr_ratio = paired(thr["hwpart"], thr["eager"])
        p50_ratio = paired(lat["hwpart"], lat["eager"])
        p50_e, p50_h = statistics.median(lat["eager"]), statistics.median(lat["hwpart"])
        results["rows"].append({
            "row": "overhead", "model": label, "batch": batch, "threads": 1,
            "samples_per_repeat": len(x), "repeats": repeats,
            "eager_sps": summary(thr["eager"]), "hwpart_1stage_sps": summary(thr["hwpart"]),
            "throughput_ratio": thr_ratio["median"], "throughput_ratio_range": thr_ratio,
            "eager_p50_s": summary(lat["eager"]), "hwpart_1stage_p50_s": summary(lat["hwpart"]),
            "p50_ratio": p50_ratio["median"], "p50_ratio_range": p50_ratio,
            "p50_extra_s": p50_h - p50_e,
            "target": "throughput >= 0.95x; p50 <= 1.05x eager + 100 us",
            "met": bool(thr_ratio["median"] >= 0.95 and p50_h <= 1.05 * p50_e + 100e-6),
        })

    x = torch.randn(batch * batches, 512, generator=torch.Generator().manual_seed(1))
    one, one2, two = (pipeline_for(lg_chain, 1, 1), pipeline_for(lg_chain, 1, 2),
                      pipeline_for(lg_chain, 2, 1))
    for p in (one, one2, two):
        p.run(x[: batch * 10], batch)
    thr = interleave({
        "1stage_1thread": lambda: pipe_throughput(one, x, batch),
        "1stage_2threads": lambda: pipe_throughput(one2, x, batch),
        "2stage_1thread_each": lambda: pipe_throughput(two, x, batch),
    }, repeats)
    stage_nodes = [len(s.nodes) for s in two.staged.stages]
    for p in (one, one2, two):
        p.close()
    two_over_one = paired(thr["2stage_1thread_each"], thr["1stage_1thread"])
    ratio = two_over_one["median"]
    results["rows"].append({
        "row": "pipeline", "model": "linear_chain 8x512", "batch": batch,
        "samples_per_repeat": len(x), "repeats": repeats, "stage_nodes": stage_nodes,
        **{f"{k}_sps": summary(v) for k, v in thr.items()},
        "two_stage_over_one_stage": ratio, "two_stage_over_one_stage_range": two_over_one,
        "one_stage_2threads_over_1thread": paired(thr["1stage_2threads"],
                                                  thr["1stage_1thread"])["median"],
        "target": "2-stage >= 1.7x 1-stage (2 cores)", "met": bool(ratio >= 1.7),
    })
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "runtime.json"))
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batches", type=int, default=60, help="batches per measurement")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--quick", action="store_true", help="2 repeats, 30 batches (noisier)")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats, args.batches = 2, 30
    load_before = os.getloadavg()
    me = psutil.Process()
    psutil.cpu_percent(None)
    me.cpu_percent(None)
    t0 = time.perf_counter()
    res = bench(args.repeats, args.batches, args.batch)
    res["wall_s"] = time.perf_counter() - t0
    # what the rest of the machine used meanwhile: a busy neighbour takes cores a pipeline needs
    others = (psutil.cpu_percent(None) * (os.cpu_count() or 1) - me.cpu_percent(None)) / 100
    res["environment"] = {
        "torch": torch.__version__, "python": platform.python_version(),
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
        "other_processes_cores_busy": max(0.0, others),
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
    }
    console = Console(width=None if sys.stdout.isatty() else 160)
    t = Table(title=Text("hwpart runtime vs plain torch: median of per-repeat ratios [min-max]"))
    for col in ("row", "model", "figure", "value", "target", "met"):
        t.add_column(col)
    for r in res["rows"]:
        if r["row"] == "overhead":
            rr = r["throughput_ratio_range"]
            t.add_row("overhead", r["model"], "throughput hwpart/eager",
                      f"{r['throughput_ratio']:.3f}x [{rr['min']:.2f}-{rr['max']:.2f}]  "
                      f"({r['eager_sps']['median']:,.0f} vs "
                      f"{r['hwpart_1stage_sps']['median']:,.0f} samples/s)", ">= 0.95x",
                      "yes" if r["throughput_ratio"] >= 0.95 else "no")
            e, h = r["eager_p50_s"]["median"], r["hwpart_1stage_p50_s"]["median"]
            ok = h <= 1.05 * e + 100e-6
            t.add_row("", "", "p50 per batch hwpart/eager",
                      f"{r['p50_ratio']:.3f}x  ({e * 1e6:,.0f} vs {h * 1e6:,.0f} us, "
                      f"+{r['p50_extra_s'] * 1e6:,.0f} us)", "<= 1.05x + 100 us",
                      "yes" if ok else "no")
        else:
            sps = {k: r[f"{k}_sps"]["median"] for k in
                   ("1stage_1thread", "1stage_2threads", "2stage_1thread_each")}
            rr = r["two_stage_over_one_stage_range"]
            t.add_row("pipeline", r["model"], "2 stages x 1 thread / 1 stage x 1 thread",
                      f"{r['two_stage_over_one_stage']:.3f}x [{rr['min']:.2f}-{rr['max']:.2f}]  "
                      f"({sps['2stage_1thread_each']:,.0f}"
                      f" vs {sps['1stage_1thread']:,.0f} samples/s)", ">= 1.7x",
                      "yes" if r["met"] else "no")
            t.add_row("", "", "1 stage x 2 threads / 1 stage x 1 thread",
                      f"{r['one_stage_2threads_over_1thread']:.3f}x  "
                      f"({sps['1stage_2threads']:,.0f} samples/s)", "(reference)", "")
    console.print(t)
    env = res["environment"]
    console.print(f"other processes kept {env['other_processes_cores_busy']:.2f} of "
                  f"{env['cpus']} CPUs busy meanwhile (load average before/after "
                  f"{env['loadavg_before'][0]:.2f} / {env['loadavg_after'][0]:.2f}); "
                  f"{res['wall_s']:.1f} s")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    console.print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
