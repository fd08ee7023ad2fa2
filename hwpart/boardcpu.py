"""CPU layers priced on the board's own Arm cores, from the board YAML's ``cpu:`` section.

A plan for a PYNQ board whose CPU layers were timed on the host's x86 would put far
too much on the CPU: a 650 MHz Cortex-A9 is one to two orders of magnitude slower.
Until ``hwpart profile`` runs on the board and measures it, each layer is modeled as a
fixed call overhead plus its work at the description's effective rate, and the cost
table labels the CPU as modeled, with the board and its source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwpart.boards import Board
from hwpart.costs import CostTable
from hwpart.errors import PlanError
from hwpart.graph import LayerGraph

#: Bytes per element of the activations the work estimate counts (float32 on the Arm).
ELEMENT_BYTES = 4


def layer_ops(lg: LayerGraph, node: str) -> float:
    """Work of one layer per sample: its MACs, or its output elements for layers with
    none (activations, pooling, reshapes still touch every element once)."""
    d = lg.dag.nodes[node]
    return float(max(d.get("macs", 0), d.get("out_bytes", 0) / ELEMENT_BYTES))


def board_cpu_seconds(lg: LayerGraph, node: str, board: Board, batch: int) -> float:
    """Seconds per batch of ``batch`` samples for one layer on the board's CPU."""
    cpu = board.cpu
    assert cpu is not None
    return cpu.layer_overhead_us * 1e-6 + batch * layer_ops(lg, node) / cpu.macs_per_s


def with_board_cpu(lg: LayerGraph, table: CostTable, board: Board,
                   batches: list[int] | None = None,
                   measured: dict[str, Any] | None = None) -> CostTable:
    """A copy of ``table`` whose CPU times are the board's Arm cores, modeled.

    Other devices' entries are kept; the GPU's are dropped (a PYNQ board has none).
    ``measured``: the ``board_cpu`` section of the bundle's measured.json (``hwpart board
    check --cost-input``): the layers it timed, at the batch sizes it timed, replace the
    model's figures and the source says which are which.
    """
    if board.cpu is None:
        where = board.path.name if board.path else f"{board.name}.yaml"
        raise PlanError(f"{where}: field 'cpu': missing; --cpu board prices CPU layers from "
                        "it (see docs/boards.md)")
    sizes = sorted(set(batches or table.batch_sizes))
    times: dict[str, dict[str, dict[str, float]]] = {}
    for n in lg.compute_nodes:
        by_dev = {d: v for d, v in table.times.get(n, {}).items() if d not in ("cpu", "gpu")}
        by_dev["cpu"] = {str(b): board_cpu_seconds(lg, n, board, b) for b in sizes}
        times[n] = by_dev
    source: dict[str, Any] = {d: s for d, s in table.source.items() if d not in ("cpu", "gpu")}
    c = board.cpu
    source["cpu"] = (f"modeled ({board.name} {c.model} {c.clock_mhz:g} MHz, "
                     f"{c.macs_per_s:.3g} MAC/s + {c.layer_overhead_us:g} us/layer, estimated)")
    env = dict(table.env, cpu="board", cpu_source=c.source)
    data = (measured or {}).get("data") or {}
    timed = data.get("times") or {}
    if timed and data.get("model") == lg.name and list(data.get("input_shape") or []) == list(
            lg.input_shape):
        hits = [n for n in lg.compute_nodes if n in timed]
        for n in hits:
            for b, sec in timed[n].items():
                times[n]["cpu"][str(b)] = float(sec)
        sizes = sorted(set(sizes) | {int(b) for n in hits for b in timed[n]})
        for n in lg.compute_nodes:  # sizes only measured: the model fills the other layers
            for b in sizes:
                times[n]["cpu"].setdefault(str(b), board_cpu_seconds(lg, n, board, b))
        rest = len(lg.compute_nodes) - len(hits)
        source["cpu"] = (f"measured ({len(hits)} layers: {measured.get('source', 'board check')})"
                         + (f"; {rest} layers {source['cpu']}" if rest else ""))
    return CostTable(model=table.model, input_shape=table.input_shape, batch_sizes=sizes,
                     times=times, source=source, fpga=table.fpga, env=env)


# --------------------------------------------------------------------------- measuring it


