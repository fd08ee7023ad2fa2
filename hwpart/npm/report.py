"""What an adaptive run adds to the run report: the event log, the moves, the timeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def adaptive_report(run: Any, history: list[Any], timeline: str | None,
                    scenario: str | None) -> dict[str, Any]:
    """The event log (injected, detected, decided, swapped, recovered, rolled back... each
    with its time), the final stages, and the timeline PNG when one was asked for."""
    events = run.log.to_json()
    out: dict[str, Any] = {
        "scenario": scenario, "adapt": run.npm is not None, "events": events,
        "moves": sum(1 for e in events if e["kind"] == "swapped"),
        "final_stages": ([{"stage": f"stage{i}", "unit": p.unit, "segments": [p.first, p.last]}
                          for i, p in enumerate(run.npm.layout)] if run.npm is not None
                         else None),
        "timeline": None,
    }
    if timeline and history:
        from hwpart.npm.timeline import draw_timeline

        title = f"{scenario or 'run'} ({'adaptive' if run.npm is not None else 'static'})"
        out["timeline"] = str(draw_timeline(history, run.log.events, Path(timeline), title))
    return out


def print_adaptive(rep: dict[str, Any], console: Any) -> None:
    from rich.table import Table

    t = Table(title="event log (FPGA timing on the simulated board is modeled)")
    for col in ("t", "kind", "what", "gain"):
        t.add_column(col, justify="right" if col in ("t", "gain") else "left")
    for e in rep["events"]:
        gain = e.get("predicted_gain")
        t.add_row(f"{e['t_s']:.2f} s", e["kind"], e["what"],
                  "" if gain in (None, "nan") else f"x{float(gain):.2f}")
    console.print(t)
    if rep.get("final_stages"):
        console.print("stages at the end: " + ", ".join(
            f"{s['stage']} on {s['unit']}" for s in rep["final_stages"]
            if s["segments"][1] > s["segments"][0]))
    if rep.get("timeline"):
        console.print(f"timeline written to {rep['timeline']}")
