"""Reconfigurable modules as the simulated board runs them: hls4ml C simulation or its twin.

An RM is described by :class:`RmSpec` -- the minimal interface this package
needs from an overlay bundle (name, layers, shapes, stream types, cycles, the
compiled C-simulation library). A simulated partial bitstream *is* that spec
written as JSON (:func:`write_partial_bit`): ``pr_download`` of it puts the RM
in the slot, exactly as a real partial puts real logic there.

Speed. hls4ml's own ``predict`` calls the library once per sample through
ctypes (about 6-8k samples/s for the jet MLP). :func:`batch_library` compiles a
ten-line ``extern "C"`` loop against the same library, so a whole DMA packet
is one ctypes call that releases the GIL. The arithmetic is the library's own,
so results are bit-identical to the per-sample path (a test checks it).

Engine. A dense RM whose vectorised fixed-point model (:mod:`hwpart.sim.fastrm`)
was found bit-exact to this C simulation (verdict recorded at build, carried
by the partial with the model file's sha256) runs through that model instead,
tens of times faster, so the board can be paced to modeled time; every other
RM runs the C simulation. ``SimRM.engine`` says which.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hwpart.overlay.manifest import sha256_file
from hwpart.sim import fastrm
from hwpart.sim.fixed import FixedType, StreamLayout, parse_type

BIT_MAGIC = b"HWPART-SIM-PARTIAL 1\n"

# FixedType and StreamLayout are frozen: parse each type string / build each layout once
_type = functools.lru_cache(maxsize=256)(parse_type)
_layout = functools.lru_cache(maxsize=256)(StreamLayout)

_WRAPPER = """\
extern "C" void {top}_{ctype}({ctype} *in, {ctype} *out);
extern "C" void hwpart_batch({ctype} *in, {ctype} *out, long n, long n_in, long n_out) {{
    for (long i = 0; i < n; ++i) {top}_{ctype}(in + i * n_in, out + i * n_out);
}}
"""


@dataclass
class RmSpec:
    """What the board (and the FPGA device) need to know of one RM."""

    name: str
    layers: list[str]
    in_shape: tuple[int, ...]  # per sample, torch order
    out_shape: tuple[int, ...]
    in_type: str  # ap_fixed<...> of the stream words in and out
    out_type: str
    library: str  # hls4ml-compiled C simulation (.so), absolute or relative to the spec file
    top: str = "hwpart_rm"
    latency_cycles: int = 100  # first sample in -> first result out
    ii_cycles: int = 1  # cycles between samples in steady state
    partial_bytes: int | None = None  # None: the board's slot size
    extra: dict = field(default_factory=dict)
    # the vectorised model's verdict: exact, checked, mismatches, reason, inputs, and when
    # exact its file (like library: absolute, or relative to the spec file) and sha256
    fast_model: dict | None = None

    @property
    def n_in(self) -> int:
        return int(math.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(math.prod(self.out_shape))

    @property
    def tin(self) -> FixedType:
        return _type(self.in_type)

    @property
    def tout(self) -> FixedType:
        return _type(self.out_type)

    def layout_in(self, word_bits: int) -> StreamLayout:
        return _layout(self.tin, self.n_in, word_bits)

    def layout_out(self, word_bits: int) -> StreamLayout:
        return _layout(self.tout, self.n_out, word_bits)

    def cycles(self, samples: int) -> int:
        return 0 if samples <= 0 else self.latency_cycles + (samples - 1) * self.ii_cycles

    def to_json(self) -> dict:
        d = asdict(self)
        d["in_shape"], d["out_shape"] = list(self.in_shape), list(self.out_shape)
        return d

    @classmethod
    def from_json(cls, d: dict, base: Path | None = None) -> RmSpec:
        d = dict(d)
        d["in_shape"], d["out_shape"] = tuple(d["in_shape"]), tuple(d["out_shape"])
        if base is not None and not os.path.isabs(d["library"]):
            d["library"] = str((base / d["library"]).resolve())
        fm = d.get("fast_model")
        if base is not None and fm and fm.get("file") and not os.path.isabs(fm["file"]):
            d["fast_model"] = {**fm, "file": str((base / fm["file"]).resolve())}
        return cls(**d)

    def relative_to(self, base: Path) -> dict:
        """:meth:`to_json` with the files it names relative to ``base`` (a movable bundle)."""
        d = self.to_json()
        d["library"] = _rel(d["library"], base)
        if d.get("fast_model") and d["fast_model"].get("file"):
            d["fast_model"] = {**d["fast_model"], "file": _rel(d["fast_model"]["file"], base)}
        return d


def _rel(path: str, base: Path) -> str:
    try:
        return os.path.relpath(path, base)
    except ValueError:  # another drive (not on Linux): keep absolute
        return path


def write_partial_bit(path: Path, spec: RmSpec, slot: int) -> None:
    """The simulated partial bitstream for one slot: a magic line and the spec as JSON.

    Like a real partial it is built for one partition (``extra.slot``); the
    library and fast-model paths are stored relative to the file so a bundle
    can be moved. The fast model's sha256 is in the partial, so a partial that
    checks against the manifest vouches for the model file too.
    """
    d = spec.relative_to(path.parent)
    d["extra"] = {**d.get("extra", {}), "slot": slot}
    path.write_bytes(BIT_MAGIC + json.dumps(d, indent=1).encode())


def read_partial_bit(path: Path) -> RmSpec:
    data = Path(path).read_bytes()
    if not data.startswith(BIT_MAGIC):
        raise ValueError(f"{path}: not a simulated partial bitstream (a real board's .bit "
                         "cannot be run by the simulated board)")
    return RmSpec.from_json(json.loads(data[len(BIT_MAGIC):]), base=Path(path).parent)


# --------------------------------------------------------------------------- C simulation

_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lib_lock(path: str) -> threading.Lock:
    """One lock per library file: hls4ml's io_stream code keeps ``static`` line buffers,
    so one library must not run two samples at once (two RMs may run in parallel)."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


