"""A vectorised fixed-point twin of a dense hls4ml RM, bit-exact to its C simulation.

Why: the simulated board paces each DMA completion to the modeled hardware
time, which only works if it computes faster than the board it models. The
hls4ml C simulation runs one sample at a time (about 13k samples/s for the jet
MLP here); this model runs a whole packet as a few numpy operations.

Source of truth: the hls4ml project the C simulation was compiled from, never
our own config. ``firmware/defines.h`` gives every type (``input_t``, each
layer's ``accum_t``/``weight_t``/``bias_t``, each output type, with its ``AP_``
quantisation and overflow modes), ``parameters.h`` each layer's config and
kernel, ``<top>.cpp`` the order of the calls, ``weights/*.h`` the literals the
C++ compiler turns into ``weight_t``/``bias_t`` values. The arithmetic is that
of hls4ml's templates (``nnet_dense_latency.h``, ``nnet_dense_resource.h``,
``nnet_mult.h``, ``nnet_activation_stream.h``, ``nnet_helpers.h``):

* float in -> ``input_t`` with its Q/O modes (``convert_data``);
* dense: each product ``data * weight`` is exact, then cast to ``accum_t``;
  the accumulator starts at ``(accum_t) bias`` and every ``+=`` applies
  ``accum_t``'s modes; the sum is cast to the layer's output type;
* ReLU: ``x > 0 ? x : 0`` into its output type; linear: a cast.

Every value is an exact multiple of its type's LSB held in float64, and every
conversion goes through :meth:`hwpart.sim.fixed.FixedType.quantize` (the one
implementation of the ``AP_`` modes). A dense layer is one float64 matmul when
that is provably exact: ``accum_t`` holds every product exactly, every partial
sum stays below 2**53 LSBs, and the accumulator either wraps (order-free) or
cannot overflow. Otherwise it accumulates input by input in the C code's
order. Anything else -- other layers, a Resource kernel whose saturating sum
could overflow (its summation order is not modeled), values beyond 2**53 LSBs
-- raises :class:`Unsupported` with the reason, and the board runs the C
simulation (so does a Flatten that hls4ml keeps as a stream call; the ones it
removes never reach the project). Whether the model *is* exact is not assumed:
:func:`verify` runs it against the C simulation, and only an exact verdict lets
the board use it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.errors import ConfigError
from hwpart.overlay.manifest import sha256_file
from hwpart.sim.fixed import FixedType, parse_type

FORMAT = "hwpart-fastrm/1"
CHECK_SAMPLES = 10_000
ENGINE_ENV = "HWPART_SIM_ENGINE"  # "csim" forces the C simulation (e.g. to compare engines)
_EXACT = 2.0**53  # float64 holds every integer below this exactly
# what a verdict rests on: this module and the fixed-point rules it casts with
_OWN = hashlib.sha256(Path(__file__).read_bytes()
                      + (Path(__file__).parent / "fixed.py").read_bytes()).hexdigest()[:16]


class Unsupported(ValueError):
    """The project holds something this model cannot reproduce exactly (the reason)."""


class FastModelError(ConfigError):
    """A fast-model file that is unreadable or differs from its recorded sha256."""


def _real(t: FixedType) -> tuple[float, float]:
    s = 2.0 ** -t.frac
    return t.lo * s, t.hi * s


def _cast(t: FixedType, v: np.ndarray) -> np.ndarray:
    """Exact values -> the values of type ``t`` (its Q and O modes), still exact in float64."""
    return t.snap(v)


def _holds(dst: FixedType, lo: float, hi: float, frac: int) -> bool:
    """True when every value in [lo, hi] on a 2**-frac grid is already a ``dst`` value."""
    dlo, dhi = _real(dst)
    return dst.frac >= frac and dlo <= lo and dhi >= hi


# --------------------------------------------------------------------------- layers

def _matmul(x: np.ndarray, w: Any) -> np.ndarray:
    """``x @ w`` in float64 through torch's BLAS, exact here (every product and partial
    sum is an integer multiple of one LSB below 2**53, see :class:`Dense`), so any
    summation order gives the same bits. Why torch and not numpy: numpy's bundled
    OpenBLAS ran these small GEMMs 3-5x slower on the 2-core hosts (55-78 us vs 12-22 us
    at batch 256), and the simulated board must compute faster than the board it models.
    """
    import torch

    return (torch.from_numpy(np.ascontiguousarray(x)) @ w).numpy()


@dataclass
class Dense:
    name: str
    weight: np.ndarray  # (n_in, n_out) integers in weight_t LSBs
    bias: np.ndarray  # (n_out,) integers in bias_t LSBs
    data_t: FixedType
    weight_t: FixedType
    bias_t: FixedType
    accum_t: FixedType
    result_t: FixedType
    ordered_kernel: bool = True  # False: a Resource kernel (sums in another order)

    def __post_init__(self) -> None:
        self.weight = np.asarray(self.weight, dtype=np.int64)
        self.bias = np.asarray(self.bias, dtype=np.int64)
        n_in, n_out = self.weight.shape
        if self.bias.shape != (n_out,):
            raise Unsupported(f"{self.name}: bias has shape {self.bias.shape}, expected ({n_out},)")
        for t in (self.data_t, self.weight_t, self.bias_t, self.accum_t, self.result_t):
            if t.width > 52:
                raise Unsupported(f"{self.name}: {t} is wider than 52 bits (float64 is not "
                                  "exact there)")
        self.w = self.weight * (2.0 ** -self.weight_t.frac)
        self._w_torch: Any = None  # the weights as a torch tensor, made on first use
        self.b = _cast(self.accum_t, self.bias * (2.0 ** -self.bias_t.frac))  # (accum_t) bias
        dlo, dhi = _real(self.data_t)
        xmax = max(abs(dlo), abs(dhi))
        wmax = float(np.abs(self.weight).max(initial=0))
        pfrac = self.data_t.frac + self.weight_t.frac
        if xmax * 2.0**self.data_t.frac * wmax >= _EXACT:
            raise Unsupported(f"{self.name}: a product needs more than 53 bits")
        bound = np.abs(self.b) + xmax * np.abs(self.w).sum(axis=0)  # |partial sums| <= bound
        if self.accum_t.frac < pfrac:  # each product cast may round up by one LSB
            bound = bound + n_in * 2.0 ** -self.accum_t.frac
        alo, ahi = _real(self.accum_t)
        self.no_overflow = bool(np.all(bound <= ahi) and np.all(-bound >= alo))
        exact_sums = bool(np.all(bound * 2.0**max(pfrac, self.accum_t.frac) < _EXACT))
        self.matmul = (self.accum_t.frac >= pfrac and exact_sums
                       and (self.no_overflow or self.accum_t.overflow == "AP_WRAP"))
        if (not self.matmul and not self.ordered_kernel and not self.no_overflow
                and self.accum_t.overflow != "AP_WRAP"):
            raise Unsupported(f"{self.name}: Resource kernel with a {self.accum_t.overflow} "
                              "accumulator that may overflow (its summation order is not modeled)")
        top = float(bound.max(initial=0.0))
        span = (-top, top) if self.no_overflow else (alo, ahi)
        self.accum_is_result = _holds(self.result_t, *span, self.accum_t.frac)

    @property
    def shape(self) -> tuple[int, int]:
        return self.weight.shape  # type: ignore[return-value]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.matmul:
            if self._w_torch is None:
                import torch

                self._w_torch = torch.from_numpy(np.ascontiguousarray(self.w))
            acc = _matmul(x, self._w_torch)  # exact: see __post_init__
            acc += self.b
            if not self.no_overflow:  # wrapping is modular: once at the end equals every step
                acc = _cast(self.accum_t, acc)
        else:  # the C loop: acc = bias; acc += (accum_t)(x[i] * w[i]) for i in order
            acc = np.broadcast_to(self.b, (x.shape[0], self.b.size)).copy()
            for i in range(x.shape[1]):
                acc = _cast(self.accum_t, acc + _cast(self.accum_t, x[:, i:i + 1] * self.w[i]))
        return acc if self.accum_is_result else self.result_t.snap(acc, inplace=True)


@dataclass
class Activation:
    name: str
    op: str  # relu | linear
    data_t: FixedType
    result_t: FixedType

    def __post_init__(self) -> None:
        if self.op not in ("relu", "linear"):
            raise Unsupported(f"{self.name}: activation {self.op!r} is not modeled")
        lo, hi = _real(self.data_t)
        self.identity = _holds(self.result_t, 0.0 if self.op == "relu" else lo, hi,
                               self.data_t.frac)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.maximum(x, 0.0) if self.op == "relu" else x
        return y if self.identity else _cast(self.result_t, y)


# --------------------------------------------------------------------------- the model


class FastModel:
    """float rows (stream order) -> float32 rows, as the C simulation's ``<top>_float``."""

    def __init__(self, input_t: FixedType, layers: list[Dense | Activation], n_in: int,
                 source: dict[str, str] | None = None) -> None:
        self.input_t, self.layers, self.n_in = input_t, layers, n_in
        self.source = source or {}
        width = n_in
        for layer in layers:
            if isinstance(layer, Dense):
                if layer.shape[0] != width:
                    raise Unsupported(f"{layer.name}: takes {layer.shape[0]} values, gets {width}")
                width = layer.shape[1]
        self.n_out = width
        self.output_t = layers[-1].result_t if layers else input_t
        if self.output_t.width > 24:
            raise Unsupported(f"output {self.output_t} is wider than 24 bits (its float32 "
                              "conversion is not modeled)")

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float32).reshape(-1, self.n_in)
        return self.forward(_cast(self.input_t, x)).astype(np.float32)

    def forward(self, values: np.ndarray) -> np.ndarray:
        """Values already of ``input_t`` (the stream's words, scaled) -> float64 outputs on
        the output type's grid: the board's path, with no float32 round trip."""
        v = values
        for layer in self.layers:
            v = layer(v)
        return v

    def describe(self) -> str:
        parts = []
        for layer in self.layers:
            if isinstance(layer, Dense):
                parts.append(f"{layer.name} dense {layer.shape[0]}x{layer.shape[1]} "
                             f"({'matmul' if layer.matmul else 'ordered sum'})")
            else:
                parts.append(f"{layer.name} {layer.op}")
        return ", ".join(parts)

    # ------------------------------------------------------------------ file

    def to_json(self) -> dict:
        layers = []
        for layer in self.layers:
            if isinstance(layer, Dense):
                layers.append({"op": "dense", "name": layer.name,
                               "data_t": str(layer.data_t), "weight_t": str(layer.weight_t),
                               "bias_t": str(layer.bias_t), "accum_t": str(layer.accum_t),
                               "result_t": str(layer.result_t),
                               "ordered_kernel": layer.ordered_kernel,
                               "weight": layer.weight.tolist(), "bias": layer.bias.tolist()})
            else:
                layers.append({"op": layer.op, "name": layer.name, "data_t": str(layer.data_t),
                               "result_t": str(layer.result_t)})
        return {"format": FORMAT, "input_t": str(self.input_t), "n_in": self.n_in,
                "n_out": self.n_out, "layers": layers, "source": self.source}

    @classmethod
    def from_json(cls, d: dict) -> FastModel:
        if d.get("format") != FORMAT:
            raise ValueError(f"format {d.get('format')!r}, expected {FORMAT!r}")
        layers: list[Dense | Activation] = []
        for ld in d["layers"]:
            t = {k: parse_type(v) for k, v in ld.items() if k.endswith("_t")}
            if ld["op"] == "dense":
                layers.append(Dense(ld["name"], np.array(ld["weight"], dtype=np.int64).reshape(
                    len(ld["weight"]), -1), np.array(ld["bias"], dtype=np.int64),
                    ordered_kernel=bool(ld["ordered_kernel"]), **t))
            else:
                layers.append(Activation(ld["name"], ld["op"], **t))
        m = cls(parse_type(d["input_t"]), layers, int(d["n_in"]), dict(d.get("source", {})))
        if m.n_out != int(d["n_out"]):
            raise ValueError(f"layers give {m.n_out} outputs, the file says {d['n_out']}")
        return m

    def save(self, path: Path) -> str:
        """Write the model as JSON (no pickle); returns its sha256."""
        data = json.dumps(self.to_json(), separators=(",", ":")).encode()
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return hashlib.sha256(data).hexdigest()


