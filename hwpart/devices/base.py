"""The Device Abstraction Layer: one protocol every execution target implements.

The runtime never asks what a device *is*; it loads a stage on it, feeds it
named values and reads its metrics. That keeps the FPGA (PYNQ DMA on a real or
simulated board) a drop-in: it implements the same six methods.

Contract the runtime relies on:

* ``run(handle, env)`` takes the stage's input dict (named values, host-side
  tensors) and returns the dict for the next stage: the stage's outputs plus the
  values in ``stage.keep``, dead values dropped (what :meth:`Stage.__call__`
  does). Values cross stage boundaries in host memory, so any device can follow
  any other; a device may hand back tensors in its own host buffers (pinned
  memory, PYNQ buffers) as long as it never rewrites a buffer it returned.
* ``run`` is called from one worker thread per loaded stage, possibly several
  stages of one device at once, so a device must not keep per-call state outside
  the handle.
* after ``run`` a device may set ``handle.service_s``: the time the batch spent in
  the device itself, without waiting for locks (a shared DMA engine, a slot being
  reconfigured); for a simulated board, the board's *modeled* time. The monitor
  keeps it apart from the wall time, so the re-allocator can tell a slow device
  from a busy one.
* ``metrics()`` is called from the monitor's thread; ``None`` means "not readable
  here" (shown as n/a), which is different from a measured 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from hwpart.errors import DeviceError
from hwpart.graph import LayerGraph
from hwpart.partition import unit_kind  # noqa: F401  (re-exported: devices name units so)
from hwpart.stages import Stage

#: Metric names devices report (all optional); the monitor shows these columns.
#: ``modeled_busy_s``: for simulated hardware, the cumulative busy time of the
#: *model* (not of the host running the simulator); None on real devices.
METRIC_KEYS = ("util", "power_w", "energy_j", "mem_used_b", "mem_total_b", "modeled_busy_s")

Metrics = dict[str, float | None]


@dataclass
class LoadedStage:
    """A stage made resident on a device; what ``run`` and ``unload`` take back."""

    stage: Stage
    device: str  # the device's name, for messages
    state: dict[str, Any] = field(default_factory=dict)  # device-specific (module copy, stream)
    # What the last ``run`` spent in the device itself, when the device can tell it apart
    # from its wall time: None means the wall time *is* the service time (CPU, GPU).
    # ``service_modeled``: the figure is a simulated board's modeled time, not host time.
    service_s: float | None = None
    service_modeled: bool = False
    wait_s: float = 0.0  # of the last run, waiting for the device's own locks


@runtime_checkable
class Device(Protocol):
    """What the runtime needs of an execution target."""

    name: str  # shown to the user: "cpu", "gpu:0 (NVIDIA H200)"
    kind: str  # the registry key: "cpu", "gpu", "fpga"

    def available(self) -> tuple[bool, str]:
        """(usable here, one-line reason) -- the reason is shown by ``hwpart devices``."""
        ...

    def capabilities(self, lg: LayerGraph) -> set[str]:
        """Names of the graph nodes this device can run (ONNX Runtime's GetCapability)."""
        ...

    def load(self, stage: Stage) -> LoadedStage: ...

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]: ...

    def unload(self, handle: LoadedStage) -> None: ...

    def metrics(self) -> Metrics: ...


def merge_outputs(stage: Stage, env: dict[str, Any], out: Any) -> dict[str, Any]:
    """The next stage's env from this stage's raw submodule output (``Stage.__call__``'s rule).

    Devices that run the submodule themselves (on another memory, through DMA)
    use this so liveness is decided in one place.
    """
    new = {k: v for k, v in env.items() if k in stage.keep}
    for idx, name in stage.outputs:
        if name in stage.keep:
            new[name] = out if idx is None else out[idx]
    return new


# --------------------------------------------------------------------------- registry

DeviceFactory = Callable[..., Device]
_REGISTRY: dict[str, DeviceFactory] = {}
#: Kinds whose module has optional dependencies (pynq): imported on first need, so
#: ``import hwpart.devices`` stays fast and works without them.
PLUGINS: dict[str, str] = {"fpga": "hwpart.devices.fpga"}


def _import_plugin(kind: str) -> str:
    """Import the module that registers ``kind``; returns why not ('' on success)."""
    import importlib

    try:
        importlib.import_module(PLUGINS[kind])
    except ImportError as exc:
        return f"cannot import {PLUGINS[kind]}: {exc}"
    return "" if kind in _REGISTRY else f"{PLUGINS[kind]} did not register {kind!r}"


def register_device(kind: str, factory: DeviceFactory, *, replace: bool = False) -> None:
    """Make a device kind known by name, so plans and the CLI can ask for it."""
    if kind in _REGISTRY and not replace:
        raise ValueError(f"device kind {kind!r} is already registered")
    _REGISTRY[kind] = factory


def registered_kinds() -> list[str]:
    return list(_REGISTRY)


def get_device(kind: str, **options: Any) -> Device:
    """A device of ``kind``, checked to be available; raises DeviceError with the reason."""
    if kind not in _REGISTRY and kind in PLUGINS:
        why = _import_plugin(kind)
        if why:
            raise DeviceError(f"device {kind!r} is not available here: {why}")
    factory = _REGISTRY.get(kind)
    if factory is None:
        raise DeviceError(
            f"no device kind {kind!r} (known: {', '.join(_REGISTRY) or 'none'}); "
            "a plan that uses it cannot run here"
        )
    dev = factory(**options)
    ok, reason = dev.available()
    if not ok:
        raise DeviceError(f"device {kind!r} is not available here: {reason}")
    return dev


def available_devices() -> list[tuple[str, bool, str]]:
    """(kind, usable, reason) for every registered kind; never raises (for ``hwpart devices``)."""
    missing = {k: _import_plugin(k) for k in PLUGINS if k not in _REGISTRY}
    rows = []
    for kind, factory in _REGISTRY.items():
        try:
            ok, reason = factory().available()
        except Exception as exc:  # a broken driver must not hide the other devices
            ok, reason = False, f"probe failed: {type(exc).__name__}: {exc}"
        rows.append((kind, ok, reason))
    rows.extend((kind, False, why) for kind, why in missing.items() if why)
    return rows


