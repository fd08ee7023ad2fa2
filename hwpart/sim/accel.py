"""hls4ml VivadoAccelerator projects on the simulated board.

hls4ml's VivadoAccelerator backend writes a whole PYNQ design around the
network: ``design.tcl`` puts an AXI DMA and the HLS core ``<project>_axi``
(ap_ctrl_none, one AXI4-Stream in, one out) into hierarchy ``hier_0``, and
``axi_stream_driver.py`` drives it with ``NeuralNetworkOverlay(bit, x_shape,
y_shape).predict(X)`` -- ``Overlay``, ``allocate``, and the DMA's
``sendchannel``/``recvchannel`` at ``hier_0.axi_dma_0``. Without Vivado there
is no bitstream and no ``.hwh``; this module supplies both for the simulated
board, so that driver runs unmodified:

* :func:`read_project` reads the project: name, board, interface, the AXI
  word types ``T_in``/``T_out`` and sizes ``N_IN``/``N_OUT`` of
  ``firmware/<project>_axi.h``, the compiled C simulation
  (``firmware/<project>-<stamp>.so``), and a Vivado ``.hwh`` if one was built;
* :func:`load_project` (``hwpart sim load PROJECT_DIR``) writes a simulated
  bitstream ``hls4ml_nn.bit`` (the project's description as JSON, like
  hwpart's simulated shells) and its ``hls4ml_nn.hwh``: Vivado's, when the
  project has one, else generated as ``design.tcl`` would build it (same cell
  names, the board's PS, the DMA at Vivado's default address);
* :class:`AccelFabric` is what the simulated board runs after ``Overlay``
  downloads that bitstream: the static path DMA MM2S -> ``<project>_axi`` ->
  DMA S2MM, with the DMA's address from the ``.hwh`` PYNQ parsed, PG021's
  register model (:mod:`hwpart.sim.dma`) and the core computed by the
  project's own compiled C simulation.

Words on the stream are the core's: one value per beat, ``T_in``/``T_out`` --
float32 (``float``), float64 (``double``) or the ``ap_fixed`` width hls4ml
rounded the interface to. The core is called through hls4ml's
``<project>_double`` entry point, which runs ``<project>_axi`` itself (the
bridge converts into ``input_axi_t`` and back), so the numbers are those of
``hls_model.predict``: for float words both convert the same float32 value to
``T_in``; for fixed words a double holds every word of up to 32 bits exactly.

Timing is modeled, as everywhere on the simulated board: DMA from the board
file; the core's cycles from the HLS report when the project has been
synthesised, else an estimate (est.): one beat per cycle at each port, so an
interval of ``max(N_IN, N_OUT)`` cycles per sample and a latency of
``N_IN + N_OUT + 10`` per layer.
"""

from __future__ import annotations

import ctypes
import json
import re
import shutil
import subprocess
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import yaml

from hwpart.board.regs import DMA_RANGE
from hwpart.boards import Board, load_board
from hwpart.errors import BoardError, ConfigError
from hwpart.overlay.manifest import sha256_file
from hwpart.sim import hwh
from hwpart.sim.dma import AxiDmaModel, Packet
from hwpart.sim.fixed import FixedType
from hwpart.sim.rm import _lib_lock, batch_library
from hwpart.sim.stream import propagate

ACCEL_MAGIC = b"HWPART-SIM-HLS4ML 1\n"
BIT_NAME = "hls4ml_nn"  # hls4ml's tutorials package the design as hls4ml_nn.bit/.hwh
DEFAULT_OUT = "hwpart_sim"

#: hls4ml board -> hwpart board file (the boards both know)
BOARDS = {"pynq-z2": "pynq-z2"}

#: Vivado's default address of the first AXI DMA on each PS's general-purpose master
DMA_ADDRESS = {"ps7": 0x4040_0000, "ps8": 0xA000_0000}

