"""hwpart/board imports on a board image: numpy, pynq, pyzmq and the standard library only.

A PYNQ image has no torch, pydantic, PyYAML, rich, hls4ml, scipy or networkx, so a
child interpreter with those made unimportable imports every module of the
package, runs ``hwpart board --help``, and shows that nothing else of hwpart came
in with them. pynq is blocked too: every module imports it lazily, so the host's
client of a remote board needs none. The board's Python is 3.10 (PYNQ 3.0.x),
so each module must also parse as 3.10.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hwpart.board

BOARD = Path(hwpart.board.__file__).parent

PROBE = r"""
import importlib, importlib.abc, pkgutil, sys

BLOCK = {"torch", "pydantic", "yaml", "rich", "hls4ml", "scipy", "networkx", "matplotlib",
         "psutil", "pynq"}


class NotOnABoard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCK:
            raise ImportError(f"{name} is not on a board image")
        return None


sys.meta_path.insert(0, NotOnABoard())
import hwpart.board
from hwpart.board.cli import build_parser

names = [m.name for m in pkgutil.iter_modules(hwpart.board.__path__) if m.name != "__main__"]
for n in names:
    importlib.import_module(f"hwpart.board.{n}")
build_parser().format_help()  # every subcommand's module loads and declares its arguments
extra = sorted(m for m in sys.modules if m.startswith("hwpart") and m not in
               ("hwpart", "hwpart.errors") and not m.startswith("hwpart.board"))
blocked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCK)
print("modules", ",".join(sorted(names)))
print("extra", ",".join(extra))
print("blocked", ",".join(blocked))
"""


def test_board_package_imports_without_torch_or_host_modules():
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                       timeout=120, cwd=BOARD.parents[1])
    assert r.returncode == 0, r.stderr
    lines = dict(ln.split(" ", 1) if " " in ln else (ln, "") for ln in r.stdout.splitlines())
    modules = set(lines["modules"].split(","))
    assert {"agent", "check", "client", "manifest", "measured", "protocol", "shell"} <= modules
    assert lines["extra"] == ""  # no host module of hwpart came in
    assert lines["blocked"] == ""


def test_board_modules_parse_as_python_3_10():
    for f in sorted(BOARD.glob("*.py")):
        ast.parse(f.read_text(), filename=str(f), feature_version=(3, 10))


def test_the_probe_can_fail():
    """The blocker is real: a module that imports torch is refused under it."""
    probe = PROBE.replace("import hwpart.board\n", "import hwpart.board\nimport torch\n", 1)
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                       timeout=120, cwd=BOARD.parents[1])
    assert r.returncode != 0 and "torch is not on a board image" in r.stderr
