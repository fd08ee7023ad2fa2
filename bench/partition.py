"""Partitioner benchmark: solver time and optimality gap on random chains and DAGs.

    python bench/partition.py [--out bench/results/partition.json] [--quick]

Cases (targets in issue #2): 10 nodes vs brute force; chain of 1,000 nodes;
DAG of 200 nodes solved to optimality; DAG of 5,000 nodes with the heuristic,
its gap measured against the MILP's LP-relaxation bound. Each row reports the
solver's wall time, the objective, and the gap to the best bound known.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import platform
import statistics
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("oracle", ROOT / "tests" / "oracle.py")
oracle = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(oracle)  # the same generator and brute force the tests use

from hwpart.partition import lower_bound, solve  # noqa: E402


def run_case(name: str, n: int, chain: bool, objective: str, method: str, seeds: list[int],
             reference: str, slots: int = 2) -> dict:
    times, gaps, values = [], [], []
    for seed in seeds:
        problem = oracle.random_problem(seed, n, chain, slots=slots)
        t0 = time.perf_counter()
        sol = solve(problem, objective, method, time_limit_s=120)
        dt = time.perf_counter() - t0
        value = sol.evaluation.value(objective)
        if reference == "brute":
            best, _ = oracle.brute_force(problem, objective)
        elif reference == "self" and sol.optimal:
            best = value
        else:
            # LP relaxation: a lower bound, so the gap is an upper bound on the true gap
            # (for throughput the bound also holds the 1e-6 x latency tie-break: a
            # difference far below the printed precision)
            best = lower_bound(problem, objective)
        times.append(dt)
        values.append(value)
        gaps.append(max(0.0, (value - best) / value) if value > 0 else 0.0)
    return {
        "case": name, "nodes": n, "graph": "chain" if chain else "dag", "objective": objective,
        "solver": method, "runs": len(seeds), "time_s_median": statistics.median(times),
        "time_s_max": max(times), "gap_max": max(gaps), "reference": reference,
        "value_median": statistics.median(values),
    }


CASES = [
    # name, nodes, chain, objective, solver, reference, target seconds
    ("10 nodes vs brute force", 10, True, "latency", "dp", "brute", None),
    ("10 nodes vs brute force", 10, True, "throughput", "milp", "brute", None),
    ("10 nodes vs brute force", 10, False, "latency", "milp", "brute", None),
    ("10 nodes vs brute force", 10, False, "throughput", "milp", "brute", None),
    ("chain 1,000", 1000, True, "latency", "dp", "lp", 0.5),
    ("chain 1,000", 1000, True, "throughput", "greedy", "lp", 0.5),
    ("DAG 200 (optimal)", 200, False, "latency", "milp", "self", 5.0),
    ("DAG 200 (optimal)", 200, False, "throughput", "milp", "self", 5.0),
    ("DAG 5,000", 5000, False, "latency", "greedy", "lp", 2.0),
    ("DAG 5,000", 5000, False, "throughput", "greedy", "lp", 2.0),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "partition.json"))
    ap.add_argument("--quick", action="store_true", help="one seed per case")
    args = ap.parse_args()
    rows = []
    console = Console(width=160)
    for name, n, chain, objective, method, ref, target in CASES:
        seeds = [0] if args.quick or n >= 1000 else [0, 1, 2]
        console.print(f"[dim]running {name} / {objective} / {method}…[/]")
        row = run_case(name, n, chain, objective, method, seeds, ref)
        row["target_s"] = target
        row["meets_target"] = None if target is None else row["time_s_max"] <= target
        rows.append(row)
    t = Table(title="partitioner benchmark (random problems: cpu, gpu, 2 FPGA slots)")
    for col in ("case", "objective", "solver", "runs", "median time", "max time", "target",
                "gap (max)", "gap vs"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["case"], r["objective"], r["solver"], str(r["runs"]),
                  f"{r['time_s_median'] * 1e3:.1f} ms", f"{r['time_s_max'] * 1e3:.1f} ms",
                  "-" if r["target_s"] is None else
                  f"{'✓' if r['meets_target'] else '✗'} < {r['target_s']:g} s",
                  f"{r['gap_max']:.3%}", {"brute": "brute force", "self": "proved optimal",
                                          "lp": "LP bound"}[r["reference"]])
    console.print(t)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"python": platform.python_version(), "machine": platform.machine(),
            "when": time.strftime("%Y-%m-%d %H:%M:%S")}
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1,
                              default=lambda o: None if isinstance(o, float) and math.isnan(o)
                              else str(o)) + "\n")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    sys.exit(main())
