"""The NPM's event log (hwpart.npm.events): kinds, clock, threads, JSON."""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from hwpart.npm.events import KINDS, Event, EventLog, events_from_json


def test_add_stamps_with_the_run_clock_and_folds_to_one_line():
    now = [1.25]
    log = EventLog(clock=lambda: now[0])
    ev = log.add("detected", "stage1 on fpga:\n  service 3.0x", device="fpga", stage="stage1",
                 details={"ratio": 3.0})
    assert ev == Event(1.25, "detected", "stage1 on fpga: service 3.0x", "fpga", "stage1", None,
                       {"ratio": 3.0})
    now[0] = 2.0
    assert log.add("decided", "move", predicted_gain=2).predicted_gain == 2.0
    assert log.add("injected", "at a set time", t_s=0.5).t_s == 0.5
    assert [e.t_s for e in log.events] == [1.25, 2.0, 0.5] and len(log) == 3
    assert "stage1" in ev.line() and "detected" in ev.line()


def test_default_clock_starts_near_zero():
    ev = EventLog().add("injected", "x")
    assert 0.0 <= ev.t_s < 1.0


def test_unknown_kind_is_a_programming_error():
    log = EventLog()
    with pytest.raises(ValueError, match="unknown event kind 'migrated'"):
        log.add("migrated", "x")
    with pytest.raises(ValueError):
        log.of_kind("swapped", "oops")
    assert len(log) == 0
    assert "rolled_back" in KINDS and len(KINDS) == 12


def test_of_kind_first_and_events_is_a_copy():
    log = EventLog(clock=iter([0.1, 0.2, 0.3, 0.4]).__next__)
    for k in ("injected", "detected", "swapped", "detected"):
        log.add(k, k)
    assert [e.t_s for e in log.of_kind("detected", "swapped")] == [0.2, 0.3, 0.4]
    assert log.first("detected", after_s=0.25).t_s == 0.4 and log.first("fault") is None
    copy = log.events
    copy.clear()
    assert len(log) == 4


@dataclass
class _Move:
    stage: str
    gain: float


def test_json_is_strict_and_round_trips(tmp_path):
    log = EventLog(clock=lambda: 1.0)
    log.add("decided", "s1 -> gpu", predicted_gain=math.inf,
            details={"move": _Move("s1", 2.0), "path": Path("/x"), 3: (1, 2), "nan": math.nan})
    rows = log.to_json()
    json.dumps(rows, allow_nan=False)  # strict JSON: no NaN/Infinity tokens
    assert rows[0]["details"] == {"move": {"stage": "s1", "gain": 2.0}, "path": "/x",
                                  "3": [1, 2], "nan": "nan"}
    assert rows[0]["predicted_gain"] == "inf"
    out = log.write_jsonl(tmp_path / "a" / "events.jsonl")
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == rows[0]
    back = events_from_json(json.loads(line) for line in lines)
    assert back[0].kind == "decided" and back[0].predicted_gain == math.inf


def test_subscribers_see_every_event_in_order_and_cannot_break_add(capsys):
    seen: list[str] = []
    log = EventLog(subscriber=lambda e: seen.append(e.what))
    log.subscribe(lambda e: 1 / 0)
    log.add("fault", "a")
    assert seen == ["a"] and "subscriber failed" in capsys.readouterr().err
    # a subscriber may add an event of its own (re-entrant lock)
    log2 = EventLog()
    log2.subscribe(lambda e: e.kind == "swapped" and log2.add("verified", "after " + e.what))
    log2.add("swapped", "s1")
    assert [e.kind for e in log2.events] == ["swapped", "verified"]


def test_threads_add_without_losing_events():
    seen: list[Event] = []
    log = EventLog(subscriber=seen.append)

    def worker(k: int) -> None:
        for i in range(500):
            log.add("decided", f"{k}-{i}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(log) == 2000 and seen == log.events
    assert len({e.what for e in log.events}) == 2000
