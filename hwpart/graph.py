"""Model intake: load a model from a spec, capture it, and describe its layers.

The partitioner, the cost model and the overlay builder all reason about the same
object: a ``networkx.DiGraph`` whose nodes are the captured graph's nodes (layers,
functions, the input and the output) and whose edges are the tensors between
them. Capture is ``torch.fx`` first because its graph keeps module names (the
names users see in ``print(model)`` and the names hls4ml uses); ``torch.export``
is the fallback for models fx cannot trace, e.g. Python control flow on shapes.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import logging
import math
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import torch
from torch import fx
from torch.fx.passes.shape_prop import ShapeProp

from hwpart.errors import ModelError

#: Node ops that carry no computation; the partitioner pins them to the host.
IO_OPS = ("input", "output")


# --------------------------------------------------------------------------- loading


def parse_shape(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """Parse ``"3,32,32"`` / ``"16"`` / ``"3x32x32"`` into a per-sample shape (no batch dim)."""
    if isinstance(text, (tuple, list)):
        dims = list(text)
    else:
        parts = [p for p in str(text).replace("x", ",").replace(" ", ",").split(",") if p]
        try:
            dims = [int(p) for p in parts]
        except ValueError:
            raise ModelError(
                f"input shape {text!r}: expected comma-separated positive integers "
                "without the batch dimension, e.g. --input-shape 3,32,32"
            ) from None
    if not dims or any(d <= 0 for d in dims):
        raise ModelError(
            f"input shape {text!r}: expected comma-separated positive integers "
            "without the batch dimension, e.g. --input-shape 3,32,32"
        )
    return tuple(int(d) for d in dims)


def load_model(spec: str) -> torch.nn.Module:
    """Build a model from ``path/to/file.py:factory`` or ``package.module:factory``.

    The factory is called with no arguments and must return an ``nn.Module``; the
    model is put in eval mode because partitioning targets inference.
    """
    if ":" not in spec:
        raise ModelError(
            f"model {spec!r}: expected 'path/to/file.py:factory' or 'package.module:factory'"
        )
    where, _, name = spec.rpartition(":")
    if where.endswith(".py") or "/" in where or Path(where).suffix == ".py":
        path = Path(where)
        if not path.is_file():
            raise ModelError(f"model {spec!r}: file {where!r} not found")
        mod_name = f"hwpart_user_{path.stem}_{abs(hash(path.resolve())) & 0xFFFFFF:x}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        assert module_spec is not None and module_spec.loader is not None
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as exc:  # the user's file: report, do not dump a traceback
            raise ModelError(f"model {spec!r}: importing {where} failed: {_one_line(exc)}") from exc
    else:
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise ModelError(f"model {spec!r}: cannot import module {where!r}: {exc}") from exc
    factory = getattr(module, name, None)
    if factory is None:
        known = sorted(
            k for k, v in vars(module).items() if callable(v) and not k.startswith("_")
        )
        raise ModelError(
            f"model {spec!r}: {where} has no factory {name!r}; callables there: {', '.join(known)}"
        )
    try:
        model = factory() if not isinstance(factory, torch.nn.Module) else factory
    except Exception as exc:
        raise ModelError(f"model {spec!r}: calling {name}() failed: {_one_line(exc)}") from exc
    if not isinstance(model, torch.nn.Module):
        raise ModelError(
            f"model {spec!r}: {name}() returned {type(model).__name__}, expected torch.nn.Module"
        )
    return model.eval()


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


# --------------------------------------------------------------------------- capture


@dataclass
class LayerGraph:
    """A captured model: the fx ``GraphModule`` and its layer DAG.

    Node attributes of ``dag``: ``op`` (normalised op type: ``linear``, ``conv2d``,
    ``relu``, ``add``, ``cat``, ``input``, ``output`` ...), ``kind`` (fx op),
    ``target`` (module path or function name), ``in_shapes``, ``out_shape``,
    ``dtype``, ``param_bytes``, ``out_bytes`` (output activation bytes per sample),
    ``macs`` (per sample), ``order`` (topological index). Edges carry ``bytes``,
    the producer's per-sample output bytes.
    """

    name: str
    module: fx.GraphModule
    dag: nx.DiGraph
    input_shape: tuple[int, ...]
    capture: str  # "fx" or "export"
    attr_owner: dict[str, str] = field(default_factory=dict)  # get_attr node -> consumer

    @property
    def nodes(self) -> list[str]:
        return sorted(self.dag.nodes, key=lambda n: self.dag.nodes[n]["order"])

    @property
    def compute_nodes(self) -> list[str]:
        return [n for n in self.nodes if self.dag.nodes[n]["op"] not in IO_OPS]

    def is_chain(self) -> bool:
        return all(self.dag.in_degree(n) <= 1 and self.dag.out_degree(n) <= 1 for n in self.dag)

    def example_input(self, batch: int = 1, seed: int = 0) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((batch, *self.input_shape), generator=gen)


def capture(
    model: torch.nn.Module, input_shape: tuple[int, ...] | str, name: str = "model"
) -> LayerGraph:
    """Trace ``model`` at ``input_shape`` (no batch dim) into a :class:`LayerGraph`."""
    shape = parse_shape(input_shape)
    model = model.eval()
    x = torch.randn((1, *shape))
    # Check the shape on the eager model first: a wrong shape is the user's most
    # common mistake, and the eager error is the clearest one to report.
    try:
        with torch.no_grad():
            model(x)
    except Exception as exc:
        raise ModelError(
            f"model {name!r} does not run on input shape {shape} (batch dim excluded): "
            f"{_one_line(exc)}{_where(exc, model)}; check --input-shape"
        ) from exc

    gm, how = _trace(model, x, name)
    try:
        ShapeProp(gm).propagate(x)
    except Exception as exc:
        raise ModelError(
            f"model {name!r}: shape propagation over the captured graph failed: {_one_line(exc)}"
        ) from exc
    dag, owner = _build_dag(gm)
    return LayerGraph(name=name, module=gm, dag=dag, input_shape=shape, capture=how,
                      attr_owner=owner)


def _trace(model: torch.nn.Module, x: torch.Tensor, name: str) -> tuple[fx.GraphModule, str]:
    try:
        return fx.symbolic_trace(model), "fx"
    except Exception as fx_exc:
        fx_msg = f"{_one_line(fx_exc)}{_where(fx_exc, model)}"
    try:
        # batch 2 and a dynamic batch dim: an example of 1 would specialise on it
        x2 = torch.cat([x, x])
        with _quiet_torch_logs():
            ep = torch.export.export(model, (x2,),
                                     dynamic_shapes=({0: torch.export.Dim.DYNAMIC},),
                                     strict=False)
        gm = ep.module()
        assert isinstance(gm, fx.GraphModule)
        # export's input guard is not a layer; the shape was checked on the eager model
        for node in list(gm.graph.nodes):
            if node.op == "call_module" and str(node.target) == "_guards_fn" and not node.users:
                gm.graph.erase_node(node)
        gm.recompile()
        return gm, "export"
    except Exception as ex_exc:
        ex_msg = f"{_one_line(ex_exc)}{_where(ex_exc, model)}"
    raise ModelError(
        f"model {name!r} cannot be captured: torch.fx failed ({fx_msg}) and torch.export "
        f"failed ({ex_msg}). Make control flow independent of tensor values, or move that "
        "part into a separate model"
    )


@contextlib.contextmanager
def _quiet_torch_logs():
    """torch.export prints the whole failing graph to stderr; our error names the line instead."""
    logger = logging.getLogger("torch")
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _where(exc: BaseException, model: torch.nn.Module) -> str:
    """Point at the line of the user's model that failed, so the construct is named."""
    try:
        src = Path(sys.modules[type(model).__module__].__file__ or "").resolve()
    except (KeyError, TypeError):
        return ""
    hit = None
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == src:
            hit = frame
    # torch.export raises from deep inside; its chained cause carries the user frame.
    cause = exc.__cause__ or exc.__context__
    if hit is None and cause is not None and cause is not exc:
        return _where(cause, model)
    if hit is None:
        return ""
    return f" at {src.name}:{hit.lineno} `{(hit.line or '').strip()}`"


