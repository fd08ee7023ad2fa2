"""Cold `hwpart overlay build` wall time: LeNet-5 on a KV260 slot (issue 12, item 7).

    python bench/overlay_build.py [--board kv260] [--model host/models.py:lenet5]
        [--input-shape 1,32,32] [--jobs 2] [--timeout 1800]
        [--source DIR --label before] [--out bench/results/overlay_build.json]

Runs the build as a user would, in a subprocess with a fresh, empty ``--cache``
folder (cold: every hls4ml conversion and g++ compile happens) and its stderr a
pipe, so the per-RM progress lines are what a log would show; they are kept in
the results with the seconds each step began. ``--source DIR`` runs another
checkout's ``hwpart`` (e.g. ``git archive <commit> | tar -x -C DIR``) to measure
an older version the same way (it needs this ``host/models.py``, with
``lenet5``); a run past ``--timeout`` is stopped and reported as "> timeout". Results of each ``--label`` are merged into the JSON file, so the
before and after runs sit side by side.

What is measured: wall time of the whole command, CPU time of it and its
children (hls4ml in the pool workers, g++), the host's CPU count and load. The
machine is shared, so wall time includes waiting for the cores; the CPU time
says how much work the build itself did. Resource and cycle figures in the
manifest are *estimated* (analytical model), not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]


def run(args: argparse.Namespace) -> dict:
    source = Path(args.source).resolve() if args.source else ROOT
    work = Path(tempfile.mkdtemp(prefix="overlay-bench-"))
    cache, out = work / "cache", work / "bundle"
    cmd = [sys.executable, "-m", "hwpart", "overlay", "build", args.model, "--input-shape",
           args.input_shape, "--board", args.board, "--jobs", str(args.jobs), "--cache",
           str(cache), "-o", str(out)]
    env = dict(os.environ, PYTHONPATH=str(source))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()
    t0 = time.perf_counter()
    # its own session, so a build past the timeout is stopped with its pool workers and g++
    proc = subprocess.Popen(cmd, cwd=source, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=args.timeout)
        rc, timed_out = proc.returncode, False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        rc, timed_out = None, True
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    row = {
        "label": args.label, "source": str(source), "command": " ".join(cmd[1:]),
        "board": args.board, "model": args.model, "jobs": args.jobs,
        "wall_s": round(wall, 1), "timed_out": timed_out, "timeout_s": args.timeout,
        "returncode": rc,
        # a killed build's g++ is not a child this process waits for: its CPU is not counted
        "cpu_s": None if timed_out else round(
            after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1),
        "cpus": os.cpu_count(), "loadavg_at_start": [round(v, 2) for v in load],
        "progress_lines": [ln for ln in err.splitlines() if "] rm" in ln],
        "host": platform.node(), "python": platform.python_version(),
        "when": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    manifest = out / "manifest.yaml"
    if manifest.is_file():
        m = yaml.safe_load(manifest.read_text())
        row["rms"] = [{"name": r["name"], "layers": len(r["layers"]), "reuse": r["reuse"],
                       "ii_cycles_est": r["cycles"]["ii"], "dsp_est": r["resources"]["dsp"],
                       "lut_est": r["resources"]["lut"], "max_abs_err": r["accuracy"][
                           "max_abs_err"]} for r in m["rms"]]
        row["rejected"] = [r["reason"] for r in m.get("rejected", [])]
    elif not timed_out:
        row["stderr_tail"] = err[-2000:]
    shutil.rmtree(work, ignore_errors=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="host/models.py:lenet5")
    ap.add_argument("--input-shape", default="1,32,32")
    ap.add_argument("--board", default="kv260")
    ap.add_argument("--jobs", type=int, default=2, help="parallel hls4ml compiles")
    ap.add_argument("--timeout", type=int, default=1800, help="seconds before giving up")
    ap.add_argument("--source", help="another checkout to run (default: this one)")
    ap.add_argument("--label", default="after", help="name of this run in the results")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "overlay_build.json"))
    args = ap.parse_args()

    row = run(args)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.is_file() else {}
    data.setdefault("runs", {})[args.label] = row
    data["note"] = ("cold cache (fresh --cache folder), stderr a pipe; wall time on a shared "
                    "machine, cpu_s = the build's own CPU time incl. children; RM resources "
                    "and II are estimated (analytical model)")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")

    t = Table(title=f"cold `hwpart overlay build` of {args.model} for {args.board} "
                    "(wall time; RM figures estimated)")
    for col in ("run", "wall", "CPU", "cpus / load", "RMs", "II cyc (est.)", "reuse"):
        t.add_column(col)
    for label, r in data["runs"].items():
        wall = f"> {r['timeout_s']} s" if r["timed_out"] else f"{r['wall_s']:.1f} s"
        rms = r.get("rms") or []
        cpu = "-" if r["cpu_s"] is None else f"{r['cpu_s']:.1f} s"
        t.add_row(label, wall, cpu,
                  f"{r['cpus']} / {r['loadavg_at_start'][0]}", str(len(rms)) if rms else "-",
                  ", ".join(str(x["ii_cycles_est"]) for x in rms) or "-",
                  "; ".join(", ".join(f"{k}={v}" for k, v in x["reuse"].items()) for x in rms)
                  or "-")
    Console().print(t)
    for ln in row["progress_lines"]:
        print(ln)
    print(f"wrote {out}")
    return 0 if row["returncode"] == 0 or row["timed_out"] else 1


if __name__ == "__main__":
    sys.exit(main())
