"""GPU check (needs a CUDA GPU; not run in CI): CPU+GPU plans against CPU eager torch.

    python bench/gpu_check.py [--out bench/results/gpu_check.json] [--samples 512] [--batch 64]

For each example model (and a Linear chain big enough for the GPU to matter)
and each plan shape -- all on the GPU, CPU->GPU, GPU->CPU, CPU->GPU->CPU -- it
runs the pipeline with the real devices and compares the output with eager
torch on the CPU, batch by batch. TF32 is switched off, so both sides compute
in float32 and differ only by summation order: the tolerance is
``|gpu - cpu| <= atol + rtol * |cpu|`` with rtol = 1e-4, atol = 1e-5.
Per-stage p50 times, throughput and the GPU's NVML figures are printed and
written to JSON.

Exit status: 0 all outputs within tolerance, 1 a mismatch or a failed run,
2 no usable GPU here (the reason is printed).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from host.models import EXAMPLES  # noqa: E402
from hwpart.devices import CpuDevice, GpuDevice  # noqa: E402
from hwpart.errors import HwpartError  # noqa: E402
from hwpart.graph import capture  # noqa: E402
from hwpart.monitor import device_summary, fmt_s  # noqa: E402
from hwpart.runtime import chain_plan, run_pipeline  # noqa: E402
from hwpart.stages import split  # noqa: E402

RTOL, ATOL = 1e-4, 1e-5
SHAPES = {
    "gpu": ["gpu"],
    "cpu>gpu": ["cpu", "gpu"],
    "gpu>cpu": ["gpu", "cpu"],
    "cpu>gpu>cpu": ["cpu", "gpu", "cpu"],
}


def linear_chain() -> nn.Module:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(8):
        layers += [nn.Linear(1024, 1024), nn.ReLU()]
    return nn.Sequential(*layers).eval()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "gpu_check.json"))
    ap.add_argument("--samples", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 160)

    gpu = GpuDevice()
    ok, reason = gpu.available()
    if not ok:
        console.print(f"gpu_check: no usable GPU here ({reason}); this check needs a CUDA GPU "
                      "and nvidia-ml-py. Nothing was run.")
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = CpuDevice()
    models = {name: (factory(), shape) for name, (factory, shape) in EXAMPLES.items()}
    models["linear_chain 8x1024"] = (linear_chain(), (1024,))
    rows = []
    failed = False
    for name, (model, shape) in models.items():
        lg = capture(model, shape, name)
        x = lg.example_input(args.samples, seed=1)
        with torch.inference_mode():
            ref = torch.cat([model(x[i:i + args.batch]) for i in range(0, len(x), args.batch)])
        for label, units in SHAPES.items():
            if len(units) > len(lg.compute_nodes):
                continue
            row: dict = {"model": name, "plan": label, "batch": args.batch,
                         "samples": args.samples}
            try:
                staged = split(lg, chain_plan(lg, units))
                run_pipeline(staged, {"cpu": cpu, "gpu": gpu}, x[: 2 * args.batch],
                             args.batch)  # warm-up: CUDA context, cuDNN autotuning
                t0 = time.perf_counter()
                res = run_pipeline(staged, {"cpu": cpu, "gpu": gpu}, x, args.batch)
                row["wall_s"] = time.perf_counter() - t0
                out = res.output()
                err = (out - ref).abs()
                row["max_abs_err"] = float(err.max())
                row["max_rel_err"] = float((err / ref.abs().clamp_min(1e-30)).max())
                row["within_tolerance"] = bool(torch.allclose(out, ref, rtol=RTOL, atol=ATOL))
                row["throughput_sps"] = res.throughput_sps
                row["stages"] = [{"name": s.name, "unit": s.unit, "device": s.device,
                                  "p50_s": s.latency_total.p50_s, "p95_s": s.latency_total.p95_s}
                                 for s in res.snapshot.stages]
                row["devices"] = device_summary(res.history or [res.snapshot])
                failed |= not row["within_tolerance"]
            except (HwpartError, RuntimeError) as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"
                failed = True
            rows.append(row)

    t = Table(title=f"CPU+GPU pipelines vs CPU eager (rtol {RTOL:g}, atol {ATOL:g}, TF32 off)")
    for col in ("model", "plan", "ok", "max abs err", "samples/s", "stage p50s"):
        t.add_column(col)
    for r in rows:
        if "error" in r:
            t.add_row(r["model"], r["plan"], "ERROR", r["error"][:60], "", "")
            continue
        t.add_row(r["model"], r["plan"], "yes" if r["within_tolerance"] else "NO",
                  f"{r['max_abs_err']:.2e}", f"{r['throughput_sps']:,.0f}",
                  " ".join(f"{s['unit']}:{fmt_s(s['p50_s'])}" for s in r["stages"]))
    console.print(t)
    props = torch.cuda.get_device_properties(0)
    result = {"gpu": props.name, "torch": torch.__version__, "cuda": torch.version.cuda,
              "rtol": RTOL, "atol": ATOL, "tf32": False, "rows": rows, "all_ok": not failed}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {out}; {'all within tolerance' if not failed else 'FAILURES'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