# --------------------------------------------------------------------------- the DAG

_MODULE_OPS = {
    "Linear": "linear", "Conv1d": "conv1d", "Conv2d": "conv2d", "ReLU": "relu",
    "LeakyReLU": "leaky_relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Softmax": "softmax",
    "BatchNorm1d": "batchnorm", "BatchNorm2d": "batchnorm", "MaxPool1d": "maxpool1d",
    "MaxPool2d": "maxpool2d", "AvgPool1d": "avgpool1d", "AvgPool2d": "avgpool2d",
    "AdaptiveAvgPool2d": "adaptive_avgpool2d", "Flatten": "flatten", "Dropout": "dropout",
    "Identity": "identity", "ELU": "elu", "GELU": "gelu", "Hardtanh": "hardtanh",
    "Softplus": "softplus", "PReLU": "prelu", "Upsample": "upsample",
}
_FUNC_ALIASES = {
    "add": "add", "iadd": "add", "sub": "sub", "mul": "mul", "cat": "cat", "concat": "cat",
    "relu": "relu", "relu_": "relu", "flatten": "flatten", "view": "reshape",
    "reshape": "reshape", "softmax": "softmax", "sigmoid": "sigmoid", "tanh": "tanh",
    "linear": "linear", "conv1d": "conv1d", "conv2d": "conv2d", "max_pool2d": "maxpool2d",
    "avg_pool2d": "avgpool2d", "adaptive_avg_pool2d": "adaptive_avgpool2d",
    "batch_norm": "batchnorm", "_native_batch_norm_legit_no_training": "batchnorm",
    "matmul": "matmul", "mm": "matmul", "bmm": "matmul", "addmm": "linear",
    "max_pool2d_with_indices": "maxpool2d", "getitem": "getitem", "permute": "permute",
    "transpose": "transpose", "mean": "mean", "dropout": "dropout",
}


