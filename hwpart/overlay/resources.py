"""Resources and cycles of an RM, *estimated* by an analytical model.

Nothing here is measured: there is no Vivado on these machines, and hls4ml
gives no estimate without it. The model follows hwpart.costs.fpga_model (same
per-layer formulas, docs/cost-model.md) with one change that matters for
groups: the layers of a group share the slot, so one common reuse factor ``R``
is chosen for the whole group (the smallest whose DSP sum fits the slot),
snapped per layer to the nearest reuse factor hls4ml accepts (its rule for
dense/conv kernels). The chosen factors are written into the hls4ml config, so
the estimate describes the design that is actually generated.

Cycles (io_stream dataflow, see docs/overlays.md): a dense layer takes a vector
every ``R`` cycles, a convolution a pixel every ``R`` cycles, other layers one
stream beat per cycle; the group's initiation interval is its slowest layer or
its DMA beats, whichever is larger; latency adds every layer's II and depth (an
upper bound: dataflow overlaps layers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from hwpart.boards import Board, Resources
from hwpart.graph import LayerGraph

SOURCE = "estimated (analytical model)"
_KERNEL_OPS = ("linear", "conv1d", "conv2d")


@dataclass
class LayerEstimate:
    node: str
    op: str
    reuse: int
    ii_cycles: int
    latency_cycles: int
    resources: Resources


@dataclass
class RMEstimate:
    """Per-RM figures. ``source`` says where they come from; keep it in every print."""

    resources: Resources
    ii_cycles: int
    latency_cycles: int
    layers: list[LayerEstimate] = field(default_factory=list)
    source: str = SOURCE
    bits: int = 16

    @property
    def reuse(self) -> dict[str, int]:
        return {le.node: le.reuse for le in self.layers if le.op in _KERNEL_OPS}

    def fits(self, board: Board) -> bool:
        return self.resources.fits(board.slots.resources)

    def over_text(self, board: Board) -> str:
        """``"dsp 120 > slot 66, lut ..."``, or "" when it fits."""
        over = self.resources.over(board.slots.resources)
        return ", ".join(f"{k} {need} > slot {have}" for k, (need, have) in over.items())


@lru_cache(maxsize=4096)
def valid_reuse_factors(n_in: int, n_out: int) -> tuple[int, ...]:
    """Reuse factors hls4ml (1.3) accepts for an ``n_in x n_out`` kernel.

    Same rule as hls4ml's FPGA backend (it silently replaces any other value by
    the closest valid one, which would make this estimate describe another design).
    """
    total = n_in * n_out
    out = []
    for rf in range(1, total + 1):
        if total % rf:
            continue
        mult_limit = math.ceil(total / min(n_in, rf))
        if (mult_limit % n_out == 0 or rf >= n_in) and (rf % n_in == 0 or rf < n_in):
            out.append(rf)
    return tuple(out)


def kernel_dims(lg: LayerGraph, node: str) -> tuple[int, int] | None:
    """(n_in, n_out) of a dense/conv kernel: the matrix hls4ml multiplies per output position."""
    d = lg.dag.nodes[node]
    if d["op"] not in _KERNEL_OPS:
        return None
    mod = lg.module.get_submodule(str(d["target"]))
    if d["op"] == "linear":
        return int(mod.in_features), int(mod.out_features)
    k = math.prod(mod.kernel_size)
    return int(mod.in_channels // mod.groups * k), int(mod.out_channels)


def _positions(shape: tuple[int, ...]) -> int:
    return math.prod(shape[2:]) if len(shape) > 2 else 1


def _layer(lg: LayerGraph, node: str, target_r: int, bits: int) -> LayerEstimate:
    d = lg.dag.nodes[node]
    op, shape = d["op"], tuple(d["out_shape"])
    dims = kernel_dims(lg, node)
    if dims is not None:
        n_in, n_out = dims
        mults = n_in * n_out
        valid = valid_reuse_factors(n_in, n_out)
        r = next((v for v in valid if v >= target_r), valid[-1])
        pos = _positions(shape)
        ii = pos * r
        depth = r + math.ceil(math.log2(mults + 1)) + 3
        # DSP48E1/E2 multiply 25(27)x18 bits: wider operands take two DSPs each
        dsp = math.ceil(mults / r) * (1 if bits <= 18 else 2)
        wbits = (mults + n_out) * bits
        bram = math.ceil(wbits / 18432) if r > 1 else 0
        lut = 40 * dsp + (0 if r > 1 else wbits // 4) + 200
        if op != "linear":
            bram += 1  # line buffer
    else:
        r = 1
        in_shape = tuple(d["in_shapes"][0])
        ii = max(_positions(in_shape), _positions(shape))
        numel = math.prod(shape[1:]) if len(shape) > 1 else 1
        depth = 4 + (math.ceil(math.log2(numel + 1)) if op == "softmax" else 0)
        dsp = 0
        bram = 1 if op == "softmax" else 0  # exp / inverse lookup tables
        if op in ("maxpool2d", "avgpool2d", "maxpool1d", "avgpool1d"):
            bram += 1  # line buffer
        lut = 20 * (shape[1] if len(shape) > 1 else 1) + 100
    res = Resources(lut=int(lut), ff=int(1.5 * lut), dsp=int(dsp), bram_18k=int(bram), uram=0)
    return LayerEstimate(node, op, r, int(ii), int(ii + depth), res)


def _sum(layers: list[LayerEstimate]) -> Resources:
    total = Resources(0, 0, 0, 0, 0)
    for le in layers:
        total = total + le.resources
    return total


def _io_beats(shape: tuple[int, ...], bits: int, width: int) -> int:
    return math.ceil(math.prod(shape) * bits / width)


def estimate_group(lg: LayerGraph, nodes: list[str], board: Board, bits: int = 16,
                   reuse: dict[str, int] | None = None) -> RMEstimate:
    """Estimate one RM; with ``reuse`` given, use those factors instead of choosing."""
    budget = board.slots.resources.dsp
    if reuse is not None:
        layers = [_layer(lg, n, reuse.get(n, 1), bits) for n in nodes]
    else:
        dims = [kernel_dims(lg, n) for n in nodes]
        max_r = max([a * b for a, b in (x for x in dims if x)] or [1])
        layers = [_layer(lg, n, 1, bits) for n in nodes]
        r = 1
        while _sum(layers).dsp > budget and r < max_r:
            r = r + 1 if r < 16 else math.ceil(r * 1.1)
            layers = [_layer(lg, n, r, bits) for n in nodes]
    d0, d1 = lg.dag.nodes[nodes[0]], lg.dag.nodes[nodes[-1]]
    width = board.dma.data_width_bits
    io = max(_io_beats(tuple(d0["in_shapes"][0][1:]), bits, width),
             _io_beats(tuple(d1["out_shape"][1:]), bits, width))
    ii = max([le.ii_cycles for le in layers] + [io])
    latency = sum(le.latency_cycles for le in layers) + io
    return RMEstimate(resources=_sum(layers), ii_cycles=ii, latency_cycles=latency,
                      layers=layers, bits=bits)