#: Where Vivado leaves the handoff of the design ``design.tcl`` builds (2020.2+, older)
_VIVADO_HWH = ("{name}_vivado_accelerator/project_1.gen/sources_1/bd/design_1/hw_handoff/design_1.hwh",
               "{name}_vivado_accelerator/project_1.srcs/sources_1/bd/design_1/hw_handoff/design_1.hwh")
_CSYNTH = "{name}_prj/solution1/syn/report/{name}_axi_csynth.xml"


# --------------------------------------------------------------------------- word format

_GENERIC_FIXED = re.compile(r"^(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)(.*)>$")


@dataclass(frozen=True)
class WordFormat:
    """One AXI4-Stream beat of the core: ``float``, ``double`` or ``ap_[u]fixed<W,I,...>``."""

    ctype: str  # as firmware/<project>_axi.h declares it

    @property
    def fixed(self) -> FixedType | None:
        if self.ctype in ("float", "double"):
            return None
        return parse_word_type(self.ctype)

    @property
    def dtype(self) -> np.dtype:
        if self.ctype == "float":
            return np.dtype("<f4")
        if self.ctype == "double":
            return np.dtype("<f8")
        t = self.fixed
        assert t is not None
        return np.dtype(f"<{'i' if t.signed else 'u'}{t.width // 8}")

    @property
    def bits(self) -> int:
        return 8 * self.dtype.itemsize

    def values(self, data: np.ndarray) -> np.ndarray:
        """Stream bytes (whole words) -> the values they carry, float64 (exact)."""
        w = np.frombuffer(np.ascontiguousarray(data).tobytes(), dtype=self.dtype)
        t = self.fixed
        return w.astype(np.float64) * (2.0 ** -t.frac) if t is not None else w.astype(np.float64)

    def words(self, y: np.ndarray) -> np.ndarray:
        """The core's output values -> stream bytes."""
        t = self.fixed
        if t is not None:
            return t.exact(y).astype(self.dtype).view(np.uint8)
        return np.asarray(y).astype(self.dtype).view(np.uint8)


def parse_word_type(text: str) -> FixedType:
    """``ap_fixed<16,6,AP_TRN,AP_WRAP,0>``, ``ap_int<8>`` or hls4ml's own notation
    ``fixed<16,6,TRN,WRAP,0>``, checked to be a width an AXI DMA streams."""
    from hwpart.sim.fixed import parse_type

    s = text.strip()
    m = _GENERIC_FIXED.match(s)
    if m:
        u, w, i, rest = m.groups()
        modes = [x.strip() for x in rest.split(",") if x.strip()]
        q = f"AP_{modes[0]}" if modes and not modes[0].isdigit() else "AP_TRN"
        o = f"AP_{modes[1]}" if len(modes) > 1 and not modes[1].isdigit() else "AP_WRAP"
        t = FixedType(int(w), int(i), signed=not u, quant=q, overflow=o)
    else:
        t = parse_type(s)
    if t.width not in (8, 16, 32):
        raise ValueError(f"{text}: {t.width}-bit words; the AXI DMA streams 8/16/32-bit "
                         "fixed-point words here (PG021 stream widths; 64-bit words would not "
                         "be exact through the C simulation's double entry point)")
    return t


# --------------------------------------------------------------------------- the project

class _ConfigLoader(yaml.SafeLoader):
    """hls4ml_config.yml with its ``!!python/...`` tags (the pickled model) read as None."""


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", lambda *_: None)