def _op_name(gm: fx.GraphModule, node: fx.Node) -> tuple[str, str]:
    if node.op == "placeholder":
        return "input", node.name
    if node.op == "output":
        return "output", "output"
    if node.op == "call_module":
        mod = gm.get_submodule(str(node.target))
        cls = type(mod).__name__
        return _MODULE_OPS.get(cls, cls.lower()), str(node.target)
    if node.op == "get_attr":
        return "get_attr", str(node.target)
    target = node.target
    raw = getattr(target, "__name__", None) or str(target)
    if isinstance(target, torch._ops.OpOverload):  # torch.export: aten.add.Tensor
        raw = target._schema.name.split("::")[-1]
    elif isinstance(target, str):  # call_method
        raw = target
    raw = raw.split(".")[0]
    return _FUNC_ALIASES.get(raw, raw.lower()), raw


def _meta_shapes(meta: Any) -> list[tuple[tuple[int, ...], torch.dtype]]:
    if meta is None:
        return []
    if hasattr(meta, "shape"):
        return [(tuple(int(d) for d in meta.shape), meta.dtype)]
    if isinstance(meta, (list, tuple)):
        out = []
        for m in meta:
            out.extend(_meta_shapes(m))
        return out
    if isinstance(meta, dict):
        out = []
        for m in meta.values():
            out.extend(_meta_shapes(m))
        return out
    return []


def _numel(shape: tuple[int, ...]) -> int:
    return int(math.prod(shape)) if shape else 1


