"""hls4ml projects for RMs: slicing, conversion, C simulation, accuracy.

Layout. hls4ml works channels-last internally. We convert with
``channels_last_conversion='internal'`` and ``transpose_outputs=False``, so an
RM's streams are channels-last (NHWC for conv2d, NLC for conv1d) on both sides:
two RMs chained through the switch then need no transpose in fabric, and the
host transposes once at each FPGA boundary (:func:`to_stream` /
:func:`from_stream`). Vectors (dense layers) are unaffected. hls4ml's own
'full' conversion would put a transpose *into* the RM instead, which costs a
frame buffer per RM.

C simulation. hls4ml's compiled library is made self-contained by writing no
weight text files (otherwise it reads them at run time from the absolute
project path it was compiled in, so a moved bundle or cache would break), and exports ``<project>_float(float *in, float *out)`` for one sample; we
call it through ctypes, so a cached RM is evaluated without importing hls4ml.
The arithmetic does not depend on reuse factor or strategy, so one compiled
library per (layers, weights, input shape, precision, the user's
``--hls-config`` settings of the slice) serves every board; the per-board
project written into a bundle differs only in hwpart's chosen reuse factors.
Its weight headers are rewritten as plain double arrays before g++ runs
(:func:`fast_weight_headers`): hls4ml's ap_fixed initialisers made g++ take
over 25 minutes on LeNet-5's 400x120 layer, whatever the reuse factor.
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import hashlib
import io
import json
import os
import re
import shutil
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from hwpart.graph import LayerGraph

#: Tried in order until one meets the tolerance. Rounding and saturation cost
#: a few LUTs and no DSPs, and cut the error about 7x at the same width
#: (DESIGN.md), so they come first; wider types only when that is not enough.
DEFAULT_PRECISIONS = (
    "ap_fixed<16,6,AP_RND_CONV,AP_SAT>",
    "ap_fixed<18,8,AP_RND_CONV,AP_SAT>",
    "ap_fixed<24,8,AP_RND_CONV,AP_SAT>",
)
CSIM_PROJECT = "hwpart_rm"
_CSIM_FORMAT = 1  # bump when the cached project layout changes


def slice_module(lg: LayerGraph, nodes: list[str]) -> nn.Sequential:
    """The group as its own ``nn.Sequential``, children named after the graph nodes.

    Naming children after the nodes keeps hls4ml's layer names equal to the
    names in the LayerGraph, the plan and the manifest.
    """
    mods = OrderedDict()
    for n in nodes:
        target = str(lg.dag.nodes[n]["target"])
        mod = copy.deepcopy(lg.module.get_submodule(target))
        if isinstance(mod, nn.Softmax) and len(lg.dag.nodes[n]["in_shapes"][0]) == 2:
            mod = nn.Softmax(dim=-1)  # same op on (N, C); hls4ml io_stream insists on dim=-1
        mods[n] = mod
    return nn.Sequential(mods).eval()


def module_digest(m: nn.Module, in_shape: tuple[int, ...]) -> str:
    """Content hash of a slice: structure, every parameter/buffer, input shape."""
    h = hashlib.sha256()
    h.update(repr(m).encode())
    h.update(repr(tuple(in_shape)).encode())
    for name, t in list(m.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def channels_last(shape: tuple[int, ...]) -> bool:
    """True when the per-sample tensor has a channel axis that hls4ml moves last."""
    return len(shape) >= 2


def to_stream(x: np.ndarray) -> np.ndarray:
    """(N, C, *spatial) torch order -> flat channels-last rows, as an RM consumes them."""
    if x.ndim >= 3:
        x = np.moveaxis(x, 1, -1)
    return np.ascontiguousarray(x.reshape(x.shape[0], -1), dtype=np.float32)


def from_stream(y: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Flat channels-last rows -> (N, *shape) torch order."""
    n = y.shape[0]
    if len(shape) >= 2:
        c, *spatial = shape
        return np.moveaxis(y.reshape(n, *spatial, c), -1, 1)
    return y.reshape(n, *shape)


