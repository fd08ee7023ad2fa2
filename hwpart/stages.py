"""Split a captured model into per-stage submodules, one per plan stage.

The split itself is ``torch.fx.passes.split_module``; this module only maps the
plan's stages onto it and records, for each stage, which named values it reads
and writes. A pipeline then carries a small dict of named values from stage to
stage, which works for DAGs (skip connections cross several stages) as well as
chains, and drops each value after its last reader.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.fx.passes.split_module import split_module

from hwpart.errors import PlanError
from hwpart.graph import IO_OPS, LayerGraph
from hwpart.partition import Plan, unit_kind


@dataclass
class Stage:
    """One pipeline stage: its submodule, the unit it runs on, and its named inputs/outputs."""

    name: str
    unit: str  # "cpu", "gpu", "fpga0", ...
    nodes: list[str]
    module: fx.GraphModule
    inputs: list[str]  # value names, in the submodule's argument order
    outputs: list[tuple[int | None, str]]  # (tuple index or None, value name)
    keep: set[str] = field(default_factory=set)  # values still needed after this stage
    consts: dict[str, Any] = field(default_factory=dict)  # parameters passed as arguments
    # the module's forward as called per batch (direct_forward), built on the first call
    _forward: Callable[..., Any] | None = field(default=None, init=False, repr=False,
                                                compare=False)

    @property
    def device(self) -> str:
        return unit_kind(self.unit)

    def __call__(self, env: dict[str, Any]) -> dict[str, Any]:
        """Run on a value dict; returns the dict for the next stage (dead values dropped)."""
        fwd = self._forward
        if fwd is None:
            fwd = self._forward = direct_forward(self.module) or self.module
        consts = self.consts
        out = fwd(*[consts[n] if n in consts else env[n] for n in self.inputs] if consts
                  else [env[n] for n in self.inputs])
        new = {k: v for k, v in env.items() if k in self.keep}
        for idx, name in self.outputs:
            if name in self.keep:
                new[name] = out if idx is None else out[idx]
        return new


class _Attrs:
    """Stands in for a module as the ``self`` of a GraphModule's generated forward.

    The generated code reads every submodule as an attribute (``getattr(self,
    "0")``, ``self.layer1.conv``); on an ``nn.Module`` each read misses the
    instance dict and goes through ``Module.__getattr__``. Here the attributes
    the code reads are plain instance attributes, and anything else falls
    through to the module (``__getattr__`` runs only on a miss).
    """

    def __init__(self, base: Any) -> None:
        self._base = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._base, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._base(*args, **kwargs)


def _hooked(m: torch.nn.Module) -> bool:
    """Whether calling ``m.forward`` directly would skip something ``m(...)`` does."""
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or m._backward_pre_hooks or getattr(m, "_compiled_call_impl", None) is not None)


def _global_hooks() -> bool:
    from torch.nn.modules import module as nn_module

    return any(getattr(nn_module, name, None) for name in (
        "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
        "_global_backward_pre_hooks", "_global_module_registration_hooks"))


def direct_forward(module: Any) -> Callable[..., Any] | None:
    """``module``'s forward without ``nn.Module`` call machinery, or None where it would differ.

    A stage runs once per batch, so its Python per call is the pipeline's per-batch
    overhead: a GraphModule call costs the wrapper, ``Module.__call__`` (hook
    checks) for itself and every leaf module, and a ``Module.__getattr__`` per
    leaf -- on the jet tagger about 1 us per layer, as much as the layers' own
    work at small batches. This runs the GraphModule's generated code on
    :class:`_Attrs`, with each leaf module's ``forward`` bound directly. Same
    functions on the same tensors, so outputs are bit-identical. Only where no
    hook is registered, on the leaves or globally, when the stage first runs:
    a hook registered later is not seen (the module is then called as usual
    only for stages built after it).
    """
    if not isinstance(module, fx.GraphModule) or _hooked(module) or _global_hooks():
        return None
    root = _Attrs(module)
    for node in module.graph.nodes:
        if node.op not in ("call_module", "get_attr"):
            continue
        *path, leaf = str(node.target).split(".")
        ns, owner = root, module
        for atom in path:
            owner = getattr(owner, atom)
            child = ns.__dict__.get(atom)
            if not isinstance(child, _Attrs):  # also when it was a leaf: _Attrs calls it
                child = _Attrs(owner)
                setattr(ns, atom, child)
            ns = child
        if isinstance(ns.__dict__.get(leaf), _Attrs):
            continue  # also a prefix of another target: called through the module
        obj = getattr(owner, leaf)
        if node.op == "call_module" and isinstance(obj, torch.nn.Module) and not _hooked(obj):
            obj = obj.forward
        setattr(ns, leaf, obj)
    return functools.partial(type(module).forward, root)


@dataclass
class StagedModel:
    stages: list[Stage]
    input_names: list[str]
    output: Any  # the output structure with value names as leaves
    # the captured module's own output post-processing (torch.export graphs return
    # a flat tuple and rebuild the user's structure with pytree)
    finish: Any = None

    def initial(self, *inputs: torch.Tensor) -> dict[str, Any]:
        return dict(zip(self.input_names, inputs, strict=True))

    def result(self, env: dict[str, Any]) -> Any:
        out = _map_names(self.output, env)
        return self.finish(out) if self.finish is not None else out

    def __call__(self, *inputs: torch.Tensor) -> Any:
        """Run every stage in order on the current thread (the reference for the runtime)."""
        env = self.initial(*inputs)
        for stage in self.stages:
            env = stage(env)
        return self.result(env)


def _map_names(struct: Any, env: dict[str, Any]) -> Any:
    if isinstance(struct, str):
        return env[struct]
    if isinstance(struct, (list, tuple)):
        return type(struct)(_map_names(s, env) for s in struct)
    if isinstance(struct, dict):
        return {k: _map_names(v, env) for k, v in struct.items()}
    return struct


def split(lg: LayerGraph, plan: Plan) -> StagedModel:
    """Cut ``lg.module`` at the plan's stage boundaries with ``split_module``."""
    stage_of: dict[str, int] = {}
    for i, st in enumerate(plan.stages):
        for n in st.nodes:
            stage_of[n] = i
    missing = [n for n in lg.dag if n not in stage_of and lg.dag.nodes[n]["op"] not in IO_OPS]
    unknown = [n for n in stage_of if n not in lg.dag]
    if missing or unknown:
        raise PlanError(
            f"plan for {plan.model!r} does not match the captured graph "
            f"(layers without a stage: {missing[:5]}, unknown layers: {unknown[:5]}); "
            "re-run `hwpart partition` for this model and input shape"
        )
    # I/O nodes have no stage of their own; give split_module any stage for nodes
    # it asks about that the plan does not list (it never asks for placeholders).
    def callback(node: fx.Node) -> int:
        return stage_of.get(node.name, stage_of.get(lg.attr_owner.get(node.name, ""), 0))

    top = split_module(lg.module, None, callback)
    calls = {n.target: n for n in top.graph.nodes if n.op == "call_module"}
    inputs = [n.name for n in top.graph.nodes if n.op == "placeholder"]
    out_node = next(n for n in top.graph.nodes if n.op == "output")
    # torch.export graphs keep parameters as graph values: they reach a stage as
    # arguments, and belong to the stage, not to the stream between stages.
    attrs = {n.name: functools.reduce(getattr, str(n.target).split("."), top)
             for n in top.graph.nodes if n.op == "get_attr"}
    stages: list[Stage] = []
    for i, spec in enumerate(plan.stages):
        call = calls.get(f"submod_{i}")
        if call is None:  # a stage with only I/O nodes: nothing to compute
            continue
        outs: list[tuple[int | None, str]] = []
        getitems = [u for u in call.users if u.op == "call_function" and u.target is operator.getitem]
        if getitems and len(getitems) == len(call.users):
            outs = [(int(u.args[1]), u.name) for u in getitems]
        else:
            outs = [(None, call.name)]
        stages.append(Stage(
            name=spec.name, unit=spec.unit, nodes=list(spec.nodes),
            module=getattr(top, str(call.target)),
            inputs=[_arg_name(a) for a in call.args], outputs=outs,
            consts={_arg_name(a): attrs[a.name] for a in call.args if a.name in attrs},
        ))
    output = _names(out_node.args[0])
    needed = set(_leaves(output))
    for st in reversed(stages):  # liveness: what later stages or the output still read
        st.keep = set(needed)
        needed |= set(st.inputs) - set(st.consts)
    codegen = lg.module.graph._codegen
    # fx's own codegen returns outputs as they are: no call per batch for it
    finish = None if type(codegen) is fx.graph.CodeGen else codegen.process_outputs
    return StagedModel(stages, inputs, output, finish)


