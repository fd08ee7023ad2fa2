"""hwpart board check on the simulated board: locally, and from the host through the agent.

The simulated board's timeline is the board file's model, so a check there must
give back exactly the figures of boards/pynq-z2.yaml: that tests the method
(loopback route, the round-trip fit, swap timing, the config-port rate) and
that every figure is labelled modeled. The host's planner then reads them.
"""

from __future__ import annotations

import shutil

import pytest
from test_fpga_support import jet_rms, other_rm

pytest.importorskip("pynq")
pytest.importorskip("zmq")

from hwpart.board.check import fit_round_trip  # noqa: E402
from hwpart.board.cli import main  # noqa: E402
from hwpart.board.manifest import write_board_manifest  # noqa: E402
from hwpart.board.measured import load_measured  # noqa: E402
from hwpart.boards import load_board  # noqa: E402
from hwpart.errors import HwpartError  # noqa: E402


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from hwpart.sim.bundle import write_sim_bundle

    b = write_sim_bundle(tmp_path_factory.mktemp("chk") / "b", "jet", [*jet_rms(), other_rm()])
    write_board_manifest(b.root)
    return b


def assert_board_figures(sections, slots: int, rms: list[str]) -> None:
    board = load_board("pynq-z2")
    dma = sections["dma"]["data"]
    assert dma["latency_s"] == pytest.approx(board.dma.latency_us * 1e-6, rel=1e-3)
    assert dma["bandwidth_Bps"] == pytest.approx(board.dma.bandwidth_mb_s * 1e6, rel=1e-3)
    pr = sections["pr"]["data"]
    assert pr["config_port_Bps"] == pytest.approx(board.config_port.throughput_mb_s * 1e6,
                                                  rel=1e-3)
    assert sorted(pr["swap_s"]) == sorted(f"{r}@{k}" for r in rms for k in range(slots))
    runs = sections["slots"]["data"]
    assert sorted({(r["slot"], r["batch"]) for r in runs}) == [
        (k, n) for k in range(slots) for n in (1, 64, 256)]
    for r in runs:  # more samples per batch: more per second, each batch a little longer
        assert r["throughput_sps"] == pytest.approx(r["batch"] / r["latency_s"])
    by = {(r["slot"], r["batch"]): r for r in runs}
    assert by[(0, 256)]["throughput_sps"] > by[(0, 1)]["throughput_sps"] * 10
    for s in ("dma", "slots", "pr"):
        assert sections[s]["simulated"] is True  # modeled, and labelled so


def test_check_on_the_simulated_board_gives_back_the_board_files_figures(bundle, tmp_path,
                                                                         capsys):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    assert main(["check", str(root), "--sim", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "shell: loads" in out and "MODELED by the simulated board" in out
    sections = load_measured(root)
    assert_board_figures(sections, bundle.slots, [r.spec.name for r in bundle.rms])
    assert "link" not in sections
    # the planner's reader takes them, and says they are modeled
    from hwpart.timing import with_measured

    board, notes = with_measured(load_board("pynq-z2"), sections)
    assert any("simulated board (modeled" in n for n in notes)


def test_check_through_the_agent_measures_the_board_and_the_link(bundle, tmp_path, capsys):
    from hwpart.board.agent import spawn
    from hwpart.board.keys import generate

    keys = tmp_path / "keys"
    generate(keys)
    host = tmp_path / "host-bundle"
    host.mkdir()
    with spawn(bundle.root, keys, "--sim", "--pace", "on") as agent:
        assert main(["check", str(host), "--remote", agent.url, "--key",
                     str(keys / "client.key_secret"), "--repeats", "2"]) == 0
    assert "link to 127.0.0.1:" in capsys.readouterr().out
    sections = load_measured(host)
    assert_board_figures(sections, bundle.slots, [r.spec.name for r in bundle.rms])
    link = sections["link"]
    assert link["simulated"] is False and link["data"]["rtt_s"] > 0


def test_a_shell_that_does_not_load_is_reported(bundle, tmp_path, capsys):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    (root / "shell.bit").write_bytes(b"not a shell")
    assert main(["check", str(root), "--sim"]) == 2  # refused before the board is touched
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shell.bit: sha256" in err[0] and "refusing to use" in err[0]
    assert not (root / "measured.json").exists()


def test_the_fit_recovers_latency_and_bandwidth_and_refuses_nonsense():
    pts = [(b, 2 * (50e-6 + b / 400e6)) for b in (64, 4096, 1 << 20)]
    lat, bw = fit_round_trip(pts)
    assert lat == pytest.approx(50e-6) and bw == pytest.approx(400e6)
    with pytest.raises(HwpartError, match="did not grow"):
        fit_round_trip([(64, 2e-3), (1 << 20, 1e-3)])