def load_model(path: Path, sha256: str | None = None) -> FastModel:
    """Read a model file; with ``sha256``, refuse a file that differs from it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FastModelError(f"{path}: cannot read the fast model ({exc.strerror})") from None
    if sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != sha256:
            raise FastModelError(f"{path}: sha256 {got[:16]}... does not match the partial's "
                                 f"({sha256[:16]}...); refusing it (rebuild or re-copy the bundle)")
    try:
        return FastModel.from_json(json.loads(data))
    except (ValueError, KeyError, TypeError) as exc:  # Unsupported is a ValueError too
        raise FastModelError(f"{path}: not a valid fast model ({type(exc).__name__}: "
                             f"{exc})") from None


# --------------------------------------------------------------------------- from hls4ml

_TYPEDEF = re.compile(r"typedef\s+(.+?)\s+(\w+)\s*;")
_STRUCT = re.compile(r"struct\s+(\w+)\s*:\s*nnet::(\w+)\s*\{(.*?)\n\};", re.S)
_CALL = re.compile(r"^\s*nnet::(\w+)\s*<([^<>;]*)>\s*\(([^();]*)\)\s*;\s*(?://\s*(\S+))?", re.M)
_PORT = re.compile(r"hls::stream<\s*(\w+)\s*>\s*&\s*(\w+)")
_ARRAY = re.compile(r"(\w+)\s+(\w+)\s*\[\s*(\d+)\s*\]\s*=\s*\{([^}]*)\}\s*;")
_SAT_BITS = re.compile(r"ap_u?fixed<[^<>]*,\s*AP_\w+\s*,\s*AP_\w+\s*,\s*(\d+)\s*>")


def _type(text: str, where: str) -> FixedType:
    m = _SAT_BITS.search(text)
    if m and int(m.group(1)) != 0:
        raise Unsupported(f"{where}: {text} saturates with N={m.group(1)} bits (not modeled)")
    try:
        return parse_type(text)
    except ValueError:
        raise Unsupported(f"{where}: type {text!r} is not an ap_fixed/ap_int") from None


def from_firmware(firmware: Path, top: str) -> FastModel:
    """The model of an hls4ml io_stream project (``firmware/``) of top function ``top``."""
    firmware = Path(firmware)
    files = {"defines.h": firmware / "defines.h", "parameters.h": firmware / "parameters.h",
             f"{top}.cpp": firmware / f"{top}.cpp"}
    for rel, p in files.items():
        if not p.is_file():
            raise Unsupported(f"{firmware}: no {rel} (not an hls4ml project of top {top!r})")
    text = {rel: p.read_text() for rel, p in files.items()}
    typedefs = {name: body for body, name in _TYPEDEF.findall(text["defines.h"])}
    configs: dict[str, dict[str, str]] = {}
    for name, base, body in _STRUCT.findall(text["parameters.h"]):
        cfg = {"base": base}
        cfg.update(dict(re.findall(r"static const \w+(?:\s+\w+)?\s+(\w+)\s*=\s*([^;]+);", body)))
        cfg.update({alias: t for t, alias in re.findall(r"typedef\s+(\w+)\s+(\w+)\s*;", body)})
        cfg.update(dict(re.findall(r"using\s+(\w+)\s*=\s*nnet::([\w:]+)\s*<", body)))
        configs[name] = cfg

    def vtype(name: str, where: str) -> FixedType:
        if name not in typedefs:
            raise Unsupported(f"{where}: type {name} is not defined in defines.h")
        return _type(typedefs[name], f"{where} ({name})")

    ports = _PORT.findall(text[f"{top}.cpp"].split("{", 1)[0])
    if len(ports) != 2:
        raise Unsupported(f"{files[f'{top}.cpp']}: top {top} is not one stream in, one stream "
                          f"out (io_stream); found {len(ports)} stream ports")
    (in_type, stream), (out_type, out_stream) = ports
    input_t = vtype(in_type, "input")
    n_in = _array_size(typedefs.get(in_type, ""))
    layers: list[Dense | Activation] = []
    data_t, digests = input_t, {rel: sha256_file(p) for rel, p in files.items()}
    body = text[f"{top}.cpp"].split("{", 1)[1]
    calls = _CALL.findall(body)
    if not calls:
        raise Unsupported(f"{files[f'{top}.cpp']}: no nnet:: layer calls found")
    for fn, targs, args, comment in calls:
        ta = [a.strip() for a in targs.split(",")]
        av = [a.strip() for a in args.split(",")]
        name = comment or (av[1] if len(av) > 1 else fn)
        if len(ta) != 3 or len(av) < 2 or av[0] != stream:
            raise Unsupported(f"layer {name}: nnet::{fn} is not a one-in one-out stream layer "
                              "in sequence")
        cfg = configs.get(ta[2])
        if cfg is None:
            raise Unsupported(f"layer {name}: config {ta[2]} not found in parameters.h")
        res_t = vtype(ta[1], f"layer {name} result")
        if fn == "dense":
            layers.append(_dense(firmware, name, cfg, av, data_t, res_t, typedefs, digests))
        elif fn in ("relu", "linear"):
            layers.append(Activation(name, fn, data_t, res_t))
        else:
            raise Unsupported(f"layer {name}: nnet::{fn} is not modeled (dense, relu and "
                              "linear only)")
        data_t, stream = res_t, av[1]
    if stream != out_stream:
        raise Unsupported(f"the last layer writes {stream}, the top's output is {out_stream}")
    return FastModel(input_t, layers, n_in, digests)


def _array_size(text: str) -> int:
    m = re.search(r",\s*([\d\s*]+)>\s*$", text)
    if not m:
        raise Unsupported(f"input type {text!r} is not an nnet::array (not io_stream)")
    return math.prod(int(v) for v in m.group(1).split("*"))




def _dense(firmware: Path, name: str, cfg: dict[str, str], av: list[str], data_t: FixedType,
           res_t: FixedType, typedefs: dict[str, str], digests: dict[str, str]) -> Dense:
    kernel, product = cfg.get("kernel", ""), cfg.get("product", "")
    if product != "product::mult":
        raise Unsupported(f"layer {name}: product {product or '?'} is not the plain multiply")
    if kernel == "DenseLatency":
        transposed, ordered = False, True
    elif kernel.startswith("DenseResource"):  # the Vivado backend stores these weights (out, in)
        transposed, ordered = True, False
    else:
        raise Unsupported(f"layer {name}: dense kernel {kernel or '?'} is not modeled")
    if len(av) != 4:
        raise Unsupported(f"layer {name}: dense takes weights and biases, got {av}")
    n_in, n_out = int(cfg["n_in"]), int(cfg["n_out"])
    types = {}
    for k in ("weight_t", "bias_t", "accum_t"):
        if k not in cfg or cfg[k] not in typedefs:
            raise Unsupported(f"layer {name}: {k} not found in parameters.h/defines.h")
        types[k] = _type(typedefs[cfg[k]], f"layer {name} {k}")
    w = _weights(firmware, av[2], cfg["weight_t"], n_in * n_out, types["weight_t"], digests)
    b = _weights(firmware, av[3], cfg["bias_t"], n_out, types["bias_t"], digests)
    w = w.reshape(n_out, n_in).T if transposed else w.reshape(n_in, n_out)
    return Dense(name, w, b, data_t, result_t=res_t, ordered_kernel=ordered, **types)


def _weights(firmware: Path, var: str, type_name: str, size: int, t: FixedType,
             digests: dict[str, str]) -> np.ndarray:
    """The C++ initialiser's decimal literals -> ``t`` values, as the compiler makes them."""
    p = firmware / "weights" / f"{var}.h"
    if not p.is_file():
        raise Unsupported(f"{var}: no weights/{var}.h")
    text = p.read_text()
    if "__SYNTHESIS__" in text:
        raise Unsupported(f"weights/{var}.h: the C simulation reads weights/{var}.txt at run "
                          "time (write_weights_txt); not modeled")
    m = next((m for m in _ARRAY.finditer(text) if m.group(2) == var), None)
    if m is None:  # the C simulation's form (hwpart.overlay.hls.fast_weight_headers):
        # the same literals in a double array, each converted to the weight type on load
        m = next((m for m in _ARRAY.finditer(text) if m.group(2) == f"{var}_literals"
                  and m.group(1) == "double"), None)
        declared = re.search(rf"^{re.escape(type_name)}\s+{var}\s*\[\s*{size}\s*\]\s*;",
                             text, re.M)
        if m is None or declared is None or int(m.group(3)) != size:
            raise Unsupported(f"weights/{var}.h: expected {type_name} {var}[{size}] = {{...}}")
    elif m.group(1) != type_name or int(m.group(3)) != size:
        raise Unsupported(f"weights/{var}.h: expected {type_name} {var}[{size}] = {{...}}")
    vals = np.array([float(s) for s in m.group(4).split(",") if s.strip()], dtype=np.float64)
    if vals.size != size:
        raise Unsupported(f"weights/{var}.h: {vals.size} values, expected {size}")
    digests[f"weights/{var}.h"] = sha256_file(p)
    return t.quantize(vals)


