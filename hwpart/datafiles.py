"""Where hwpart finds the files it ships beside its code: board YAMLs, HLS/Vivado
templates, the shell's RTL and cocotb benches, the shipped scenarios.

The repository keeps them in top-level folders (``boards/``, ``hls/``, ``sim/``,
``host/scenarios/``), the layout the user asked for. A wheel cannot put them
there, so pyproject.toml maps each one into the package as ``hwpart/_data/<same
relative path>``. An editable install (``make setup``) maps only the Python
package: the folders are then read where they are, in the source tree beside
``hwpart/``. This module is the one place that knows both cases; everything else
asks it, so that no code guesses the checkout from ``__file__`` and an installed
hwpart never silently finds nothing.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from hwpart.errors import HwpartError

#: The data folders, as paths relative to the repository root (and to hwpart/_data).
DATA_FOLDERS = ("boards", "hls", "sim", "host/scenarios")


class DataError(HwpartError):
    """A data folder hwpart ships is missing from this installation."""


def package_dir() -> Path:
    """The folder of the imported ``hwpart`` package, as a real path: simulators and
    compilers get file names, so a zipped install (no real files) is refused."""
    root = files("hwpart")
    if not isinstance(root, Path):
        raise DataError(f"hwpart is imported from {root}, not from a folder; install it "
                        "unpacked (pip install) so its data files are real files")
    return root


def import_root() -> Path:
    """The folder ``hwpart`` is imported from: what a child Python (cocotb's
    simulator process) needs on its sys.path to import this same hwpart."""
    return package_dir().parent


def data_dir(name: str, error: type[HwpartError] = DataError) -> Path:
    """The folder ``name`` (one of :data:`DATA_FOLDERS`): the wheel's copy inside the
    package, else the source tree's, else ``error`` naming both places looked in."""
    if name not in DATA_FOLDERS:
        raise ValueError(f"unknown data folder {name!r}; hwpart ships {', '.join(DATA_FOLDERS)}")
    pkg = package_dir()
    installed = pkg.joinpath("_data", *name.split("/"))
    if installed.is_dir():
        return installed
    # A source tree is recognised by its pyproject.toml, so that a broken install in
    # site-packages never picks up some unrelated folder that happens to be beside it.
    tree = pkg.parent
    checkout = tree.joinpath(*name.split("/"))
    if (tree / "pyproject.toml").is_file() and checkout.is_dir():
        return checkout
    raise error(f"hwpart's {name}/ folder is missing: looked in {installed} (installed "
                f"package) and {checkout} (source checkout); reinstall hwpart")