def _arg_name(a: Any) -> str:
    if not isinstance(a, fx.Node):
        raise PlanError(f"stage argument {a!r} is a constant; not supported by the splitter")
    return a.name


def _names(arg: Any) -> Any:
    if isinstance(arg, fx.Node):
        return arg.name
    if isinstance(arg, (list, tuple)):
        return type(arg)(_names(a) for a in arg)
    if isinstance(arg, dict):
        return {k: _names(v) for k, v in arg.items()}
    return arg


def _leaves(struct: Any):
    if isinstance(struct, str):
        yield struct
    elif isinstance(struct, (list, tuple)):
        for s in struct:
            yield from _leaves(s)
    elif isinstance(struct, dict):
        for s in struct.values():
            yield from _leaves(s)


# --------------------------------------------------------------------------- segments


@dataclass
class Segments:
    """The model cut once, at every legal border, for moves finer than a stage.

    The re-allocator (the NPM) moves runs of segments between stages and stages
    between units while the model runs; cutting once at start means a move never
    re-traces or re-splits the model: a stage is a :func:`compose` of segments.
    ``order`` is the segment order (a topological order of the model's layers:
    the plan's own stage order), ``segments[i].nodes`` its layers.
    """

    staged: StagedModel  # one Stage per segment (unit: the segment's initial unit)
    borders: list[int]  # positions in ``order`` where a segment starts (0 first)
    order: list[str]

    @property
    def segments(self) -> list[Stage]:
        return self.staged.stages

    def index_of(self, node: str) -> int:
        """The segment holding ``node``."""
        for i, s in enumerate(self.segments):
            if node in s.nodes:
                return i
        raise KeyError(node)


