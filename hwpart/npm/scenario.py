"""Scenarios: events injected at set times while a model runs (issue 10, item 7).

A re-allocator is only as good as the trouble it has been shown. A scenario file
says what goes wrong and when, so a run with ``--adapt`` and a run without meet
exactly the same trouble, and a bench can compare them side by side::

    name: fpga-slowdown
    description: what a user should see
    events:
      - {at: 2.0, kind: fpga_slowdown, slot: 0, factor: 3.0, duration: 4.0}

Kinds (``at`` is seconds after :meth:`Injector.start`; ``duration`` is optional
everywhere it appears: without it the effect lasts until :meth:`Injector.stop`):

* ``cpu_contention``: ``threads: N`` *or* ``processes: N`` busy loops. Processes
  (multiprocessing, ``spawn``: no fork of a threaded pipeline) each take a core
  and are killed when the event ends; ``cores: [K, ...]`` pins them there (a
  local cluster's node that lives on core K is contended alone). Threads are pure-Python busy loops in
  this process: they hold the GIL part of the time (Python switches every 5
  ms), so they slow the pipeline's Python code as well as taking a core -- a
  different trouble from processes, not a cheaper version of it.
* ``gpu_busy``: a CUDA matmul loop on GPU ``index`` (default 0). Skipped, with
  a logged reason, when torch sees no CUDA device; never an error.
* ``fpga_slowdown``: ``slot: K`` with ``factor: F`` (a clock-down: the simulated
  board prices that slot's RM cycles F times longer) and/or ``stall_ms: X`` (a
  stall added to each packet through the slot). It acts on the *modeled*
  timeline of the simulated board (:meth:`hwpart.sim.board.SimBoard.set_slot_speed`);
  a real board has no such knob, so there it is skipped.
* ``device_failure``: ``device: fpga|cpu|gpu``, ``return_after: S`` (optional:
  without it the device stays down). The target's ``fail(reason)`` is called,
  then ``restore()``; for the FPGA (:meth:`hwpart.devices.fpga.FpgaDevice.fail`)
  every transfer raises its typed ``FpgaDown`` until the shell is reloaded.
  :class:`FailableDevice` gives any other device the same switch.
* ``input_rate``: ``samples_per_s: R`` (``null``: as fast as the pipeline
  pulls). The source, wrapped in a :class:`RateLimiter`, is paced to R.

Loading is strict, in the style of :mod:`hwpart.boards`: malformed YAML, an
unknown kind or field, a missing or ill-typed field is one
:class:`~hwpart.errors.ConfigError` line naming the file, the event index and
the field, and what to write instead; so is an event that would overlap another
on the same target (an undo would otherwise clobber the other's effect).

The :class:`Injector` fires the events on its own thread and records every
action through ``log(kind, what, device=..., details=...)`` (``EventLog.add``
of :mod:`hwpart.npm.events` fits): ``injected`` when an effect starts,
``restored`` when it is undone, ``skipped`` (with the reason) when its target
is absent or cannot take it. This module imports neither torch nor the
runtime at import time: it sits above them (the NPM layer).
"""

from __future__ import annotations

import difflib
import heapq
import math
import multiprocessing
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import yaml

from hwpart.datafiles import data_dir
from hwpart.errors import ConfigError, HwpartError

__all__ = [
    "KINDS",
    "CpuContention",
    "DeviceFailure",
    "Event",
    "FailableDevice",
    "FpgaSlowdown",
    "GpuBusy",
    "Injector",
    "InputRate",
    "RateLimiter",
    "Scenario",
    "ScenarioError",
    "Targets",
    "list_scenarios",
    "load_scenario",
    "scenario_from_dict",
    "scenarios_dir",
]

KINDS = ("cpu_contention", "gpu_busy", "fpga_slowdown", "device_failure", "input_rate")
DEVICES = ("fpga", "cpu", "gpu")


class ScenarioError(HwpartError):
    """An event cannot be applied here (its target is absent, no CUDA, a real board).

    The injector catches it and logs the event as ``skipped`` with this message:
    a scenario written for a machine with a GPU still runs on one without.
    """


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, kw_only=True)
class Event:
    """One scheduled event: ``index`` in the file, ``at`` seconds after start,
    ``duration`` seconds of effect (None: until the injector stops)."""

    index: int
    at: float
    duration: float | None = None
    kind: str = ""

    @property
    def end(self) -> float:
        """When the effect is undone (``inf``: at stop)."""
        return math.inf if self.duration is None else self.at + self.duration