@dataclass
class AccelProject:
    """An hls4ml VivadoAccelerator project, as far as the simulated board needs it."""

    root: Path
    name: str  # ProjectName: the core is <name>_axi
    board: str  # hls4ml's AcceleratorConfig.Board
    io_type: str
    t_in: str  # the core's AXI word types (firmware/<name>_axi.h)
    t_out: str
    n_in: int  # values per sample in / out
    n_out: int
    library: Path  # the compiled C simulation
    layers: int
    vivado_hwh: Path | None = None  # the design's handoff, when Vivado has run

    @property
    def word_in(self) -> WordFormat:
        return WordFormat(self.t_in)

    @property
    def word_out(self) -> WordFormat:
        return WordFormat(self.t_out)

    def cycles(self) -> tuple[int, int, str]:
        """(latency, interval) cycles per sample and where they come from."""
        rep = self.root / _CSYNTH.format(name=self.name)
        if rep.is_file():
            try:
                perf = ElementTree.parse(str(rep)).getroot().find("PerformanceEstimates")
                lat = perf.find("SummaryOfOverallLatency")  # type: ignore[union-attr]
                best = int(lat.findtext("Best-caseLatency"))  # type: ignore[arg-type,union-attr]
                ii = int(lat.findtext("Interval-min"))  # type: ignore[arg-type,union-attr]
                return best, max(1, ii), f"HLS report {rep.name}"
            except (AttributeError, TypeError, ValueError, ElementTree.ParseError):
                pass  # a report in another layout: fall back to the estimate
        ii = max(self.n_in, self.n_out)
        return self.n_in + self.n_out + 10 * max(1, self.layers), ii, "est."


def read_project(root: Path | str) -> AccelProject:
    """Read an hls4ml VivadoAccelerator project folder; ConfigError naming the file/field."""
    root = Path(root).resolve()
    cfg_path = root / "hls4ml_config.yml"
    if not cfg_path.is_file():
        raise ConfigError(f"{root}: no hls4ml_config.yml (is this an hls4ml project folder? "
                          "write() it first)")
    try:
        cfg = yaml.load(cfg_path.read_text(), Loader=_ConfigLoader)  # noqa: S506 (safe subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{cfg_path}: not YAML ({exc})") from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{cfg_path}: not an hls4ml configuration")
    backend = str(cfg.get("Backend", ""))
    if backend.lower() != "vivadoaccelerator":
        raise ConfigError(f"{cfg_path}: Backend is {backend or 'missing'!r}; the simulated "
                          "board serves VivadoAccelerator projects (backend='VivadoAccelerator')")
    acc = cfg.get("AcceleratorConfig") or {}
    interface = str(acc.get("Interface", "axi_stream"))
    if interface != "axi_stream":
        raise ConfigError(f"{cfg_path}: AcceleratorConfig.Interface is {interface!r}; the "
                          "simulated board models the axi_stream design (DMA -> core -> DMA)")
    name = str(cfg.get("ProjectName") or "myproject")
    stamp = str(cfg.get("Stamp") or "")
    header = root / "firmware" / f"{name}_axi.h"
    if not header.is_file():
        raise ConfigError(f"{header}: missing (ProjectName {name!r} in {cfg_path.name})")
    text = header.read_text()

    def field(pattern: str, what: str) -> str:
        m = re.search(pattern, text)
        if m is None:
            raise ConfigError(f"{header}: no {what}")
        return m.group(1).strip()

    t_in = field(r"typedef\s+(.+?)\s+T_in\s*;", "typedef ... T_in")
    t_out = field(r"typedef\s+(.+?)\s+T_out\s*;", "typedef ... T_out")
    for t, what in ((t_in, "T_in"), (t_out, "T_out")):
        if t not in ("float", "double"):
            try:
                parse_word_type(t)
            except ValueError as exc:
                raise ConfigError(f"{header}: {what} {exc}") from exc
    n_in = int(field(r"N_IN\s*=\s*(\d+)", "N_IN"))
    n_out = int(field(r"N_OUT\s*=\s*(\d+)", "N_OUT"))
    lib = root / "firmware" / f"{name}-{stamp}.so"
    if not lib.is_file():
        raise ConfigError(f"{lib}: not compiled (call hls_model.compile(), or run the "
                          "project's build_lib.sh)")
    layers = len((cfg.get("HLSConfig") or {}).get("LayerName") or {}) or 1
    viv = next((root / p.format(name=name) for p in _VIVADO_HWH
                if (root / p.format(name=name)).is_file()), None)
    return AccelProject(root, name, str(acc.get("Board", "pynq-z2")), str(cfg.get("IOType", "")),
                        t_in, t_out, n_in, n_out, lib, layers, viv)


