"""Candidate layer groups: which runs of layers may become one reconfigurable module.

A slot holds one run of consecutive layers in execution order (the partitioner
assumes the same), so a group is a contiguous slice of ``lg.compute_nodes``. A
run must also be a *chain* in the DAG (each layer feeds only the next one),
because an RM has one input stream and one output stream. Layers are kept off
the FPGA, each with a reason a user can act on, when hls4ml's PyTorch front end
has no converter for them, when they are not modules (a functional ``x + y``
cannot be cut into an ``nn.Sequential`` slice), or when they sit on a branch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwpart.boards import Board
from hwpart.costs import FPGA_OPS
from hwpart.errors import HwpartError, ModelError
from hwpart.graph import LayerGraph, layer_run
from hwpart.overlay.resources import RMEstimate, estimate_group

#: Ops an RM can contain: FPGA_OPS that are single-input modules. add/cat/mul/sub
#: take two streams, which an RM's single input port cannot carry.
RM_OPS = frozenset(FPGA_OPS - {"add", "cat", "mul", "sub"})


class GroupError(HwpartError):
    """A user-named group that cannot be one RM (unknown layer, gap, unsupported op)."""


@dataclass
class Group:
    """One run of consecutive layers that becomes one RM."""

    name: str  # rm0, rm1, ...
    nodes: list[str]
    ops: list[str]
    in_shape: tuple[int, ...]  # per sample, torch (channels-first) order
    out_shape: tuple[int, ...]
    estimate: RMEstimate | None = None

    @property
    def span(self) -> str:
        return self.nodes[0] if len(self.nodes) == 1 else f"{self.nodes[0]}..{self.nodes[-1]}"


@dataclass
class Candidates:
    groups: list[Group]
    off_fpga: dict[str, str] = field(default_factory=dict)  # node -> why it stays on the host


def unsupported_reason(lg: LayerGraph, node: str) -> str | None:
    """Why ``node`` cannot be in any RM, or None when it can."""
    d = lg.dag.nodes[node]
    op = d["op"]
    if op not in FPGA_OPS:
        return f"op '{op}' has no hls4ml PyTorch converter (hls4ml 1.3)"
    if op not in RM_OPS:
        return f"op '{op}' joins two tensors; an RM has one input stream"
    if d["kind"] != "call_module":
        return (f"'{node}' is a function call ({d['target']}), not a module; only "
                "modules can be sliced into an RM")
    if op == "softmax" and len(d["in_shapes"][0]) != 2:
        return ("softmax over a multi-dimensional tensor: hls4ml io_stream implements "
                "softmax over the last axis of a vector only")
    if op in ("maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d"):
        mod = lg.module.get_submodule(str(d["target"]))
        pad = getattr(mod, "padding", 0)
        if any(p != 0 for p in (pad if isinstance(pad, (tuple, list)) else (pad,))):
            return (f"'{node}' pools with padding {pad}; hls4ml's io_stream pooling has no "
                    "padding (its C simulation asserts)")
    preds = list(lg.dag.predecessors(node))
    if len(preds) != 1:
        return f"'{node}' has {len(preds)} inputs; an RM has one input stream"
    return None


def _chained(lg: LayerGraph, a: str, b: str) -> bool:
    """True when ``a`` feeds only ``b`` and ``b`` reads only ``a``."""
    return list(lg.dag.successors(a)) == [b] and list(lg.dag.predecessors(b)) == [a]


def _make_group(lg: LayerGraph, index: int, nodes: list[str]) -> Group:
    first, last = lg.dag.nodes[nodes[0]], lg.dag.nodes[nodes[-1]]
    return Group(
        name=f"rm{index}", nodes=list(nodes), ops=[lg.dag.nodes[n]["op"] for n in nodes],
        in_shape=tuple(first["in_shapes"][0][1:]), out_shape=tuple(last["out_shape"][1:]),
    )


def find_candidates(lg: LayerGraph, board: Board, spec: str | None = None,
                    fixed: dict[str, int] | None = None,
                    layer_bits: dict[str, int] | None = None) -> Candidates:
    """Split the graph into RM groups, automatically or as the user named them.

    Automatic: walk the layers in execution order and grow a run while the next
    layer is supported, chained to the previous one, and the run's modeled
    resources still fit one slot; otherwise close the run. Groups are numbered
    in order. A group that does not fit even alone is still returned (its
    estimate says by how much) so the build can reject it with numbers.
    ``fixed`` and ``layer_bits`` are the user's reuse factors and weight widths
    (``--hls-config``), so groups are sized with the settings they will be built with.
    """
    kw = {"fixed": fixed, "layer_bits": layer_bits}
    off = {n: r for n in lg.compute_nodes if (r := unsupported_reason(lg, n))}
    if spec:
        runs = [(run, None) for run in parse_groups(lg, spec, off)]
    else:
        runs = []
        cur: list[str] = []
        est = None  # cur's estimate, once made: the finished group reuses it
        for n in lg.compute_nodes:
            if n in off:
                if cur:
                    runs.append((cur, est))
                cur, est = [], None
                continue
            if cur:
                grown = (estimate_group(lg, [*cur, n], board, **kw)
                         if _chained(lg, cur[-1], n) else None)
                if grown is None or not grown.fits(board):
                    runs.append((cur, est))
                    cur, est = [], None
                else:
                    est = grown
            cur.append(n)
        if cur:
            runs.append((cur, est))
    groups = [_make_group(lg, i, run) for i, (run, _) in enumerate(runs)]
    for g, (_, est) in zip(groups, runs, strict=True):
        g.estimate = est if est is not None else estimate_group(lg, g.nodes, board, **kw)
    covered = {n for g in groups for n in g.nodes}
    for n in lg.compute_nodes:
        if n not in covered and n not in off:
            off[n] = "not in any group named by --groups"
    return Candidates(groups=groups, off_fpga=off)


def parse_groups(lg: LayerGraph, spec: str, off: dict[str, str] | None = None) -> list[list[str]]:
    """``"_0-_3,_4-_7"`` -> node runs; ``A-B`` is inclusive, a lone name is one layer."""
    order = lg.compute_nodes
    off = off if off is not None else {n: r for n in order if (r := unsupported_reason(lg, n))}
    runs: list[list[str]] = []
    used: set[str] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        try:
            run = layer_run(lg, part, f"--groups {spec!r}")
        except ModelError as exc:
            raise GroupError(str(exc)) from None
        for n in run:
            if n in off:
                raise GroupError(f"--groups {spec!r}: layer '{n}' cannot go on the FPGA: "
                                 f"{off[n]}")
            if n in used:
                raise GroupError(f"--groups {spec!r}: layer '{n}' is in two groups")
        for x, y in zip(run, run[1:], strict=False):
            if not _chained(lg, x, y):
                raise GroupError(f"--groups {spec!r}: '{part}' is not a chain ({x} -> {y} is "
                                 "not a single edge); an RM has one input and one output")
        used.update(run)
        runs.append(run)
    if not runs:
        raise GroupError(f"--groups {spec!r}: no groups named; use e.g. --groups _0-_3,_4-_7")
    return runs
