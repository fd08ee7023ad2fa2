"""The timeline PNG: throughput, p99 latency and per-device load over a run, with the NPM's events.

Why one picture: the issue's "what it must show" is a story in time -- a slowdown
injected, detected, a move decided and swapped in, throughput recovering (or a
move rolled back). Three panels share the time axis so a vertical event line
reads across all of them. Per-device load is the stages' busy share summed by
the device they ran on in that interval (a device running two stage threads can
exceed 1); a device whose stages report modeled service (the simulated board) is
labelled "(modeled)", as everything simulated is.

Events and snapshots must share a clock (``Event.t_s`` and ``Snapshot.t_s``):
make the :class:`hwpart.npm.events.EventLog` with the monitor's clock.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from hwpart.npm.events import KINDS, Event  # noqa: E402

#: Colour per event kind: problems warm, actions blue/purple, good outcomes green.
EVENT_COLORS: dict[str, str] = {
    "injected": "#d62728",
    "restored": "#ff9896",
    "skipped": "#c7c7c7",
    "detected": "#ff7f0e",
    "decided": "#9467bd",
    "rejected": "#c5b0d5",
    "swapped": "#1f77b4",
    "recovered": "#2ca02c",
    "rolled_back": "#8c564b",
    "fault": "#000000",
    "returned": "#17becf",
    "verified": "#98df8a",
}
assert set(EVENT_COLORS) == set(KINDS)

#: Short labels drawn next to the lines.
EVENT_LABELS: dict[str, str] = {k: k.replace("_", " ") for k in KINDS}

DEVICE_COLORS = {"cpu": "#4c72b0", "gpu": "#55a868", "fpga": "#c44e52"}  # as hwpart.plot


def _nan(x: float | None) -> float:
    return math.nan if x is None else float(x)


def device_load(history: Sequence[Any]) -> tuple[dict[str, list[float]], set[str]]:
    """Busy share per device per snapshot, and the devices whose figures are modeled.

    A stage whose service is a simulated board's modeled time counts that: the
    interval's modeled service (from the cumulative per-sample figure) over the
    interval -- the board's load, not the simulator's host time in the device call
    (the stage's ``busy``). Other stages count their ``busy`` share.
    """
    names: list[str] = []
    for snap in history:
        for st in snap.stages:
            if st.device not in names:
                names.append(st.device)
    load = {d: [math.nan] * len(history) for d in names}
    modeled: set[str] = set()
    prev: dict[str, float] = {}  # stage -> cumulative modeled service seconds
    for i, snap in enumerate(history):
        sums: dict[str, float] = {}
        for st in snap.stages:
            per = getattr(st, "service_per_sample_s", None)
            if getattr(st, "service_modeled", False) and per is not None:
                modeled.add(st.device)
                total = per * st.samples
                done = total - prev.get(st.name, 0.0)
                prev[st.name] = total
                if snap.interval_s > 0:
                    sums[st.device] = sums.get(st.device, 0.0) + max(0.0, done) / snap.interval_s
            elif st.busy is not None:
                sums[st.device] = sums.get(st.device, 0.0) + st.busy
        for d, v in sums.items():
            load[d][i] = v
    return load, modeled


def draw_timeline(history: Sequence[Any], events: Sequence[Event], path: str | Path,
                  title: str = "") -> Path:
    """Draw ``history`` (monitor snapshots) and ``events`` to a PNG at ``path``; returns it.

    An empty history is refused (ValueError): a run with no snapshot has no time axis,
    and an empty picture would read as "nothing happened".
    """
    history = list(history)
    if not history:
        raise ValueError("draw_timeline: the history has no snapshots (was the monitor "
                         "started with an interval, and did the run last one?)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    t = [float(s.t_s) for s in history]
    tput = [_nan(s.throughput_sps) for s in history]
    p99_ms = [_nan(s.end_to_end.p99_s) * 1e3 for s in history]
    load, modeled = device_load(history)

    fig, (ax_t, ax_l, ax_d) = plt.subplots(3, 1, figsize=(11, 7.5), sharex=True,
                                           gridspec_kw={"height_ratios": [1.2, 1, 1]})
    ax_t.plot(t, tput, color="#333333", lw=1.4, marker=".", ms=3)
    ax_t.set_ylabel("throughput\n(samples/s)")
    ax_t.set_ylim(bottom=0)
    ax_l.plot(t, p99_ms, color="#7f7f7f", lw=1.4, marker=".", ms=3)
    ax_l.set_ylabel("end-to-end p99\n(ms per batch)")
    ax_l.set_ylim(bottom=0)
    for i, (dev, ys) in enumerate(load.items()):
        kind = dev.rstrip("0123456789")
        color = DEVICE_COLORS.get(kind, plt.cm.tab10(i % 10))
        label = f"{dev} (modeled)" if dev in modeled else dev
        ax_d.plot(t, ys, lw=1.4, color=color, label=label,
                  ls="--" if dev in modeled else "-")
    ax_d.set_ylabel("device load\n(busy share)")
    peak = max((v for ys in load.values() for v in ys if v == v), default=1.0)
    ax_d.set_ylim(0, max(1.0, peak) * 1.3)  # headroom: the legend sits above the lines
    ax_d.set_xlabel("time since the run started (s)")
    if load:
        ax_d.legend(loc="upper left", fontsize=8, ncol=min(4, len(load)), framealpha=0.85)

    # events: a line across the three panels, a label at the top of the first
    t0, t1 = min(t), max(t)
    shown: list[str] = []
    label_y = 0.98
    last_x = -math.inf
    span = max(t1 - t0, 1e-9)
    for ev in sorted(events, key=lambda e: e.t_s):
        color = EVENT_COLORS.get(ev.kind, "#999999")
        for ax in (ax_t, ax_l, ax_d):
            ax.axvline(ev.t_s, color=color, lw=1.1, ls=":" if ev.kind == "rejected" else "-",
                       alpha=0.85)
        where = ev.stage or ev.device or ""
        text = EVENT_LABELS.get(ev.kind, ev.kind) + (f" {where}" if where else "")
        # labels that would overlap step down instead of piling up on each other
        label_y = label_y - 0.13 if (ev.t_s - last_x) < 0.06 * span and label_y > 0.3 else 0.98
        last_x = ev.t_s
        ax_t.text(ev.t_s, label_y, " " + text[:22], transform=ax_t.get_xaxis_transform(),
                  rotation=0, ha="left", va="top", fontsize=7.5, color=color,
                  bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                        "alpha": 0.75})
        if ev.kind not in shown:
            shown.append(ev.kind)
    if shown:
        handles = [Line2D([], [], color=EVENT_COLORS.get(k, "#999999"), lw=2,
                          label=EVENT_LABELS.get(k, k)) for k in KINDS if k in shown]
        fig.legend(handles=handles, loc="lower center", ncol=len(handles),
                   fontsize=8, frameon=False, title="events", title_fontsize=8)
    lo = min([t0, *(e.t_s for e in events)])
    hi = max([t1, *(e.t_s for e in events)])
    # from the start of the first interval (the run's clock starts at 0, before a snapshot)
    lo = min(lo, t0 - float(history[0].interval_s or 0.0))
    if hi - lo < 1e-9:
        lo -= 1.0
    for ax in (ax_t, ax_l, ax_d):
        ax.grid(True, alpha=0.3)
        ax.set_xlim(lo, hi)
    note = f" ({', '.join(sorted(modeled))}: modeled time)" if modeled else ""
    fig.suptitle((title or "hwpart run timeline") + note, fontsize=11)
    fig.tight_layout(rect=(0, 0.07 if shown else 0, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
