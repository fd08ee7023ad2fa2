"""board.json (hwpart.board.manifest) and measured.json (hwpart.board.measured)."""

from __future__ import annotations

import json
import shutil
import threading

import pytest
from test_fpga_support import jet_rms, other_rm

from hwpart.board.manifest import (
    BoardManifest,
    load_board_manifest,
    verify,
    write_board_manifest,
)
from hwpart.board.measured import load_measured, update_measured
from hwpart.board.regs import rm_id
from hwpart.errors import ConfigError

pytest.importorskip("pynq")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from hwpart.sim.bundle import write_sim_bundle

    return write_sim_bundle(tmp_path_factory.mktemp("bm") / "b", "jet", [*jet_rms(), other_rm()])


def test_written_from_the_bundle_and_read_back(bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    f = write_board_manifest(root)
    assert f == root / "board.json"
    m = load_board_manifest(root)
    assert m.name == "jet" and m.slots == bundle.slots and m.simulated
    # no addresses: the driver takes every one from the shell's .hwh when it loads
    assert "address" not in f.read_text() and "decoupler" not in f.read_text()
    assert m.data_width_bits == 64
    fc2 = m.rm("fc2")
    spec = bundle.rm("fc2").spec
    assert fc2.identity == rm_id("fc2")
    assert fc2.in_bytes == spec.layout_in(64).sample_bytes
    assert fc2.out_bytes == spec.layout_out(64).sample_bytes
    assert fc2.partials == bundle.rm("fc2").partials
    assert m.files == bundle.files  # every file, same digests
    assert BoardManifest.from_json(m.to_json(), root).to_json() == m.to_json()
    assert verify(root) == []


def test_a_scripts_only_overlay_lists_its_sim_folder(bundle, tmp_path):
    """A Bundle object whose root is elsewhere than dest: paths stay relative to its root."""
    dest = tmp_path / "deployed"
    f = write_board_manifest(bundle, dest)
    assert f.parent == dest
    doc = json.loads(f.read_text())
    assert doc["shell"]["bit"] == "shell.bit"
    assert all(not p.startswith(("/", "..")) for p in doc["files"])


def test_verify_names_every_changed_or_missing_file(bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    write_board_manifest(root)
    bad = root / "partials" / "slot1_fc3.bit"
    bad.write_bytes(bad.read_bytes() + b"x")
    (root / "partials" / "slot0_other32.hwh").unlink()
    problems = verify(root)
    assert len(problems) == 2
    assert any("slot1_fc3.bit: sha256" in p for p in problems)
    assert any("slot0_other32.hwh: missing" in p for p in problems)


def test_malformed_fields_are_named(bundle, tmp_path):
    root = tmp_path / "b"
    shutil.copytree(bundle.root, root)
    doc = json.loads(write_board_manifest(root).read_text())
    cases = [
        (lambda d: d["rms"][0].update(in_bytes="8"), r"'rms\[0\].in_bytes'.*expected int"),
        (lambda d: d["rms"][1]["partials"].update({"0": "../../etc/passwd"}),
         "leaves the bundle folder"),
        (lambda d: d["shell"].update(data_width_bits=4), "'shell.data_width_bits'"),
        (lambda d: d["files"].update({"shell.bit": "abc"}), r"'files.shell.bit'.*sha256"),
        (lambda d: d.update(format="other/1"), "'format'"),
        (lambda d: d["rms"].append(dict(d["rms"][0])), "repeated RM name"),
    ]
    for mutate, match in cases:
        d = json.loads(json.dumps(doc))
        mutate(d)
        (root / "board.json").write_text(json.dumps(d))
        with pytest.raises(ConfigError, match=match):
            load_board_manifest(root)
    (root / "board.json").write_text("{not json")
    with pytest.raises(ConfigError, match="board.json: not readable JSON"):
        load_board_manifest(root)
    with pytest.raises(ConfigError, match="no board manifest"):
        load_board_manifest(tmp_path)


def test_measured_sections_merge_with_source_and_label(tmp_path):
    assert load_measured(tmp_path) == {}
    update_measured(tmp_path, "dma", {"latency_s": 2e-5, "bandwidth_Bps": 4e8}, "check",
                    simulated=True)
    update_measured(tmp_path, "link", {"rtt_s": 1e-4, "bandwidth_Bps": 1e9}, "host")
    update_measured(tmp_path, "dma", {"latency_s": 3e-5, "bandwidth_Bps": 5e8}, "check 2")
    m = load_measured(tmp_path)
    assert m["dma"]["data"] == {"latency_s": 3e-5, "bandwidth_Bps": 5e8}
    assert m["dma"]["source"] == "check 2" and m["dma"]["simulated"] is False
    assert m["link"]["data"]["rtt_s"] == 1e-4 and m["link"]["utc"].endswith("Z")
    with pytest.raises(ConfigError, match="needs fields"):
        update_measured(tmp_path, "dma", {"latency_s": 1.0}, "x")
    (tmp_path / "measured.json").write_text("[1,")
    with pytest.raises(ConfigError, match="measured.json: not readable JSON"):
        load_measured(tmp_path)


def test_concurrent_writers_lose_no_section(tmp_path):
    def write(i: int) -> None:
        update_measured(tmp_path, f"s{i}", {"i": i}, f"writer {i}")

    ths = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    assert sorted(load_measured(tmp_path)) == sorted(f"s{i}" for i in range(8))