def segment(lg: LayerGraph, plan: Plan, groups: list[list[str]] | None = None,
            capable: dict[str, set[str]] | None = None) -> Segments:
    """Cut ``lg`` at every legal border: the plan's stage borders, the borders of every
    RM group (``groups``, layer runs an FPGA slot can hold), and every place where the
    set of devices that can run a layer changes (``capable``: layer -> devices).

    Between two legal borders nothing can ever be placed apart, so the segments are
    the finest moves there are; everything is in the plan's own layer order, a
    topological order, so every run of segments is a stage ``split_module`` accepts.
    """
    io = {n for n in lg.dag if lg.dag.nodes[n]["op"] in IO_OPS}  # the host's, no segment
    order = [n for st in plan.stages for n in st.nodes if n not in io]
    unit_of = {n: st.unit for st in plan.stages for n in st.nodes}
    pos = {n: i for i, n in enumerate(order)}
    borders = {0}
    for st in plan.stages:
        nodes = [n for n in st.nodes if n in pos]
        if nodes:
            borders.add(pos[nodes[0]])
            borders.add(pos[nodes[-1]] + 1)
    for g in groups or []:
        if g and all(n in pos for n in g):
            borders.add(pos[g[0]])
            borders.add(pos[g[-1]] + 1)
    if capable:
        for a, b in zip(order, order[1:], strict=False):
            if capable.get(a, set()) != capable.get(b, set()):
                borders.add(pos[b])
    cuts = sorted(b for b in borders if b < len(order))
    specs = []
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else len(order)
        nodes = order[start:end]
        specs.append((unit_of[nodes[0]], nodes))
    from hwpart.partition import manual_plan

    seg_plan = manual_plan(plan.model, tuple(plan.input_shape), specs, plan.batch)
    for i, st in enumerate(seg_plan.stages):
        st.name = f"seg{i}"
    return Segments(split(lg, seg_plan), cuts, order)


def compose(name: str, unit: str, segments: list[Stage]) -> Stage:
    """One stage that runs ``segments`` in order: a run of the model's segments on a unit.

    It reads what its segments read from outside it, keeps what the last one keeps,
    and returns the values made inside it that later stages need, so devices that
    run a stage as one submodule (the FPGA: an RM chain) see one stage. With no
    segments it passes every value on (an idle stage of the pipeline).
    """
    made: set[str] = set()
    inputs: list[str] = []
    for seg in segments:  # parameters passed as arguments stay inside their segment
        for n in seg.inputs:
            if n not in seg.consts and n not in made and n not in inputs:
                inputs.append(n)
        made |= {name for _, name in seg.outputs}
    keep = set(segments[-1].keep) if segments else set()
    outs = [n for n in sorted(made) if n in keep]
    outputs: list[tuple[int | None, str]] = (
        [(None, outs[0])] if len(outs) == 1 else [(i, n) for i, n in enumerate(outs)])
    module = SegmentModule(segments, inputs, [n for _, n in outputs])
    return SegmentRun(name=name, unit=unit, nodes=[n for s in segments for n in s.nodes],
                      module=module, inputs=inputs, outputs=outputs, keep=keep,
                      segments=list(segments))  # type: ignore[arg-type]


class SegmentModule(torch.nn.Module):
    """The segments of a :func:`compose` as one module, for devices that move a stage's
    module elsewhere and call it with the stage's inputs (the GPU): the same functions
    on the same values as :class:`SegmentRun`, so the results are the same."""

    def __init__(self, segments: list[Stage], inputs: list[str], outs: list[str]) -> None:
        super().__init__()
        self.segs = torch.nn.ModuleList(s.module for s in segments)
        self._specs = [(s.inputs, s.outputs, s.consts) for s in segments]
        self._inputs, self._outs = list(inputs), list(outs)

    def forward(self, *args: Any) -> Any:
        env = dict(zip(self._inputs, args, strict=True))
        for m, (ins, outs, consts) in zip(self.segs, self._specs, strict=True):
            out = m(*[consts[n] if n in consts else env[n] for n in ins])
            for idx, name in outs:
                env[name] = out if idx is None else out[idx]
        res = [env[n] for n in self._outs]
        return res[0] if len(res) == 1 else tuple(res)


@dataclass
class SegmentRun(Stage):
    """A stage made of segments (:func:`compose`); runs them one after another."""

    segments: list[Stage] = field(default_factory=list)

    def __call__(self, env: dict[str, Any]) -> dict[str, Any]:
        for seg in self.segments:
            env = seg(env)
        return env