def hls_config(m: nn.Module, in_shape: tuple[int, ...], precision: str,
               reuse: dict[str, int] | None = None,
               user: dict[str, Any] | None = None) -> dict[str, Any]:
    """hwpart's name-granular hls4ml config, then its reuse factors, then the user's settings.

    ``reuse``: hwpart's per-layer choice (:mod:`hwpart.overlay.resources`; the
    per-board project only). ``user``: the ``--hls-config`` settings of this
    slice, already resolved per layer name (:meth:`UserHLSConfig.choices`), in
    hls4ml's own shape (``{"Model": {...}, "LayerName": {name: {...}}}``); they
    are applied last, so they win.
    """
    import hls4ml

    cfg = hls4ml.utils.config_from_pytorch_model(
        m, input_shape=tuple(in_shape), granularity="name", backend="Vitis",
        default_precision=precision, channels_last_conversion="internal",
        transpose_outputs=False)
    # Every layer's output in the RM's type (hls4ml would widen 'auto' results to
    # lossless 40-bit types): streams between layers and between RMs then carry
    # W-bit lanes, and the C simulation includes that quantization.
    for layer_cfg in cfg["LayerName"].values():
        if "result" in layer_cfg.get("Precision", {}):
            layer_cfg["Precision"]["result"] = precision
        _widen_softmax(layer_cfg, precision)
    for layer, rf in (reuse or {}).items():
        if layer in cfg["LayerName"]:
            cfg["LayerName"][layer]["ReuseFactor"] = int(rf)
            cfg["LayerName"][layer]["Strategy"] = "Resource" if rf > 1 else "Latency"
    user = user or {}
    cfg["Model"].update(user.get("Model") or {})
    for layer, settings in (user.get("LayerName") or {}).items():
        entry = cfg["LayerName"].setdefault(layer, {})
        for key, value in settings.items():
            if key == "Precision":
                entry.setdefault("Precision", {}).update(value)
            else:
                entry[key] = value
    return cfg


def _widen_softmax(layer_cfg: dict[str, Any], precision: str) -> None:
    """Softmax tables follow the RM's width (hls4ml fixes them at 18 bits, 1024 entries).

    With fixed tables a wider RM type does not help a classifier's output at
    all (the tables set the error floor), so the precision ladder widens them too.
    """
    if "exp_table" not in layer_cfg.get("Precision", {}):
        return
    from hwpart.overlay.rtl import FixedType  # the overlay's one ap_fixed parser

    try:
        width = FixedType.parse(precision).width
    except ValueError:
        width = 16
    table = f"ap_fixed<{max(18, width + 2)},8,AP_RND,AP_SAT>"
    for key in ("exp_table", "inv_table", "inv_inp", "accum"):
        layer_cfg["Precision"][key] = table
    layer_cfg["TableSize"] = 1024 if width <= 16 else 4096


def convert(m: nn.Module, in_shape: tuple[int, ...], precision: str, outdir: Path,
            project: str, reuse: dict[str, int] | None = None, part: str | None = None,
            clock_ns: float = 10.0, user: dict[str, Any] | None = None) -> Any:
    """Convert and write an hls4ml project (no compile); returns the ModelGraph."""
    import hls4ml

    cfg = hls_config(m, in_shape, precision, reuse, user)
    kw: dict[str, Any] = {"part": part} if part else {}
    with _quiet(outdir.parent / f".{outdir.name}.log"):
        hm = hls4ml.converters.convert_from_pytorch_model(
            m, output_dir=str(outdir), project_name=project, backend="Vitis", hls_config=cfg,
            io_type="io_stream", clock_period=clock_ns, write_weights_txt=False, **kw)
        hm.write()
    return hm


@contextlib.contextmanager
def _quiet(log: Path):
    """hls4ml prints every layer; keep that in a log next to the project instead."""
    log.parent.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            yield
    finally:
        log.write_text(buf.getvalue())


#: hls4ml's weight definition, ``weight_t w2[150] = {0.1, ...};`` (plain number literals).
_WEIGHT_ARRAY = re.compile(r"^(\w+)\s+(\w+)\s*\[\s*(\d+)\s*\]\s*=\s*\{([^{}]*)\}\s*;", re.M)
#: The suffix of the double array that holds a rewritten header's literals (fastrm reads it).
LITERALS = "_literals"


