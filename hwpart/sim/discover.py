"""The simulated board as PYNQ finds any device: by probing, when ``HWPART_SIM_BOARD`` asks.

PYNQ enumerates devices through ``DeviceMeta``: every ``pynq.Device``
subclass that defines ``_probe_`` is registered when its class is created, and
``Device.devices`` asks each, in ``_probe_priority_`` order, the first time
anything needs a device (``Overlay``, ``allocate``, ``MMIO``). PYNQ 4.0 reads
no entry points for devices; its only environment switches are
``PYNQ_REMOTE_DEVICES`` (a gRPC board) and ``XILINX_XRT``. So this module's
class must merely exist before that first probe: the startup hook
(:mod:`hwpart.sim.autoload`) imports it right after ``pynq``, only when
``HWPART_SIM_BOARD`` is set.

Never picked up silently: :meth:`EnvSimBoard._probe_` returns nothing unless
``HWPART_SIM_BOARD`` names a board, and nothing (with a warning) when PYNQ
already found a real device -- it probes last (priority 900: after Versal 40,
embedded 50, remote 100 and XRT 200), so on a board the board wins and PYNQ's
own parsers and clocks are left alone.
"""

from __future__ import annotations

import os
import threading
import warnings

import pynq

from hwpart.errors import BoardError
from hwpart.sim.board import SimBoard, _standins

ENV = "HWPART_SIM_BOARD"

_lock = threading.Lock()
_found: dict[str, SimBoard] = {}


def requested() -> str | None:
    """The board ``HWPART_SIM_BOARD`` names (a name in ``boards/`` or a YAML path), or None."""
    name = os.environ.get(ENV, "").strip()
    return name or None


class EnvSimBoard(SimBoard):
    """A :class:`~hwpart.sim.board.SimBoard` that PYNQ's own probing finds (see the module)."""

    _probe_priority_ = 900

    @classmethod
    def _probe_(cls) -> list[SimBoard]:
        name = requested()
        if name is None:
            return []
        real = [d for d in getattr(pynq.Device, "_devices", []) if not isinstance(d, SimBoard)]
        if real:
            found = getattr(real[0], "name", real[0].tag)
            warnings.warn(f"{ENV}={name} ignored: PYNQ found a real device ({found})",
                          stacklevel=2)
            return []
        with _lock:  # one board per process and name, however often PYNQ re-probes
            dev = _found.get(name)
            if dev is None:
                try:
                    dev = cls(name)
                except BoardError as exc:
                    raise BoardError(f"{ENV}={name}: {exc}") from None
                _found[name] = dev
        _standins(dev)
        return [dev]
