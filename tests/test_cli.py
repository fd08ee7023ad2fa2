"""The command line: real runs, and bad input as one clear line with a non-zero exit."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from hwpart.cli import main

MLP = "host/models.py:jet_tagger"


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "hwpart", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def test_partition_writes_plan_table_and_plot(tmp_path) -> None:
    plan, png = tmp_path / "plan.json", tmp_path / "plan.png"
    res = run_cli("partition", "host/models.py:small_cnn", "--input-shape", "3,16,16",
                  "--board", "pynq-z2", "--objective", "throughput", "--batch", "4", "--quick",
                  "-o", str(plan), "--plot", str(png))
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "predicted" in out and "all on cpu" in out and "vs best single device" in out
    assert "modeled" in out  # FPGA figures are labelled as modeled
    data = json.loads(plan.read_text())
    assert data["objective"] == "throughput" and data["board"] == "pynq-z2"
    assert {p["device"] for p in data["assignment"].values()} <= {"cpu", "fpga"}
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_profile_then_partition_from_table(tmp_path, capsys) -> None:
    costs = tmp_path / "costs.json"
    assert main(["profile", MLP, "--input-shape", "16", "--batch", "1,8", "--board", "kv260",
                 "--quick", "-o", str(costs)]) == 0
    table = json.loads(costs.read_text())
    assert table["source"]["cpu"] == "measured" and table["source"]["fpga"].startswith("modeled")
    for objective in ("latency", "throughput"):
        assert main(["partition", MLP, "--input-shape", "16", "--board", "kv260", "--costs",
                     str(costs), "--objective", objective, "-o", str(tmp_path / "p.json")]) == 0
    out = capsys.readouterr().out
    assert "dp, optimal" in out  # the MLP is a chain: latency goes to the exact DP


def bad(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: broken\nresources: {lut: [1, 2\n")
    return [
        (["partition", MLP, "--input-shape", "16", "--board", str(broken)],
         "broken.yaml", "line"),
        (["partition", MLP, "--input-shape", "16", "--board", "pynq-z9"],
         "unknown board 'pynq-z9'", "pynq-z2"),
        (["partition", "host/models.py:no_such", "--input-shape", "16"],
         "has no factory 'no_such'", "jet_tagger"),
        (["partition", MLP, "--input-shape", "3,32,32"], "does not run on input shape",
         "--input-shape"),
        (["partition", "tests/data/bad_models.py:value_branch", "--input-shape", "8"],
         "cannot be captured", "if y.sum() > 0"),
        (["partition", MLP, "--input-shape", "16", "--costs", str(tmp_path / "nope.json")],
         "cost table not found", "hwpart profile"),
        (["partition", MLP, "--input-shape", "16", "--devices", "fpga"], "--devices", "cpu"),
    ]


def test_bad_input_is_one_line_without_traceback(tmp_path, capsys) -> None:
    for args, first, second in bad(tmp_path):
        code = main(args)
        err = capsys.readouterr().err.strip()
        assert code == 2, args
        assert err.startswith("hwpart: error: ") and "\n" not in err, err
        assert first in err and second in err, err
        assert "Traceback" not in err


def test_bad_input_through_the_console_script(tmp_path) -> None:
    res = run_cli("partition", MLP, "--input-shape", "16", "--board", "nope")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "Traceback" not in res.stderr
    assert "unknown board 'nope'" in res.stderr


@pytest.mark.parametrize("args", [["boards"], ["--help"]])
def test_informational_commands(args, capsys) -> None:
    try:
        code = main(args)
    except SystemExit as exc:  # argparse --help
        code = exc.code
    assert code == 0
    out = capsys.readouterr().out
    assert ("pynq-z2" in out and "kv260" in out and "zcu104" in out) or "partition" in out
