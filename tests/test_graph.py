"""Model intake: capture, layer attributes, DAG shapes, and the errors users see."""

from __future__ import annotations

import pytest
import torch

from hwpart.errors import ModelError
from hwpart.graph import capture, load_graph, load_model, parse_shape

DATA = "tests/data/bad_models.py"


def test_jet_tagger_layers() -> None:
    lg = load_graph("host/models.py:jet_tagger", "16")
    assert lg.capture == "fx" and lg.is_chain()
    ops = [lg.dag.nodes[n]["op"] for n in lg.nodes]
    assert ops == ["input", "linear", "relu", "linear", "relu", "linear", "relu", "linear",
                   "softmax", "output"]
    fc1 = lg.dag.nodes[lg.compute_nodes[0]]
    assert fc1["macs"] == 16 * 64
    assert fc1["param_bytes"] == (16 * 64 + 64) * 4
    assert fc1["out_bytes"] == 64 * 4 and fc1["out_shape"] == (1, 64)
    assert sum(lg.dag.nodes[n]["macs"] for n in lg.nodes) == 16 * 64 + 64 * 32 + 32 * 32 + 32 * 5


def test_dags_have_fan_out_and_fan_in() -> None:
    res = load_graph("host/models.py:resnet_block", "3,16,16")
    assert not res.is_chain()
    add = next(n for n in res.nodes if res.dag.nodes[n]["op"] == "add")
    assert res.dag.in_degree(add) == 2
    stem = next(n for n in res.nodes if res.dag.nodes[n]["op"] == "conv2d")
    assert res.dag.out_degree(stem) == 2  # conv1 and the skip edge
    inc = load_graph("host/models.py:inception_block", "3,16,16")
    cat = next(n for n in inc.nodes if inc.dag.nodes[n]["op"] == "cat")
    assert inc.dag.in_degree(cat) == 4
    assert inc.dag.out_degree(inc.nodes[0]) == 4
    conv = inc.dag.nodes["b3"]
    assert conv["macs"] == 16 * 16 * 8 * 4 * 9
    assert all(inc.dag.edges[e]["bytes"] == inc.dag.nodes[e[0]]["out_bytes"] for e in inc.dag.edges)


def test_export_fallback_when_fx_cannot_trace() -> None:
    lg = load_graph(f"{DATA}:shape_branch", "8")
    assert lg.capture == "export"
    ops = {lg.dag.nodes[n]["op"] for n in lg.nodes}
    assert {"linear", "relu", "add"} <= ops
    linear = [n for n in lg.nodes if lg.dag.nodes[n]["op"] == "linear"]
    assert lg.dag.nodes[linear[0]]["macs"] == 64
    assert lg.dag.nodes[linear[0]]["param_bytes"] == (64 + 8) * 4


def test_untraceable_model_names_the_construct() -> None:
    with pytest.raises(ModelError) as err:
        load_graph(f"{DATA}:value_branch", "8")
    msg = str(err.value)
    assert "cannot be captured" in msg and "torch.fx" in msg and "torch.export" in msg
    assert "bad_models.py:" in msg and "if y.sum() > 0" in msg
    assert "\n" not in msg


@pytest.mark.parametrize("spec,fragment", [
    ("host/models.py:nope", "has no factory 'nope'"),
    ("host/missing.py:f", "file 'host/missing.py' not found"),
    ("no_such_pkg.mod:f", "cannot import module 'no_such_pkg.mod'"),
    ("host/models.py", "expected 'path/to/file.py:factory'"),
    (f"{DATA}:not_a_module", "returned int, expected torch.nn.Module"),
    (f"{DATA}:broken", "calling broken() failed: RuntimeError: weights file missing"),
])
def test_model_spec_errors(spec: str, fragment: str) -> None:
    with pytest.raises(ModelError, match=None) as err:
        load_model(spec)
    assert fragment in str(err.value)


def test_wrong_input_shape_is_reported_with_the_shape() -> None:
    with pytest.raises(ModelError) as err:
        load_graph("host/models.py:jet_tagger", "15")
    msg = str(err.value)
    assert "(15,)" in msg and "--input-shape" in msg and "\n" not in msg


@pytest.mark.parametrize("text", ["", "a,b", "0", "3,-1"])
def test_bad_shape_text(text: str) -> None:
    with pytest.raises(ModelError, match="input shape"):
        parse_shape(text)


def test_parse_shape_forms() -> None:
    assert parse_shape("3,32,32") == parse_shape("3x32x32") == (3, 32, 32)
    assert parse_shape((16,)) == (16,)


def test_module_package_spec() -> None:
    model = load_model("host.models:jet_tagger")
    lg = capture(model, (16,), "jet")
    x = torch.randn(3, 16)
    assert torch.equal(lg.module(x), model(x))