@dataclass(frozen=True, kw_only=True)
class CpuContention(Event):
    kind: str = "cpu_contention"
    threads: int = 0
    processes: int = 0
    cores: tuple[int, ...] = ()  # pin the busy processes to these cores (empty: anywhere)


@dataclass(frozen=True, kw_only=True)
class GpuBusy(Event):
    kind: str = "gpu_busy"
    gpu: int = 0  # the CUDA device index (``index`` is the event's, in the file)


@dataclass(frozen=True, kw_only=True)
class FpgaSlowdown(Event):
    kind: str = "fpga_slowdown"
    slot: int = 0
    factor: float = 1.0
    stall_ms: float = 0.0


@dataclass(frozen=True, kw_only=True)
class DeviceFailure(Event):
    kind: str = "device_failure"
    device: str = "fpga"
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class InputRate(Event):
    kind: str = "input_rate"
    samples_per_s: float | None = None


@dataclass(frozen=True)
class Scenario:
    """A loaded scenario: events sorted by time (ties keep file order)."""

    name: str
    description: str
    events: tuple[Event, ...]
    path: Path | None = None

    @property
    def end_s(self) -> float:
        """When the last timed effect ends (open-ended effects count from their start):
        how long a run must last to see the whole scenario."""
        return max((e.at if e.duration is None else e.end for e in self.events), default=0.0)


# --------------------------------------------------------------------------- loading


def scenarios_dir() -> Path:
    """The shipped scenarios (``host/scenarios``, also in the wheel:
    :func:`hwpart.datafiles.data_dir`); ``HWPART_SCENARIOS_DIR`` overrides."""
    env = os.environ.get("HWPART_SCENARIOS_DIR")
    return Path(env) if env else data_dir("host/scenarios", ConfigError)