def board_for(project: AccelProject, board: str | None = None) -> Board:
    """The hwpart board file that models the project's board (``board`` overrides)."""
    name = board or BOARDS.get(project.board)
    if name is None:
        raise BoardError(f"{project.root / 'hls4ml_config.yml'}: AcceleratorConfig.Board "
                         f"{project.board!r} has no hwpart board file (simulated: "
                         f"{', '.join(sorted(BOARDS))}); pass --board")
    return load_board(name)


# --------------------------------------------------------------------------- .hwh and bitstream

def accel_hwh(project: AccelProject, board: Board) -> str:
    """The handoff of the design hls4ml's ``design.tcl`` builds, for ``board``'s PS.

    Cells as the script names them: the PS, ``hier_0/axi_dma_0`` (simple mode,
    MM2S data width the input word's, as the script sets it) and
    ``hier_0/<project>_axi_0`` (VLNV ``xilinx.com:hls:<project>_axi:1.0``,
    ports ``in_r``/``out_r``), with the stream nets that join them.
    """
    ps = board.ps
    addr = DMA_ADDRESS[ps]
    hwh.check_window(ps, addr, DMA_RANGE, f"{project.name} DMA")
    f = hwh.PS_FAMILIES[ps]
    core = f"{project.name}_axi_0"
    ranges = [hwh._memrange("hier_0_axi_dma_0", addr, DMA_RANGE, "S_AXI_LITE", f.master)]
    mm2s, s2mm = "hier_0_axi_dma_0_M_AXIS_MM2S", f"hier_0_{core}_out_r"

    def bus(busname: str, name: str, kind: str) -> str:
        return (f'<BUSINTERFACE BUSNAME="{busname}" NAME="{name}" TYPE="{kind}" '
                'VLNV="xilinx.com:interface:axis:1.0"/>')

    dma = hwh._module("hier_0/axi_dma_0", "hier_0_axi_dma_0", "axi_dma",
                      "xilinx.com:ip:axi_dma:7.1", {
                          "c_include_sg": 0, "c_sg_length_width": 26,
                          "c_sg_include_stscntrl_strm": 0, "c_include_mm2s": 1,
                          "c_include_s2mm": 1, "c_micro_dma": 0,
                          "c_include_mm2s_dre": 0, "c_include_s2mm_dre": 0,
                          "c_m_axi_mm2s_data_width": project.word_in.bits,
                          "c_m_axis_mm2s_tdata_width": project.word_in.bits,
                          "c_m_axi_s2mm_data_width": 32,
                          "c_s_axis_s2mm_tdata_width": project.word_out.bits,
                          "c_mm2s_burst_size": 256, "c_s2mm_burst_size": 256},
                      extra=("<BUSINTERFACES>" + bus(mm2s, "M_AXIS_MM2S", "INITIATOR")
                             + bus(s2mm, "S_AXIS_S2MM", "TARGET") + "</BUSINTERFACES>"))
    acc = hwh._module(f"hier_0/{core}", f"hier_0_{core}", f"{project.name}_axi",
                      f"xilinx.com:hls:{project.name}_axi:1.0", {},
                      extra=("<BUSINTERFACES>" + bus(mm2s, "in_r", "TARGET")
                             + bus(s2mm, "out_r", "INITIATOR") + "</BUSINTERFACES>"))
    return hwh._doc(BIT_NAME, hwh.ps_module(ranges, board.clocks.pl_mhz, ps) + dma + acc,
                    ps, board.part)


