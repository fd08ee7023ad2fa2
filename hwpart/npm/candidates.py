"""Step 2 of the NPM, "find candidates": the legal moves from where the stages are now.

A *layout* says, for each of the pipeline's stages (a fixed set of workers), which
unit runs it and which run of segments it holds (``hwpart.stages.segment``: the
model cut once at every legal border). A move is a new layout that differs by one
step, so every move can be made without re-tracing the model:

* **move a stage** to another unit: the CPU, the GPU, or FPGA slots that are free
  (no other stage uses them) when its segments are exactly a chain of the
  bundle's RMs, each RM having a partial for its slot;
* **shift a border**: one segment from the end of a stage to the start of the
  next one, or back, when the receiving unit can run the result.

Dependencies hold by construction (stages are runs of one topological order),
capability and slot resources by the RM rule (an RM was checked against its
slot when the overlay was built), and only RMs that exist in the bundle are
offered. A device taken out (a fault) offers nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from hwpart.partition import Plan, chain_unit, unit_kind, unit_slots
from hwpart.stages import Segments, Stage, compose
from hwpart.timing import rm_chain


@dataclass(frozen=True)
class Place:
    """Where one stage runs: its unit and its segments ``[first, last)``."""

    unit: str
    first: int
    last: int

    @property
    def empty(self) -> bool:
        return self.last <= self.first


Layout = tuple[Place, ...]


@dataclass(frozen=True)
class Move:
    """A candidate: the layout it leads to, what kind of move it is, and in words."""

    kind: str  # move-stage | shift-border | fault
    layout: Layout
    why: str
    stage: str = ""


@dataclass
class Fabric:
    """What the FPGA can hold: the bundle's RM groups (layers, in order) and, per RM, the
    slots it has a partial for; ``slots``: how many the shell has."""

    groups: list[list[str]] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    partials: list[set[int]] = field(default_factory=list)
    slots: int = 0

    @classmethod
    def of_bundle(cls, bundle: object) -> Fabric:
        rms = getattr(bundle, "rms", [])
        return cls([list(r.spec.layers) for r in rms], [r.spec.name for r in rms],
                   [set(r.partials) for r in rms], int(getattr(bundle, "slots", 0)))


def layout_of(plan: Plan, segs: Segments) -> Layout:
    """The layout of a plan whose stages are runs of ``segs`` (as ``segment`` cut them)."""
    known = {n for s in segs.segments for n in s.nodes}
    out = []
    for st in plan.stages:
        nodes = [n for n in st.nodes if n in known]  # the host's I/O nodes have no segment
        if nodes:  # a stage of I/O nodes only is no pipeline stage either (stages.split)
            out.append(Place(st.unit, segs.index_of(nodes[0]), segs.index_of(nodes[-1]) + 1))
    return tuple(out)


def padded(layout: Layout) -> Layout:
    """``layout`` with an idle stage before and after it: a pipeline's stages are fixed
    while it runs, so these are where a move can carve work out of its neighbour
    (a one-stage plan could otherwise only move whole)."""
    first, last = layout[0].first, layout[-1].last
    return (Place("cpu", first, first), *layout, Place("cpu", last, last))


def stages_of(layout: Layout, segs: Segments) -> list[Stage]:
    """The pipeline's stages for a layout (named ``stage0``...: the workers stay)."""
    return [compose(f"stage{i}", p.unit, segs.segments[p.first:p.last])
            for i, p in enumerate(layout)]


def nodes_of(p: Place, segs: Segments) -> list[str]:
    return [n for s in segs.segments[p.first:p.last] for n in s.nodes]


def fpga_units(nodes: list[str], fabric: Fabric, free: Iterable[int]) -> list[str]:
    """Units (``fpga1``, ``fpga0+1``...) of free slots that can run ``nodes`` as one chain."""
    chain = rm_chain(fabric.groups, nodes) if nodes else None
    if not chain:
        return []
    free = sorted(set(free))
    out = []
    for slots in itertools.permutations(free, len(chain)):
        if all(k in fabric.partials[i] for i, k in zip(chain, slots, strict=True)):
            out.append(chain_unit("fpga", slots))
    return out


def units_for(nodes: list[str], fabric: Fabric, free: Iterable[int], plain: Sequence[str],
              down: set[str]) -> list[str]:
    """Every unit that can run ``nodes``: the plain devices (cpu, gpu) and FPGA slots."""
    out = [u for u in plain if u not in down]
    if "fpga" not in down:
        out += fpga_units(nodes, fabric, free)
    return out


