"""A bundle's generated RMs as RTL in the static shell, and hwpart's host code driving that RTL.

Two halves, both for RTL simulation (cocotb + Icarus), never for a board:

* :func:`write_rm_bank` writes the ``rm_bank`` of a bundle's dense RMs: each
  RM's da4ml core (module names prefixed with the RM's name, so several cores
  can share one build) behind ``sim/rtl/rm_da4ml_axis.v``, the AXI4-Stream
  adapter in the bundle's word format. It replaces ``sim/rtl/rm_bank.v`` in
  ``rm_slot``/``shell_top`` builds (sim/README.md, "Plugging in generated RMs").
* :class:`RtlBoard` is the simulated PYNQ board (:class:`hwpart.sim.board.SimBoard`)
  with its fabric replaced by the running RTL: MMIO to the shell's blocks
  (switch, decouplers, slot controls, RM identity blocks, wherever the loaded
  shell's ``.hwh`` puts them) becomes AXI-Lite transactions (cocotbext-axi
  ``AxiLiteMaster``), and DMA packets become AXI-Stream traffic
  (``AxiStreamSource`` in place of the DMA's MM2S master, ``AxiStreamSink`` in
  place of S2MM). The AXI DMA itself is Xilinx IP that the shell RTL does not
  contain, so its registers and its DDR side stay the simulated board's register
  model; only the stream ends are RTL.
  The host code (:class:`hwpart.devices.fpga.FpgaDevice`) runs unchanged in a
  cocotb ``bridge`` thread; every register access it makes is a ``resume``
  into the simulator, which also lets simulated time pass while it polls.

:func:`run_cocotb` runs a cocotb test module from ``sim/tb`` with cocotb's
Python runner (library code, so calibration can use it outside pytest).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwpart.datafiles import data_dir, import_root
from hwpart.errors import HwpartError

BANK_JSON = "rm_bank.json"
#: The da4ml core's AXI4-Stream adapter, in sim/rtl.
ADAPTER = "rm_da4ml_axis.v"
#: The slot wrapper without the example bank (and its example RMs).
SLOT_SOURCES = ("rm_slot.v",)
#: The static shell around the slots (switch, decouplers, control, RM identity, AXI-Lite).
SHELL_SOURCES = ("axil_reg_if.v", "axis_switch.v", "axil_demux.v", "slot_ctrl.v",
                 "dfx_decoupler.v", "rm_info.v", "shell_top.v")
#: shell_top's AXI-Lite address width: the blocks must sit within 2**18 bytes of the base
SHELL_ADDR_WIDTH = 18


def _fits_rtl(a: int) -> bool:
    """Whether ``shell_top`` can put a block at RTL address ``a``: a 4 KiB window below
    2**SHELL_ADDR_WIDTH."""
    return a % 0x1000 == 0 and 0 <= a < 1 << SHELL_ADDR_WIDTH


class RtlError(HwpartError):
    """A bundle whose RMs cannot be simulated as RTL, or a simulation that did not run."""


def sim_rtl() -> Path:
    """The shell's Verilog (``sim/rtl``), from the checkout or the installed wheel."""
    return data_dir("sim", RtlError) / "rtl"


def sim_tb() -> Path:
    """The cocotb test modules (``sim/tb``); the simulator's Python imports them from here."""
    return data_dir("sim", RtlError) / "tb"