@dataclass
class AccelDesign:
    """What the simulated bitstream carries: the project's core, words and cycles."""

    project: str  # folder
    name: str
    board: str  # hwpart board file
    part: str
    library: str
    library_sha256: str
    t_in: str
    t_out: str
    n_in: int
    n_out: int
    latency_cycles: int
    ii_cycles: int
    cycles_source: str
    hwh_source: str  # "generated" or the Vivado handoff it was copied from

    def cycles(self, samples: int) -> int:
        return 0 if samples <= 0 else self.latency_cycles + (samples - 1) * self.ii_cycles


@dataclass
class Loaded:
    bit: Path
    hwh: Path
    design: AccelDesign


def load_project(project_dir: Path | str, out: Path | str | None = None,
                 board: str | None = None) -> Loaded:
    """Write the simulated bitstream and ``.hwh`` of an hls4ml VivadoAccelerator project.

    ``out`` defaults to ``PROJECT_DIR/hwpart_sim``. The ``.hwh`` is Vivado's
    when the project has been built (``<project>_vivado_accelerator/...``), else
    generated (:func:`accel_hwh`). Give the ``.bit`` to the project's own driver
    (``NeuralNetworkOverlay``) with PYNQ pointed at the simulated board
    (``HWPART_SIM_BOARD``, :mod:`hwpart.sim.discover`).
    """
    p = read_project(project_dir)
    b = board_for(p, board)
    out = Path(out) if out is not None else p.root / DEFAULT_OUT
    out.mkdir(parents=True, exist_ok=True)
    bit, handoff = out / f"{BIT_NAME}.bit", out / f"{BIT_NAME}.hwh"
    if p.vivado_hwh is not None:
        shutil.copyfile(p.vivado_hwh, handoff)
        source = str(p.vivado_hwh)
    else:
        handoff.write_text(accel_hwh(p, b))
        source = "generated"
    lat, ii, how = p.cycles()
    d = AccelDesign(str(p.root), p.name, b.name, b.part, str(p.library),
                    sha256_file(p.library), p.t_in, p.t_out, p.n_in, p.n_out, lat, ii, how,
                    source)
    bit.write_bytes(ACCEL_MAGIC + json.dumps(asdict(d), indent=1).encode())
    return Loaded(bit, handoff, d)


def is_accel_bit(path: str | Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(ACCEL_MAGIC)) == ACCEL_MAGIC
    except OSError:
        return False


def read_accel_bit(path: str | Path) -> AccelDesign:
    """The design in a simulated bitstream; RuntimeError (PYNQ's kind) naming the file when
    its C simulation is gone or changed since ``hwpart sim load``."""
    data = Path(path).read_bytes()
    if not data.startswith(ACCEL_MAGIC):
        raise RuntimeError(f"{path}: not a simulated hls4ml bitstream")
    d = AccelDesign(**json.loads(data[len(ACCEL_MAGIC):]))
    lib = Path(d.library)
    if not lib.is_file() or sha256_file(lib) != d.library_sha256:
        raise RuntimeError(f"{path}: its C simulation {lib} is missing or was rebuilt since "
                           f"it was written; run hwpart sim load {d.project} again")
    return d


# --------------------------------------------------------------------------- the core

