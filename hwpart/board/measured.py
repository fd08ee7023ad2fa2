"""``BUNDLE/measured.json``: figures measured on (or against) a board, for the planner.

``hwpart board check`` measures the DMA, each slot and each PR swap on the
board; the host measures the link to the board agent; deploy adds the board's
CPU. Each writes its own *section*, and a later write of one section leaves
the others as they were. From then on the planner prices with these instead of
the estimates in ``boards/*.yaml``.

Format ``hwpart-measured/1``::

    {"format": "hwpart-measured/1",
     "sections": {
       "dma":   {"data": {"latency_s": 2.1e-05, "bandwidth_Bps": 3.9e+08},
                 "source": "hwpart board check on pynq-z2 (PYNQ 3.0.1)",
                 "utc": "2026-01-01T12:00:00Z", "simulated": false},
       "slots": {"data": [{"slot": 0, "rm": "fc2", "batch": 64,
                           "latency_s": ..., "throughput_sps": ...}], ...},
       "pr":    {"data": {"swap_s": {"fc2@0": 0.0031}, "config_port_Bps": 3.8e+08}, ...},
       "link":  {"data": {"rtt_s": ..., "bandwidth_Bps": ...}, ...},
       "board_cpu": {...}}}

``simulated`` is true when the figures come from the simulated board: they
are then its *modeled* timeline (``boards/*.yaml`` fed back), not a
measurement of hardware, and readers must say so. Writes are atomic (a
temporary file renamed over the old one) and serialised between processes by
a lock file, so a check and a link measurement running at once lose nothing.
Standard library only: it runs on the board.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hwpart.errors import ConfigError

FORMAT = "hwpart-measured/1"
FILENAME = "measured.json"
#: the sections the planner reads, and what each one's data must hold
SECTIONS: dict[str, tuple[str, ...]] = {
    "dma": ("latency_s", "bandwidth_Bps"),
    "slots": (),  # a list of {slot, rm, batch, latency_s, throughput_sps}
    "pr": ("swap_s",),
    "link": ("rtt_s", "bandwidth_Bps"),
    "board_cpu": (),
}


def measured_path(bundle_dir: Path | str) -> Path:
    return Path(bundle_dir) / FILENAME


def load_measured(bundle_dir: Path | str) -> dict[str, dict[str, Any]]:
    """Section name -> ``{"data", "source", "utc", "simulated"}``; ``{}`` when nothing was
    measured yet. A malformed file raises :class:`ConfigError` naming it."""
    f = measured_path(bundle_dir)
    if not f.is_file():
        return {}
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{f}: not readable JSON ({exc}); delete it and run "
                          "`hwpart board check` again") from exc
    return _check(doc, f)


def update_measured(bundle_dir: Path | str, section: str, data: dict[str, Any] | list[Any],
                    source: str, simulated: bool = False) -> Path:
    """Replace one section (with its source, the UTC time and the simulated flag), keeping
    the others; returns the file."""
    if not isinstance(section, str) or not section:
        raise ConfigError(f"measured section name must be a non-empty string, got {section!r}")
    need = SECTIONS.get(section, ())
    if section == "slots":
        if not isinstance(data, list):
            raise ConfigError(f"measured section 'slots' takes a list of runs, got "
                              f"{type(data).__name__}")
    elif not isinstance(data, dict) or any(k not in data for k in need):
        raise ConfigError(f"measured section {section!r} needs fields {list(need)}, got "
                          f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    f = measured_path(bundle_dir)
    with _locked(f):
        sections = load_measured(bundle_dir)
        sections[section] = {"data": data, "source": str(source),
                             "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                             "simulated": bool(simulated)}
        tmp = f.with_name(f".{FILENAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": FORMAT, "sections": sections}, indent=1) + "\n")
        os.replace(tmp, f)
    return f


def _check(doc: Any, f: Path) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        got = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise ConfigError(f"{f}: field 'format': expected {FORMAT!r}, got {got!r}")
    sections = doc.get("sections")
    if not isinstance(sections, dict):
        raise ConfigError(f"{f}: field 'sections': expected an object")
    for name, s in sections.items():
        if not (isinstance(s, dict) and "data" in s and isinstance(s.get("source"), str)
                and isinstance(s.get("utc"), str) and isinstance(s.get("simulated"), bool)):
            raise ConfigError(f"{f}: field 'sections.{name}': expected data, source, utc and "
                              "simulated; run `hwpart board check` again")
    return sections


@contextlib.contextmanager
def _locked(f: Path) -> Iterator[None]:
    """An exclusive lock on ``f``'s lock file (POSIX; boards and hosts here are Linux)."""
    f.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: one writer at a time is then up to the user
        yield
        return
    with open(f.with_name(f".{FILENAME}.lock"), "a") as lk:
        fcntl.flock(lk, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lk, fcntl.LOCK_UN)