def fast_weight_headers(firmware: Path) -> int:
    """Rewrite the C simulation's weight headers so g++ compiles them in seconds.

    hls4ml writes ``weight_t w9[48000] = {...}``: an array of ap_fixed objects,
    whose constructor from a double is not constexpr, so g++ emits one inlined
    constructor call per value into the library's static initialiser and its
    optimiser is superlinear in that function's size. Measured here: 1,200
    values 30 s, 4,800 values 220 s, LeNet-5's 400x120 layer (48,000) over 25
    minutes, with any reuse factor or strategy. The same literals as a
    ``static const double`` array are plain data, and a loop converts each
    into the weight type when the library loads, with the same ap_fixed(double)
    conversion the initialiser used, so the arithmetic is unchanged (the fast
    model's bit-exact check at build and the per-board project's g++ run in the
    tests compare against hls4ml's own form). Only the C-simulation project is
    rewritten; the per-board project keeps hls4ml's initialisers, which Vitis
    HLS turns into ROMs. Returns how many arrays were rewritten.
    """
    count = 0
    for h in sorted((firmware / "weights").glob("*.h")):
        text = h.read_text()

        def sub(m: re.Match[str]) -> str:
            t, var, n, vals = m.group(1), m.group(2), m.group(3), m.group(4)
            return (f"// hwpart: the literals as doubles (plain data), converted once when the\n"
                    f"// library loads (hwpart.overlay.hls.fast_weight_headers says why)\n"
                    f"static const double {var}{LITERALS}[{n}] = {{{vals}}};\n"
                    f"{t} {var}[{n}];\n"
                    f"static const bool {var}_filled = [] {{\n"
                    f"    for (unsigned i = 0; i < {n}; i++) {var}[i] = {var}{LITERALS}[i];\n"
                    f"    return true;\n}}();")

        new, k = _WEIGHT_ARRAY.subn(sub, text)
        if k:
            h.write_text(new)
            count += k
    return count


@dataclass
class CSimArtifact:
    key: str
    directory: Path
    library: Path
    top: str
    n_in: int
    n_out: int
    precision: str
    compile_s: float
    cached: bool


