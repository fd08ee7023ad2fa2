"""Resources and cycles of an RM, *estimated* by an analytical model.

Nothing here is measured: there is no Vivado on these machines, and hls4ml
gives no estimate without it. The model follows hwpart.costs.fpga_model (same
per-layer formulas, docs/cost-model.md).

Reuse factors are chosen per layer, as hls4ml users do by hand: an RM is an
io_stream dataflow pipeline, so its throughput is set by its slowest layer
(a dense layer takes a vector every ``R`` cycles, a convolution a pixel every
``R`` cycles). A common ``R`` for all layers starves the layers that run most
often: in LeNet-5 the first convolution runs 784 times per sample and the
400x120 dense layer once, so one ``R`` that makes the dense layer fit leaves the
convolution 784x slower than it needs to be. Instead, the smallest target II
is searched for which every dense/conv layer, at the largest reuse factor that
still meets it (the fewest multipliers), keeps the whole RM within the slot's
DSP, LUT and BRAM budget. Only reuse factors hls4ml accepts are used (its own
``get_valid_reuse_factors``; its Resource strategy silently replaces any other,
which would make this estimate describe another design). The chosen factors
are written into the per-board hls4ml config (``Strategy: Resource`` where
``R > 1``), so the estimate describes the design that is generated.

Cycles (io_stream dataflow, see docs/overlays.md): a dense layer takes a vector
every ``R`` cycles, a convolution a pixel every ``R`` cycles, other layers one
stream beat per cycle; the group's initiation interval is its slowest layer or
its DMA beats, whichever is larger; latency adds every layer's II and depth (an
upper bound: dataflow overlaps layers).
"""

from __future__ import annotations

import math
from bisect import bisect_right
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
    """Reuse factors hls4ml accepts for an ``n_in x n_out`` kernel, from hls4ml itself.

    hls4ml's FPGA backend owns the rule (it replaces any other value with the
    closest legal one when it converts), so it is asked, not re-implemented.
    hls4ml comes with the ``sim`` extra, and the partitioner prices FPGA layers
    with this model on installs without it; only there the same rule is used as
    transcribed from hls4ml 1.3 (:func:`_hls4ml_rule`, checked equal in the tests).
    """
    try:
        import hls4ml
    except ImportError:
        return _hls4ml_rule(n_in, n_out)
    backend = hls4ml.backends.get_backend("Vitis")
    return tuple(backend.get_valid_reuse_factors(n_in, n_out))


def _hls4ml_rule(n_in: int, n_out: int) -> tuple[int, ...]:
    """hls4ml 1.3's ``FPGABackend._validate_reuse_factor``, for installs without hls4ml."""
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


def _layer(lg: LayerGraph, node: str, r_choice: int, bits: int,
           exact: bool = False) -> LayerEstimate:
    """One layer's estimate; ``r_choice`` is snapped up to a legal reuse factor unless ``exact``."""
    d = lg.dag.nodes[node]
    op, shape = d["op"], tuple(d["out_shape"])
    dims = kernel_dims(lg, node)
    if dims is not None:
        n_in, n_out = dims
        mults = n_in * n_out
        if exact:
            r = r_choice
        else:
            valid = valid_reuse_factors(n_in, n_out)
            r = next((v for v in valid if v >= r_choice), valid[-1])
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
                   reuse: dict[str, int] | None = None,
                   fixed: dict[str, int] | None = None,
                   layer_bits: dict[str, int] | None = None) -> RMEstimate:
    """Estimate one RM, choosing each dense/conv layer's reuse factor (module docstring).

    ``reuse``: use exactly these factors (layers not named: 1) and choose nothing.
    ``fixed``: factors the user set (``--hls-config``), kept as they are while the
    others are chosen. ``layer_bits``: a layer's operand width where it is not
    ``bits`` (a per-layer weight precision).
    """
    wbits = {n: (layer_bits or {}).get(n, bits) for n in nodes}
    if reuse is not None:
        layers = [_layer(lg, n, reuse.get(n, 1), wbits[n], exact=n in reuse) for n in nodes]
    else:
        layers = _choose(lg, nodes, board, wbits, fixed or {})
    d0, d1 = lg.dag.nodes[nodes[0]], lg.dag.nodes[nodes[-1]]
    width = board.dma.data_width_bits
    io = max(_io_beats(tuple(d0["in_shapes"][0][1:]), bits, width),
             _io_beats(tuple(d1["out_shape"][1:]), bits, width))
    ii = max([le.ii_cycles for le in layers] + [io])
    latency = sum(le.latency_cycles for le in layers) + io
    return RMEstimate(resources=_sum(layers), ii_cycles=ii, latency_cycles=latency,
                      layers=layers, bits=bits)


def _choose(lg: LayerGraph, nodes: list[str], board: Board, wbits: dict[str, int],
            fixed: dict[str, int]) -> list[LayerEstimate]:
    """Per-layer reuse factors for the smallest II whose RM fits the slot (module docstring).

    Candidate IIs are every ``positions x R`` a free layer can reach; for each,
    ascending, every free layer takes the largest legal ``R`` that meets it (or
    ``R = 1`` when none does: the II cannot go lower for that layer), and the
    first candidate whose RM fits wins. Resources fall as the II rises except
    for BRAM, which appears when weights leave registers (``R > 1``), so the
    search is a scan, not a bisection. When nothing fits, every free layer
    takes its largest legal ``R``: the smallest RM, rejected with its numbers.
    """
    cap = board.slots.resources
    base = {n: _layer(lg, n, fixed.get(n, 1), wbits[n], exact=n in fixed) for n in nodes}
    free: dict[str, tuple[tuple[int, ...], int]] = {}
    for n in nodes:
        dims = kernel_dims(lg, n)
        if dims is not None and n not in fixed:
            free[n] = (valid_reuse_factors(*dims), _positions(tuple(lg.dag.nodes[n]["out_shape"])))
    if not free:
        return [base[n] for n in nodes]
    # below the slowest layer that is not chosen here, a lower II gains nothing
    floor = max([le.ii_cycles for n, le in base.items() if n not in free] + [0])
    targets = sorted({pos * r for valid, pos in free.values() for r in valid} | {floor})
    for t in (t for t in targets if t >= floor):
        pick = {}
        for n, (valid, pos) in free.items():
            i = bisect_right(valid, t // pos)  # the largest legal R with pos * R <= t
            pick[n] = valid[i - 1] if i else valid[0]
        layers = [_layer(lg, n, pick[n], wbits[n], exact=True) if n in free else base[n]
                  for n in nodes]
        if _sum(layers).fits(cap):
            return layers
    return [_layer(lg, n, free[n][0][-1], wbits[n], exact=True) if n in free else base[n]
            for n in nodes]