def export_cost_input(lg: LayerGraph, path: str | Path, batches: list[int]) -> Path:
    """Write the model's layers for the board to time with numpy (``hwpart.board.cpucost``).

    The board has no torch, so each layer travels as what numpy needs: its op,
    per-sample input and output shapes, attributes (stride, padding, ...) and
    weights (BatchNorm folded into a scale and shift). A layer with no numpy kernel
    there is listed with the reason and keeps its modeled cost.
    """
    import json

    import numpy as np
    import torch

    from hwpart.board import cpucost

    arrays: dict[str, np.ndarray] = {}
    layers = []
    fx_nodes = {n.name: n for n in lg.module.graph.nodes}
    for name in lg.compute_nodes:
        d = lg.dag.nodes[name]
        node = fx_nodes[name]
        entry: dict[str, Any] = {"name": name, "op": d["op"],
                                 "inputs": [list(s[1:]) for s in d["in_shapes"]],
                                 "out": list(d["out_shape"][1:]), "attrs": {}}
        try:
            params = _layer_params(lg, node, d, entry["attrs"])
            if d["op"] not in cpucost.KERNELS:
                raise _Unsupported(f"no numpy kernel for {d['op']!r}")
        except _Unsupported as exc:
            entry["unsupported"] = str(exc)
            params = {}
        for k, v in params.items():
            t = v.detach() if isinstance(v, torch.Tensor) else torch.as_tensor(v)
            arrays[f"{name}__{k}"] = t.to(torch.float32).cpu().numpy()
        layers.append(entry)
    meta = {"format": cpucost.FORMAT, "model": lg.name, "input_shape": list(lg.input_shape),
            "batch_sizes": sorted(set(batches)), "layers": layers}
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as f:  # a file object: np.savez would add .npz to a bare name
        np.savez(f, **{cpucost.META_KEY: np.array(json.dumps(meta))}, **arrays)
    return out


class _Unsupported(Exception):
    pass


def _pair(v: Any) -> list[int]:
    return [int(v), int(v)] if isinstance(v, int) else [int(x) for x in v]


def _layer_params(lg: LayerGraph, node: Any, d: dict[str, Any], attrs: dict[str, Any]) -> dict:
    """The numpy kernel's parameters of one layer; fills ``attrs``."""
    import torch
    from torch import nn

    op = d["op"]
    mod = lg.module.get_submodule(str(node.target)) if node.op == "call_module" else None
    if op in ("flatten", "reshape"):
        attrs["out"] = list(d["out_shape"][1:])
        return {}
    if op in ("add", "sub", "mul"):
        if len(d["in_shapes"]) != 2 or d["in_shapes"][0] != d["in_shapes"][1]:
            raise _Unsupported(f"{op} of a tensor and a constant or of broadcast shapes")
        return {}
    if op == "cat":
        dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
        attrs["dim"] = int(dim) % len(d["out_shape"])
        return {}
    if op in ("relu", "sigmoid", "tanh", "dropout", "identity"):
        return {}
    if mod is None:
        raise _Unsupported(f"functional {op} (its parameters are not a module's)")
    if isinstance(mod, nn.Linear):
        return {"weight": mod.weight, **({"bias": mod.bias} if mod.bias is not None else {})}
    if isinstance(mod, nn.Conv2d):
        if not isinstance(mod.padding, tuple) or mod.padding_mode != "zeros":
            raise _Unsupported(f"conv2d padding {mod.padding!r}/{mod.padding_mode}")
        attrs.update(stride=_pair(mod.stride), padding=_pair(mod.padding),
                     dilation=_pair(mod.dilation), groups=int(mod.groups))
        return {"weight": mod.weight, **({"bias": mod.bias} if mod.bias is not None else {})}
    if isinstance(mod, nn.LeakyReLU):
        attrs["slope"] = float(mod.negative_slope)
        return {}
    if isinstance(mod, nn.Softmax):
        attrs["dim"] = int(mod.dim if mod.dim is not None else 1) % len(d["out_shape"])
        return {}
    if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if mod.running_mean is None or mod.running_var is None:
            raise _Unsupported("batchnorm without running statistics")
        scale = torch.rsqrt(mod.running_var + mod.eps)
        if mod.weight is not None:
            scale = scale * mod.weight
        shift = -mod.running_mean * scale + (mod.bias if mod.bias is not None else 0)
        return {"scale": scale, "shift": shift}
    if isinstance(mod, nn.MaxPool2d):
        if mod.ceil_mode:
            raise _Unsupported("maxpool2d with ceil_mode")
        attrs.update(kernel=_pair(mod.kernel_size),
                     stride=_pair(mod.stride or mod.kernel_size), padding=_pair(mod.padding),
                     dilation=_pair(mod.dilation))
        return {}
    if isinstance(mod, nn.AvgPool2d):
        if mod.ceil_mode or not mod.count_include_pad or mod.divisor_override:
            raise _Unsupported("avgpool2d with ceil_mode, count_include_pad=False or a divisor")
        attrs.update(kernel=_pair(mod.kernel_size), stride=_pair(mod.stride or mod.kernel_size),
                     padding=_pair(mod.padding))
        return {}
    if isinstance(mod, nn.AdaptiveAvgPool2d):
        h, w = d["in_shapes"][0][2:4]
        oh, ow = _pair(mod.output_size) if not isinstance(mod.output_size, tuple) else [
            int(o if o is not None else s) for o, s in zip(mod.output_size, (h, w), strict=True)]
        if h % oh or w % ow:
            raise _Unsupported(f"adaptive_avgpool2d {h}x{w} -> {oh}x{ow} (uneven windows)")
        attrs["output"] = [oh, ow]
        return {}
    raise _Unsupported(f"{type(mod).__name__} has no numpy kernel")
