"""The board CPU's per-layer costs, measured on the board with numpy (no torch there).

``boards/*.yaml`` prices a layer on the board's Arm cores from an estimated
MAC rate and call overhead (:mod:`hwpart.boardcpu`), and a plan that keeps
layers on a 650 MHz Cortex-A9 is only as good as that guess. The host exports
the model's layers -- op, per-sample shapes, weights -- into a *cost input*
(``.npz``, :func:`hwpart.boardcpu.export_cost_input`); on the board this module
runs each layer with numpy at each batch size and times it (median of repeats,
after warm-up), then writes a ``board_cpu`` section with its source into the
bundle's ``measured.json`` (:mod:`hwpart.board.measured`).

The kernels are what a board-side CPU stage would run: ``linear`` (``x @ W.T + b``),
``conv2d`` (im2col from a strided window view, one matrix product per group),
``relu``/``leaky_relu``/``sigmoid``/``tanh``/``softmax``, ``batchnorm`` (folded to a
per-channel scale and shift), ``maxpool2d``/``avgpool2d``/``adaptive_avgpool2d``
(whole windows), ``flatten``/``reshape``, ``add``/``mul``/``sub`` of two tensors,
``cat``, ``dropout``/``identity``. They compute the layer, not an imitation of
its cost: the host's tests check each against torch. Layers with no kernel
here are listed as ``unsupported`` with the reason, and keep their modeled cost.

Standard library + numpy only: it runs on the board.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.errors import ConfigError

FORMAT = "hwpart-cost-input/1"
META_KEY = "__meta__"
SECTION = "board_cpu"

#: the CPU a board's PYNQ image runs on (``platform.machine()``), to catch figures taken elsewhere
BOARD_ARCH = {"pynq-z1": "armv7l", "pynq-z2": "armv7l", "kv260": "aarch64", "kr260": "aarch64",
              "zcu104": "aarch64", "zcu102": "aarch64", "ultra96v2": "aarch64"}

Kernel = Callable[[list[np.ndarray], dict[str, Any], dict[str, np.ndarray]], np.ndarray]


# --------------------------------------------------------------------------- kernels


def _windows(x: np.ndarray, k: tuple[int, int], stride: tuple[int, int],
             dilation: tuple[int, int] = (1, 1)) -> np.ndarray:
    """(N, C, Ho, Wo, kh, kw) view of every window of ``x`` (N, C, H, W): no copy."""
    from numpy.lib.stride_tricks import sliding_window_view

    span = ((k[0] - 1) * dilation[0] + 1, (k[1] - 1) * dilation[1] + 1)
    w = sliding_window_view(x, span, axis=(2, 3))
    return w[:, :, ::stride[0], ::stride[1], ::dilation[0], ::dilation[1]]


def _pad(x: np.ndarray, pad: tuple[int, int], value: float = 0.0) -> np.ndarray:
    if not any(pad):
        return x
    return np.pad(x, ((0, 0), (0, 0), (pad[0], pad[0]), (pad[1], pad[1])), constant_values=value)


def _linear(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    y = xs[0] @ p["weight"].T
    return y + p["bias"] if "bias" in p else y


def _conv2d(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    x, w = xs[0], p["weight"]
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    g = int(a.get("groups", 1))
    win = _windows(_pad(x, tuple(a["padding"])), (kh, kw), tuple(a["stride"]),
                   tuple(a["dilation"]))
    ho, wo = win.shape[2:4]
    og = o // g
    outs = []
    for i in range(g):
        cols = win[:, i * cg:(i + 1) * cg].transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
        outs.append(cols @ w[i * og:(i + 1) * og].reshape(og, -1).T)
    y = (outs[0] if g == 1 else np.concatenate(outs, axis=1)).reshape(n, ho, wo, o)
    if "bias" in p:
        y = y + p["bias"]
    return np.ascontiguousarray(y.transpose(0, 3, 1, 2))


def _maxpool2d(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    x = _pad(xs[0], tuple(a["padding"]), -np.inf)
    return _windows(x, tuple(a["kernel"]), tuple(a["stride"]), tuple(a["dilation"])).max(axis=(4, 5))


def _avgpool2d(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    x = _pad(xs[0], tuple(a["padding"]))  # count_include_pad, torch's default
    return _windows(x, tuple(a["kernel"]), tuple(a["stride"])).mean(axis=(4, 5), dtype=x.dtype)


def _adaptive_avgpool2d(xs: list[np.ndarray], a: dict[str, Any],
                        p: dict[str, np.ndarray]) -> np.ndarray:
    x = xs[0]
    n, c, h, w = x.shape
    oh, ow = a["output"]
    return x.reshape(n, c, oh, h // oh, ow, w // ow).mean(axis=(3, 5), dtype=x.dtype)


def _batchnorm(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    x = xs[0]
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return x * p["scale"].reshape(shape) + p["shift"].reshape(shape)


def _softmax(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    x = xs[0]
    e = np.exp(x - x.max(axis=a["dim"], keepdims=True))
    return e / e.sum(axis=a["dim"], keepdims=True)


def _reshape(xs: list[np.ndarray], a: dict[str, Any], p: dict[str, np.ndarray]) -> np.ndarray:
    return xs[0].reshape((xs[0].shape[0], *a["out"]))


KERNELS: dict[str, Kernel] = {
    "linear": _linear,
    "conv2d": _conv2d,
    "relu": lambda xs, a, p: np.maximum(xs[0], 0),
    "leaky_relu": lambda xs, a, p: np.where(xs[0] > 0, xs[0], xs[0] * np.float32(a["slope"])),
    "sigmoid": lambda xs, a, p: 1 / (1 + np.exp(-xs[0])),
    "tanh": lambda xs, a, p: np.tanh(xs[0]),
    "softmax": _softmax,
    "batchnorm": _batchnorm,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "adaptive_avgpool2d": _adaptive_avgpool2d,
    "flatten": _reshape,
    "reshape": _reshape,
    "add": lambda xs, a, p: xs[0] + xs[1],
    "sub": lambda xs, a, p: xs[0] - xs[1],
    "mul": lambda xs, a, p: xs[0] * xs[1],
    "cat": lambda xs, a, p: np.concatenate(xs, axis=a["dim"]),
    "dropout": lambda xs, a, p: xs[0],
    "identity": lambda xs, a, p: xs[0],
}


# --------------------------------------------------------------------------- the cost input


def load_cost_input(path: Path | str) -> tuple[dict[str, Any], dict[str, dict[str, np.ndarray]]]:
    """The meta (model, shapes, layers) and each layer's arrays; errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no cost input; write it on the host (`hwpart deploy ... "
                          "--model MODEL`, or hwpart.boardcpu.export_cost_input)")
    try:
        with np.load(p, allow_pickle=False) as z:
            meta = json.loads(str(z[META_KEY]))
            arrays = {k: z[k] for k in z.files if k != META_KEY}
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"{p}: not a hwpart cost input ({type(exc).__name__}: {exc}); "
                          "export it again") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{p}: field 'format': expected {FORMAT!r}; export it again")
    params: dict[str, dict[str, np.ndarray]] = {}
    for key, arr in arrays.items():
        layer, _, name = key.rpartition("__")
        params.setdefault(layer, {})[name] = arr
    for i, layer in enumerate(meta.get("layers", [])):
        for f in ("name", "op", "inputs", "out"):
            if f not in layer:
                raise ConfigError(f"{p}: field 'layers[{i}].{f}': missing; export it again")
    return meta, params


