"""The overlay bundle's ``manifest.yaml``: schema, writer, and a loader that checks files.

A bundle is copied to boards by hand, by ``hwpart deploy`` and through git, so
the loader trusts nothing: the schema is strict (unknown keys are typos), and
every listed file must exist with the sha256 the manifest records; a mismatch
names the file, because a stale partial bitstream loaded into a slot computes
wrong answers silently. Validation reuses the board loader's pydantic error
wording so both files report problems the same way.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from annotated_types import Ge
from pydantic import ConfigDict, Strict

from hwpart.boards import _read_yaml, _validate
from hwpart.errors import ConfigError

MANIFEST = "manifest.yaml"
FORMAT = 1

_Int = Annotated[int, Strict(), Ge(0)]
_Str = Annotated[str, Strict()]
_F = Annotated[float, Strict()]
_SCHEMA = ConfigDict(extra="forbid")


class ManifestError(ConfigError):
    """A bundle whose manifest is malformed or whose files do not match it."""


@dataclass
class FileEntry:
    __pydantic_config__ = _SCHEMA

    path: _Str  # relative to the bundle
    sha256: _Str
    kind: _Str  # hls-project, csim-library, tcl, verilog, hwh, bitstream, ...


@dataclass
class ResourceFigures:
    """Device primitives with where they come from (``estimated (...)`` until Vivado runs)."""

    __pydantic_config__ = _SCHEMA

    lut: _Int
    ff: _Int
    dsp: _Int
    bram_18k: _Int
    uram: _Int
    source: _Str


@dataclass
class Cycles:
    __pydantic_config__ = _SCHEMA

    ii: _Int
    latency: _Int
    clock_mhz: _F
    source: _Str


@dataclass
class AccuracyFigures:
    __pydantic_config__ = _SCHEMA

    samples: _Int
    max_abs_err: _F
    mean_abs_err: _F
    argmax_agreement: _F | None
    tolerance: _F
    inputs: _Str  # what the inputs were: random distribution and/or calibration file


@dataclass
class RTLInfo:
    __pydantic_config__ = _SCHEMA

    top: _Str
    stages: _Int
    lut_estimate: _Int
    ff_estimate: _Int
    source: _Str
    bit_exact: bool | None
    checked_samples: _Int
    files: list[FileEntry] = field(default_factory=list)
    yosys: ResourceFigures | None = None  # synth_xilinx cell counts, when yosys is installed


@dataclass
class StreamInfo:
    """How samples travel as DMA words (hls/rm_axis.cpp): ``lanes`` values of
    ``lane_bits`` (the ap_fixed bit pattern) per word, each sample word-aligned."""

    __pydantic_config__ = _SCHEMA

    lane_bits: _Int
    lanes: _Int
    in_words: _Int
    out_words: _Int


@dataclass
class CSimInfo:
    """The hls4ml C simulation: ``void SYMBOL(float *in, float *out)``, one sample,
    channels-last; the simulated board runs RMs through it."""

    __pydantic_config__ = _SCHEMA

    library: _Str
    symbol: _Str


@dataclass
class FastModelInfo:
    """The vectorised fixed-point model of the RM (``hwpart.sim.fastrm``) against its C
    simulation, checked at build on ``checked`` seeded inputs. The simulated board runs
    ``file`` (one of the RM's files, sha256-checked) only when ``exact``."""

    __pydantic_config__ = _SCHEMA

    exact: bool
    checked: _Int
    mismatches: _Int
    reason: _Str
    inputs: _Str = ""
    file: _Str | None = None


@dataclass
class LayerHLS:
    """One layer of an RM as hls4ml generates it: its C++ types (``result``, ``weight``,
    ``bias``, ``accum``...), reuse factor and strategy (``latency``/``resource``; empty for
    layers without one). Read back from hls4ml after it resolved hwpart's defaults, the
    chosen reuse factors and the user's ``--hls-config``."""

    __pydantic_config__ = _SCHEMA

    precision: dict[str, _Str]
    reuse_factor: _Int
    strategy: _Str = ""


@dataclass
class RM:
    __pydantic_config__ = _SCHEMA

    name: _Str
    top: _Str
    layers: list[_Str]
    ops: list[_Str]
    in_shape: list[_Int]
    out_shape: list[_Int]
    layout: Literal["channels_last"]
    compatible_slots: list[_Int]
    precision: _Str
    reuse: dict[str, _Int]
    accuracy: AccuracyFigures
    cycles: Cycles
    resources: ResourceFigures
    files: list[FileEntry]
    partials: dict[str, _Str]  # slot index (str) -> partial bitstream path (built by Vivado)
    stream: StreamInfo
    csim: CSimInfo
    rtl: RTLInfo | None = None
    fast_model: FastModelInfo | None = None  # absent in bundles built before it existed
    hls_layers: dict[str, LayerHLS] = field(default_factory=dict)  # empty in older bundles
    hls_config: _Str = ""  # the --hls-config file (name and sha256) merged in, if any


@dataclass
class Slot:
    """One reconfigurable partition: its switch ports and where the Tcl puts its blocks.

    Switch ports as in sim/README.md: master 1+k feeds the slot, slave 1+k
    takes its output. The addresses are those the Tcl assigns
    (:func:`hwpart.board.regs.shell_map`), recorded for the user; the driver
    reads the built shell's ``.hwh``.
    """

    __pydantic_config__ = _SCHEMA

    index: _Int
    switch_master: _Int
    switch_slave: _Int
    decoupler_address: _Int  # PG375's register (bit 0 decouple)
    slot_ctrl_address: _Int
    rm_info_address: _Int
    pblock: _Str
    resources: ResourceFigures


@dataclass
class Shell:
    __pydantic_config__ = _SCHEMA

    base_address: _Int
    switch_address: _Int
    dma_address: _Int
    switch_slaves: _Int
    switch_masters: _Int
    stream_width_bits: _Int
    files: list[FileEntry]
    bitstream: _Str  # full bitstream path (built by Vivado)
    hwh: _Str


@dataclass
class BoardInfo:
    __pydantic_config__ = _SCHEMA

    name: _Str
    part: _Str
    ps: Literal["ps7", "ps8"]
    pynq_version: _Str
    pl_mhz: _F


@dataclass
class ModelInfo:
    __pydantic_config__ = _SCHEMA

    name: _Str
    input_shape: list[_Int]
    layers: list[_Str]


@dataclass
class Rejected:
    __pydantic_config__ = _SCHEMA

    name: _Str
    layers: list[_Str]
    reason: _Str


@dataclass
class Manifest:
    __pydantic_config__ = _SCHEMA

    format: _Int
    name: _Str
    status: Literal["scripts", "built"]  # built = Vivado produced the bitstreams
    board: BoardInfo
    model: ModelInfo
    shell: Shell
    slots: list[Slot]
    rms: list[RM]
    rejected: list[Rejected] = field(default_factory=list)
    off_fpga: dict[str, _Str] = field(default_factory=dict)
    tool_versions: dict[str, _Str] = field(default_factory=dict)
    path: Path | None = field(default=None, init=False, compare=False, repr=False)

    def rm(self, name: str) -> RM:
        for r in self.rms:
            if r.name == name:
                return r
        raise KeyError(name)

    def all_files(self) -> list[FileEntry]:
        out = list(self.shell.files)
        for r in self.rms:
            out += r.files
            if r.rtl is not None:
                out += r.rtl.files
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path", None)
        return d


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_entries(bundle: Path, paths: list[Path], kind: str) -> list[FileEntry]:
    """Entries for files under ``bundle`` (directories expand to every file, sorted)."""
    out: list[FileEntry] = []
    for p in paths:
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            out.append(FileEntry(str(q.relative_to(bundle)), sha256_file(q), kind))
    return out


class _Hex(int):
    """Addresses print as 0x... (YAML reads them back as integers)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(
    _Hex, lambda d, v: d.represent_scalar("tag:yaml.org,2002:int", f"0x{int(v):08X}"))


def _hexify(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (_Hex(v) if k.endswith("address") and isinstance(v, int) else _hexify(v))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [_hexify(v) for v in obj]
    return obj


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    path = bundle / MANIFEST
    text = ("# hwpart overlay bundle; figures marked estimated/modeled are not measured.\n"
            "# Load with hwpart.overlay.load_manifest (checks every sha256).\n")
    text += yaml.dump(_hexify(manifest.to_dict()), Dumper=_Dumper, sort_keys=False, width=100)
    path.write_text(text)
    return path


def load_manifest(bundle: str | Path, verify: bool = True) -> Manifest:
    """Read and validate ``BUNDLE/manifest.yaml``; with ``verify``, check every sha256."""
    bundle = Path(bundle)
    path = bundle / MANIFEST if bundle.is_dir() else bundle
    bundle = path.parent
    if not path.is_file():
        raise ManifestError(f"{path}: no overlay manifest here; build one with "
                            "`hwpart overlay build`")
    data = _read_yaml(path, ManifestError)
    if data.get("format") not in (FORMAT, None):
        raise ManifestError(f"{path}: field 'format': this hwpart reads format {FORMAT}, got "
                            f"{data.get('format')!r}; rebuild the bundle")
    m: Manifest = _validate(Manifest, data, path, ManifestError)
    _check(m, path)
    m.path = path
    if verify:
        verify_files(m, bundle)
    return m


def _check(m: Manifest, path: Path) -> None:
    """Cross-field rules: unique names, slots that exist, files inside the bundle."""
    names = [r.name for r in m.rms]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ManifestError(f"{path}: field 'rms': duplicate RM names {sorted(dup)}")
    slots = {s.index for s in m.slots}
    for r in m.rms:
        bad = [s for s in r.compatible_slots if s not in slots]
        if bad:
            raise ManifestError(f"{path}: field 'rms.{r.name}.compatible_slots': slots {bad} "
                                f"do not exist (slots: {sorted(slots)})")
    for f in m.all_files():
        p = Path(f.path)
        if p.is_absolute() or ".." in p.parts:
            raise ManifestError(f"{path}: file '{f.path}' is outside the bundle; paths must be "
                                "relative to the bundle folder")
    for r in m.rms:  # what the simulated board loads must be a checked file
        listed = {f.path for f in r.files}
        if r.csim.library not in listed:
            raise ManifestError(f"{path}: field 'rms.{r.name}.csim.library': "
                                f"'{r.csim.library}' is not among the RM's files (so its "
                                "sha256 is not checked); rebuild the bundle")
        fm = r.fast_model
        if fm is not None and fm.file is not None and fm.file not in listed:
            raise ManifestError(f"{path}: field 'rms.{r.name}.fast_model.file': '{fm.file}' is "
                                "not among the RM's files (so its sha256 is not checked); "
                                "rebuild the bundle")


def verify_files(m: Manifest, bundle: Path) -> None:
    for f in m.all_files():
        p = bundle / f.path
        if not p.is_file():
            raise ManifestError(f"{p}: listed in {MANIFEST} but missing; rebuild or re-copy "
                                "the bundle")
        got = sha256_file(p)
        if got != f.sha256:
            raise ManifestError(f"{p}: sha256 mismatch (manifest {f.sha256[:12]}…, file "
                                f"{got[:12]}…); rebuild or re-copy the bundle")