def batch_library(library: Path, top: str, cache: Path | None = None,
                  ctype: str = "float") -> Path | None:
    """Compile (once) the batch loop against ``library``; None when g++ is not there.

    ``ctype``: which of hls4ml's two entry points it loops over, ``<top>_float``
    or ``<top>_double`` (exact for words up to 53 bits).
    """
    cxx = shutil.which("g++")
    if cxx is None:
        return None
    library = Path(library).resolve()
    tag = top if ctype == "float" else f"{top}|{ctype}"  # float keeps its earlier cache key
    key = hashlib.sha256(f"{library}|{library.stat().st_mtime_ns}|{tag}".encode()).hexdigest()[:16]
    d = cache or library.parent
    if not os.access(d, os.W_OK):
        d = Path(tempfile.gettempdir()) / "hwpart-rm-batch"
    d.mkdir(parents=True, exist_ok=True)
    out = d / f"hwpart_batch-{key}.so"
    if out.is_file():
        return out
    src = d / f"hwpart_batch-{key}.cpp"
    src.write_text(_WRAPPER.format(top=top, ctype=ctype))
    tmp = out.with_suffix(f".tmp{os.getpid()}.so")
    subprocess.run([cxx, "-O2", "-shared", "-fPIC", str(src), "-o", str(tmp), str(library),
                    f"-Wl,-rpath,{library.parent}"], check=True, capture_output=True)
    os.replace(tmp, out)
    return out


class CSimRunner:
    """Runs an RM's C simulation on float rows (stream order); batch loop when available."""

    def __init__(self, spec: RmSpec, batch: bool = True) -> None:
        self.spec = spec
        self.n_in, self.n_out = spec.n_in, spec.n_out
        self._lock = _lib_lock(str(Path(spec.library).resolve()))
        self._lib = ctypes.CDLL(str(spec.library))
        fp = ctypes.POINTER(ctypes.c_float)
        self._one = getattr(self._lib, f"{spec.top}_float")
        self._one.argtypes, self._one.restype = [fp, fp], None
        self._batch = None
        if batch:
            try:
                blib = batch_library(Path(spec.library), spec.top)
            except (OSError, subprocess.CalledProcessError):
                blib = None
            if blib is not None:
                self._blib = ctypes.CDLL(str(blib))
                self._batch = self._blib.hwpart_batch
                self._batch.argtypes = [fp, fp, ctypes.c_long, ctypes.c_long, ctypes.c_long]
                self._batch.restype = None

    @property
    def batched(self) -> bool:
        return self._batch is not None

    def predict(self, rows: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.n_in)
        out = np.zeros((x.shape[0], self.n_out), dtype=np.float32)
        fp = ctypes.POINTER(ctypes.c_float)
        with self._lock:
            if self._batch is not None:
                self._batch(x.ctypes.data_as(fp), out.ctypes.data_as(fp), x.shape[0],
                            self.n_in, self.n_out)
            else:
                for i in range(x.shape[0]):
                    self._one(x[i].ctypes.data_as(fp), out[i].ctypes.data_as(fp))
        return out


