"""Overlay groups, estimates and scripts: everything that needs no hls4ml compile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from examples import example_graph

from hwpart.boards import load_board
from hwpart.overlay import tcl
from hwpart.overlay.candidates import GroupError, find_candidates, parse_groups
from hwpart.overlay.resources import estimate_group, valid_reuse_factors


def test_jet_one_group_fits_each_board():
    lg = example_graph("jet_tagger")
    for name in ("pynq-z2", "kv260"):
        board = load_board(name)
        c = find_candidates(lg, board)
        assert [g.nodes for g in c.groups] == [lg.compute_nodes]
        est = c.groups[0].estimate
        assert est.fits(board) and est.source.startswith("estimated")
        assert est.resources.dsp <= board.slots.resources.dsp
        assert c.off_fpga == {}


def test_unsupported_layers_stay_off_with_reasons():
    lg = example_graph("resnet_block")
    c = find_candidates(lg, load_board("pynq-z2"))
    assert "no hls4ml PyTorch converter" in c.off_fpga["pool"]
    assert "one input stream" in c.off_fpga["add"]
    covered = {n for g in c.groups for n in g.nodes}
    assert not covered & set(c.off_fpga)
    for g in c.groups:  # every group is a contiguous run in execution order
        idx = [lg.compute_nodes.index(n) for n in g.nodes]
        assert idx == list(range(idx[0], idx[0] + len(idx)))


def test_explicit_groups_and_their_errors():
    lg = example_graph("small_cnn")
    assert parse_groups(lg, "_0-_2,_3-_7") == [["_0", "_1", "_2"], ["_3", "_4", "_5", "_6", "_7"]]
    assert parse_groups(lg, "_7") == [["_7"]]
    with pytest.raises(GroupError, match="unknown layer 'x9'"):
        parse_groups(lg, "_0-x9")
    with pytest.raises(GroupError, match="backwards"):
        parse_groups(lg, "_3-_0")
    with pytest.raises(GroupError, match="in two groups"):
        parse_groups(lg, "_0-_3,_3-_5")
    res = example_graph("resnet_block")
    with pytest.raises(GroupError, match="cannot go on the FPGA"):
        parse_groups(res, "bn2-relu2")
    with pytest.raises(GroupError, match="not a chain"):
        parse_groups(res, "stem-conv1")


def test_reuse_factors_match_hls4ml():
    """hls4ml's own list, and the transcription used where hls4ml is not installed."""
    hls4ml = pytest.importorskip("hls4ml")
    from hwpart.overlay.resources import _hls4ml_rule

    backend = hls4ml.backends.get_backend("Vitis")
    for n_in, n_out in ((16, 64), (27, 8), (72, 16), (256, 10), (400, 120), (150, 16)):
        ref = backend.get_valid_reuse_factors(n_in, n_out)
        assert list(valid_reuse_factors(n_in, n_out)) == ref
        assert list(_hls4ml_rule(n_in, n_out)) == ref


def test_estimate_uses_valid_reuse_and_models_cycles():
    lg = example_graph("small_cnn")
    board = load_board("pynq-z2")
    est = estimate_group(lg, lg.compute_nodes, board)
    for node, rf in est.reuse.items():
        d = lg.dag.nodes[node]
        mod = lg.module.get_submodule(str(d["target"]))
        dims = ((mod.in_features, mod.out_features) if d["op"] == "linear"
                else (mod.in_channels * 9, mod.out_channels))
        assert rf in valid_reuse_factors(*dims)
    assert est.ii_cycles >= 256  # at least one beat per input pixel of the first conv
    assert est.latency_cycles > est.ii_cycles


def tiny_board(tmp_path: Path, dsp: int = 4, lut: int = 800) -> Path:
    data = yaml.safe_load(Path("boards/pynq-z2.yaml").read_text())
    data["name"] = "tiny"
    data["slots"]["resources"].update(dsp=dsp, lut=lut)
    p = tmp_path / "tiny.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_oversized_rm_rejected_with_numbers(tmp_path):
    from hwpart.overlay.build import BuildOptions, build_overlay

    board = load_board(tiny_board(tmp_path))
    lg = example_graph("jet_tagger")
    res = build_overlay(lg, board, BuildOptions(out=tmp_path / "b", groups="_0-_7",
                                                cache=tmp_path / "c"))
    (rep,) = res.reports
    assert rep.status == "rejected"
    assert re.match(r"RM rm0 \(_0\.\._7\): lut \d+ > slot 800", rep.reason), rep.reason
    assert res.manifest.rms == [] and res.manifest.rejected[0].reason == rep.reason
    assert res.compiles == 0


def test_tcl_structure_for_three_rms_two_slots():
    board = load_board("kv260")
    amap = tcl.address_map(board, 2)
    rms = [{"name": f"rm{i}", "layers": f"_{i}", "top": f"rm{i}", "n_in": 8, "n_out": 4}
           for i in range(3)]
    files = tcl.render_bundle(board, amap, rms, "x", 64)
    shell = files["vivado/shell_bd.tcl"]
    assert "zynq_ultra_ps_e" in files["vivado/ps.tcl"]
    assert "CONFIG.NUM_SI {3} CONFIG.NUM_MI {3}" in shell and "ROUTING_MODE {1}" in shell
    for k in range(2):
        assert f"create_bd_cell -type ip -vlnv xilinx.com:ip:dfx_decoupler decoupler_{k}" in shell
        assert f"switch/M{k + 1:02d}_AXIS] [get_bd_intf_pins decoupler_{k}/s_rp_in]" in shell
        assert f"decoupler_{k}/s_rp_out] [get_bd_intf_pins switch/S{k + 1:02d}_AXIS]" in shell
        assert (f"-offset 0x{0xA0000000 + 0x1000 * (k + 1):08X} -range 0x1000 "
                f"[get_bd_addr_segs decoupler_{k}/s_axi_reg/Reg]") in shell
        assert "LIST_SYNTH_BD {rm_rm0.bd:rm_rm1.bd:rm_rm2.bd}" in shell
    dfx = files["vivado/dfx.tcl"]
    pairs = set(re.findall(r"shell_i_slot_(\d)_rm_(rm\d)_inst_0_partial\.bit "
                           r"\$bundle/partials/slot\1_\2\.bit", dfx))
    assert pairs == {(str(k), f"rm{i}") for k in range(2) for i in range(3)}
    assert dfx.count("create_pr_configuration") == 3
    for i in range(3):
        assert f"set_top rm{i}_axis" in files[f"rm{i}/hls.tcl"]


def test_wider_words_take_two_dsps_and_reuse_adapts():
    lg = example_graph("jet_tagger")
    board = load_board("pynq-z2")
    e16 = estimate_group(lg, lg.compute_nodes, board)
    e24 = estimate_group(lg, lg.compute_nodes, board, bits=24)
    assert e24.fits(board) and e24.resources.dsp <= board.slots.resources.dsp
    assert all(e24.reuse[n] >= e16.reuse[n] for n in e16.reuse)
    assert any(e24.reuse[n] > e16.reuse[n] for n in e16.reuse)
    assert e24.ii_cycles >= e16.ii_cycles  # more reuse never speeds it up
