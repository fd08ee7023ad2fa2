"""Startup hook: PYNQ finds the simulated board in a fresh Python process, no hwpart import.

Why a ``.pth`` file. PYNQ registers a device class when the class is defined
(:mod:`hwpart.sim.discover`) and reads no plugin entry point before it looks
for devices: ``Overlay`` asks ``Device.active_device`` first, and only then
imports the ``pynq.lib`` drivers that entry points name. So unmodified user
code (``from pynq import Overlay; Overlay("x.bit")``, hls4ml's
``axi_stream_driver.py``) can reach the simulated board only if something
defines its class before that: a ``.pth`` line in site-packages, run by
Python's ``site`` at startup, is the standard place (coverage's subprocess
hook and setuptools' own ``distutils-precedence.pth`` work the same way).

It costs nothing when unused: the line reads one environment variable and
stops unless ``HWPART_SIM_BOARD`` is set. When set, it imports this module
(standard library only) and registers a one-shot import hook, so hwpart and
the simulated board are imported only if and when the process imports
``pynq`` -- right after ``pynq`` itself, before any device probing.

``hwpart sim discovery --install`` writes the file (:func:`install`);
``--remove`` deletes it.
"""

from __future__ import annotations

import importlib
import importlib.abc
import sys
import sysconfig
from pathlib import Path
from typing import Any

ENV = "HWPART_SIM_BOARD"
PTH_NAME = "hwpart_sim_discovery.pth"
PTH_TEXT = (f"import os; os.environ.get({ENV!r}) and "
            "__import__('hwpart.sim.autoload').sim.autoload.hook()\n")


class _ThenDiscover(importlib.abc.Loader):
    """``pynq``'s own loader, then :mod:`hwpart.sim.discover` once ``pynq`` has run."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def create_module(self, spec: Any) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        self.inner.exec_module(module)
        module.__loader__ = module.__spec__.loader = self.inner  # pynq as if untouched
        importlib.import_module("hwpart.sim.discover")

    def __getattr__(self, name: str) -> Any:  # resource readers, get_filename, is_package...
        return getattr(self.inner, name)


class _AfterPynq(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "pynq":
            return None
        sys.meta_path.remove(self)  # one shot: the finders below find the real package
        import importlib.util

        spec = importlib.util.find_spec("pynq")
        if spec is not None and spec.loader is not None:
            spec.loader = _ThenDiscover(spec.loader)
        return spec


def hook() -> None:
    """Make the next ``import pynq`` also define the simulated board's device class."""
    if "pynq" in sys.modules:  # already imported (a hook run late): define it now
        importlib.import_module("hwpart.sim.discover")
    elif not any(isinstance(f, _AfterPynq) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterPynq())


def site_dir() -> Path:
    """This environment's site-packages (where pip installs hwpart)."""
    return Path(sysconfig.get_paths()["purelib"])


def install(where: Path | str | None = None) -> Path:
    """Write the ``.pth`` into ``where`` (default: this environment's site-packages)."""
    d = Path(where) if where is not None else site_dir()
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: no such site-packages folder")
    p = d / PTH_NAME
    p.write_text(PTH_TEXT)
    return p


def remove(where: Path | str | None = None) -> Path | None:
    """Delete the ``.pth``; returns the path removed, None when it was not there."""
    p = (Path(where) if where is not None else site_dir()) / PTH_NAME
    if p.is_file():
        p.unlink()
        return p
    return None


def installed(where: Path | str | None = None) -> Path | None:
    p = (Path(where) if where is not None else site_dir()) / PTH_NAME
    return p if p.is_file() else None
