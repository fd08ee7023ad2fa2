"""hwpart installed from its wheel, away from the checkout.

The data folders (boards/, hls/, sim/, host/scenarios/) live at the top of the
repository and reach an installed hwpart only through pyproject.toml's mapping
into hwpart/_data/. An editable install reads them from the checkout, so the rest
of the suite cannot notice when the wheel lacks them: before this test, a wheel's
`hwpart boards` printed an empty table. Here the wheel is built (no network),
installed with `pip --target` into a fresh folder, and run by a Python that cannot
see the checkout: `-S` keeps the venv's site hooks (among them the editable
install's finder, which maps hwpart back to the checkout) out, PYTHONPATH holds
only the fresh folder and the venv's site-packages (for the dependencies), and
PYTHONSAFEPATH keeps the cwd out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from hwpart.datafiles import DATA_FOLDERS

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ["kv260", "pynq-z2", "zcu104"]
#: Build leftovers that may sit in a working tree's data folders and never ship.

TINY_MODEL = '''\
import torch
from torch import nn


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
'''


@pytest.fixture(scope="module")
def fresh(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the sources (so the checkout's build/ is never
    shared with a concurrent run, nor stale), installed into an empty folder."""
    from hwpart.deploy import build_wheel  # what deploy sends to a board

    base = tmp_path_factory.mktemp("wheel")
    wheel = build_wheel(base / "dist")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    target = base / "fresh"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300, cwd=base)
    return target


def _env(target: Path) -> dict[str, str]:
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYTHON", "HWPART_")) and k != "VIRTUAL_ENV"}
    env.update(PYTHONPATH=os.pathsep.join([str(target), *deps]), PYTHONSAFEPATH="1",
               PYTHONDONTWRITEBYTECODE="1")
    return env


def _py(target: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -S ARGS`` against the fresh install, from ``cwd`` (outside the checkout)."""
    assert ROOT not in cwd.resolve().parents
    return subprocess.run([sys.executable, "-S", *args], cwd=cwd, env=_env(target),
                          capture_output=True, text=True, timeout=timeout)


def _hwpart(target: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """The installed console script (its shebang is the venv's python; -S is ours)."""
    return _py(target, str(target / "bin" / "hwpart"), *args, cwd=cwd, timeout=timeout)


def test_wheel_holds_every_module_and_data_file(fresh: Path) -> None:
    """pyproject.toml lists hwpart's subpackages by hand (the folder mapping rules out
    packages.find): a new subpackage or data file that the list misses fails here."""
    want = {p.relative_to(ROOT).as_posix() for p in (ROOT / "hwpart").rglob("*.py")
            if "__pycache__" not in p.parts}
    data = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "--", *DATA_FOLDERS],
                          cwd=ROOT, capture_output=True, text=True)
    if data.returncode != 0:
        pytest.skip("not a git checkout: cannot tell the data files that ship")
    want |= {f"hwpart/_data/{f}" for f in data.stdout.split()}
    have = {p.relative_to(fresh).as_posix() for p in fresh.rglob("*") if p.is_file()}
    missing = sorted(want - have)
    assert not missing, f"not in the wheel (add to pyproject.toml [tool.setuptools]): {missing}"


def test_boards_and_errors_from_the_wheel(fresh: Path, tmp_path: Path) -> None:
    where = _py(fresh, "-c", "import hwpart; print(hwpart.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).parent == fresh / "hwpart", where.stderr

    res = _hwpart(fresh, "boards", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for name in SHIPPED:
        assert name in res.stdout

    res = _py(fresh, "-c", "from hwpart.boards import load_board; load_board('pynq-z9')",
              cwd=tmp_path)
    boards = fresh / "hwpart" / "_data" / "boards"
    assert res.returncode == 1
    assert (f"BoardError: unknown board 'pynq-z9': no pynq-z9.yaml in {boards}; known boards: "
            "kv260, pynq-z2, zcu104" in res.stderr)
    (tmp_path / "tiny.py").write_text(TINY_MODEL)
    res = _hwpart(fresh, "overlay", "build", "tiny.py:mlp", "--input-shape", "8", "--board",
                  "pynq-z9", "-o", "x", cwd=tmp_path)
    assert res.returncode == 2 and res.stderr == (
        f"hwpart: error: unknown board 'pynq-z9': no pynq-z9.yaml in {boards}; known boards: "
        "kv260, pynq-z2, zcu104 (or pass a path to a board YAML)\n")

    # The shipped scenarios come with it too (`hwpart run --scenario fpga-slowdown`).
    res = _py(fresh, "-c", "from hwpart.npm.scenario import load_scenario as l; "
              "print(l('fpga-slowdown').path)", cwd=tmp_path)
    assert res.stdout.strip().startswith(str(fresh)), res.stderr


def test_missing_data_is_an_error_not_an_empty_table(fresh: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fresh, broken, symlinks=True)
    shutil.rmtree(broken / "hwpart" / "_data" / "boards")
    res = _hwpart(broken, "boards", cwd=tmp_path)
    assert res.returncode == 2 and "┃" not in res.stdout, res.stdout
    err = res.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "boards/ folder is missing" in err and str(broken / "hwpart" / "_data" / "boards") in err


def test_board_side_commands_load_without_torch(fresh: Path, tmp_path: Path) -> None:
    """A PYNQ board has no torch (nor rich or pydantic): `hwpart board` must not need them."""
    code = ("import sys; from hwpart.entry import main\n"
            "try:\n    main(['board', '--help'])\nexcept SystemExit as e:\n    rc = e.code\n"
            "heavy = sorted({'torch', 'rich', 'pydantic'} & {m.split('.')[0] for m in sys.modules})\n"
            "print('RC', rc, 'HEAVY', heavy)")
    res = _py(fresh, "-c", code, cwd=tmp_path)
    assert "usage:" in res.stdout and "RC 0 HEAVY []" in res.stdout, res.stdout + res.stderr


@pytest.mark.slow
def test_overlay_build_from_the_wheel(fresh: Path, tmp_path: Path) -> None:
    """`hwpart overlay build` renders the Vivado/HLS scripts from the wheel's hls/
    templates; `overlay calibrate` simulates the wheel's sim/ RTL with its cocotb benches."""
    pytest.importorskip("hls4ml")
    (tmp_path / "tiny.py").write_text(TINY_MODEL)
    res = _hwpart(fresh, "overlay", "build", "tiny.py:mlp", "--input-shape", "8", "--board",
                  "pynq-z2", "--samples", "50", "--jobs", "2", "--no-yosys", "--cache", "cache",
                  "-o", "bundle", cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    bundle = tmp_path / "bundle"
    m = yaml.safe_load((bundle / "manifest.yaml").read_text())
    assert [r["name"] for r in m["rms"]] == ["rm0"]
    assert "xc7z020clg400-1" in (bundle / "vivado" / "shell_bd.tcl").read_text()
    assert "processing_system7" in (bundle / "vivado" / "ps.tcl").read_text()
    assert (bundle / "rm0" / "hls.tcl").is_file()
    assert _hwpart(fresh, "overlay", "show", "bundle", cwd=tmp_path).returncode == 0

    if shutil.which("iverilog") is None:
        pytest.skip("iverilog is not installed: RTL calibration from the wheel not run")
    pytest.importorskip("cocotb")
    res = _hwpart(fresh, "overlay", "calibrate", "bundle", "--samples", "8", cwd=tmp_path)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr
    assert "wrote RTL-measured cycles" in res.stdout