class CoreRunner:
    """The project's compiled C simulation, a whole packet per ctypes call.

    ``<project>_double`` runs the very ``<project>_axi`` the design
    synthesises; the batch loop (:func:`hwpart.sim.rm.batch_library`) calls it
    once per sample in C, with the GIL released.
    """

    def __init__(self, design: AccelDesign) -> None:
        self.n_in, self.n_out = design.n_in, design.n_out
        lib = Path(design.library)
        self._lock = _lib_lock(str(lib.resolve()))
        self._lib = ctypes.CDLL(str(lib))
        dp = ctypes.POINTER(ctypes.c_double)
        self._one = getattr(self._lib, f"{design.name}_double")
        self._one.argtypes, self._one.restype = [dp, dp], None
        self._batch = None
        try:
            blib = batch_library(lib, design.name, ctype="double")
        except (OSError, subprocess.CalledProcessError):
            blib = None
        if blib is not None:
            self._blib = ctypes.CDLL(str(blib))
            self._batch = self._blib.hwpart_batch
            self._batch.argtypes = [dp, dp, ctypes.c_long, ctypes.c_long, ctypes.c_long]
            self._batch.restype = None

    def predict(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float64).reshape(-1, self.n_in)
        y = np.zeros((x.shape[0], self.n_out), dtype=np.float64)
        dp = ctypes.POINTER(ctypes.c_double)
        with self._lock:
            if self._batch is not None:
                self._batch(x.ctypes.data_as(dp), y.ctypes.data_as(dp), x.shape[0],
                            self.n_in, self.n_out)
            else:
                for i in range(x.shape[0]):
                    self._one(x[i].ctypes.data_as(dp), y[i].ctypes.data_as(dp))
        return y


