"""The user's own hls4ml configuration (``hwpart overlay build --hls-config FILE.yaml``).

hls4ml users already tune precision, reuse factor and strategy per layer in
hls4ml's config dict (``config_from_pytorch_model(..., granularity='name')``:
``Model``, ``LayerName``, ``LayerType``), so hwpart takes that same shape and
keeps their settings instead of asking for them again in its own words.

hls4ml resolves a setting LayerName > LayerType > Model. hwpart's own config
is name-granular (every layer's ``result`` is set to the RM's stream type), so
handing the user's ``LayerType``/``Model`` entries to hls4ml beside it would let
hwpart's per-name entries silently win. Instead, each RM's settings are
resolved here with hls4ml's precedence into per-name entries and merged over
hwpart's defaults; hls4ml then sees one name-granular config. Layer classes
(``Dense``, ``Conv2D``, ``Activation``...) are hls4ml's own, from its PyTorch
parser, so ``LayerType`` keys mean what they mean to hls4ml.

The file is checked before anything compiles, and every problem is one line
naming the file and the key (:class:`HLSConfigError`): an unknown layer or
key, a precision hls4ml cannot parse, a reuse factor hls4ml would silently
replace (its Resource strategy snaps illegal ones to the nearest legal value,
so the design would differ from the configuration), a strategy whose C
simulation does not compile in reasonable time, or an RM boundary type that
differs from the RM's stream type (the AXI-Stream adapter and the simulated
board carry one type per RM).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwpart.errors import ConfigError

#: The name hls4ml gives an RM slice's input layer (and a whole model's).
INPUT_LAYER = "input_1"
#: Keys of ``Model`` that hwpart honours, plus the layout keys every dump of
#: ``config_from_pytorch_model`` contains, which are read and ignored: RM streams are
#: always channels-last, hls4ml's 'internal' conversion (docs/overlays.md, 'Channel order').
MODEL_KEYS = frozenset({"Precision", "ReuseFactor", "Strategy", "BramFactor", "TraceOutput",
                        "ChannelsLastConversion", "TransposeOutputs"})
#: Keys of a ``LayerName``/``LayerType`` entry that hwpart passes to hls4ml.
LAYER_KEYS = frozenset({"Precision", "ReuseFactor", "Strategy", "Trace", "TableSize",
                        "ParallelizationFactor", "ConvImplementation"})
#: Top-level keys; ``InputShape`` is what hls4ml's own dump contains and must match.
TOP_KEYS = frozenset({"Model", "LayerName", "LayerType", "InputShape"})
#: Strategies whose C simulation compiles in seconds. hls4ml's distributed
#: arithmetic takes 15-20 min of g++ for a small MLP (DESIGN.md), and
#: resource_unrolled generates one statement per multiply.
STRATEGIES = {"latency": "Latency", "resource": "Resource"}
#: hls4ml classes whose ReuseFactor must be one hls4ml accepts (its Resource rule).
KERNEL_CLASSES = frozenset({"Dense", "Conv1D", "Conv2D"})


class HLSConfigError(ConfigError):
    """A ``--hls-config`` file that hwpart cannot apply as written."""


@dataclass
class LayerChoice:
    """What the user fixed for one layer after LayerName > LayerType > Model."""

    precision: dict[str, str] = field(default_factory=dict)  # var -> type
    reuse: int | None = None
    strategy: str | None = None  # Latency | Resource
    extra: dict[str, Any] = field(default_factory=dict)  # other hls4ml layer keys
    where: dict[str, str] = field(default_factory=dict)  # what -> the YAML key that set it
    cls: str = ""  # hls4ml's class of the layer


@dataclass
class UserHLSConfig:
    """A checked ``--hls-config`` file (what can be checked without the RM slices)."""

    path: Path
    data: dict[str, Any]
    sha256: str

    @property
    def model(self) -> dict[str, Any]:
        return self.data.get("Model") or {}

    @property
    def model_precision(self) -> str | None:
        """``Model: Precision`` (string or ``{default: ...}``): the RMs' one precision."""
        p = self.model.get("Precision")
        return p.get("default") if isinstance(p, dict) else p

    def err(self, key: str, what: str) -> HLSConfigError:
        return HLSConfigError(f"{self.path}: {key}: {what}")

    # ------------------------------------------------------------------ per RM

    def choices(self, layers: dict[str, str], defaults: dict[str, dict[str, Any]],
                boundary: tuple[str, ...], stream_precision: str,
                kernel_dims: dict[str, tuple[int, int]],
                check_vars: bool = True) -> dict[str, LayerChoice]:
        """The user's settings for one RM slice, per hls4ml layer name.

        ``layers``: hls4ml layer name -> hls4ml class; ``defaults``: hwpart's
        per-name config for the slice (its keys say which precisions a layer
        has); ``boundary``: the layers whose result is an RM stream.
        """
        out: dict[str, LayerChoice] = {}
        by_name = self.data.get("LayerName") or {}
        by_type = self.data.get("LayerType") or {}
        model = self.model
        for name, cls in layers.items():
            ch = LayerChoice(cls=cls)
            vars_ = set((defaults.get(name, {}).get("Precision") or {}).keys())
            levels = [(f"LayerName.{name}", by_name.get(name)),
                      (f"LayerType.{cls}", by_type.get(cls)), ("Model", model)]
            for var in sorted(vars_):
                for key, entry in levels:
                    if not entry or entry.get("Precision") is None:
                        continue
                    p = entry["Precision"]
                    if isinstance(p, dict):
                        val = p.get(var)
                        if val is None and key != "Model":
                            val = p.get("default")
                    else:
                        val = None if key == "Model" else p
                    if val is not None:  # Model's default is the RM precision, not an override
                        ch.precision[var] = str(val)
                        ch.where[f"precision.{var}"] = f"{key}.Precision"
                        break
            for what, yaml_key in (("reuse", "ReuseFactor"), ("strategy", "Strategy")):
                for key, entry in levels:
                    if entry and entry.get(yaml_key) is not None:
                        setattr(ch, what, entry[yaml_key])
                        ch.where[what] = f"{key}.{yaml_key}"
                        break
            if ch.strategy is not None:
                ch.strategy = STRATEGIES[str(ch.strategy).lower()]
            for _key, entry in levels[:2]:
                for k, v in (entry or {}).items():
                    if k not in ("Precision", "ReuseFactor", "Strategy"):
                        ch.extra.setdefault(k, v)
            self._check_layer(name, cls, ch, vars_ if check_vars else None, boundary,
                              stream_precision, kernel_dims)
            if ch.precision or ch.reuse is not None or ch.strategy or ch.extra:
                out[name] = ch
        return out

    def _check_layer(self, name: str, cls: str, ch: LayerChoice, vars_: set[str] | None,
                     boundary: tuple[str, ...], stream: str,
                     kernel_dims: dict[str, tuple[int, int]]) -> None:
        entry = (self.data.get("LayerName") or {}).get(name)
        if (vars_ is not None and isinstance(entry, dict)
                and isinstance(entry.get("Precision"), dict)):
            bad = sorted(set(entry["Precision"]) - vars_ - {"default"})
            if bad:
                raise self.err(f"LayerName.{name}.Precision.{bad[0]}",
                               f"layer {name} ({cls}) has no such precision in hls4ml "
                               f"(it has: {', '.join(sorted(vars_)) or 'none'})")
        res = ch.precision.get("result")
        if name in boundary and res is not None and not same_type(res, stream):
            raise self.err(ch.where["precision.result"],
                           f"{res} would change the type of an RM stream at layer {name}; "
                           f"an RM's input and output streams carry the RM's precision "
                           f"({stream}): set it with Model: Precision")
        if cls in KERNEL_CLASSES and ch.reuse is not None:
            strategy = ch.strategy or ("Resource" if ch.reuse > 1 else "Latency")
            n_in, n_out = kernel_dims[name]
            from hwpart.overlay.resources import valid_reuse_factors

            valid = valid_reuse_factors(n_in, n_out)
            if strategy == "Resource" and ch.reuse not in valid:
                near = sorted(valid, key=lambda v: (abs(v - ch.reuse), v))[:2]
                raise self.err(ch.where["reuse"],
                               f"{ch.reuse} is not a reuse factor hls4ml accepts for layer "
                               f"{name}'s {n_in}x{n_out} kernel with the Resource strategy "
                               f"(hls4ml would silently use another); nearest: "
                               f"{', '.join(map(str, sorted(near)))}")

    def sizing(self, classes: dict[str, str],
               kernel_dims: dict[str, tuple[int, int]]) -> tuple[dict[str, int], dict[str, int]]:
        """The reuse factors and weight widths the user fixed, per graph node.

        Known before any slice exists, so RM groups are sized with them; a reuse
        factor hls4ml would replace is an error here, before anything compiles.
        """
        defaults = {n: {"Precision": {"weight": None}} for n in kernel_dims}
        ch = self.choices({n: c for n, c in classes.items() if n in kernel_dims}, defaults, (),
                          "", kernel_dims, check_vars=False)
        fixed = {n: int(c.reuse) for n, c in ch.items() if c.reuse is not None}
        bits = {}
        for n, c in ch.items():
            w = c.precision.get("weight")
            if w and w != "auto":
                width = getattr(_parse_precision(w), "width", None)
                if width:
                    bits[n] = int(width)
        return fixed, bits

    def to_hls4ml(self, choices: dict[str, LayerChoice]) -> dict[str, Any]:
        """One slice's settings in hls4ml's own config shape, for :func:`hls.hls_config`.

        A reuse factor without a strategy gets hwpart's rule (Resource above 1).
        """
        names: dict[str, Any] = {}
        for name, ch in choices.items():
            entry: dict[str, Any] = dict(ch.extra)
            if ch.precision:
                entry["Precision"] = dict(ch.precision)
            if ch.reuse is not None:
                entry["ReuseFactor"] = int(ch.reuse)
            strategy = ch.strategy or (None if ch.reuse is None or ch.cls not in KERNEL_CLASSES
                                       else "Resource" if ch.reuse > 1 else "Latency")
            if strategy:
                entry["Strategy"] = strategy
            names[name] = entry
        model = {k: v for k, v in self.model.items() if k in ("BramFactor", "TraceOutput")}
        out: dict[str, Any] = {}
        if model:
            out["Model"] = model
        if names:
            out["LayerName"] = names
        return out

    def check_types(self, classes: set[str]) -> None:
        """Every ``LayerType`` must name a class some RM has (a typo otherwise applies to nothing)."""
        for cls in self.data.get("LayerType") or {}:
            if cls not in classes:
                raise self.err(f"LayerType.{cls}", "no layer of this hls4ml class in any RM "
                               f"(classes: {', '.join(sorted(classes))})")

    def key_for(self, names: list[str]) -> str:
        """A stable digest of what this file sets for these layers (cache keys)."""
        by_name = self.data.get("LayerName") or {}
        part = {"Model": self.model, "LayerType": self.data.get("LayerType") or {},
                "LayerName": {n: by_name[n] for n in names if n in by_name}}
        return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()
                              ).hexdigest()[:16]


