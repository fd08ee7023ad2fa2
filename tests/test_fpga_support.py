"""Shared helpers of the simulated-board and FPGA-device tests (no tests here).

RMs are compiled once with hls4ml (about 5-15 s each) into ``.hwpart-cache``,
which later runs reuse; every test module takes them from :func:`rm_spec`.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from torch import nn

from host.models import EXAMPLES
from hwpart.graph import LayerGraph, capture
from hwpart.partition import Plan, manual_plan
from hwpart.sim.rm import RmSpec

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".hwpart-cache"
PRECISION = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"

pytest.importorskip("hls4ml")
pytest.importorskip("pynq")
pytest.importorskip("hwpart.overlay.hls")  # the overlay builder (compile_csim, to_stream)


@functools.cache
def graph(model: str) -> LayerGraph:
    factory, shape = EXAMPLES[model]
    return capture(factory(), shape, model)


def node_shape(lg: LayerGraph, node: str) -> tuple[int, ...]:
    return tuple(lg.dag.nodes[node]["out_shape"][1:])


@functools.cache
def rm_spec(model: str, nodes: tuple[str, ...], name: str) -> RmSpec:
    """The RM of ``nodes`` of an example model, C simulation compiled (or cached)."""
    from hwpart.overlay import hls
    from hwpart.sim.rm import rm_from_csim

    lg = graph(model)
    m = hls.slice_module(lg, list(nodes))
    pred = next(iter(lg.dag.predecessors(nodes[0])))
    ins, outs = node_shape(lg, pred), node_shape(lg, nodes[-1])
    art = hls.compile_csim(m, ins, outs, PRECISION, CACHE)
    return rm_from_csim(name, list(nodes), art, ins, outs)


@functools.cache
def other_rm(name: str = "other32") -> RmSpec:
    """A 32->32 RM computing something else (same shape as jet _4,_5): for PR swaps."""
    from hwpart.overlay import hls
    from hwpart.sim.rm import rm_from_csim

    torch.manual_seed(7)
    m = nn.Sequential(nn.Linear(32, 32), nn.ReLU()).eval()
    art = hls.compile_csim(m, (32,), (32,), PRECISION, CACHE)
    return rm_from_csim(name, ["_4", "_5"], art, (32,), (32,))


def jet_rms() -> list[RmSpec]:
    return [rm_spec("jet_tagger", ("_2", "_3"), "fc2"), rm_spec("jet_tagger", ("_4", "_5"), "fc3")]


def make_plan(lg: LayerGraph, stages: list[tuple[str, list[str]]], batch: int = 8) -> Plan:
    return manual_plan(lg.name, lg.input_shape, stages, batch)
