"""The NPM's event log: every injection, detection, decision and move, timestamped.

Why a log of its own: the issue asks that every decision go on record with its
reason and predicted gain, that the JSON report hold injected / detected /
decided / swapped / recovered / rolled back with timestamps, and that the
timeline PNG mark them. Several threads write to it (the scenario injector, the
NPM's control loop on the monitor thread, a fault handler on a worker thread),
so :meth:`EventLog.add` takes a lock; the live view subscribes and prints each
event as it happens.

Timestamps are seconds on the *run's* clock: give the log the same clock as the
monitor's snapshots (``Snapshot.t_s``) so the timeline can put both on one axis.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: What an event can be. A fixed set, so the report, the timeline's colours and
#: bench/adapt.py's "time from injection to detection" all read the same names.
KINDS: tuple[str, ...] = (
    "injected",     # a scenario changed the conditions (contention, slowdown, failure...)
    "restored",     # a scenario undid its injection
    "skipped",      # a scenario event had no target here (why in its line)
    "detected",     # analyse found a sustained departure or a failure
    "decided",      # a move was selected, with its predicted gain
    "rejected",     # a candidate move was turned down (and why)
    "swapped",      # the new route took over (routing swapped at a sequence boundary)
    "recovered",    # throughput/latency back where the decision predicted
    "rolled_back",  # verify found the move made things worse and undid it
    "fault",        # a device raised or timed out and was taken out
    "returned",     # a device taken out is usable again
    "verified",     # a new route's first outputs matched the old route's
)


@dataclass
class Event:
    """One thing that happened. ``predicted_gain`` is a ratio (new/old throughput, say)."""

    t_s: float
    kind: str
    what: str
    device: str | None = None
    stage: str | None = None
    predicted_gain: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A dict that ``json.dumps(..., allow_nan=False)`` accepts."""
        return {"t_s": _json_safe(self.t_s), "kind": self.kind, "what": self.what,
                "device": self.device, "stage": self.stage,
                "predicted_gain": _json_safe(self.predicted_gain),
                "details": _json_safe(self.details)}

    def line(self) -> str:
        """One line for a console: time, kind, where, what, gain."""
        where = "/".join(x for x in (self.device, self.stage) if x)
        gain = f"  (predicted x{self.predicted_gain:.2f})" if self.predicted_gain is not None \
            else ""
        return f"{self.t_s:8.3f} s  {self.kind:<11} {where + ': ' if where else ''}{self.what}{gain}"


def _json_safe(obj: Any) -> Any:
    """Details come from anywhere (dataclasses, numpy scalars, Paths, inf gains): make them
    plain JSON. Non-finite floats become strings ("inf"), which strict JSON allows."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _json_safe(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in obj]
    item = getattr(obj, "item", None)  # numpy / torch scalars
    if callable(item):
        try:
            return _json_safe(item())
        except (TypeError, ValueError):
            pass
    return str(obj)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; one of {', '.join(KINDS)}")


class EventLog:
    """Thread-safe, append-only list of :class:`Event`.

    ``clock``: seconds since the run started (default: ``perf_counter`` since this
    log was made). ``subscriber``: called with each event as it is added, on the
    adding thread; a failing subscriber is reported on stderr and never breaks the
    caller (a display bug must not stop a migration half-way).
    """

    def __init__(self, clock: Callable[[], float] | None = None,
                 subscriber: Callable[[Event], None] | None = None) -> None:
        if clock is None:
            t0 = time.perf_counter()
            clock = lambda: time.perf_counter() - t0  # noqa: E731
        self.clock = clock
        self._events: list[Event] = []
        self._subscribers: list[Callable[[Event], None]] = []
        if subscriber is not None:
            self._subscribers.append(subscriber)
        # re-entrant: a subscriber may add an event of its own (e.g. "verified" after a print)
        self._lock = threading.RLock()

    def subscribe(self, fn: Callable[[Event], None]) -> None:
        with self._lock:
            self._subscribers.append(fn)

    def add(self, kind: str, what: str, *, device: str | None = None, stage: str | None = None,
            predicted_gain: float | None = None, details: dict[str, Any] | None = None,
            t_s: float | None = None) -> Event:
        """Record one event, stamped now (or at ``t_s`` on the run's clock); returns it.

        An unknown ``kind`` is a programming error (ValueError). ``what`` is folded to
        one line, so a reason built from an exception message still prints as one.
        """
        _check_kind(kind)
        what = " ".join(str(what).split())
        with self._lock:
            ev = Event(self.clock() if t_s is None else float(t_s), kind, what, device, stage,
                       None if predicted_gain is None else float(predicted_gain),
                       dict(details or {}))
            self._events.append(ev)
            # under the lock, so every subscriber sees the events in the log's order
            for fn in self._subscribers:
                try:
                    fn(ev)
                except Exception as exc:
                    print(f"hwpart npm: event subscriber failed: {exc!r}", file=sys.stderr)
        return ev

    @property
    def events(self) -> list[Event]:
        """A copy: readers iterate it while other threads keep adding."""
        with self._lock:
            return list(self._events)

    def __len__(self) -> int:
        with self._lock:
            return len(self._events)

    def of_kind(self, *kinds: str) -> list[Event]:
        """The events of any of ``kinds``, in order (``of_kind("swapped", "rolled_back")``)."""
        for k in kinds:
            _check_kind(k)
        return [e for e in self.events if e.kind in kinds]

    def first(self, kind: str, after_s: float = -math.inf) -> Event | None:
        """The first event of ``kind`` at or after ``after_s`` (injection -> detection times)."""
        _check_kind(kind)
        return next((e for e in self.events if e.kind == kind and e.t_s >= after_s), None)

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]

    def write_jsonl(self, path: str | Path) -> Path:
        """One JSON object per line; the parent folder is made. Returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as f:
            for row in self.to_json():
                f.write(json.dumps(row, allow_nan=False) + "\n")
        return path


def events_from_json(rows: Iterable[dict[str, Any]]) -> list[Event]:
    """Events back from :meth:`EventLog.to_json` rows (a report, a JSONL file's lines)."""
    out = []
    for r in rows:
        _check_kind(r["kind"])
        gain = r.get("predicted_gain")
        out.append(Event(float(r["t_s"]), r["kind"], r["what"], r.get("device"), r.get("stage"),
                         None if gain is None else float(gain), dict(r.get("details") or {})))
    return out
