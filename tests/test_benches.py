"""The benchmarks still run end to end (they are not timed here: speed is measured by
running them, and reported, not asserted in tests)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "bench" / script), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_runtime_bench_runs(tmp_path):
    out = tmp_path / "runtime.json"
    res = run("runtime.py", "--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(out.read_text())


@pytest.mark.slow
def test_fpga_sim_bench_runs(tmp_path):
    pytest.importorskip("hls4ml")
    pytest.importorskip("pynq")
    out = tmp_path / "fpga_sim.json"
    res = run("fpga_sim.py", "--samples", "512", "--samples-b1", "20", "--out", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["pr_swap"]["modeled_s_per_rm"]


def test_gpu_check_says_why_without_a_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: run bench/gpu_check.py itself")
    res = run("gpu_check.py")
    assert res.returncode == 2 and "no usable GPU" in res.stdout + res.stderr
