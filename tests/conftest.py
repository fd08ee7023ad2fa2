"""Shared fixtures: the example models, captured once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # host/ is a folder of examples, not an installed package
sys.path.insert(0, str(ROOT / "tests"))

from host.models import EXAMPLES  # noqa: E402
from hwpart.graph import LayerGraph, capture  # noqa: E402

_CACHE: dict[str, LayerGraph] = {}


@pytest.fixture(params=sorted(EXAMPLES))
def example(request) -> tuple[str, LayerGraph]:
    name = request.param
    if name not in _CACHE:
        factory, shape = EXAMPLES[name]
        _CACHE[name] = capture(factory(), shape, name)
    return name, _CACHE[name]


def example_graph(name: str) -> LayerGraph:
    if name not in _CACHE:
        factory, shape = EXAMPLES[name]
        _CACHE[name] = capture(factory(), shape, name)
    return _CACHE[name]