class SimRM:
    """An RM placed in a slot: stream words in -> engine -> stream words out.

    The word format is the RM adapter's (:class:`~hwpart.sim.fixed.StreamLayout`):
    what the board unpacks here is exactly what ``hls/rm_axis.cpp`` would hand
    to the hls4ml top on hardware. The engine is the vectorised model when the
    spec carries an exact verdict (a model file that differs from its sha256 is
    refused, as a tampered partial is), else the C simulation;
    ``HWPART_SIM_ENGINE=csim`` forces the C simulation.
    """

    def __init__(self, spec: RmSpec, batch: bool = True) -> None:
        self.spec = spec
        self.tout = spec.tout
        fm = spec.fast_model or {}
        self.runner: CSimRunner | fastrm.FastModel
        if fm.get("exact") and fm.get("file") and fastrm.engine_forced() != "csim":
            self.runner = fastrm.load_model(Path(fm["file"]), fm.get("sha256") or "")
            if (self.runner.n_in, self.runner.n_out) != (spec.n_in, spec.n_out):
                raise fastrm.FastModelError(
                    f"{fm['file']}: model is {self.runner.n_in}->{self.runner.n_out}, RM "
                    f"{spec.name} is {spec.n_in}->{spec.n_out}")
            self.engine = "vectorised"
        else:
            self.runner = CSimRunner(spec, batch=batch)
            self.engine = "csim"

    def process(self, packet: np.ndarray, word_bits: int) -> tuple[np.ndarray, int]:
        """(output packet bytes, samples) for one input packet; a partial sample is dropped."""
        lin, lout = self.spec.layout_in(word_bits), self.spec.layout_out(word_bits)
        n = packet.size // lin.sample_bytes
        fast = self.runner
        if (isinstance(fast, fastrm.FastModel) and fast.input_t == lin.type
                and fast.output_t == lout.type):
            # the words already are input_t values and the model's outputs are output
            # words: no float32 round trip, no second cast, no grid check
            y = fast.forward(lin.unpack_words(packet, n) * (2.0 ** -lin.type.frac))
            return lout.pack_words(np.rint(y * (2.0 ** lout.type.frac)).astype(np.int64)), n
        y = self.runner.predict(lin.unpack(packet, n))
        return lout.pack_words(self.tout.exact(y)), n


def rm_from_csim(name: str, layers: list[str], artifact: object, in_shape: tuple[int, ...],
                 out_shape: tuple[int, ...], latency_cycles: int | None = None,
                 ii_cycles: int = 1, fast: bool = True,
                 ref: np.ndarray | None = None) -> RmSpec:
    """An :class:`RmSpec` from :func:`hwpart.overlay.hls.compile_csim`'s artifact.

    Stream types come from the compiled project (``defines.h``). Without Vivado
    there is no cycle count: the default latency is an estimate (est.) of 10
    cycles per layer plus one per input word, to be replaced by the figure from
    RTL simulation or the board. With ``fast``, the vectorised model is built
    and checked against this library (:func:`fast_model_for`; cached next to it).
    """
    from hwpart.sim.fixed import project_io_types

    firmware = Path(artifact.directory) / "prj" / "firmware"  # type: ignore[attr-defined]
    tin, tout = project_io_types(firmware)
    lat = latency_cycles if latency_cycles is not None else 10 * len(layers) + int(math.prod(in_shape))
    spec = RmSpec(name, list(layers), tuple(in_shape), tuple(out_shape), str(tin), str(tout),
                  str(artifact.library), top=artifact.top,  # type: ignore[attr-defined]
                  latency_cycles=lat, ii_cycles=ii_cycles)
    if fast:
        spec.fast_model = fast_model_for(spec, firmware,
                                         Path(artifact.directory) / "fastrm", ref)  # type: ignore[attr-defined]
    return spec


def fast_model_for(spec: RmSpec, firmware: Path, cache: Path, ref: np.ndarray | None = None,
                   seed: int = 0) -> dict:
    """The vectorised model of ``spec``'s C simulation and its verdict, as ``RmSpec.fast_model``.

    The check runs the library in this process: call it only for a library that
    has run before (hls4ml's C++ asserts abort the process that runs them).
    """
    p = fastrm.prepare(firmware, spec.top, Path(spec.library),
                       lambda x: CSimRunner(spec).predict(x), cache, ref=ref, seed=seed)
    d = p.verdict.as_dict()
    if p.model_file is not None:
        d["file"] = str(p.model_file)
        d["sha256"] = sha256_file(p.model_file)
    return d
