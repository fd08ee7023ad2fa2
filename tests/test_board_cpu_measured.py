"""The board CPU's per-layer costs measured with numpy (hwpart.board.cpucost).

The kernels must compute each layer, not imitate its cost: each is checked
against torch on the example models' captured activations. Then the timing
writes a ``board_cpu`` section with its source into measured.json. The board is
this machine here (the source says so: its architecture, Python and numpy).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from hwpart.board import cpucost
from hwpart.boardcpu import export_cost_input
from hwpart.costs import capture_values
from hwpart.errors import ConfigError
from hwpart.graph import load_graph

MODELS = [("jet_tagger", "16"), ("small_cnn", "3,16,16"), ("resnet_block", "3,16,16"),
          ("inception_block", "3,16,16")]


@pytest.mark.parametrize("model,shape", MODELS)
def test_numpy_kernels_compute_the_layers(model, shape, tmp_path):
    lg = load_graph(f"host/models.py:{model}", shape)
    f = export_cost_input(lg, tmp_path / "in.npz", [1, 4])
    meta, params = cpucost.load_cost_input(f)
    x = lg.example_input(batch=3, seed=1)
    names = lg.compute_nodes
    ins, outs = capture_values(lg, x, inputs=names, outputs=names)
    checked = []
    for layer in meta["layers"]:
        if layer.get("unsupported"):
            continue
        args, _ = ins[layer["name"]]
        xs = [a.numpy() for a in _tensors(args)]
        got = cpucost.run_layer(layer, xs, params.get(layer["name"], {}))
        want = outs[layer["name"]].numpy()
        assert got.shape == want.shape, layer["name"]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=layer["name"])
        checked.append(layer["op"])
    # every layer of these models has a kernel
    assert [la["name"] for la in meta["layers"] if la.get("unsupported")] == []
    assert len(checked) == len(names)


def _tensors(args):
    for a in args:
        if isinstance(a, torch.Tensor):
            yield a
        elif isinstance(a, (list, tuple)):
            yield from _tensors(a)


def test_measure_writes_board_cpu_with_its_source(tmp_path):
    from hwpart.board.measured import load_measured

    lg = load_graph("host/models.py:small_cnn", "3,16,16")
    f = export_cost_input(lg, tmp_path / "cost_input.npz", [1, 8])
    data = cpucost.measure(tmp_path, f, repeats=3)
    sec = load_measured(tmp_path)["board_cpu"]
    assert sec["data"]["times"] == data["times"]
    assert set(data["times"]) == set(lg.compute_nodes)
    assert all(set(by) == {"1", "8"} and all(v > 0 for v in by.values())
               for by in data["times"].values())
    assert "measured on this machine" in sec["source"] and "numpy" in sec["source"]
    assert sec["simulated"] is False
    text = cpucost.report(data)
    assert "_0" in text and "b8" in text


def test_unsupported_layers_are_listed_not_timed(tmp_path):
    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return torch.nn.functional.gelu(self.fc(x)) * 2.0

    from hwpart.graph import capture

    lg = capture(M(), (4,), name="m")
    f = export_cost_input(lg, tmp_path / "in.npz", [2])
    meta, params = cpucost.load_cost_input(f)
    data = cpucost.time_layers(meta, params, [2], repeats=3)
    assert "fc" in data["times"]
    assert set(data["unsupported"]) == set(lg.compute_nodes) - {"fc"}
    assert "not timed" in cpucost.report(data)


def test_bad_cost_input_is_one_line(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="x.npz: not a hwpart cost input"):
        cpucost.load_cost_input(bad)
    np.savez(tmp_path / "y.npz", __meta__=np.array(json.dumps({"format": "other"})))
    with pytest.raises(ConfigError, match="field 'format'"):
        cpucost.load_cost_input(tmp_path / "y.npz")
    with pytest.raises(ConfigError, match="no cost input"):
        cpucost.load_cost_input(tmp_path / "none.npz")


def test_board_check_times_the_cost_input(tmp_path, capsys):
    """`hwpart board check --cost-input` (here on the simulated board: the CPU is this
    machine's, and the source says so)."""
    pytest.importorskip("pynq")
    from test_fpga_support import jet_rms

    from hwpart.board.cli import main
    from hwpart.board.manifest import write_board_manifest
    from hwpart.board.measured import load_measured
    from hwpart.sim.bundle import write_sim_bundle

    b = write_sim_bundle(tmp_path / "b", "jet", jet_rms())
    write_board_manifest(b.root)
    lg = load_graph("host/models.py:jet_tagger", "16")
    f = export_cost_input(lg, tmp_path / "cost_input.npz", [1, 4])
    assert main(["check", str(b.root), "--sim", "--repeats", "2", "--batches", "1",
                 "--cost-input", str(f)]) == 0
    sec = load_measured(b.root)
    assert {"dma", "slots", "pr", "board_cpu"} <= set(sec)
    assert set(sec["board_cpu"]["data"]["times"]) == set(lg.compute_nodes)
    assert "the host of a simulated pynq-z2" in sec["board_cpu"]["source"]
    assert "us per batch" in capsys.readouterr().out
    assert main(["check", str(b.root), "--remote", "remote://127.0.0.1:1", "--key", "k",
                 "--cost-input", str(f)]) == 2
    assert "--cost-input times the CPU it runs on" in capsys.readouterr().err


def test_planner_takes_the_measured_board_cpu(tmp_path):
    """with_board_cpu(measured=...): timed layers replace the model, the rest stay modeled."""
    from hwpart.board.measured import load_measured
    from hwpart.boardcpu import board_cpu_seconds, with_board_cpu
    from hwpart.boards import load_board
    from hwpart.costs import CostTable

    lg = load_graph("host/models.py:jet_tagger", "16")
    board = load_board("pynq-z2")
    f = export_cost_input(lg, tmp_path / "in.npz", [1, 4])
    cpucost.measure(tmp_path, f, repeats=3, board="pynq-z2")
    sec = load_measured(tmp_path)["board_cpu"]
    del sec["data"]["times"]["_7"]  # as if the board had no kernel for it
    empty = CostTable(lg.name, list(lg.input_shape), [1], {}, {})
    t = with_board_cpu(lg, empty, board, [1], measured=sec)
    assert t.batch_sizes == [1, 4]
    assert t.times["_0"]["cpu"]["4"] == sec["data"]["times"]["_0"]["4"]
    assert t.times["_7"]["cpu"]["4"] == board_cpu_seconds(lg, "_7", board, 4)
    assert t.source["cpu"].startswith("measured (7 layers") and "1 layers modeled" in t.source["cpu"]
    other = with_board_cpu(load_graph("host/models.py:small_cnn", "3,16,16"), empty, board, [1],
                           measured=sec)  # another model's figures are not used
    assert other.source["cpu"].startswith("modeled")