def _macs(op: str, mod: torch.nn.Module | None, in_shapes: list, out_shape: tuple,
          attr_shapes: list[tuple[int, ...]]) -> int:
    """Multiply-accumulates per sample (batch dim divided out)."""
    if not out_shape:
        return 0
    batch = out_shape[0] if len(out_shape) > 1 else 1
    out_per = _numel(out_shape) // max(batch, 1)
    if op == "linear":
        if isinstance(mod, torch.nn.Linear):
            return out_per * mod.in_features
        w = next((s for s in attr_shapes if len(s) == 2), None)
        return out_per * (w[1] if w else 1)
    if op in ("conv1d", "conv2d"):
        if isinstance(mod, torch.nn.modules.conv._ConvNd):
            k = _numel(tuple(mod.kernel_size))
            return out_per * (mod.in_channels // mod.groups) * k
        w = next((s for s in attr_shapes if len(s) >= 3), None)
        return out_per * (_numel(w[1:]) if w else 1)
    if op == "matmul" and in_shapes:
        return out_per * in_shapes[0][-1]
    if op == "batchnorm":
        return out_per
    return 0


def _build_dag(gm: fx.GraphModule) -> tuple[nx.DiGraph, dict[str, str]]:
    dag = nx.DiGraph()
    params = dict(gm.named_parameters())
    buffers = dict(gm.named_buffers())
    attr_owner: dict[str, str] = {}
    order = 0
    for node in gm.graph.nodes:
        op, target = _op_name(gm, node)
        if node.op == "get_attr":
            # Parameters of a functional graph (torch.export) travel with the layer
            # that uses them; they are not a layer of their own.
            users = list(node.users)
            attr_owner[node.name] = users[0].name if users else ""
            continue
        outs = _meta_shapes(node.meta.get("tensor_meta"))
        out_shape, dtype = outs[0] if outs else ((), torch.float32)
        in_nodes = [a for a in node.all_input_nodes if a.op != "get_attr"]
        attr_nodes = [a for a in node.all_input_nodes if a.op == "get_attr"]
        in_shapes = [s for a in in_nodes for s, _ in _meta_shapes(a.meta.get("tensor_meta"))]
        attr_shapes = [s for a in attr_nodes for s, _ in _meta_shapes(a.meta.get("tensor_meta"))]
        mod = gm.get_submodule(str(node.target)) if node.op == "call_module" else None
        param_bytes = 0
        if mod is not None:
            param_bytes = sum(p.numel() * p.element_size() for p in mod.parameters())
            param_bytes += sum(b.numel() * b.element_size() for b in mod.buffers())
        for a in attr_nodes:
            t = params.get(str(a.target), buffers.get(str(a.target)))
            if t is not None:
                param_bytes += t.numel() * t.element_size()
        batch = out_shape[0] if len(out_shape) > 1 else 1
        out_bytes = sum(_numel(s) * _dtype_size(d) for s, d in outs) // max(batch, 1)
        if node.op == "output":
            out_bytes = 0
        dag.add_node(
            node.name, op=op, kind=node.op, target=target, in_shapes=in_shapes,
            out_shape=out_shape, dtype=str(dtype).replace("torch.", ""),
            param_bytes=int(param_bytes), out_bytes=int(out_bytes),
            macs=int(_macs(op, mod, in_shapes, out_shape, attr_shapes)), order=order,
        )
        order += 1
        for a in in_nodes:
            dag.add_edge(a.name, node.name)
    for u, v in dag.edges:
        dag.edges[u, v]["bytes"] = dag.nodes[u]["out_bytes"]
    return dag, attr_owner


def _dtype_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def layer_run(lg: LayerGraph, part: str, option: str) -> list[str]:
    """``"A-B"`` (inclusive, in execution order) or ``"A"`` -> layer names; ``option`` names
    the flag in errors, e.g. ``--groups '_0-_3'``."""
    order = lg.compute_nodes
    index = {n: i for i, n in enumerate(order)}
    a, _, b = part.partition("-") if part.count("-") == 1 else (part, "", part)
    a, b = a.strip(), (b.strip() or a.strip())
    for name in (a, b):
        if name not in index:
            raise ModelError(f"{option}: unknown layer '{name}'; layers in execution order: "
                             f"{', '.join(order)}")
    if index[a] > index[b]:
        raise ModelError(f"{option}: '{part}' runs backwards ({a} comes after {b} in "
                         "execution order)")
    return order[index[a]:index[b] + 1]


def load_graph(spec: str, input_shape: str | tuple[int, ...]) -> LayerGraph:
    """``load_model`` + ``capture``: the one entry point the CLI uses."""
    model = load_model(spec)
    name = spec.rpartition(":")[2]
    return capture(model, input_shape, name=name)
