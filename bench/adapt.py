"""Live re-allocation against static plans, scenario by scenario.

    python bench/adapt.py [--out bench/results/adapt.json] [--scenarios a,b,...]

The jet tagger on the simulated PYNQ-Z2 (the overlay `make run` builds: `_0.._3`
and `_4.._5` as two dense RMs), batch 256, the first RM placed on the FPGA.
Each shipped scenario runs three ways, side by side in this one process:

* static -- the plan as it is, under the scenario's events;
* adaptive -- the same plan with the NPM moving layers live;
* oracle -- the best static plan *for the post-event conditions*, chosen knowing
  the event (the NPM's own candidates priced with the event's effect put on the
  device it hits: a clock-down's factor on its slot, the failed device taken
  out), run static under the same events.

Printed: throughput over the whole run and during the event, the ratios
adaptive/static and adaptive/oracle, the times from injection to detection, to
the new route and to recovery, and the items lost, duplicated or reordered (the
ordered collector raises on any; a run that completes has none). FPGA timing is
the simulated board's *modeled* timing; CPU figures are measured on this host.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hwpart.boards import load_board  # noqa: E402
from hwpart.costs import auto_plan, build_problem, parse_pins, profile  # noqa: E402
from hwpart.devices.cpu import CpuDevice  # noqa: E402
from hwpart.devices.fpga import FpgaDevice  # noqa: E402
from hwpart.errors import HwpartError  # noqa: E402
from hwpart.graph import load_graph  # noqa: E402
from hwpart.monitor import Monitor  # noqa: E402
from hwpart.npm.candidates import Fabric, candidates, layout_of, padded  # noqa: E402
from hwpart.npm.evaluate import evaluate_moves, select  # noqa: E402
from hwpart.npm.loop import NpmConfig  # noqa: E402
from hwpart.npm.scenario import load_scenario  # noqa: E402
from hwpart.npm.session import run_adaptive  # noqa: E402
from hwpart.overlay import load_manifest  # noqa: E402
from hwpart.overlay.build import BuildOptions, build_overlay  # noqa: E402
from hwpart.partition import unit_slots  # noqa: E402
from hwpart.stages import segment  # noqa: E402

SCENARIOS = ("fpga-slowdown", "fpga-slowdown-3x", "cpu-contention", "fpga-failure",
             "input-rate")
BUNDLE = ROOT / "bitstreams" / "jet_tagger-pynq-z2"
BATCH = 256


def oracle_layout(sc: Any, plan: Any, segs: Any, fabric: Fabric, problem: Any) -> Any:
    """The best layout for the conditions during the scenario's first event, known in
    advance; None when no event changes what the devices can do (the plan stands)."""
    now = padded(layout_of(plan, segs))
    ev = sc.events[0]
    ratios: dict[str, float] = {}
    down: set[str] = set()
    kind = type(ev).__name__
    if kind == "FpgaSlowdown":
        for i, p in enumerate(now):
            if ev.slot in unit_slots(p.unit):
                ratios[f"stage{i}"] = float(getattr(ev, "factor", 1.0) or 1.0)
    elif kind == "DeviceFailure":
        down.add(ev.device)
    elif kind == "CpuContention":
        for i, p in enumerate(now):
            if p.unit == "cpu" and not p.empty:
                ratios[f"stage{i}"] = 2.0  # two busy processes on two cores: half a core
    else:
        return None
    moves = candidates(now, segs, fabric, down=down)
    slot_rm = [None] * fabric.slots
    _, priced = evaluate_moves(moves, now, segs, fabric, problem, ratios, slot_rm)
    if down:  # the current layout is not possible: the best of the others
        best = max((p for p in priced if not any(u.unit.startswith(tuple(down))
                                                 for u in p.move.layout if not u.empty)),
                   key=lambda p: p.throughput_sps, default=None)
    else:
        best = select(priced, margin=1.0)
    return None if best is None else best.move.layout


def summarise(run: Any, history: list[Any], sc: Any) -> dict[str, Any]:
    ev = sc.events[0]
    t0, t1 = ev.at, (ev.end if ev.duration is not None else sc.end_s)
    during = [s for s in history if t0 <= s.t_s <= t1 and s.throughput_sps is not None]
    span = sum(s.interval_s for s in during)
    rate = sum(s.interval_s * s.throughput_sps for s in during) / span if span else None
    log = run.log
    inj = log.first("injected")
    t_inj = inj.t_s if inj is not None else None

    def after(kind: str) -> float | None:
        if t_inj is None:
            return None
        e = log.first(kind, after_s=t_inj)
        return None if e is None else e.t_s - t_inj

    return {"throughput_sps": run.result.throughput_sps, "during_event_sps": rate,
            "samples": run.result.samples, "to_detection_s": after("detected"),
            "to_new_route_s": after("swapped"), "to_recovery_s": after("recovered"),
            "moves": sum(1 for e in log.events if e.kind == "swapped"),
            "lost_dup_reordered": 0, "events": log.to_json()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "adapt.json"))
    ap.add_argument("--scenarios", default=",".join(SCENARIOS))
    ap.add_argument("--settle", type=float, default=None, metavar="S",
                    help="let the NPM settle once on measured costs after S s of warm-up "
                         "(the run command's default is 1 s); without it only departures "
                         "from the baseline trigger it, so each scenario's event is what "
                         "it reacts to")
    args = ap.parse_args(argv)
    config = NpmConfig(settle_s=args.settle)
    console = Console(width=None if sys.stdout.isatty() else 180)
    lg = load_graph("host/models.py:jet_tagger", "16")
    board = load_board("pynq-z2")
    build_overlay(lg, board, BuildOptions(out=BUNDLE, slots=2, groups="_0-_3,_4-_5",
                                          cache=ROOT / ".hwpart-cache", jobs=1))
    manifest = load_manifest(BUNDLE)
    table = profile(lg, [1, BATCH], ["cpu"], threads=1)
    plan = auto_plan(lg, batch=BATCH, devices=["cpu", "fpga"], table=table, overlay=manifest,
                     pins=parse_pins(lg, "_0-_3=fpga"))
    problem = build_problem(lg, table, BATCH, ["cpu", "fpga"], board, overlay=manifest)
    rows = []
    for name in args.scenarios.split(","):
        sc = load_scenario(name)
        res: dict[str, Any] = {"scenario": name, "description": sc.description}
        for way in ("static", "adaptive", "oracle"):
            devices = {"cpu": CpuDevice(threads=1),
                       "fpga": FpgaDevice(BUNDLE, fpga="sim", pace=True)}
            layout = None
            if way == "oracle":
                fabric = Fabric.of_bundle(devices["fpga"]._load_bundle())
                segs = segment(lg, plan, groups=fabric.groups)
                layout = oracle_layout(sc, plan, segs, fabric, problem)
                if layout is None:
                    res[way] = None
                    continue
                res["oracle_layout"] = [(p.unit, p.first, p.last) for p in layout]
            mon = Monitor(interval_s=0.1)
            try:
                run = run_adaptive(lg, plan, problem, devices, batch=BATCH,
                                   seconds=sc.end_s + 2, monitor=mon, scenario=sc,
                                   adapt=(way == "adaptive"), layout=layout,
                                   config=config)
            except HwpartError as exc:  # a static plan has no one to take a failure over
                res[way] = {"failed": str(exc).splitlines()[0], "during_event_sps": 0.0,
                            "throughput_sps": None, "to_detection_s": None,
                            "to_new_route_s": None, "to_recovery_s": None, "moves": 0}
                continue
            res[way] = summarise(run, list(mon.history), sc)
        rows.append(res)
        console.print(f"{name}: done")

    t = Table(title=f"live re-allocation vs static plans, jet tagger, batch {BATCH} "
                    "(FPGA timing modeled on the simulated board)")
    for col in ("scenario", "static", "adaptive", "oracle", "adaptive/static (event)",
                "adaptive/oracle (event)", "detect", "new route", "recovered", "moves",
                "lost/dup/reord"):
        t.add_column(col, justify="left" if col == "scenario" else "right")

    def k(v: float | None) -> str:
        return "n/a" if v is None else f"{v / 1000:,.0f}k/s"

    def s_(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f} s"

    for r in rows:
        st, ad, orc = r["static"], r["adaptive"], r["oracle"]
        ratio = (ad["during_event_sps"] / st["during_event_sps"]
                 if st["during_event_sps"] and ad["during_event_sps"] else None)
        if st.get("failed"):
            console.print(f"{r['scenario']}: the static plan failed: {st['failed']}")
        ratio_o = (ad["during_event_sps"] / orc["during_event_sps"]
                   if orc and orc["during_event_sps"] and ad["during_event_sps"] else None)
        r["adaptive_over_static_during"] = ratio
        r["adaptive_over_oracle_during"] = ratio_o
        t.add_row(r["scenario"], "failed" if st.get("failed") else k(st["during_event_sps"]),
                  k(ad["during_event_sps"]),
                  k(orc["during_event_sps"]) if orc else "n/a (plan stands)",
                  "n/a" if ratio is None else f"{ratio:.2f}x",
                  "n/a" if ratio_o is None else f"{ratio_o:.2f}x",
                  s_(ad["to_detection_s"]), s_(ad["to_new_route_s"]), s_(ad["to_recovery_s"]),
                  str(ad["moves"]), "0/0/0")
    console.print(t)
    console.print("throughput columns: mean samples/s while the first event is in effect")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"rows": rows, "batch": BATCH, "settle_s": args.settle,
                               "machine": platform.machine(),
                               "cpus": os.cpu_count()}, indent=2, default=str) + "\n")
    console.print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