def same_type(a: str, b: str) -> bool:
    """Two precision strings that hls4ml parses to the same type."""
    try:
        return str(_parse_precision(a)) == str(_parse_precision(b))
    except ValueError:
        return a == b


def _parse_precision(s: str) -> Any:
    import hls4ml

    backend = hls4ml.backends.get_backend("Vitis")
    try:
        return backend.convert_precision_string(s)
    except Exception as exc:  # hls4ml raises bare Exceptions/asserts for bad strings
        raise ValueError(str(exc)) from None


def _check_precision(cfg: UserHLSConfig, key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise cfg.err(key, f"expected a type string such as ap_fixed<16,6>, got {value!r}")
    if value == "auto":
        return
    try:
        p = _parse_precision(value)
    except ValueError:
        p = None
    if p is None or "Unspecified" in type(p).__name__:
        raise cfg.err(key, f"{value!r} is not a type hls4ml understands "
                           "(e.g. ap_fixed<16,6>, ap_fixed<18,8,AP_RND_CONV,AP_SAT>, ap_int<8>)")


def _check_entry(cfg: UserHLSConfig, prefix: str, entry: Any, allowed: frozenset[str]) -> None:
    if not isinstance(entry, dict):
        raise cfg.err(prefix, f"expected a mapping of hls4ml settings, got {entry!r}")
    for k, v in entry.items():
        key = f"{prefix}.{k}"
        if k not in allowed:
            raise cfg.err(key, f"unknown key (hwpart passes on: {', '.join(sorted(allowed))})")
        if k == "Precision":
            if isinstance(v, dict):
                for var, t in v.items():
                    _check_precision(cfg, f"{key}.{var}", t)
            else:
                _check_precision(cfg, key, v)
        elif k == "ReuseFactor":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise cfg.err(key, f"expected a whole number >= 1, got {v!r}")
        elif k == "Strategy":
            if str(v).lower() not in STRATEGIES:
                raise cfg.err(key, f"{v!r}: hwpart builds Latency or Resource (the C "
                                   "simulation of other strategies takes minutes to hours)")


def load_hls_config(path: str | Path, layer_names: list[str],
                    input_shape: tuple[int, ...]) -> UserHLSConfig:
    """Read and check ``--hls-config``; ``layer_names`` are the model's graph nodes."""
    from hwpart.boards import _read_yaml  # the board loader's YAML errors, same wording

    p = Path(path)
    data = _read_yaml(p, HLSConfigError)
    cfg = UserHLSConfig(p, copy.deepcopy(data), hashlib.sha256(p.read_bytes()).hexdigest())
    for k in data:
        if k not in TOP_KEYS:
            raise cfg.err(k, f"unknown key (an hls4ml config has: {', '.join(sorted(TOP_KEYS))})")
    if "InputShape" in data:
        got = data["InputShape"]
        got = tuple(got) if isinstance(got, (list, tuple)) else (got,)
        if tuple(int(v) for v in got) != tuple(input_shape):
            raise cfg.err("InputShape", f"{list(got)} differs from --input-shape "
                                        f"{','.join(map(str, input_shape))}")
    if "Model" in data:
        _check_entry(cfg, "Model", data["Model"], MODEL_KEYS)
    for section in ("LayerName", "LayerType"):
        entries = data.get(section)
        if entries is None:
            continue
        if not isinstance(entries, dict):
            raise cfg.err(section, f"expected a mapping of names to settings, got {entries!r}")
        for name, entry in entries.items():
            if section == "LayerName" and name not in layer_names and name != INPUT_LAYER:
                near = [n for n in layer_names if str(name) in n or n in str(name)][:3]
                raise cfg.err(f"LayerName.{name}", "no such layer in the model (layers: "
                              + ", ".join((near or layer_names)[:8])
                              + (", ..." if len(layer_names) > 8 and not near else "") + ")")
            _check_entry(cfg, f"{section}.{name}", entry, LAYER_KEYS)
    return cfg
