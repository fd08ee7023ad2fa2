"""Shared fixtures: the example models, captured once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # host/ is a folder of examples, not an installed package
sys.path.insert(0, str(ROOT / "tests"))

from examples import example_graph  # noqa: E402

from host.models import EXAMPLES  # noqa: E402
from hwpart.graph import LayerGraph  # noqa: E402


@pytest.fixture(params=sorted(EXAMPLES))
def example(request) -> tuple[str, LayerGraph]:
    return request.param, example_graph(request.param)



def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """Say it plainly when the FPGA half did not run (see tests/suite_summary.py)."""
    import suite_summary

    suite_summary.report(terminalreporter)