def list_scenarios() -> list[str]:
    d = scenarios_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario file, or the name of a shipped one (``fpga-slowdown``)."""
    path = Path(name_or_path)
    if not path.is_file() and isinstance(name_or_path, str) and "/" not in name_or_path \
            and not name_or_path.endswith((".yaml", ".yml")):
        path = scenarios_dir() / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown scenario '{name_or_path}'; shipped: "
                              f"{', '.join(list_scenarios()) or '(none)'} (or pass a YAML path)")
    if not path.is_file():
        raise ConfigError(f"scenario file '{_show(path)}' not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{_show(path)}: cannot read: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{_show(path)}: invalid YAML{where}: {problem}") from None
    return scenario_from_dict(data, path)


def _show(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Bad(Exception):
    """A field check failed: (problem, example to write instead)."""


def _num(v: Any, *, gt: float | None = None, ge: float | None = None) -> float:
    want = "a number" + (f" > {gt:g}" if gt is not None else "") + (
        f" >= {ge:g}" if ge is not None else "")
    # bool is an int in Python, and `yes` is a bool in YAML: refuse it as a number
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(want)
    if (gt is not None and not v > gt) or (ge is not None and not v >= ge):
        raise _Bad(want)
    return float(v)


def _int(v: Any, *, ge: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < ge:
        raise _Bad(f"an integer >= {ge}")
    return int(v)


# field -> (check, required, example); `at` and `kind` are common to every kind
_Check = Callable[[Any], Any]


def _POS(v: Any) -> float:
    return _num(v, gt=0)


def _cores(v: Any) -> tuple[int, ...]:
    if not isinstance(v, list) or not v or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in v):
        raise _Bad("a list of core numbers >= 0")
    return tuple(v)


_FIELDS: dict[str, dict[str, tuple[_Check, bool, str]]] = {
    "cpu_contention": {
        "threads": (lambda v: _int(v, ge=1), False, "threads: 2"),
        "processes": (lambda v: _int(v, ge=1), False, "processes: 2"),
        "cores": (_cores, False, "cores: [1]"),
        "duration": (_POS, False, "duration: 4.0"),
    },
    "gpu_busy": {
        "gpu": (lambda v: _int(v, ge=0), False, "gpu: 0"),
        "duration": (_POS, False, "duration: 4.0"),
    },
    "fpga_slowdown": {
        "slot": (lambda v: _int(v, ge=0), True, "slot: 0"),
        "factor": (_POS, False, "factor: 3.0"),
        "stall_ms": (lambda v: _num(v, ge=0), False, "stall_ms: 5.0"),
        "duration": (_POS, False, "duration: 4.0"),
    },
    "device_failure": {
        "device": (lambda v: _choice(v, DEVICES), True, "device: fpga"),
        "return_after": (_POS, False, "return_after: 3.0"),
        "reason": (lambda v: _text(v), False, "reason: injected failure"),
    },
    "input_rate": {
        "samples_per_s": (lambda v: None if v is None else _num(v, gt=0), True,
                          "samples_per_s: 2000   (or null: as fast as possible)"),
        "duration": (_POS, False, "duration: 4.0"),
    },
}


def _choice(v: Any, options: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v not in options:
        raise _Bad("one of " + ", ".join(options))
    return v


def _text(v: Any) -> str:
    if not isinstance(v, str):
        raise _Bad("a string")
    return v


def scenario_from_dict(data: Any, path: str | Path = "<scenario>") -> Scenario:
    """Check a parsed scenario (see the module docstring) and build it."""
    p = Path(path)
    where = _show(p)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else type(data).__name__
        raise ConfigError(f"{where}: expected a mapping with name, description and events, "
                          f"got {got}")
    top = {"name": "name: my-scenario", "description": "description: what a user should see",
           "events": "events: [{at: 2.0, kind: fpga_slowdown, slot: 0, factor: 3.0}]"}
    for k in data:
        if k not in top:
            raise ConfigError(f"{where}: unknown field '{k}'{_near(str(k), top)}; a scenario "
                              f"has {', '.join(top)}")
    for k, example in top.items():
        if k not in data:
            raise ConfigError(f"{where}: field '{k}': missing; write e.g. '{example}'")
    for k in ("name", "description"):
        if not isinstance(data[k], str) or not data[k].strip():
            raise ConfigError(f"{where}: field '{k}': expected a non-empty string, got "
                              f"{_short(data[k])}; write e.g. '{top[k]}'")
    raw = data["events"]
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{where}: field 'events': expected a non-empty list of events, got "
                          f"{_short(raw)}; write e.g. '{top['events']}'")
    events = [_event(i, e, where) for i, e in enumerate(raw)]
    _check_overlaps(events, where)
    order = sorted(events, key=lambda e: (e.at, e.index))
    return Scenario(data["name"].strip(), data["description"].strip(), tuple(order),
                    p if p.is_file() else None)


def _event(i: int, e: Any, where: str) -> Event:
    at = f"{where}: events[{i}]"
    if not isinstance(e, dict):
        raise ConfigError(f"{at}: expected a mapping like '{{at: 2.0, kind: ...}}', got "
                          f"{_short(e)}")
    if "kind" not in e:
        raise ConfigError(f"{at}: field 'kind': missing; write e.g. 'kind: fpga_slowdown' "
                          f"(one of {', '.join(KINDS)})")
    kind = e["kind"]
    if kind not in KINDS:
        raise ConfigError(f"{at}: field 'kind': unknown kind {_short(kind)}"
                          f"{_near(str(kind), KINDS)}; write one of {', '.join(KINDS)}")
    at = f"{at} ({kind})"
    spec = _FIELDS[kind]
    for k in e:
        if k not in spec and k not in ("at", "kind"):
            raise ConfigError(f"{at}: unknown field '{k}'{_near(str(k), spec)}; {kind} takes "
                              f"at, kind, {', '.join(spec)}")
    if "at" not in e:
        raise ConfigError(f"{at}: field 'at': missing; write e.g. 'at: 2.0' (seconds after start)")
    vals: dict[str, Any] = {}
    try:
        vals["at"] = _num(e["at"], ge=0)
    except _Bad as bad:
        raise ConfigError(f"{at}: field 'at': expected {bad}, got {_short(e['at'])}; "
                          "write e.g. 'at: 2.0' (seconds after start)") from None
    for k, (check, required, example) in spec.items():
        if k not in e:
            if required:
                raise ConfigError(f"{at}: field '{k}': missing; write e.g. '{example}'")
            continue
        try:
            vals[k] = check(e[k])
        except _Bad as bad:
            raise ConfigError(f"{at}: field '{k}': expected {bad}, got {_short(e[k])}; "
                              f"write e.g. '{example}'") from None
    if kind == "cpu_contention":
        if ("threads" in vals) == ("processes" in vals):
            raise ConfigError(f"{at}: field 'threads'/'processes': give exactly one; write e.g. "
                              "'processes: 2' (cores taken) or 'threads: 2' (GIL-holding loops)")
        if "cores" in vals and "processes" not in vals:
            raise ConfigError(f"{at}: field 'cores': pins busy processes; use it with "
                              "'processes: N'")
        return CpuContention(index=i, **vals)
    if kind == "gpu_busy":
        return GpuBusy(index=i, **vals)
    if kind == "fpga_slowdown":
        if "factor" not in vals and "stall_ms" not in vals:
            raise ConfigError(f"{at}: field 'factor'/'stall_ms': give at least one; write e.g. "
                              "'factor: 3.0' (clock-down) or 'stall_ms: 5.0' (stall per packet)")
        return FpgaSlowdown(index=i, **vals)
    if kind == "device_failure":
        ret = vals.pop("return_after", None)
        return DeviceFailure(index=i, duration=ret, **vals)
    return InputRate(index=i, **vals)


def _target(e: Event) -> str | None:
    """What an event acts on, for the overlap check (contention stacks: None)."""
    if isinstance(e, FpgaSlowdown):
        return f"fpga slot {e.slot}"
    if isinstance(e, DeviceFailure):
        return f"device {e.device}"
    if isinstance(e, InputRate):
        return "the input rate"
    return None


def _check_overlaps(events: list[Event], where: str) -> None:
    """Two effects on one target must not overlap: undoing the first would put back the
    state from before it and wipe the second. An open-ended ``input_rate`` is simply
    replaced by the next one (a rate is a setting, not a fault)."""
    by: dict[str, list[Event]] = {}
    for e in events:
        t = _target(e)
        if t is not None:
            by.setdefault(t, []).append(e)
    for t, evs in by.items():
        evs.sort(key=lambda e: (e.at, e.index))
        for a, b in zip(evs, evs[1:], strict=False):
            if isinstance(a, InputRate) and a.duration is None:
                continue
            if b.at < a.end:
                end = "the end of the run" if a.duration is None else f"{a.end:g} s"
                field_ = "return_after" if isinstance(a, DeviceFailure) else "duration"
                raise ConfigError(
                    f"{where}: events[{a.index}] and events[{b.index}] both act on {t} and "
                    f"overlap (events[{a.index}] lasts to {end}, events[{b.index}] starts at "
                    f"{b.at:g} s); give events[{a.index}] a '{field_}' that ends by {b.at:g} s")


def _near(word: str, options: Iterable[str]) -> str:
    m = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{m[0]}'?)" if m else ""


def _short(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


# --------------------------------------------------------------------------- hooks

T = TypeVar("T")


def _samples(item: Any) -> int:
    return int(getattr(item, "samples", 1))


class RateLimiter(Generic[T]):
    """An iterator that hands out ``items`` at ``samples_per_s`` (None: unpaced).

    Wrap the pipeline's source with it; :meth:`set_rate` changes the pace from
    any thread, and takes effect for the very next item (a waiting ``next`` is
    woken). Each item counts ``weight(item)`` samples (``item.samples`` for
    runtime :class:`~hwpart.streams.Item`\\ s, else 1).

    It waits *before* pulling the next item, so items stamped when handed out
    (as :func:`hwpart.streams.micro_batches` stamps them) do not count the pacing
    as latency. No credit is banked while the consumer is slower than the rate:
    a pipeline that stalled does not get a burst afterwards. Waiting is a
    condition-variable wait, never a spin.
    """

    def __init__(self, items: Iterable[T], samples_per_s: float | None = None,
                 weight: Callable[[T], int] = _samples) -> None:
        self._it: Iterator[T] = iter(items)
        self._weight = weight
        self._cond = threading.Condition()
        self._rate = self._check(samples_per_s)
        self._last: float | None = None  # when the previous item was due
        self._last_w = 0
        self._closed = False
        self.released = 0  # samples handed out

    @staticmethod
    def _check(r: float | None) -> float | None:
        if r is not None and not (isinstance(r, int | float) and r > 0 and math.isfinite(r)):
            raise ValueError(f"rate must be a positive number of samples/s or None, got {r!r}")
        return None if r is None else float(r)

    @property
    def rate(self) -> float | None:
        return self._rate

    def set_rate(self, samples_per_s: float | None) -> None:
        r = self._check(samples_per_s)
        with self._cond:
            self._rate = r
            self._cond.notify_all()

    def close(self) -> None:
        """End the iteration (wakes a waiting ``next``): a slow pace never holds up a stop."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __iter__(self) -> RateLimiter[T]:
        return self

    def __next__(self) -> T:
        perf = time.perf_counter
        with self._cond:
            due = None
            while not self._closed:
                r = self._rate
                if r is None or self._last is None:
                    due = None
                    break
                due = self._last + self._last_w / r
                wait = due - perf()
                if wait <= 0:
                    break
                self._cond.wait(wait)
            if self._closed:
                raise StopIteration
        item = next(self._it)
        now = perf()
        w = self._weight(item)
        with self._cond:
            # keep to the schedule when on time (timer overshoot does not accumulate);
            # restart it when the consumer was late (no burst to catch up)
            self._last = due if due is not None and now - due < 0.01 else now
            self._last_w = w
            self.released += w
        return item


