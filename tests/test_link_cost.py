"""Measured figures replace the board's estimates, and a remote board's link is priced.

``hwpart board check`` (and the host, against a running agent) write
``BUNDLE/measured.json``; the planner then prices the DMA, PR swaps and -- when the
FPGA is driven through the board agent -- every host <-> board crossing with them.
"""

from __future__ import annotations

import pytest
from test_fpga_support import CACHE, graph, jet_rms

pytest.importorskip("pynq")

from hwpart import timing  # noqa: E402
from hwpart.board.measured import update_measured  # noqa: E402
from hwpart.boards import load_board  # noqa: E402
from hwpart.costs import auto_plan, board_figures, build_problem, profile  # noqa: E402
from hwpart.errors import ConfigError  # noqa: E402
from hwpart.overlay import load_manifest  # noqa: E402

BATCH = 256


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """The jet tagger's _2.._3 and _4.._5 as two RMs (from the compile cache)."""
    from hwpart.overlay.build import BuildOptions, build_overlay

    jet_rms()
    out = tmp_path_factory.mktemp("link") / "ob"
    build_overlay(graph("jet_tagger"), load_board("pynq-z2"), BuildOptions(
        out=out, slots=2, groups="_2-_3,_4-_5", rtl=False, samples=50, cache=CACHE, jobs=1))
    return out


@pytest.fixture(scope="module")
def table():
    """CPU costs fixed at 5 us per sample per layer: slower than the modeled fabric behind a
    fast link, faster than anything behind a slow one (measured times would make the
    crossover drift with the machine's load)."""
    t = profile(graph("jet_tagger"), [BATCH], ["cpu"], repeats=1, min_total_s=0.0)
    for by in t.times.values():
        if "cpu" in by:
            by["cpu"] = {str(BATCH): 5e-6 * BATCH}
    return t


def write_measured(bundle, link: dict | None = None, dma: dict | None = None) -> None:
    (bundle / "measured.json").unlink(missing_ok=True)
    if link is not None:
        update_measured(bundle, "link", link, "test", simulated=True)
    if dma is not None:
        update_measured(bundle, "dma", dma, "test", simulated=False)


def fpga_layers(plan) -> list[str]:
    return sorted(n for n in graph("jet_tagger").compute_nodes
                  if plan.unit_of(n).startswith("fpga"))


def plan(bundle, table):
    lg = graph("jet_tagger")
    return auto_plan(lg, batch=BATCH, devices=["cpu", "fpga"], table=table,
                     overlay=load_manifest(bundle))


def test_the_plan_leaves_the_fpga_as_the_measured_link_gets_slower(bundle, table, monkeypatch):
    monkeypatch.setenv("HWPART_FPGA", "remote://127.0.0.1:7700")
    moved = []
    for rtt_s, bw in ((50e-6, 1e9), (200e-6, 100e6), (20e-3, 1e6)):
        write_measured(bundle, link={"rtt_s": rtt_s, "bandwidth_Bps": bw})
        moved.append(fpga_layers(plan(bundle, table)))
    assert moved[0] == ["_2", "_3", "_4", "_5"], moved  # a fast link: the fabric wins
    assert moved[-1] == [], moved  # 1 MB/s and 20 ms: nothing is worth the crossing
    # the slower link never draws more layers onto the board
    assert all(len(a) >= len(b) for a, b in zip(moved, moved[1:], strict=False)), moved


def test_the_link_is_priced_in_series_with_the_dma(bundle, monkeypatch):
    write_measured(bundle, link={"rtt_s": 1e-3, "bandwidth_Bps": 10e6})
    m = load_manifest(bundle)
    local, _ = board_figures(m, remote=False)
    remote, notes = board_figures(m, remote=True)
    nbytes = 4096
    want = (local.dma.link.transfer_s(nbytes) + 0.5e-3 + nbytes / 10e6)
    assert remote.dma.link.transfer_s(nbytes) == pytest.approx(want, rel=1e-9)
    assert any("link" in n and "simulated" in n for n in notes), notes
    # the partitioner's host <-> FPGA link is the same one
    lg = graph("jet_tagger")
    t = profile(lg, [8], ["cpu"], repeats=1, min_total_s=0.0)
    p = build_problem(lg, t, 8, ["cpu", "fpga"], remote, overlay=m)
    assert p.link("cpu", "fpga0").bandwidth_bps == pytest.approx(remote.dma.bandwidth_mb_s * 1e6)


def test_measured_dma_replaces_the_estimate_local_or_remote(bundle):
    write_measured(bundle, dma={"latency_s": 5e-6, "bandwidth_Bps": 250e6})
    board, notes = board_figures(load_manifest(bundle), remote=False)
    assert board.dma.bandwidth_mb_s == pytest.approx(250.0)
    assert board.dma.latency_us == pytest.approx(5.0)
    assert any(n.startswith("DMA 250 MB/s") for n in notes), notes
    assert timing.dma_s(board, 250) == pytest.approx(5e-6 + 1e-6)


def test_a_remote_fpga_with_no_measured_link_is_refused(bundle, monkeypatch):
    write_measured(bundle, dma={"latency_s": 5e-6, "bandwidth_Bps": 250e6})
    monkeypatch.setenv("HWPART_FPGA", "remote://127.0.0.1:7700")
    with pytest.raises(ConfigError, match=r"measured\.json.*no measured host <-> board link"):
        board_figures(load_manifest(bundle))
    (bundle / "measured.json").unlink()
    with pytest.raises(ConfigError, match="hwpart board link"):
        board_figures(load_manifest(bundle))


def test_partition_cpu_board_plans_on_the_boards_measured_cpu(bundle, tmp_path, capsys,
                                                               monkeypatch):
    """`hwpart partition --overlay B --cpu board` reads B/measured.json's board_cpu section
    (`hwpart board check --cost-input`): the layers the board timed are priced with it."""
    from hwpart.board import cpucost
    from hwpart.boardcpu import export_cost_input
    from hwpart.cli import main

    monkeypatch.delenv("HWPART_FPGA", raising=False)
    (bundle / "measured.json").unlink(missing_ok=True)
    lg = graph("jet_tagger")
    f = export_cost_input(lg, tmp_path / "in.npz", [1, 8])
    cpucost.measure(bundle, f, repeats=1, board="pynq-z2")
    out = tmp_path / "plan.json"
    args = ["partition", "host/models.py:jet_tagger", "--input-shape", "16", "--overlay",
            str(bundle), "--cpu", "board", "--batch", "8", "-o", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "measured (" in printed and "modeled" in printed, printed
    (bundle / "measured.json").unlink()
    assert main(args) == 0
    assert "measured (" not in capsys.readouterr().out