class AccelCore:
    """``<project>_axi`` on the stream: N_IN words in -> one sample -> N_OUT words out.

    As the generated wrapper does: a sample is any N_IN consecutive words,
    whatever packets they came in; a sample that read a TLAST word puts TLAST
    on its last output word, which ends the S2MM packet. Words of an unfinished
    sample wait in the core for more (as ``in.read()`` blocks on hardware).
    """

    def __init__(self, design: AccelDesign) -> None:
        self.design = design
        self.win, self.wout = WordFormat(design.t_in), WordFormat(design.t_out)
        self.runner = CoreRunner(design)
        self._vals = np.zeros(0)
        self._last: list[int] = []  # indices into _vals of words that carried TLAST
        self._rest = b""  # bytes of a word not yet complete
        self._out: list[np.ndarray] = []  # output words of samples not yet ended by TLAST
        self.samples = 0

    def feed(self, data: np.ndarray) -> tuple[list[np.ndarray], int]:
        """One MM2S packet (TLAST on its last word) -> (finished S2MM packets, samples run)."""
        raw = self._rest + np.ascontiguousarray(data).tobytes()
        size = self.win.dtype.itemsize
        whole = len(raw) - len(raw) % size
        self._rest = raw[whole:]
        vals = self.win.values(np.frombuffer(raw[:whole], dtype=np.uint8))
        if vals.size:
            self._last.append(self._vals.size + vals.size - 1)
            self._vals = np.concatenate([self._vals, vals])
        n_in = self.design.n_in
        k = self._vals.size // n_in
        packets: list[np.ndarray] = []
        if k == 0:
            return packets, 0
        y = self.runner.predict(self._vals[: k * n_in])
        ends = sorted({i // n_in for i in self._last if i < k * n_in})
        start = 0
        for e in [*ends, None]:
            stop = k if e is None else e + 1
            if stop > start:
                self._out.append(self.wout.words(y[start:stop]))
            if e is not None:
                packets.append(np.concatenate(self._out))
                self._out = []
            start = stop
        self._vals = self._vals[k * n_in:]
        self._last = [i - k * n_in for i in self._last if i >= k * n_in]
        self.samples += k
        return packets, k


class AccelFabric:
    """The static path of the design on a simulated board: DMA -> core -> DMA.

    The DMA is PG021's register model at the address the design's ``.hwh``
    gives it; the core holds one finished output packet (its stream FIFOs and
    the DMA's buffering): while S2MM has not taken it, the core takes no more
    input, so MM2S waits -- the back-pressure a real design applies. Times are
    modeled on the board's clock (:class:`~hwpart.sim.timing.TimingModel`).
    """

    def __init__(self, design: AccelDesign, board: Any, dma_address: int,
                 dma_range: int = DMA_RANGE) -> None:
        self.design = design
        self.board = board
        self.base, self.range = dma_address, dma_range
        self.core = AccelCore(design)
        self.dma = AxiDmaModel(board.ddr, board.timing, board.ledger, self._push, sg=False)
        self.dma.on_armed = self.propagate
        self.inq: deque[Packet] = deque()
        self.outq: deque[Packet] = deque()
        self.busy_until = 0.0

    @classmethod
    def load(cls, bitfile: str | Path, parser: Any, board: Any) -> AccelFabric:
        """The fabric of a simulated hls4ml bitstream; the DMA's address from ``parser``
        (the ``.hwh`` PYNQ parsed: generated, or Vivado's)."""
        d = read_accel_bit(bitfile)
        if d.part != board.board.part:
            raise RuntimeError(f"{bitfile}: built for {d.board} ({d.part}); this simulated "
                               f"board is {board.board.name} ({board.board.part})")
        ip = dma_of(parser, d.name, bitfile)
        return cls(d, board, int(ip["phys_addr"]), int(ip.get("addr_range", DMA_RANGE)))

    def _push(self, pkt: Packet) -> None:
        self.inq.append(pkt)
        self.propagate()

    def propagate(self) -> None:
        """Move what can move (:mod:`hwpart.sim.stream`); called under the board's lock after
        any change. Queue 0 is MM2S into the core, queue 1 the core's output to S2MM."""
        propagate([self.outq, self.inq], self._take, time.perf_counter())

    def _take(self, q: int, p: Packet, t_acc: float) -> bool:
        if q == 0:
            return self.dma.offer(p, t_acc)
        if self.outq:  # the core holds a finished packet: it takes no more input
            return False
        outs, n = self.core.feed(p.data)
        rm_s = self.board.timing.rm_s(self.design.cycles(n))
        self.busy_until = max(t_acc, self.busy_until) + rm_s
        self.board.ledger.add_rm(rm_s, n)
        self.outq.extend(Packet(o, self.busy_until) for o in outs)
        return True


def dma_of(parser: Any, name: str, where: str | Path) -> dict:
    """The AXI DMA that feeds ``<name>_axi`` in a parsed ``.hwh`` (PYNQ's ``ip_dict``)."""
    dmas = {k: v for k, v in parser.ip_dict.items()
            if str(v.get("type", "")).startswith("xilinx.com:ip:axi_dma:")}
    if not dmas:
        raise RuntimeError(f"{where}: its .hwh has no addressable AXI DMA")
    if len(dmas) > 1 and "hier_0/axi_dma_0" in dmas:
        return dmas["hier_0/axi_dma_0"]
    if len(dmas) > 1:
        raise RuntimeError(f"{where}: its .hwh has {len(dmas)} AXI DMAs ({', '.join(dmas)}); "
                           f"hls4ml's design has one, hier_0/axi_dma_0, feeding {name}_axi")
    return next(iter(dmas.values()))


def describe(loaded: Loaded) -> str:
    """What ``hwpart sim load`` prints: the files, the words, the cycles and how to run it."""
    d = loaded.design
    words = f"{d.t_in} -> {d.t_out}, {d.n_in} -> {d.n_out} values per sample"
    lines = [f"simulated bitstream: {loaded.bit}",
             f"hardware handoff:    {loaded.hwh} ({'generated' if d.hwh_source == 'generated' else 'from Vivado: ' + d.hwh_source})",
             f"core:                {d.name}_axi on {d.board} ({d.part}), {words}, "
             f"C simulation {d.library}",
             f"cycles (modeled):    latency {d.latency_cycles}, interval {d.ii_cycles} "
             f"per sample ({d.cycles_source})",
             "run the project's driver on the simulated board:",
             f"  HWPART_SIM_BOARD={d.board} python -c \"from axi_stream_driver import "
             f"NeuralNetworkOverlay; ...NeuralNetworkOverlay('{loaded.bit}', ...)\"",
             "  (once per environment: hwpart sim discovery --install)"]
    return "\n".join(lines)