class FailableDevice:
    """A fault switch around any device of the runtime's Device protocol.

    While failed, ``load`` and ``run`` raise :class:`~hwpart.errors.DeviceError`
    naming the device and the stage; everything else passes through. The FPGA
    device has its own switch (:meth:`hwpart.devices.fpga.FpgaDevice.fail`),
    which also reloads the shell on restore; this is for the CPU and GPU.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self._down: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @property
    def down(self) -> str | None:
        return self._down

    def fail(self, reason: str = "device failure") -> None:
        self._down = reason or "device failure"

    def restore(self) -> None:
        self._down = None

    def _check(self, what: str) -> None:
        if self._down is not None:
            from hwpart.errors import DeviceError

            raise DeviceError(f"{getattr(self.inner, 'name', 'device')}: {what}: device is down "
                              f"({self._down})")

    def load(self, stage: Any) -> Any:
        self._check(f"cannot load stage {getattr(stage, 'name', stage)}")
        return self.inner.load(stage)

    def run(self, handle: Any, env: dict[str, Any]) -> dict[str, Any]:
        self._check(f"stage {getattr(handle.stage, 'name', '?')} failed")
        return self.inner.run(handle, env)


# --------------------------------------------------------------------------- injector


@dataclass
class Targets:
    """What events act on; each optional (an event whose target is absent is skipped).

    ``fpga``: a device with ``fail``/``restore`` (the FPGA device); its ``.sim``
    simulated board takes ``fpga_slowdown`` unless ``board`` names one.
    ``cpu``/``gpu``: devices with ``fail``/``restore`` (:class:`FailableDevice`).
    ``rate``: the source's :class:`RateLimiter`. ``cpu_contention`` and
    ``gpu_busy`` act on the machine and need no target.
    """

    fpga: Any | None = None
    board: Any | None = None
    cpu: Any | None = None
    gpu: Any | None = None
    rate: RateLimiter[Any] | None = None


LogFn = Callable[..., None]


def _burn(duration_s: float | None, ppid: int, cores: tuple[int, ...] = ()) -> None:
    """A busy process's body: spin until killed, the time is up, or the parent is gone
    (so an injector that died cannot leave a core burning). ``cores``: where it burns (a
    cluster's node pinned to a core is contended alone)."""
    if cores:
        os.sched_setaffinity(0, set(cores))
    end = math.inf if duration_s is None else time.monotonic() + duration_s
    x = 0
    while True:
        for _ in range(200_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        if time.monotonic() > end or os.getppid() != ppid:
            return


def _spin(stop: threading.Event) -> None:
    """A busy thread's body: pure Python, so it holds the GIL while it runs."""
    x = 0
    while not stop.is_set():
        for _ in range(10_000):
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF


def _gpu_loop(index: int, stop: threading.Event, ready: threading.Event,
              error: list[BaseException]) -> None:
    """Back-to-back matmuls on one GPU until ``stop``; synchronises every few so the
    queue of launched kernels stays short and stop is prompt."""
    try:
        import torch

        dev = torch.device(f"cuda:{index}")
        a = torch.randn(4096, 4096, device=dev)
        b = torch.empty_like(a)
        torch.cuda.synchronize(dev)
    except BaseException as exc:  # noqa: BLE001 -- reported by the injector, not raised here
        error.append(exc)
        ready.set()
        return
    ready.set()
    while not stop.is_set():
        for _ in range(4):
            torch.matmul(a, a, out=b)
        torch.cuda.synchronize(dev)


#: The device an event's log line names (``device_failure`` names its own).
_DEVICE = {"cpu_contention": "cpu", "gpu_busy": "gpu", "fpga_slowdown": "fpga",
           "input_rate": None}


@dataclass(order=True)
class _Due:
    t: float
    order: int
    action: Callable[[], None] = field(compare=False)


class Injector:
    """Fires a scenario's events at their times and undoes them (module docstring).

    ``start()`` sets time zero and starts the thread; ``stop()`` stops it and
    undoes every effect still active (busy processes killed, slots and devices
    restored, the rate put back). ``wait()`` blocks until every event has fired
    and every timed effect ended.

    Every action goes to ``log(kind, what, device=..., details={...})`` -- the
    keywords of :meth:`hwpart.npm.events.EventLog.add`, so ``log=event_log.add``
    works; the log stamps the time on the run's clock -- and to :attr:`records`
    (flat dicts, with ``t_s`` since :meth:`start`). ``kind`` is ``injected``,
    ``restored`` or ``skipped``; details carry the ``event`` index in the file,
    ``event_kind``, ``at_s`` (scheduled), ``scenario_t_s`` (actual), the kind's
    own fields, and ``at_stop`` on a restore done by :meth:`stop`.
    """

    def __init__(self, scenario: Scenario, targets: Targets | None = None,
                 log: LogFn | None = None) -> None:
        self.scenario = scenario
        self.targets = targets or Targets()
        self._log = log
        self.records: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0: float | None = None
        self._active: dict[int, tuple[Event, Callable[[], str], dict[str, Any]]] = {}
        self._lock = threading.Lock()  # _active, between the thread and stop()
        self._order = 0  # tie-break of the schedule's heap

    # ------------------------------------------------------------------ control

    @property
    def elapsed(self) -> float:
        return 0.0 if self._t0 is None else time.perf_counter() - self._t0

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("injector already started")
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._loop, name="hwpart-scenario", daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> bool:
        """True once every event fired and every timed effect ended."""
        return self._done.wait(timeout)

    def stop(self) -> None:
        """Stop firing and undo everything still active, latest first. Idempotent."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        with self._lock:
            active = sorted(self._active.values(), key=lambda a: (a[0].at, a[0].index),
                            reverse=True)
            self._active.clear()
        for ev, undo, details in active:
            self._undo(ev, undo, details, at_stop=True)

    def __enter__(self) -> Injector:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ the thread

    def _loop(self) -> None:
        assert self._t0 is not None
        heap: list[_Due] = []
        n = 0
        for ev in self.scenario.events:
            heapq.heappush(heap, _Due(ev.at, n, lambda ev=ev: self._fire(ev, heap)))
            n += 1
        self._order = n
        while heap:
            due = heap[0]
            wait = self._t0 + due.t - time.perf_counter()
            if wait > 0 and self._stop.wait(wait):  # waiting for the event's time, not work
                return
            if self._stop.is_set():
                return
            heapq.heappop(heap)
            due.action()
        self._done.set()

    def _fire(self, ev: Event, heap: list[_Due]) -> None:
        details: dict[str, Any] = {"event": ev.index, "event_kind": ev.kind, "at_s": ev.at}
        try:
            what, undo, extra = self._apply(ev)
        except ScenarioError as exc:
            self._emit("skipped", f"{ev.kind} at {ev.at:g} s: {exc}", **details)
            return
        except Exception as exc:  # a hook that failed: say so, keep the scenario going
            self._emit("skipped", f"{ev.kind} at {ev.at:g} s failed: {type(exc).__name__}: {exc}",
                       **details)
            return
        details.update(extra)
        with self._lock:
            self._active[ev.index] = (ev, undo, details)
        self._emit("injected", what, **details)
        if ev.duration is not None:
            self._order += 1
            heapq.heappush(heap, _Due(ev.end, self._order, lambda: self._end(ev)))

    def _end(self, ev: Event) -> None:
        with self._lock:
            entry = self._active.pop(ev.index, None)
        if entry is not None:
            self._undo(*entry, at_stop=False)

    def _undo(self, ev: Event, undo: Callable[[], str], details: dict[str, Any],
              at_stop: bool) -> None:
        d = {**details, "at_stop": at_stop}
        try:
            what = undo()
        except Exception as exc:
            self._emit("skipped", f"undoing {ev.kind} (events[{ev.index}]) failed: "
                                  f"{type(exc).__name__}: {exc}", **d)
            return
        self._emit("restored", what, **d)

    def _emit(self, kind: str, what: str, **details: Any) -> None:
        t_s = round(self.elapsed, 6)
        ek = details.get("event_kind", "")
        device = details.get("device") if ek == "device_failure" else _DEVICE.get(ek)
        self.records.append({"kind": kind, "what": what, "t_s": t_s, **details})
        if self._log is not None:
            # the run's log stamps the event on its own clock; our time from start() and
            # the event's own fields go in details (EventLog.add's keywords)
            d = {k: v for k, v in details.items() if k != "device"}
            try:
                self._log(kind, what, device=device, details={**d, "scenario_t_s": t_s})
            except Exception as exc:  # the log is the caller's; the scenario still runs
                warnings.warn(f"scenario log callback failed on {kind!r}: "
                              f"{type(exc).__name__}: {exc}", stacklevel=2)

    # ------------------------------------------------------------------ the kinds

    def _apply(self, ev: Event) -> tuple[str, Callable[[], str], dict[str, Any]]:
        """Apply one event; returns (what, undo -> what was restored, details)."""
        if isinstance(ev, CpuContention):
            return self._cpu(ev)
        if isinstance(ev, GpuBusy):
            return self._gpu(ev)
        if isinstance(ev, FpgaSlowdown):
            return self._slowdown(ev)
        if isinstance(ev, DeviceFailure):
            return self._failure(ev)
        if isinstance(ev, InputRate):
            return self._rate(ev)
        raise ScenarioError(f"no injector for kind {ev.kind!r}")

    def _cpu(self, ev: CpuContention) -> tuple[str, Callable[[], str], dict[str, Any]]:
        if ev.processes:
            ctx = multiprocessing.get_context("spawn")  # never fork a threaded pipeline
            # a safety margin past the duration: stop() normally kills them first
            life = None if ev.duration is None else ev.duration + 30.0
            procs = [ctx.Process(target=_burn, args=(life, os.getpid(), ev.cores), daemon=True,
                                 name=f"hwpart-busy-{ev.index}-{i}")
                     for i in range(ev.processes)]
            try:
                for p in procs:
                    p.start()
            except BaseException:
                for p in procs:
                    if p.pid is not None:
                        p.kill()
                        p.join(2.0)
                raise

            def undo_procs() -> str:
                for p in procs:
                    p.terminate()
                for p in procs:
                    p.join(2.0)
                    if p.is_alive():
                        p.kill()
                        p.join(2.0)
                return f"{len(procs)} busy processes killed"

            where = f"core {','.join(map(str, ev.cores))}" if ev.cores else "the host CPU"
            return (f"{ev.processes} busy processes on {where}"
                    + ("" if ev.cores else " (one core each)"),
                    undo_procs, {"processes": ev.processes, "cores": list(ev.cores),
                                 "pids": [p.pid for p in procs]})
        stop = threading.Event()
        threads = [threading.Thread(target=_spin, args=(stop,), daemon=True,
                                    name=f"hwpart-busy-{ev.index}-{i}")
                   for i in range(ev.threads)]
        for t in threads:
            t.start()

        def undo_threads() -> str:
            stop.set()
            for t in threads:
                t.join(2.0)
            return f"{len(threads)} busy threads stopped"

        return (f"{ev.threads} busy Python threads in this process (they hold the GIL part "
                "of the time: the pipeline's own Python code is slowed too)",
                undo_threads, {"threads": ev.threads})

    def _gpu(self, ev: GpuBusy) -> tuple[str, Callable[[], str], dict[str, Any]]:
        try:
            import torch
        except ImportError:
            raise ScenarioError("gpu_busy needs torch, which is not installed") from None
        if not torch.cuda.is_available():
            raise ScenarioError("torch sees no CUDA device; gpu_busy skipped")
        if ev.gpu >= torch.cuda.device_count():
            raise ScenarioError(f"gpu {ev.gpu} does not exist (torch sees "
                                f"{torch.cuda.device_count()} CUDA devices)")
        stop, ready = threading.Event(), threading.Event()
        error: list[BaseException] = []
        th = threading.Thread(target=_gpu_loop, args=(ev.gpu, stop, ready, error), daemon=True,
                              name=f"hwpart-gpu-busy-{ev.index}")
        th.start()
        ready.wait(30.0)
        if error:
            th.join()
            raise ScenarioError(f"gpu_busy could not start on cuda:{ev.gpu}: "
                                f"{type(error[0]).__name__}: {error[0]}")

        def undo() -> str:
            stop.set()
            th.join(10.0)
            return f"GPU {ev.gpu} matmul loop stopped"

        return (f"a back-to-back 4096x4096 matmul loop on cuda:{ev.gpu} "
                f"({torch.cuda.get_device_name(ev.gpu)})", undo, {"gpu": ev.gpu})

    def _slowdown(self, ev: FpgaSlowdown) -> tuple[str, Callable[[], str], dict[str, Any]]:
        board = self.targets.board
        if board is None and self.targets.fpga is not None:
            board = getattr(self.targets.fpga, "sim", None)
        if board is None:
            raise ScenarioError("no simulated board to slow down (no FPGA in this run, it is "
                                "not open yet, or it is a real board, which has no such knob)")
        if not hasattr(board, "set_slot_speed"):
            raise ScenarioError(f"{type(board).__name__} cannot change a slot's speed")
        k = ev.slot
        prev = board.slot_speed.get(k, (1.0, 0.0))
        try:
            board.set_slot_speed(k, ev.factor, ev.stall_ms / 1e3)
        except ValueError as exc:
            raise ScenarioError(str(exc)) from None
        parts = ([f"clocked down {ev.factor:g}x"] if ev.factor != 1.0 else []) + (
            [f"stalled {ev.stall_ms:g} ms per packet"] if ev.stall_ms else [])

        def undo() -> str:
            board.set_slot_speed(k, *prev)
            return f"fpga slot {k} back to its speed (modeled, simulated board)"

        return (f"fpga slot {k} {' and '.join(parts)} (modeled, simulated board)", undo,
                {"slot": k, "factor": ev.factor, "stall_ms": ev.stall_ms, "modeled": True})

    def _failure(self, ev: DeviceFailure) -> tuple[str, Callable[[], str], dict[str, Any]]:
        dev = getattr(self.targets, ev.device)
        if dev is None:
            raise ScenarioError(f"no {ev.device} device in this run to fail")
        if not (callable(getattr(dev, "fail", None)) and callable(getattr(dev, "restore", None))):
            raise ScenarioError(f"the {ev.device} device has no fault switch (fail/restore); "
                                "wrap it in hwpart.npm.scenario.FailableDevice")
        reason = ev.reason or f"injected by scenario {self.scenario.name}"
        dev.fail(reason)

        def undo() -> str:
            dev.restore()
            return f"{ev.device} returned" + (" (shell reloaded)" if ev.device == "fpga" else "")

        return f"{ev.device} failed ({reason})", undo, {"device": ev.device}

    def _rate(self, ev: InputRate) -> tuple[str, Callable[[], str], dict[str, Any]]:
        rl = self.targets.rate
        if rl is None:
            raise ScenarioError("the source is not rate-limited (no RateLimiter target)")
        prev = rl.rate
        if ev.duration is None:  # an open-ended rate replaces an open-ended one: its undo
            with self._lock:     # then goes back to the rate from before the first
                for i, (old, _, _) in list(self._active.items()):
                    if isinstance(old, InputRate) and old.duration is None:
                        prev = self._active.pop(i)[2]["previous"]
        rl.set_rate(ev.samples_per_s)

        def undo() -> str:
            rl.set_rate(prev)
            return f"input rate back to {_rate_text(prev)}"

        return (f"input rate {_rate_text(ev.samples_per_s)}", undo,
                {"samples_per_s": ev.samples_per_s, "previous": prev})


def _rate_text(r: float | None) -> str:
    return "as fast as possible" if r is None else f"{r:g} samples/s"


def records_by_kind(records: Iterable[Mapping[str, Any]], kind: str) -> list[Mapping[str, Any]]:
    """The injector's records of one kind (a small helper for tests and reports)."""
    return [r for r in records if r["kind"] == kind]