def run_layer(layer: dict[str, Any], xs: list[np.ndarray],
              params: dict[str, np.ndarray]) -> np.ndarray:
    """One exported layer on numpy inputs (batch first), as the board computes it."""
    return KERNELS[layer["op"]](xs, layer.get("attrs", {}), params)


def time_layers(meta: dict[str, Any], params: dict[str, dict[str, np.ndarray]],
                batches: list[int], repeats: int = 15, warmup: int = 2,
                min_total_s: float = 0.05, seed: int = 0,
                progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Seconds per batch of every supported layer at every batch size (median of repeats).

    Inputs are seeded standard-normal float32 of the layer's shapes: the kernels'
    time does not depend on the values (no sparsity shortcuts in numpy's BLAS).
    """
    rng = np.random.default_rng(seed)
    times: dict[str, dict[str, float]] = {}
    unsupported: dict[str, str] = {}
    for layer in meta["layers"]:
        name, op = layer["name"], layer["op"]
        if layer.get("unsupported") or op not in KERNELS:
            unsupported[name] = layer.get("unsupported") or f"no numpy kernel for {op!r}"
            continue
        p = params.get(name, {})
        times[name] = {}
        for b in batches:
            xs = [rng.standard_normal((b, *s), dtype=np.float32) for s in layer["inputs"]]
            for _ in range(warmup):
                run_layer(layer, xs, p)
            samples: list[float] = []
            total = 0.0
            while len(samples) < repeats and (len(samples) < 3 or total < min_total_s):
                t0 = time.perf_counter()
                run_layer(layer, xs, p)
                dt = time.perf_counter() - t0
                samples.append(dt)
                total += dt
            times[name][str(b)] = statistics.median(samples)
        if progress:
            progress(name)
    return {"model": meta.get("model"), "input_shape": meta.get("input_shape"),
            "batch_sizes": list(batches), "times": times, "unsupported": unsupported,
            "repeats": repeats, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine()}


def measure(bundle_dir: Path | str, cost_input: Path | str, batches: list[int] | None = None,
            board: str | None = None, repeats: int = 15, write: bool = True) -> dict[str, Any]:
    """Time the cost input's layers here and write them into ``BUNDLE/measured.json``.

    Returns the section's data. ``board`` names the machine in the source (default:
    the bundle's ``board.json``, else this machine's architecture).
    """
    from hwpart.board.measured import update_measured

    meta, params = load_cost_input(cost_input)
    sizes = sorted(set(batches or meta.get("batch_sizes") or [1]))
    if sizes[0] <= 0:
        raise ConfigError(f"batch sizes must be positive, got {sizes}")
    if board is None:
        try:
            from hwpart.board.manifest import load_board_manifest

            board = load_board_manifest(bundle_dir).board
        except ConfigError:
            board = None
    data = time_layers(meta, params, sizes, repeats=repeats)
    where = board or "this machine"
    want = BOARD_ARCH.get(str(board).lower()) if board else None
    if want and data["machine"] != want:  # e.g. a deployed copy exercised on an x86 host
        where = f"this machine, NOT on the {board} the bundle is for ({want})"
    source = (f"measured on {where} ({data['machine']}, Python {data['python']}, numpy "
              f"{data['numpy']}) by hwpart board check --cost-input: median of up to "
              f"{repeats} runs per layer and batch")
    if write:
        update_measured(bundle_dir, SECTION, data, source)
    return data


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the deployed bundle folder (measured.json goes there)")
    parser.add_argument("--cost-input", required=True,
                        help="the model's layers, exported on the host (.npz)")
    parser.add_argument("--batch", help="batch sizes, e.g. 1,64 (default: the cost input's)")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per layer and batch")


def parse_batches(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        vals = []
    if not vals or vals[0] <= 0:
        raise ConfigError(f"--batch {text!r}: expected positive integers, e.g. 1,64")
    return vals


def run(args: argparse.Namespace) -> int:
    data = measure(args.directory, args.cost_input, parse_batches(args.batch),
                   repeats=args.repeats)
    print(report(data))
    print(f"wrote section {SECTION!r} of {Path(args.directory) / 'measured.json'}")
    return 0


def report(data: dict[str, Any]) -> str:
    """A plain table: layer, then microseconds per batch at each size."""
    sizes = data["batch_sizes"]
    lines = [f"board CPU, {data['model']} ({data['machine']}, numpy {data['numpy']}): "
             "us per batch"]
    lines.append("  " + "layer".ljust(14) + "".join(f"b{b}".rjust(12) for b in sizes))
    for name, by in data["times"].items():
        lines.append("  " + name.ljust(14) + "".join(f"{by[str(b)] * 1e6:12.1f}" for b in sizes))
    for name, why in data["unsupported"].items():
        lines.append(f"  {name.ljust(14)}  not timed: {why} (stays modeled)")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m hwpart.board.cpucost")
    add_arguments(p)
    sys.exit(run(p.parse_args()))