def csim_key(digest: str, precision: str, user: dict[str, Any] | None = None) -> str:
    import importlib.metadata

    version = importlib.metadata.version("hls4ml")  # without importing it (seconds)
    # this file's own hash: a change to how configs are made must not reuse old builds
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    text = f"{digest}|{precision}|hls4ml {version}|{own}|fmt {_CSIM_FORMAT}"
    if user:  # --hls-config settings of this slice (precisions change the arithmetic)
        text += "|user " + json.dumps(user, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


Report = Callable[[str], None]  # one progress line ("C-sim compile (g++)")


def compile_csim(m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                 precision: str, cache: Path, digest: str | None = None,
                 user: dict[str, Any] | None = None,
                 report: Report | None = None) -> CSimArtifact:
    """Compile (or find in ``cache``) the C simulation library of one slice.

    The weight headers are rewritten before g++ runs (:func:`fast_weight_headers`),
    which is what keeps a LeNet-5-sized RM's compile in seconds, not half an hour.
    """
    key = csim_key(digest or module_digest(m, in_shape), precision, user)
    d = cache / "csim" / key
    meta = d / "artifact.json"
    n_in, n_out = int(np.prod(in_shape)), int(np.prod(out_shape))
    if meta.is_file():
        info = json.loads(meta.read_text())
        lib = d / info["library"]
        if lib.is_file():
            return CSimArtifact(key, d, lib, CSIM_PROJECT, n_in, n_out, precision,
                                info["compile_s"], cached=True)
    tmp = d.with_name(f"{key}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    t0 = time.perf_counter()
    if report:
        report(f"hls4ml convert at {precision}")
    hm = convert(m, in_shape, precision, tmp / "prj", CSIM_PROJECT, user=user)
    fast_weight_headers(tmp / "prj" / "firmware")
    if report:
        report(f"C-sim compile (g++) after {time.perf_counter() - t0:.1f} s of hls4ml")
    t1 = time.perf_counter()
    with _quiet(tmp / "compile.log"):
        hm.config.backend.compile(hm)  # build_lib.sh only: hm.compile() would write again
    elapsed = time.perf_counter() - t0
    if report:
        report(f"C-sim compiled in {time.perf_counter() - t1:.1f} s")
    libs = sorted((tmp / "prj" / "firmware").glob(f"{CSIM_PROJECT}-*.so"))
    if not libs:
        raise RuntimeError(f"hls4ml compile produced no library in {tmp}/prj/firmware")
    rel = libs[-1].relative_to(tmp)
    (tmp / "artifact.json").write_text(json.dumps(
        {"library": str(rel), "compile_s": elapsed, "precision": precision,
         "in_shape": list(in_shape), "out_shape": list(out_shape)}))
    shutil.rmtree(d, ignore_errors=True)
    try:
        tmp.rename(d)
    except OSError:  # another process finished the same key first: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return CSimArtifact(key, d, d / rel, CSIM_PROJECT, n_in, n_out, precision, elapsed,
                        cached=False)


def layer_classes(m: nn.Module, in_shape: tuple[int, ...], cfg: dict[str, Any]) -> dict[str, str]:
    """hls4ml layer name -> hls4ml class (``Dense``, ``Conv2D``, ``Activation``...).

    From hls4ml's own PyTorch parser (milliseconds, no optimiser passes), so a
    user's ``LayerType`` entry matches the layers hls4ml would apply it to.
    """
    from hls4ml.converters.pytorch_to_hls import parse_pytorch_model

    with contextlib.redirect_stdout(io.StringIO()):
        layers = parse_pytorch_model({"PytorchModel": m, "InputShape": [tuple(in_shape)],
                                      "HLSConfig": cfg}, verbose=False)[0]
    return {str(layer["name"]): str(layer["class_name"]) for layer in layers}


def effective_settings(hm: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    """What hls4ml will generate for each named layer: its types, reuse factor, strategy.

    Read from the converted ModelGraph, after hls4ml's own resolution ('auto'
    types inferred, defaults applied), as the C++ types its writer emits.
    """
    out: dict[str, dict[str, Any]] = {}
    for layer in hm.get_layers():
        if layer.name not in names:
            continue
        types = {}
        for var, t in sorted(layer.types.items()):
            p = t.precision
            types[var.removesuffix("_t")] = (p.definition_cpp() if hasattr(p, "definition_cpp")
                                             else str(p))
        out[layer.name] = {"precision": types,
                           "reuse_factor": int(layer.get_attr("reuse_factor", 1) or 1),
                           "strategy": str(layer.get_attr("strategy") or "")}
    return out


class CSim:
    """Runs an hls4ml C-simulation library sample by sample through ctypes."""

    def __init__(self, library: Path, top: str, n_in: int, n_out: int) -> None:
        self._lib = ctypes.CDLL(str(library))
        self._fn = getattr(self._lib, f"{top}_float")
        self._fn.restype = None
        self._fn.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
        self.n_in, self.n_out = n_in, n_out

    def predict(self, x_stream: np.ndarray) -> np.ndarray:
        """Rows already in stream order (:func:`to_stream`), float32."""
        x = np.ascontiguousarray(x_stream, dtype=np.float32).reshape(-1, self.n_in)
        out = np.zeros((x.shape[0], self.n_out), dtype=np.float32)
        fp = ctypes.POINTER(ctypes.c_float)
        for i in range(x.shape[0]):
            row = x[i]
            self._fn(row.ctypes.data_as(fp), out[i].ctypes.data_as(fp))
        return out


@dataclass
class Accuracy:
    """RM output vs float torch on the same inputs (the group's real input activations)."""

    samples: int
    max_abs_err: float
    mean_abs_err: float
    argmax_agreement: float | None  # classifiers only (the group ends the model)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def accuracy(y: np.ndarray, ref: np.ndarray, classifier: bool) -> Accuracy:
    y2, r2 = y.reshape(len(y), -1).astype(np.float64), ref.reshape(len(ref), -1)
    err = np.abs(y2 - r2)
    agree = None
    if classifier and r2.shape[1] > 1:
        agree = float(np.mean(np.argmax(y2, 1) == np.argmax(r2, 1)))
    return Accuracy(len(y2), float(err.max()), float(err.mean()), agree)


def group_io(lg: LayerGraph, nodes: list[str], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The group's float input and output activations when the whole model runs on ``x``."""
    return groups_io(lg, [nodes], x)[0]


def groups_io(lg: LayerGraph, groups: list[list[str]],
              x: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each group's float input and output activations, from one run of the model on ``x``."""
    from hwpart.costs import capture_values

    ins, outs = capture_values(lg, torch.as_tensor(x, dtype=torch.float32),
                               inputs=[g[0] for g in groups], outputs=[g[-1] for g in groups])
    return [(ins[g[0]][0][0].numpy(), outs[g[-1]].numpy()) for g in groups]


@dataclass
class Trial:
    precision: str
    accuracy: Accuracy
    passed: bool
    compile_s: float
    cached: bool
    key: str


class NotWarm(Exception):
    """A warm-only search reached a precision whose library has not run before."""


def search_precision(m: nn.Module, in_shape: tuple[int, ...], out_shape: tuple[int, ...],
                     x_in: np.ndarray, ref: np.ndarray, tolerance: float, classifier: bool,
                     precisions: tuple[str, ...], cache: Path,
                     warm_only: bool = False, digest: str | None = None,
                     user: dict[str, Any] | None = None,
                     report: Report | None = None) -> list[Trial]:
    """Compile and check each precision in turn; stop at the first within tolerance.

    With ``warm_only``, raise :class:`NotWarm` instead of compiling or loading a
    library that has not run before (the caller then runs the search in a child).
    """
    trials: list[Trial] = []
    xs = to_stream(x_in)
    digest = digest or module_digest(m, in_shape)
    for prec in precisions:
        if warm_only and not _warm(cache, digest, prec, user):
            raise NotWarm(prec)
        art = compile_csim(m, in_shape, out_shape, prec, cache, digest=digest, user=user,
                           report=report)
        y = CSim(art.library, art.top, art.n_in, art.n_out).predict(xs)
        (art.directory / EVALUATED).touch()
        acc = accuracy(from_stream(y, out_shape), ref, classifier)
        ok = acc.max_abs_err <= tolerance
        if report:
            report(f"checked {prec}: max error {acc.max_abs_err:.3g} "
                   + ("within" if ok else "over") + f" tolerance {tolerance:g}")
        trials.append(Trial(prec, acc, ok, art.compile_s, art.cached, art.key))
        if ok:
            break
    return trials


#: Marks a cached library that has run without crashing; only such libraries are
#: evaluated inside the parent process (an hls4ml C++ assertion aborts its process).
EVALUATED = "evaluated"


def _warm(cache: Path, digest: str, precision: str, user: dict[str, Any] | None = None) -> bool:
    d = cache / "csim" / csim_key(digest, precision, user)
    return (d / "artifact.json").is_file() and (d / EVALUATED).is_file()


def job_is_warm(job: dict[str, Any]) -> bool:
    """True when the search's first library is cached and has run before.

    Only a first check: the search itself, run with ``warm_only``, stops before
    any later precision that is not warm too (see :func:`run_job`).
    """
    digest = job.get("digest") or module_digest(job["module"], tuple(job["in_shape"]))
    return bool(job["precisions"]) and _warm(Path(job["cache"]), digest, job["precisions"][0],
                                             job.get("user"))


#: In a pool worker: sends (RM, line) to the parent, which prints progress (init_worker).
_QUEUE: Any = None


def init_worker(queue: Any) -> None:
    """Pool initializer: progress lines from a worker go through ``queue`` to the parent."""
    global _QUEUE
    _QUEUE = queue


def _reporter(name: str, local: Callable[[str, str], None] | None) -> Report | None:
    if local is not None:
        return lambda what: local(name, what)
    if _QUEUE is not None:
        return lambda what: _QUEUE.put((name, what))
    return None


def run_job(job: dict[str, Any], warm_only: bool = False,
            progress: Callable[[str, str], None] | None = None) -> dict[str, Any] | None:
    """Process-pool entry point: one RM's precision search. Returns plain data.

    It also runs in-process for warm jobs (``warm_only``: returns None, having
    loaded nothing new, when the search would reach a library that has not run
    before), so the thread count it sets for itself is put back: the caller's
    torch runs must not slow down.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trials = search_precision(job["module"], tuple(job["in_shape"]),
                                  tuple(job["out_shape"]), job["x_in"], job["ref"],
                                  job["tolerance"], job["classifier"],
                                  tuple(job["precisions"]), Path(job["cache"]),
                                  warm_only=warm_only, digest=job.get("digest"),
                                  user=job.get("user"),
                                  report=_reporter(job["name"], progress))
    except NotWarm:
        return None
    except Exception as exc:  # hls4ml or g++ refused this slice: reject the RM, keep the rest
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        return {"name": job["name"], "trials": [], "error": f"{type(exc).__name__}: {first}"}
    finally:
        torch.set_num_threads(threads)
    return {"name": job["name"], "trials": trials, "error": None}