def rtl_files(names: tuple[str, ...] | list[str]) -> list[Path]:
    """Files of ``sim/rtl`` by name, checked: a missing one would otherwise surface as
    an iverilog error about a path the user never typed."""
    paths = [sim_rtl() / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise RtlError(f"{', '.join(missing)} missing from {sim_rtl()}; reinstall hwpart")
    return paths


# --------------------------------------------------------------------------- generated bank


@dataclass
class BankRM:
    """One RM of a generated bank: where it sits and how its words look."""

    name: str
    index: int  # RM_SELECT value in every slot
    precision: str
    n_in: int
    n_out: int
    lane_bits: int
    lane_frac: int
    lanes: int
    in_words: int
    out_words: int
    core_lat: int  # clock edges through the da4ml core (its stages + output register)
    comb: str  # the core's da4ml CombLogic (comb.json), for the emulation
    params: dict[str, int] = field(default_factory=dict)


@dataclass
class GeneratedBank:
    directory: Path
    data_width: int
    rms: list[BankRM]
    sources: list[Path]  # core files, static da4ml modules, adapter, the bank itself

    def rm(self, name: str) -> BankRM:
        for r in self.rms:
            if r.name == name:
                return r
        raise KeyError(f"RM {name!r} has no RTL in this bank ({[r.name for r in self.rms]})")

    def slot_sources(self) -> list[Path]:
        return self.sources + rtl_files(SLOT_SOURCES)

    def shell_sources(self) -> list[Path]:
        return self.sources + rtl_files(SLOT_SOURCES + SHELL_SOURCES)

    def shell_parameters(self, slots: int, layout: dict[str, int] | None = None,
                         **extra: Any) -> dict[str, Any]:
        """``shell_top``'s parameters for this bank in a ``slots``-slot shell: widths, the
        bank's RM identities (what each slot's ``rm_info`` reports) and, given a
        ``layout`` (block name -> RTL address, :func:`layout_parameters`), where every
        block sits; without one, shell_top's default layout (``regs.shell_map(0, slots)``)."""
        return {"NUM_SLOTS": slots, "DATA_WIDTH": self.data_width, "NUM_RMS": len(self.rms),
                **rm_identity_parameters([(r.name, r.n_in, r.n_out) for r in self.rms]),
                **(layout_parameters(layout, slots) if layout is not None else {}), **extra}

    def to_json(self) -> dict[str, Any]:
        return {"directory": str(self.directory), "data_width": self.data_width,
                "rms": [asdict(r) for r in self.rms],
                "sources": [str(p) for p in self.sources]}

    @classmethod
    def load(cls, path: Path | str) -> GeneratedBank:
        path = Path(path)
        d = json.loads((path / BANK_JSON if path.is_dir() else path).read_text())
        return cls(Path(d["directory"]), int(d["data_width"]), [BankRM(**r) for r in d["rms"]],
                   [Path(p) for p in d["sources"]])


def _packed(words: list[int]) -> str:
    """A Verilog literal of 32-bit words packed word i at bits [32*i +: 32]."""
    v = sum((w & 0xFFFF_FFFF) << (32 * i) for i, w in enumerate(words))
    return f"{32 * len(words)}'h{v:x}"


def rm_identity_parameters(rms: list[tuple[str, int, int]]) -> dict[str, str]:
    """``shell_top``'s (and ``rm_info``'s) RM_IDS / RM_N_IN / RM_N_OUT for a bank of
    (name, n_in, n_out), RM r of the bank at word r; the id is
    :func:`hwpart.board.regs.rm_id` of the name, what the host checks after a swap."""
    from hwpart.board.regs import rm_id

    return {"RM_IDS": _packed([rm_id(n) for n, _, _ in rms]),
            "RM_N_IN": _packed([i for _, i, _ in rms]),
            "RM_N_OUT": _packed([o for _, _, o in rms])}


def layout_parameters(layout: dict[str, int], slots: int) -> dict[str, str]:
    """``shell_top``'s address parameters (SWITCH_ADDR, DECOUPLER_ADDRS, SLOT_CTRL_ADDRS,
    RM_INFO_ADDRS) for ``layout``: block name (``regs.block_names``) -> RTL address.
    Other names (``dma``: not in the RTL) are ignored."""
    from hwpart.board.regs import block_names

    missing = [n for n in ("switch", *(b for k in range(slots) for b in block_names(k)))
               if n not in layout]
    if missing:
        raise RtlError(f"the layout has no {', '.join(missing)}")
    bad = {n: a for n, a in layout.items() if n != "dma" and not _fits_rtl(a)}
    if bad:
        raise RtlError("shell_top needs every block 4 KiB aligned below "
                       f"0x{1 << SHELL_ADDR_WIDTH:X}: " +
                       ", ".join(f"{n} at 0x{a:X}" for n, a in bad.items()))
    return {"SWITCH_ADDR": f"32'h{layout['switch']:x}",
            **{p: _packed([layout[block_names(k)[i]] for k in range(slots)])
               for i, p in enumerate(("DECOUPLER_ADDRS", "SLOT_CTRL_ADDRS", "RM_INFO_ADDRS"))}}


def _io_format(comb: Any) -> tuple[int, int, int, int, int]:
    """(in bits, in frac, out bits, out signed, out frac) of da4ml's uniform-width ports."""
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    kin, kout = get_io_kifs(comb)
    bw_in = int(kin[0].max() + kin[1].max() + kin[2].max())
    ko, io_, fo = int(kout[0].max()), int(kout[1].max()), int(kout[2].max())
    return bw_in, int(kin[2].max()), ko + io_ + fo, ko, fo


def _ident(name: str) -> str:
    s = re.sub(r"\W", "_", name)
    return s if s[:1].isalpha() else f"rm_{s}"


def write_rm_bank(bundle: Path | str, out: Path | str, manifest: Any = None) -> GeneratedBank:
    """The ``rm_bank`` of every RM in ``bundle`` that has da4ml RTL, written under ``out``.

    RM ``r`` of the bank is the r-th such RM in manifest order; every slot
    holds all of them (``rm_slot`` selects one), as ``compatible_slots`` allows
    on this shell. Core modules are renamed ``<rm>_core...`` because da4ml
    names every core ``rm_core``; its static helper modules are identical
    across cores and are included once.
    """
    from da4ml.cmvm.types import CombLogic

    from hwpart.overlay.manifest import load_manifest
    from hwpart.overlay.rtl import FixedType

    bundle, out = Path(bundle), Path(out)
    m = manifest or load_manifest(bundle)
    width = int(m.shell.stream_width_bits)
    out.mkdir(parents=True, exist_ok=True)
    rms: list[BankRM] = []
    sources: list[Path] = []
    static: dict[str, str] = {}
    for r in m.rms:
        if r.rtl is None:
            continue
        ident = _ident(r.name)
        base = r.rtl.top.removesuffix("_wrapper")
        comb_path = next((bundle / f.path for f in r.rtl.files if f.path.endswith("comb.json")),
                         None)
        if comb_path is None:
            raise RtlError(f"RM {r.name}: the bundle has no comb.json for its RTL")
        comb = CombLogic.load(comb_path)
        bw_in, f_in, bw_out, k_out, f_out = _io_format(comb)
        for f in r.rtl.files:
            src = bundle / f.path
            if src.suffix != ".v":
                continue
            if src.parent.name == "static":
                text = src.read_text()
                if static.setdefault(src.name, text) != text:
                    raise RtlError(f"da4ml static module {src.name} differs between RMs")
                continue
            dst = out / f"{ident}__{src.name}"
            dst.write_text(re.sub(rf"\b{re.escape(base)}", f"{ident}_core", src.read_text()))
            sources.append(dst)
        t = FixedType.parse(r.precision)
        core_lat = int(r.rtl.stages) + 1
        depth = 1 << max(2, (core_lat + 3).bit_length())
        params = {"DATA_WIDTH": width, "LANE_BITS": r.stream.lane_bits,
                  "LANE_FRAC": t.width - t.integer, "LANES": r.stream.lanes,
                  "N_IN": comb.shape[0], "N_OUT": comb.shape[1],
                  "IN_WORDS": r.stream.in_words, "OUT_WORDS": r.stream.out_words,
                  "IN_BITS": bw_in, "IN_FRAC": f_in, "OUT_BITS": bw_out,
                  "OUT_SIGNED": k_out, "OUT_FRAC": f_out, "CORE_LAT": core_lat,
                  "DEPTH": depth}
        rms.append(BankRM(r.name, len(rms), r.precision, comb.shape[0], comb.shape[1],
                          r.stream.lane_bits, t.width - t.integer, r.stream.lanes,
                          r.stream.in_words, r.stream.out_words, core_lat,
                          str(comb_path.resolve()), params))
    if not rms:
        raise RtlError(f"{bundle}: no RM has da4ml RTL (only dense groups get RTL)")
    for name, text in sorted(static.items()):
        p = out / f"da4ml_{name}"
        p.write_text(text)
        sources.append(p)
    bank = out / "rm_bank_generated.v"
    bank.write_text(_bank_verilog(m.name, rms))
    sources += [*rtl_files([ADAPTER]), bank]
    gb = GeneratedBank(out.resolve(), width, rms, [p.resolve() for p in sources])
    (out / BANK_JSON).write_text(json.dumps(gb.to_json(), indent=1))
    return gb


def _bank_verilog(bundle_name: str, rms: list[BankRM]) -> str:
    n = len(rms)
    lines = [
        f"// Generated by hwpart.rtlbridge.write_rm_bank from bundle {bundle_name}: do not edit.",
        "// Every slot holds every RM (rm_slot selects one); RM r = " +
        ", ".join(f"{r.index}:{r.name}" for r in rms) + ".",
        "`default_nettype none",
        "module rm_bank #(",
        "    parameter DATA_WIDTH = 64,",
        f"    parameter NUM_RMS    = {n},",
        "    parameter SLOT_INDEX = 0",
        ") (",
        "    input  wire                          clk,",
        "    input  wire [NUM_RMS-1:0]            rm_rst,",
        "    input  wire [NUM_RMS*DATA_WIDTH-1:0] s_axis_tdata,",
        "    input  wire [NUM_RMS-1:0]            s_axis_tvalid,",
        "    output wire [NUM_RMS-1:0]            s_axis_tready,",
        "    input  wire [NUM_RMS-1:0]            s_axis_tlast,",
        "    output wire [NUM_RMS*DATA_WIDTH-1:0] m_axis_tdata,",
        "    output wire [NUM_RMS-1:0]            m_axis_tvalid,",
        "    input  wire [NUM_RMS-1:0]            m_axis_tready,",
        "    output wire [NUM_RMS-1:0]            m_axis_tlast",
        ");",
        "    generate",
        f"        if (NUM_RMS != {n} || DATA_WIDTH != {rms[0].params['DATA_WIDTH']}) "
        "begin : g_bad",
        "            initial begin",
        f"                $display(\"rm_bank: built for NUM_RMS={n} DATA_WIDTH="
        f"{rms[0].params['DATA_WIDTH']}\");",
        "                $finish;",
        "            end",
        "        end",
        "    endgenerate",
    ]
    for r in rms:
        i, ident = r.index, _ident(r.name)
        p = ", ".join(f".{k}({v})" for k, v in r.params.items())
        lines += [
            "",
            f"    // RM {i}: {r.name} ({r.precision}, {r.n_in} -> {r.n_out})",
            f"    wire [{r.n_in * r.params['IN_BITS'] - 1}:0] core{i}_inp;",
            f"    wire [{r.n_out * r.params['OUT_BITS'] - 1}:0] core{i}_out;",
            f"    {ident}_core_wrapper u_core{i} (.clk(clk), .model_inp(core{i}_inp), "
            f".model_out(core{i}_out));",
            f"    rm_da4ml_axis #({p}) u_rm{i} (",
            f"        .clk(clk), .rst(rm_rst[{i}]),",
            f"        .s_axis_tdata(s_axis_tdata[{i}*DATA_WIDTH +: DATA_WIDTH]),",
            f"        .s_axis_tvalid(s_axis_tvalid[{i}]), .s_axis_tready(s_axis_tready[{i}]),",
            f"        .s_axis_tlast(s_axis_tlast[{i}]),",
            f"        .m_axis_tdata(m_axis_tdata[{i}*DATA_WIDTH +: DATA_WIDTH]),",
            f"        .m_axis_tvalid(m_axis_tvalid[{i}]), .m_axis_tready(m_axis_tready[{i}]),",
            f"        .m_axis_tlast(m_axis_tlast[{i}]),",
            f"        .core_inp(core{i}_inp), .core_out(core{i}_out)",
            "    );",
        ]
    lines += ["endmodule", "`default_nettype wire", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- cocotb runner


@dataclass
class SimRun:
    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    seconds: float = 0.0
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return bool(self.passed) and not self.failed

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None or not self.log.is_file():
            return "(no simulation log)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def run_cocotb(toplevel: str, sources: list[Path], module: str, work: Path,
               parameters: dict[str, Any] | None = None, env: dict[str, str] | None = None,
               testcase: str | list[str] | None = None, sim: str = "icarus",
               defines: dict[str, Any] | None = None) -> SimRun:
    """Build ``sources`` and run cocotb module ``module`` (from sim/tb) on ``toplevel``.

    Never raises for failing cocotb tests (the result says); raises RtlError
    when the simulator is missing.
    """
    from cocotb_tools.runner import get_runner

    if sim == "icarus" and shutil.which("iverilog") is None:
        raise RtlError("iverilog is not installed (apt-get install iverilog)")
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    tag = "_".join([sim, toplevel, module, *sorted(defines or {})])
    build_dir = work / f"build_{tag}"
    results = work / f"results_{tag}.xml"
    results.unlink(missing_ok=True)
    runner = get_runner(sim)
    t0 = time.monotonic()
    runner.build(sources=[str(p) for p in sources], hdl_toplevel=toplevel, build_dir=build_dir,
                 parameters=parameters or {}, defines=defines or {}, always=True, timescale=("1ns", "1ps"),
                 log_file=work / f"build_{tag}.log")
    log = work / f"sim_{tag}.log"
    saved = list(sys.path)
    # The runner hands sys.path to the simulator: the benches, and this same hwpart.
    sys.path[:0] = [str(sim_tb()), str(import_root())]
    try:
        runner.test(hdl_toplevel=toplevel, test_module=module, test_dir=build_dir,
                    build_dir=build_dir, results_xml=str(results), testcase=testcase,
                    timescale=("1ns", "1ps"), log_file=log,
                    extra_env={"PYTHONDONTWRITEBYTECODE": "1", **(env or {})})
    except SystemExit:  # the runner exits when a cocotb test fails
        pass
    finally:
        sys.path[:] = saved
    res = SimRun(seconds=time.monotonic() - t0, log=log)
    if results.is_file():
        for case in ET.parse(results).getroot().iter("testcase"):
            bad = case.find("failure") is not None or case.find("error") is not None
            (res.failed if bad else res.passed).append(case.get("name", "?"))
    return res


# --------------------------------------------------------------------------- test vectors


def emulate(rm: BankRM, raw: Any) -> Any:
    """da4ml's bit-exact emulation of the core, on raw lane values -> raw lane values."""
    import numpy as np
    from da4ml.cmvm.types import CombLogic

    comb = CombLogic.load(rm.comb)
    y = comb.predict(np.asarray(raw, dtype=np.float64) * 2.0 ** -rm.lane_frac)
    out = y * 2.0 ** rm.lane_frac
    if not np.array_equal(out, np.round(out)):
        raise RtlError(f"RM {rm.name}: emulated outputs are not on the lane's grid")
    return out.astype(np.int64)


def random_lanes(rm: BankRM, n: int, seed: int = 0) -> Any:
    """``n`` input samples as raw lane values: half drawn over the whole lane range
    (saturation and sign corners), half from [-1, 1) (the builder's input range)."""
    import numpy as np

    g = np.random.default_rng(seed)
    lo, hi = -(1 << (rm.lane_bits - 1)), 1 << (rm.lane_bits - 1)
    full = g.integers(lo, hi, (n - n // 2, rm.n_in))
    unit = g.integers(-(1 << rm.lane_frac), 1 << rm.lane_frac, (n // 2, rm.n_in))
    return np.concatenate([full, unit])


def write_vectors(bank: GeneratedBank, path: Path, n: int = 48, seed: int = 0,
                  extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The JSON the generated-RM testbench reads: inputs and da4ml-emulated outputs per RM."""
    rms = []
    for r in bank.rms:
        x = random_lanes(r, n, seed + r.index)
        d = {"name": r.name, "index": r.index, "n_in": r.n_in, "n_out": r.n_out,
             "lane_bits": r.lane_bits, "lane_frac": r.lane_frac, "lanes": r.lanes,
             "in_words": r.in_words, "out_words": r.out_words,
             "inputs": x.tolist(), "expect_emulation": emulate(r, x).tolist()}
        d.update((extra or {}).get(r.name, {}))
        rms.append(d)
    vec = {"data_width": bank.data_width, "rms": rms}
    Path(path).write_text(json.dumps(vec))
    return vec


# --------------------------------------------------------------------------- host code on RTL

#: Clock edges a DMA register access lets pass (the PS's AXI-Lite access to the DMA
#: takes about this long; it is also what lets the RTL run while the host polls).
DMA_ACCESS_CYCLES = 8


def rtl_layout(blocks: list[Any], base: int) -> dict[str, int]:
    """Block name -> ``shell_top`` address for a loaded shell's blocks
    (:class:`hwpart.board.regs.Block`, from its ``.hwh``): the ``.hwh`` address minus
    ``base``, the start of the window the RTL's AXI-Lite port stands for (the PS's
    base, where hwpart's layout starts). The DMA is not in the RTL and is left out.
    A block's RTL window is its first 4 KiB (every register of the shell is there),
    whatever range the ``.hwh`` gives it."""
    out = {}
    for b in blocks:
        if b.kind == "dma":
            continue
        a = b.base - base
        if not _fits_rtl(a):
            raise RtlError(f"{b.name} at 0x{b.base:08X}: shell_top's blocks are 4 KiB "
                           f"aligned within 0x{1 << SHELL_ADDR_WIDTH:X} bytes of 0x{base:08X}")
        out[b.name] = a
    return out


def shell_layout(bundle: Path | str) -> dict[str, int]:
    """:func:`rtl_layout` of a bundle's shell, read from its ``.hwh`` as the host reads it:
    build ``shell_top`` with ``GeneratedBank.shell_parameters(slots, layout=...)`` so the
    RTL sits where the host will look for it."""
    from pynq.pl_server.hwh_parser import get_hwh_name

    from hwpart.board import regs
    from hwpart.sim import hwh
    from hwpart.sim.bundle import load_bundle

    b = load_bundle(bundle)
    name = get_hwh_name(str(b.path(b.shell_bit)))
    ps, _ = hwh.hwh_family(name)
    blocks = regs.shell_blocks(hwh.read_hwh(name).ip_dict, b.slots, name)
    return rtl_layout(blocks, hwh.BASE[ps])


def _board_base():
    """SimBoard, imported late: pynq is only needed for the host-code bridge."""
    from hwpart.sim.board import SimBoard

    return SimBoard


def make_rtl_board(dut: Any, bank: GeneratedBank, board: str = "pynq-z2") -> Any:
    """An :class:`RtlBoard` for the running ``shell_top`` ``dut``, made PYNQ's active device.

    Call from a cocotb test (the simulator's thread); then run the host code in
    a ``cocotb.task.bridge`` thread.
    """
    from hwpart.sim.board import activate

    cls = type("RtlBoard", (_RtlBoardMixin, _board_base()), {"__doc__": _RtlBoardMixin.__doc__})
    return activate(cls(dut, bank, board))


class _RtlBoardMixin:
    """The simulated board with the shell's fabric in RTL (see the module docstring).

    Forwarded to the simulator: every MMIO access to a block of the loaded shell
    other than the DMA (switch, ``decoupler_K``, ``slot_ctrl_K``, ``slot_K/rm_info``,
    at the addresses of the shell's ``.hwh``: :meth:`block_at`) as one AXI-Lite
    transaction at that block's ``shell_top`` address (:func:`rtl_layout`: the
    ``.hwh`` address minus the PS's base), a DECERR from the RTL raising
    :class:`~hwpart.sim.board.BusError` like an unmapped address; every DMA packet
    as an AXI-Stream frame into ``shell_top``'s MM2S port, and every frame out of its
    S2MM port into the DMA model's armed buffer; ``pr_download`` of a slot's partial
    as RM_SELECT of that RM in the generated bank, written to the slot's
    ``slot_ctrl`` (the RTL stand-in for reconfiguration, sim/README.md). The RM
    identity the host checks after a swap is the RTL's ``rm_info`` (build
    ``shell_top`` with :meth:`GeneratedBank.shell_parameters`).
    Bridged, not RTL: the AXI DMA's registers and DDR side (Xilinx IP; the
    simulated board's PG021 model, unpaced) and S2MM back-pressure (the sink
    always accepts; the host arms S2MM before MM2S, so nothing is lost).
    """

    def __init__(self, dut: Any, bank: GeneratedBank, board: str = "pynq-z2") -> None:
        import cocotb
        from cocotbext.axi import (
            AxiLiteBus,
            AxiLiteMaster,
            AxiStreamBus,
            AxiStreamSink,
            AxiStreamSource,
        )

        super().__init__(board, pace=False)  # type: ignore[call-arg]
        self.name = f"hwpart-rtl-{self.board.name}"  # type: ignore[attr-defined]
        self.dut, self.bank = dut, bank
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        self.mm2s_src = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.clk, dut.rst)
        self.s2mm_sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.clk, dut.rst)
        for d in (self.axil.write_if, self.axil.read_if, self.mm2s_src, self.s2mm_sink):
            d.log.setLevel("WARNING")
        self.to_send: list[Any] = []  # packets from the DMA model, not yet handed to the source
        self.in_flight: list[Any] = []  # sent packets whose last beat may not have left yet
        self.received: list[bytes] = []  # frames from the S2MM port
        self.counts = {"axil_reads": 0, "axil_writes": 0, "dma_accesses": 0,
                       "frames_in": 0, "frames_out": 0, "rm_selects": 0}
        self._rtl: dict[str, int] = {}  # block name -> shell_top address, once a shell is loaded
        self._collector = cocotb.start_soon(self._collect())

    # -- simulator side (coroutines; they never take the board's lock)

    async def _collect(self) -> None:
        while True:
            frame = await self.s2mm_sink.recv()
            self.received.append(bytes(frame.tdata))

    async def _tick(self) -> None:
        from cocotb.triggers import ClockCycles
        from cocotbext.axi import AxiStreamFrame

        while self.to_send:
            pkt = self.to_send.pop(0)
            await self.mm2s_src.send(AxiStreamFrame(pkt.data.tobytes()))
            self.in_flight.append(pkt)
        await ClockCycles(self.dut.clk, DMA_ACCESS_CYCLES)

    async def _reset_rtl(self) -> None:
        from cocotb.triggers import ClockCycles, RisingEdge

        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await RisingEdge(self.dut.clk)

    async def _axil_read(self, offset: int) -> tuple[int, int]:
        r = await self.axil.read(offset, 4)
        return int.from_bytes(bytes(r.data), "little"), int(r.resp)

    async def _axil_write(self, offset: int, value: int) -> int:
        r = await self.axil.write(offset, int(value & 0xFFFF_FFFF).to_bytes(4, "little"))
        return int(r.resp)

    # -- host side (the bridge thread)

    def _rtl_addr(self, blk: Any, off: int) -> int:
        """A block's register in ``shell_top``'s address space (:func:`rtl_layout`)."""
        return self._rtl[blk.name] + off

    def _rtl_check(self, a: int, resp: int, what: str) -> None:
        if resp != 0:
            from hwpart.sim.board import BusError

            raise BusError(f"bus error: the RTL shell answered {what} of 0x{a:08X} with "
                           f"resp {resp} (DECERR = 3): it was built with another layout than "
                           f"{self.design}'s")  # type: ignore[attr-defined]

    def read_registers(self, address: int, length: int) -> bytes:
        from cocotb.task import resume

        out = bytearray()
        for a in range(address, address + length, 4):
            blk, off = self.block_at(a)  # type: ignore[attr-defined]
            if blk.kind == "dma":
                self.counts["dma_accesses"] += 1
                resume(self._tick)()
                with self.lock:  # type: ignore[attr-defined]
                    self._drain()
                    v, _ = self._read32(a)  # type: ignore[attr-defined]
            else:
                self.counts["axil_reads"] += 1
                v, resp = resume(self._axil_read)(self._rtl_addr(blk, off))
                self._rtl_check(a, resp, "a read")
            out += int(v & 0xFFFF_FFFF).to_bytes(4, "little")
        return bytes(out[:length])

    def write_registers(self, address: int, data: bytes) -> None:
        from cocotb.task import resume

        data = bytes(data) + b"\0" * ((-len(data)) % 4)
        for i in range(0, len(data), 4):
            a, v = address + i, int.from_bytes(data[i:i + 4], "little")
            blk, off = self.block_at(a)  # type: ignore[attr-defined]
            if blk.kind == "dma":
                self.counts["dma_accesses"] += 1
                with self.lock:  # type: ignore[attr-defined]
                    self._write32(a, v)  # type: ignore[attr-defined]
                resume(self._tick)()
            else:
                self.counts["axil_writes"] += 1
                resp = resume(self._axil_write)(self._rtl_addr(blk, off), v)
                self._rtl_check(a, resp, "a write")

    def _check_layout(self) -> None:
        """The RTL's blocks answer where the loaded ``.hwh`` puts them: every slot_ctrl's
        SLOT_ID, every rm_info's magic (or 0: empty slot), the others without DECERR."""
        from cocotb.task import resume

        from hwpart.board.regs import RM_MAGIC, SLOT_ID, SLOT_MAGIC

        self._rtl = rtl = rtl_layout(self.blocks, self.ps_base)  # type: ignore[attr-defined]
        want = {"slot_ctrl": {SLOT_MAGIC}, "rm_info": {RM_MAGIC, 0}}
        for b in self.blocks:  # type: ignore[attr-defined]
            if b.kind == "dma":
                continue
            v, resp = resume(self._axil_read)(rtl[b.name] + SLOT_ID)
            if resp != 0 or (b.kind in want and v not in want[b.kind]):
                raise RtlError(f"{b.name}: the RTL shell has no {b.kind} at 0x{rtl[b.name]:05X} "
                               f"(read 0x{v:08X}, resp {resp}) where {self.design} puts it; "  # type: ignore[attr-defined]
                               "build shell_top with GeneratedBank.shell_parameters(slots, "
                               "layout=shell_layout(bundle))")

    def _push_mm2s(self, pkt: Any) -> None:
        """MM2S issued a packet: it goes to the RTL at the next tick."""
        self.stats.packets_in += 1  # type: ignore[attr-defined]
        self.counts["frames_in"] += 1
        self.to_send.append(pkt)

    def _propagate(self) -> None:
        self._drain()

    def _drain(self) -> None:
        """Hand what the RTL did to the DMA model: MM2S packets fully sent, S2MM frames."""
        import time

        import numpy as np

        from hwpart.sim.dma import Packet

        now = time.perf_counter()
        if self.in_flight and self.mm2s_src.idle():
            for pkt in self.in_flight:
                if pkt.on_accept is not None:
                    pkt.on_accept(now)
            self.in_flight.clear()
        while self.received:
            self.s2mm_queue.append(Packet(np.frombuffer(self.received.pop(0), np.uint8).copy(),  # type: ignore[attr-defined]
                                          now))
            self.counts["frames_out"] += 1
        q = self.s2mm_queue  # type: ignore[attr-defined]
        while q and self.dma.offer(q[0], now):  # type: ignore[attr-defined]
            q.popleft()
            self.stats.packets_out += 1  # type: ignore[attr-defined]

    def download(self, bitstream: Any, parser: Any = None) -> None:
        from cocotb.task import resume

        from hwpart.board.regs import RM_SELECT
        from hwpart.sim.rm import read_partial_bit

        if not bitstream.partial:  # the full bitstream resets the whole fabric
            super().download(bitstream, parser)  # type: ignore[misc]
            resume(self._reset_rtl)()
            self.to_send.clear()
            self.in_flight.clear()
            self.received.clear()
            if self.shell is not None:  # type: ignore[attr-defined]
                self._check_layout()
            return
        if self.shell is None:  # type: ignore[attr-defined]
            raise RuntimeError("partial bitstream before a shell: load the Overlay first")
        spec = read_partial_bit(bitstream.bitfile_name)
        k = int(spec.extra.get("slot", -1))
        ctrl = next((b for b in self.blocks  # type: ignore[attr-defined]
                     if b.kind == "slot_ctrl" and b.slot == k), None)
        if ctrl is None:
            raise RuntimeError(f"{bitstream.bitfile_name}: partial for slot {k}, the shell has "
                               f"no slot_ctrl_{k}")
        index = self.bank.rm(spec.name).index
        self.ledger.add_pr(self.timing.pr_s(spec.partial_bytes))  # type: ignore[attr-defined]
        self.counts["rm_selects"] += 1
        resp = resume(self._axil_write)(self._rtl_addr(ctrl, RM_SELECT), index)
        self._rtl_check(ctrl.base + RM_SELECT, resp, "a write")
        self._pending_partial = (bitstream.bitfile_name, k)