def slots_used(layout: Layout, skip: int | None = None) -> set[int]:
    return {k for i, p in enumerate(layout) if i != skip and not p.empty
            for k in unit_slots(p.unit)}


def candidates(layout: Layout, segs: Segments, fabric: Fabric,
               plain: Sequence[str] = ("cpu",), down: Iterable[str] = ()) -> list[Move]:
    """Every one-step move from ``layout`` (see the module docstring), no duplicates."""
    down = set(down)
    seen: set[Layout] = {layout}
    out: list[Move] = []

    def add(kind: str, new: list[Place], why: str, stage: str) -> None:
        t = tuple(new)
        if t not in seen:
            seen.add(t)
            out.append(Move(kind, t, why, stage))

    all_slots = range(fabric.slots)
    for i, p in enumerate(layout):
        if p.empty:
            continue
        nodes = nodes_of(p, segs)
        free = [k for k in all_slots if k not in slots_used(layout, skip=i)]
        for u in units_for(nodes, fabric, free, plain, down):
            if u != p.unit:
                new = list(layout)
                new[i] = Place(u, p.first, p.last)
                add("move-stage", new, f"stage{i} ({_span(nodes)}) {p.unit} -> {u}", f"stage{i}")
    for i in range(len(layout) - 1):
        a, b = layout[i], layout[i + 1]  # contiguous: a.last == b.first
        shifts = []
        if not a.empty:  # a's last segment to b
            shifts.append((Place(a.unit, a.first, a.last - 1), Place(b.unit, a.last - 1, b.last),
                           a.last - 1, i, i + 1))
        if not b.empty:  # b's first segment to a
            shifts.append((Place(a.unit, a.first, b.first + 1), Place(b.unit, b.first + 1, b.last),
                           b.first, i + 1, i))
        for na, nb, seg, src, dst in shifts:
            new = list(layout)
            new[i], new[i + 1] = na, nb
            # an FPGA stage that grows or shrinks needs a chain of slots for its new RMs
            for fa in _fits(na, new, i, segs, fabric, plain, down):
                new2 = list(new)
                new2[i] = fa
                for fb in _fits(nb, new2, i + 1, segs, fabric, plain, down):
                    new3 = list(new2)
                    new3[i + 1] = fb
                    add("shift-border", new3, f"segment {seg} "
                        f"({_span(segs.segments[seg].nodes)}) stage{src} -> stage{dst}"
                        + (f" ({fa.unit}, {fb.unit})" if (fa.unit, fb.unit) != (na.unit, nb.unit)
                           else ""), f"stage{dst}")
    return out


def _fits(p: Place, layout: list[Place], i: int, segs: Segments, fabric: Fabric,
          plain: Sequence[str], down: set[str]) -> list[Place]:
    """``p`` as it is when its unit can run it, else (an FPGA stage) each chain of slots
    that can, from the slots no other stage uses."""
    if p.empty:
        return [p]
    out = [p] if _runnable(p, layout, i, segs, fabric, plain, down) else []
    if "fpga" in down:
        return out
    free = [k for k in range(fabric.slots) if k not in slots_used(tuple(layout), skip=i)]
    return out + [Place(u, p.first, p.last) for u in fpga_units(nodes_of(p, segs), fabric, free)
                  if u != p.unit]


def _runnable(p: Place, layout: list[Place], i: int, segs: Segments, fabric: Fabric,
              plain: Sequence[str], down: set[str]) -> bool:
    """Whether ``p.unit`` can run ``p``'s segments in ``layout`` (its slots its own)."""
    if p.empty:
        return True
    kind = unit_kind(p.unit)
    if kind in down:
        return False
    if kind != "fpga":
        return p.unit in plain
    nodes = nodes_of(p, segs)
    chain = rm_chain(fabric.groups, nodes)
    slots = unit_slots(p.unit)
    if not chain or len(chain) != len(slots):
        return False
    others = slots_used(tuple(layout), skip=i)
    return all(k not in others and k in fabric.partials[c] for c, k in zip(chain, slots,
                                                                           strict=True))


def _span(nodes: list[str]) -> str:
    return nodes[0] if len(nodes) == 1 else f"{nodes[0]}..{nodes[-1]}"