# --------------------------------------------------------------------------- the verdict


@dataclass
class Verdict:
    exact: bool
    checked: int
    mismatches: int
    reason: str
    inputs: str = ""

    def as_dict(self) -> dict:
        return asdict(self)


def check_inputs(model: FastModel, n: int = CHECK_SAMPLES, seed: int = 0,
                 ref: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Seeded inputs where rounding ties and saturation occur, plus the activations' range.

    Fifths: (1) uniform over the reference activations' per-feature range,
    widened by half its span (a quarter of the input type's range without
    reference); (2) uniform over 1.25x the input type's range (the input
    conversion and the first layer saturate); (3) exact half-LSB ties of the
    input type (every rounding mode decides differently there); (4) reference
    rows scaled by 1-8x (real activation patterns, pushed towards overflow);
    (5) inputs that drive a random unit of a random dense layer to an extreme
    (:func:`_extremes`): random inputs rarely saturate a deeper layer.
    """
    rng = np.random.default_rng(seed)
    tin, n_in = model.input_t, model.n_in
    lo, hi = _real(tin)
    k = n // 5
    if ref is not None and len(ref):
        r = np.asarray(ref, dtype=np.float64).reshape(len(ref), -1)
        if r.shape[1] != n_in:
            raise ValueError(f"reference activations have {r.shape[1]} values per sample, "
                             f"the RM takes {n_in}")
        a, b = r.min(axis=0), r.max(axis=0)
        span = np.maximum(b - a, 2.0 ** -tin.frac)
        first = rng.uniform(a - span / 2, b + span / 2, (k, n_in))
        fourth = r[rng.integers(0, len(r), k)] * rng.uniform(1, 8, (k, 1))
        what = f"{len(r)} reference activations"
    else:
        first = rng.uniform(lo / 4, hi / 4, (k, n_in))
        fourth = rng.uniform(lo / 4, hi / 4, (k, n_in)) * rng.uniform(1, 8, (k, 1))
        what = "no reference activations"
    second = rng.uniform(1.25 * lo, 1.25 * hi, (k, n_in))
    ties = (rng.integers(tin.lo, tin.hi, (k, n_in)) + 0.5) * 2.0 ** -tin.frac
    fifth = _extremes(model, n - 4 * k, rng)
    x = np.concatenate([first, second, ties, fourth, fifth]).astype(np.float32)
    return x, (f"{n} seeded (seed {seed}): activations' range widened, 1.25x the {tin} range, "
               f"half-LSB ties, activations x1-8, unit-extreme inputs ({what})")


def _extremes(model: FastModel, n: int, rng: np.random.Generator, steps: int = 6) -> np.ndarray:
    """Inputs at the corners of the input range that push one unit up or down.

    Sign-gradient ascent on the unit's value through the model itself (a unit
    that saturates or a ReLU that is off passes no gradient), from a random
    corner, scaled 0.5-1.25x the input range.
    """
    lo, hi = _real(model.input_t)
    dense = [i for i, layer in enumerate(model.layers) if isinstance(layer, Dense)]
    if not dense:
        return rng.uniform(1.25 * lo, 1.25 * hi, (n, model.n_in))
    scale = rng.uniform(0.5, 1.25, (n, 1)) * max(abs(lo), hi)
    x = np.sign(rng.uniform(-1, 1, (n, model.n_in))) * scale
    target = rng.choice(dense, n)
    for li in sorted(set(target.tolist())):
        sel = target == li
        layers = model.layers[:li + 1]
        n_out = layers[-1].shape[1]  # type: ignore[union-attr]
        g0 = np.zeros((int(sel.sum()), n_out))
        g0[np.arange(len(g0)), rng.integers(n_out, size=len(g0))] = 1.0
        g0 *= rng.choice([-1.0, 1.0], (len(g0), 1))
        xs = x[sel]
        for _ in range(steps):
            h, masks = _cast(model.input_t, xs), []
            for layer in layers:
                y = layer(h)
                rlo, rhi = _real(layer.result_t)
                free = (y > rlo) & (y < rhi)  # saturated: no gradient
                masks.append(free & (h > 0) if isinstance(layer, Activation)
                             and layer.op == "relu" else free)
                h = y
            g = g0
            for layer, mask in zip(reversed(layers), reversed(masks), strict=True):
                g = g * mask
                if isinstance(layer, Dense):
                    g = g @ layer.w.T
            xs = np.where(g == 0, xs, np.sign(g) * scale[sel])
        x[sel] = xs
    return x


def verify(model: FastModel, reference: Callable[[np.ndarray], np.ndarray],
           x: np.ndarray, inputs: str = "") -> Verdict:
    """Model vs ``reference`` (the C simulation), bit for bit on every output of ``x``."""
    y_ref = np.asarray(reference(x), dtype=np.float32).reshape(len(x), -1)
    y = model.predict(x).reshape(len(x), -1)
    if y.shape != y_ref.shape:
        return Verdict(False, len(x), len(x), f"output shape {y.shape} vs C simulation "
                       f"{y_ref.shape}", inputs)
    bad = int(np.count_nonzero((y.view(np.uint32) != y_ref.view(np.uint32)).any(axis=1)))
    exact = bad == 0 and np.array_equal(y, y_ref)
    reason = (f"bit-exact to the C simulation ({model.describe()})" if exact else
              f"{bad} of {len(x)} samples differ from the C simulation; using the C simulation")
    return Verdict(exact, len(x), bad, reason, inputs)


@dataclass
class Prepared:
    verdict: Verdict
    model_file: Path | None  # present when the verdict is exact


def prepare(firmware: Path, top: str, library: Path,
            reference: Callable[[np.ndarray], np.ndarray], cache: Path,
            ref: np.ndarray | None = None, n: int = CHECK_SAMPLES, seed: int = 0) -> Prepared:
    """Build the model from ``firmware`` and check it against ``reference`` (once per content).

    Cached under ``cache/KEY`` where KEY covers the C-simulation library's bytes
    (which fix the project it was compiled from), this module's source, and the
    check inputs; a cached entry holds the model file together with the verdict
    on that very file.
    """
    lib_sha = sha256_file(Path(library))
    rdig = hashlib.sha256(np.ascontiguousarray(ref).tobytes()).hexdigest() if ref is not None \
        else "-"
    key = hashlib.sha256(json.dumps([lib_sha, top, _OWN, n, seed, rdig]).encode()).hexdigest()[:20]
    d = Path(cache) / key
    vfile, mfile = d / "verdict.json", d / "model.json"
    if vfile.is_file():
        v = Verdict(**json.loads(vfile.read_text()))
        if not v.exact or mfile.is_file():
            return Prepared(v, mfile if v.exact else None)
    d.mkdir(parents=True, exist_ok=True)
    try:
        model = from_firmware(firmware, top)
    except Unsupported as exc:
        v = Verdict(False, 0, 0, f"not modeled: {exc}")
    else:
        x, what = check_inputs(model, n, seed, ref)
        v = verify(model, reference, x, what)
        if v.exact:
            model.save(mfile)
    tmp = vfile.with_name(f".verdict.tmp{os.getpid()}")
    tmp.write_text(json.dumps(v.as_dict()))
    os.replace(tmp, vfile)
    return Prepared(v, mfile if v.exact else None)


def engine_forced() -> str | None:
    """``HWPART_SIM_ENGINE=csim`` makes every simulated RM run the C simulation."""
    v = os.environ.get(ENGINE_ENV, "").strip().lower()
    return v or None
