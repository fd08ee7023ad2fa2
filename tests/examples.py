"""The example models, captured once per test session (imported by tests as ``examples``)."""

from __future__ import annotations

from host.models import EXAMPLES
from hwpart.graph import LayerGraph, capture

_CACHE: dict[str, LayerGraph] = {}


def example_graph(name: str) -> LayerGraph:
    if name not in _CACHE:
        factory, shape = EXAMPLES[name]
        _CACHE[name] = capture(factory(), shape, name)
    return _CACHE[name]
