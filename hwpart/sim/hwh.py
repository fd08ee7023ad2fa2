"""Generated ``.hwh`` files, so ``pynq.Overlay`` and ``pr_download`` run without Vivado.

PYNQ learns an overlay's address map only from the Vivado hardware handoff.
These generators write the smallest handoff PYNQ 4.0's parsers accept
(checked facts, ``DESIGN.md``), for the board's processing system
(:data:`PS_FAMILIES`):

* PS7 (Zynq-7000, PYNQ-Z2): a ``processing_system7`` module with every FCLK
  parameter ``_HWHZynq`` and the Clocks code read, registers on ``M_AXI_GP0``;
* PS8 (Zynq UltraScale+, KV260, ZCU104): a ``zynq_ultra_ps_e`` module with the
  ``PSU__FPGA_PL{i}_ENABLE`` / ``PSU__CRL_APB__PL{i}_REF_CTRL__*`` parameters
  ``_HWHUltrascale`` reads, registers on ``M_AXI_HPM0_FPD``;

then one ``MEMRANGE`` per addressable IP on that master, each IP a module with
a 4-part VLNV, the lower-case ``c_*`` parameters ``pynq.lib.dma.DMA`` reads,
and a ``SYSTEMINFO`` naming the board's part (device, package, speed grade).
:func:`read_hwh` parses any ``.hwh`` -- generated or from Vivado -- with the
PYNQ parser of its own PS family.

Cell names and the layout hwpart builds are :mod:`hwpart.board.regs`'s
(:func:`~hwpart.board.regs.shell_map`): ``switch`` (PG085), ``dma`` (PG021),
per slot *k* ``decoupler_{k}`` (PG375 with its AXI-Lite register),
``slot_ctrl_{k}`` and ``slot_{k}/rm_info`` -- the one addressable IP inside
reconfigurable partition ``slot_{k}``. PYNQ only knows hierarchies that contain
addressable IP, and ``Overlay.pr_download(region, ...)`` needs ``region`` to be
a hierarchy; the identity block is also what lets the host check which RM a
slot holds. Each partial's ``.hwh`` declares its own ``rm_info``; PYNQ merges
it under ``slot_{k}/`` on download, as with a real DFX design. Any layout may
be written (``blocks=``): the simulated board and the host read every address
back from the ``.hwh``, as they would from Vivado's.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import quoteattr

from hwpart.board import regs


@dataclass(frozen=True)
class PsFamily:
    """What a ``.hwh`` says about the processing system, per family.

    ``window``: the address window (base, size) of ``master``, the PS's
    general-purpose AXI master the shell's registers hang from -- Zynq-7000
    M_AXI_GP0 0x4000_0000-0x7FFF_FFFF (UG585, "System Address Map"), Zynq
    UltraScale+ M_AXI_HPM0_FPD 0xA000_0000-0xAFFF_FFFF in the 32-bit map
    (UG1085, "System Address Map"). ``base``: where Vivado's address editor
    puts the first AXI-Lite peripheral there, and where the hwpart shell starts.
    """

    ps: str
    arch: str  # SYSTEMINFO ARCH
    modtype: str
    vlnv: str
    instance: str
    master: str
    window: tuple[int, int]
    base: int


PS_FAMILIES = {
    "ps7": PsFamily("ps7", "zynq", "processing_system7", "xilinx.com:ip:processing_system7:5.5",
                    "processing_system7_0", "M_AXI_GP0", (0x4000_0000, 0x4000_0000), 0x43C0_0000),
    "ps8": PsFamily("ps8", "zynquplus", "zynq_ultra_ps_e", "xilinx.com:ip:zynq_ultra_ps_e:3.5",
                    "zynq_ultra_ps_e_0", "M_AXI_HPM0_FPD", (0xA000_0000, 0x1000_0000),
                    0xA000_0000),
}
BASE = {k: f.base for k, f in PS_FAMILIES.items()}
CTRL_BASE = BASE["ps7"]
SHELL_MAGIC = b"HWPART-SIM-SHELL 1\n"
#: interface, module type and version of each kind of block in a generated .hwh
_BLOCKS = {"switch": ("S_AXI_CTRL", "axis_switch", "1.1"), "dma": ("S_AXI_LITE", "axi_dma", "7.1"),
           "decoupler": ("s_axi_reg", "dfx_decoupler", "1.0"),
           "slot_ctrl": ("s_axil", "slot_ctrl", "1.0"), "rm_info": ("s_axil", "rm_info", "1.0")}


def _params(d: dict[str, object]) -> str:
    return "".join(f"<PARAMETER NAME={quoteattr(k)} VALUE={quoteattr(str(v))}/>" for k, v in d.items())


def _memrange(inst: str, base: int, size: int, iface: str = "S_AXI",
              master: str = "M_AXI_GP0") -> str:
    return (f'<MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_BASEADDR" BASEVALUE="0x{base:08X}" '
            f'HIGHNAME="C_HIGHADDR" HIGHVALUE="0x{base + size - 1:08X}" INSTANCE="{inst}" '
            f'IS_DATA="TRUE" IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="{master}" '
            f'MEMTYPE="REGISTER" SLAVEBUSINTERFACE="{iface}"/>')


def _module(full: str, inst: str, modtype: str, vlnv: str, params: dict[str, object],
            extra: str = "", bdtype: str | None = None) -> str:
    bd = f' BDTYPE="{bdtype}"' if bdtype else ""
    return (f'<MODULE FULLNAME="/{full}" INSTANCE="{inst}" MODTYPE="{modtype}" VLNV="{vlnv}"{bd}>'
            f"<PARAMETERS>{_params(params)}</PARAMETERS>{extra}</MODULE>")


def _divisors(pl_mhz: float, pll_mhz: float) -> tuple[int, int]:
    div = max(1, round(pll_mhz / pl_mhz))
    return (div, 1) if div <= 63 else (63, -(-div // 63))


def _ps_params(pl_mhz: float, ps: str = "ps7") -> dict[str, object]:
    """PL clock 0 at the board's PL clock, clocks 1-3 off.

    PS7: FCLK divisors from a 1000 MHz IO PLL. PS8: PL0_REF_CTRL from the
    IOPLL at 1500 MHz (its usual setting; PYNQ reads the divisors to program
    the clock, the FREQMHZ parameter for the frequency).
    """
    p: dict[str, object] = {}
    if ps == "ps8":
        d0, d1 = _divisors(pl_mhz, 1500.0)
        for i in range(4):
            on = i == 0
            p[f"PSU__FPGA_PL{i}_ENABLE"] = 1 if on else 0
            p[f"PSU__CRL_APB__PL{i}_REF_CTRL__SRCSEL"] = "IOPLL"
            p[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR0"] = d0 if on else 4
            p[f"PSU__CRL_APB__PL{i}_REF_CTRL__DIVISOR1"] = d1 if on else 1
            p[f"PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ"] = pl_mhz if on else 0
            p[f"PSU__CRL_APB__PL{i}_REF_CTRL__ACT_FREQMHZ"] = pl_mhz if on else 0
        return p
    d0, d1 = _divisors(pl_mhz, 1000.0)
    for i in range(4):
        on = i == 0
        p[f"PCW_FPGA_FCLK{i}_ENABLE"] = 1 if on else 0
        p[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0"] = d0 if on else 1
        p[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1"] = d1 if on else 1
        p[f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ"] = pl_mhz if on else 0
    return p


def ps_freq_param(ps: str, i: int) -> str:
    """The PS parameter that holds PL clock ``i``'s requested frequency in MHz."""
    return (f"PSU__CRL_APB__PL{i}_REF_CTRL__FREQMHZ" if ps == "ps8"
            else f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ")


_PART_7 = re.compile(r"^xc(7z\d+)([a-z]+\d+)(-\w+)$", re.IGNORECASE)  # xc7z020clg400-1
_PART_US = re.compile(r"^(x[a-z]*\d+[a-z]*)-([a-z]+\d+)(-\w+)(?:-[a-z])?$",
                      re.IGNORECASE)  # xczu7ev-ffvc1156-2-e, xck26-sfvc784-2LV-c


def part_info(part: str) -> tuple[str, str, str]:
    """(DEVICE, PACKAGE, SPEEDGRADE) as Vivado writes them in a ``.hwh``'s SYSTEMINFO."""
    m = _PART_7.match(part) or _PART_US.match(part)
    if m is None:
        raise ValueError(f"part {part!r}: not a Zynq-7000 (xc7z020clg400-1) or Zynq "
                         "UltraScale+ (xczu7ev-ffvc1156-2-e) part number")
    return m.group(1).lower(), m.group(2).lower(), m.group(3)


def _doc(name: str, modules: str, ps: str = "ps7", part: str = "xc7z020clg400-1") -> str:
    device, package, speed = part_info(part)
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
            f'<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="0" VIVADOVERSION="hwpart-sim">'
            f'<SYSTEMINFO ARCH="{PS_FAMILIES[ps].arch}" DEVICE="{device}" '
            f'NAME={quoteattr(name)} PACKAGE="{package}" SPEEDGRADE="{speed}"/>'
            f'<EXTERNALPORTS/><MODULES>{modules}</MODULES></EDKSYSTEM>\n')


def ps_module(ranges: list[str], pl_mhz: float, ps: str = "ps7") -> str:
    """The processing system: its PL clocks and one MEMRANGE per addressable IP."""
    f = PS_FAMILIES[ps]
    return _module(f.instance, f.instance, f.modtype, f.vlnv, _ps_params(pl_mhz, ps),
                   extra=(f"<MEMORYMAP>{''.join(ranges)}</MEMORYMAP><BUSINTERFACES>"
                          f'<BUSINTERFACE BUSNAME="ps_axi_periph" NAME="{f.master}" '
                          'TYPE="MASTER" VLNV="xilinx.com:interface:aximm:1.0"/>'
                          "</BUSINTERFACES>"))


def check_window(ps: str, base: int, size: int, what: str) -> None:
    """Refuse a register map that does not fit the PS master's address window."""
    f = PS_FAMILIES[ps]
    lo, n = f.window
    if not (lo <= base and base + size <= lo + n):
        raise ValueError(f"{what}: 0x{base:08X}-0x{base + size - 1:08X} is outside "
                         f"{f.master}'s window 0x{lo:08X}-0x{lo + n - 1:08X} ({ps})")


def shell_hwh(name: str, slots: int, pl_mhz: float, sg: bool, data_width_bits: int,
              base: int = CTRL_BASE, sg_length_width: int = 26, ps: str = "ps7",
              part: str = "xc7z020clg400-1",
              blocks: dict[str, tuple[int, int]] | None = None) -> str:
    """The static shell: PS, AXI DMA, AXI4-Stream switch, per slot a PG375 decoupler, the slot
    control and the RM identity block of an empty partition. ``blocks``: where each block
    sits (name -> (address, range)); default :func:`~hwpart.board.regs.shell_map` from
    ``base``."""
    master = PS_FAMILIES[ps].master
    amap = dict(blocks) if blocks is not None else regs.shell_map(base, slots)
    want = set(regs.shell_map(base, slots))
    if set(amap) != want:
        raise ValueError(f"shell {name}: blocks {sorted(set(amap) ^ want)} missing or unknown "
                         f"for {slots} slots")
    regs.check_overlaps([regs.Block(n, "", None, a, r) for n, (a, r) in amap.items()],
                        f"shell {name}")
    ranges, mods = [], []
    for cell, (addr, size) in amap.items():
        check_window(ps, addr, size, f"shell {name}: {cell}")
        kind, _ = regs.block_kind(cell) or ("", None)
        iface, modtype, ver = _BLOCKS[kind]
        inst = cell.replace("/", "_")
        ranges.append(_memrange(inst, addr, size, iface, master))
        vlnv = f"{regs.VLNV[kind]}:{ver}"
        if kind == "dma":
            params: dict[str, object] = {
                "c_include_sg": int(sg), "c_include_mm2s": 1, "c_include_s2mm": 1,
                "c_m_axi_mm2s_data_width": data_width_bits,
                "c_m_axi_s2mm_data_width": data_width_bits,
                "c_include_mm2s_dre": 0, "c_include_s2mm_dre": 0, "c_micro_dma": 0,
                "c_sg_length_width": sg_length_width, "c_sg_include_stscntrl_strm": 0}
        elif kind == "switch":
            params = {"NUM_SI": 1 + slots, "NUM_MI": 1 + slots, "ROUTING_MODE": 1}
        elif kind == "decoupler":
            params = {"HAS_AXI_LITE": 1, "HAS_SIGNAL_CONTROL": 0}
        elif kind == "slot_ctrl":
            params = {"NUM_RMS": 1}
        else:
            params = {"RM": "empty"}
        mods.append(_module(cell, inst, modtype, vlnv, params))
    for k in range(slots):
        mods.append(_module(f"slot_{k}", f"slot_{k}", "slot", "xilinx.com:ip:rp:1.0",
                            {"ENABLE_DFX": "true"}, bdtype="BLOCK_CONTAINER"))
    return _doc(name, ps_module(ranges, pl_mhz, ps) + "".join(mods), ps, part)


def partial_hwh(rm_name: str, info_address: int, ps: str = "ps7",
                part: str = "xc7z020clg400-1") -> str:
    """A partial for one slot: only its identity block (fullpath ``rm_info``), at the
    address the shell gives ``slot_{k}/rm_info`` -- so a partial is built per slot, as DFX
    partials are (one per RM per partition). It has no PS module: its family is in
    SYSTEMINFO's ARCH, as in Vivado's partial handoffs."""
    r = _memrange("rm_info", info_address, regs.WINDOW, "s_axil", PS_FAMILIES[ps].master)
    return _doc(rm_name, _module("rm_info", "rm_info", "rm_info", f"{regs.VLNV['rm_info']}:1.0",
                                 {"RM": rm_name}, extra=f"<MEMORYMAP>{r}</MEMORYMAP>"), ps, part)


# --------------------------------------------------------------------------- parsing

def hwh_family(path: str | Path) -> tuple[str, str]:
    """(``ps7``/``ps8``, SYSTEMINFO DEVICE) of a ``.hwh``: from its PS module, else (a
    partial's handoff has none) from SYSTEMINFO's ARCH. ValueError naming the file
    for anything else (Versal, a file that is not a handoff)."""
    try:
        root = ElementTree.parse(str(path)).getroot()
    except (ElementTree.ParseError, OSError) as exc:
        raise ValueError(f"{path}: not a readable .hwh ({exc})") from exc
    info = root.find("SYSTEMINFO")
    device = info.get("DEVICE", "") if info is not None else ""
    modtypes = {m.get("MODTYPE") for m in root.iter("MODULE")}
    for f in PS_FAMILIES.values():
        if f.modtype in modtypes:
            return f.ps, device
    arch = info.get("ARCH", "") if info is not None else ""
    for f in PS_FAMILIES.values():
        if f.arch == arch:
            return f.ps, device
    raise ValueError(f"{path}: no Zynq-7000 or Zynq UltraScale+ processing system "
                     f"(SYSTEMINFO ARCH={arch!r}); the simulated board models those two")


def parser_class(ps: str) -> Any:
    """PYNQ's own ``.hwh`` parser for a PS family (``_HWHZynq`` / ``_HWHUltrascale``)."""
    from pynq.pl_server.hwh_parser import _HWHUltrascale, _HWHZynq

    return _HWHUltrascale if ps == "ps8" else _HWHZynq


def read_hwh(path: str | Path, partial: bool = False) -> Any:
    """Parse ``path`` with PYNQ's parser for its PS family; add what ``Overlay`` reads.

    Off a board PYNQ binds its ``HWH`` name to the abstract parser, so the
    family is chosen here from the file. A full design's clocks get the
    ``frequency`` ``Overlay.download`` sets the PL clocks from (PYNQ 4.0's
    embedded device gets it from ``pynqmetadata``), read from the PS's own
    parameter (:func:`ps_freq_param`).
    """
    ps, _ = hwh_family(path)
    parser = parser_class(ps)(hwh_name=str(path))
    parser.systemgraph = None
    parser.bin_data = parser.xclbin_data = parser.dtbo_data = None
    if not partial:
        f = PS_FAMILIES[ps]
        mod = next((v for v in parser.ip_dict.values()
                    if v.get("type", "").startswith(f.vlnv.rsplit(":", 1)[0])), None)
        if mod is None:
            raise ValueError(f"{path}: full design without a {f.modtype} module")
        for i, clk in parser.clock_dict.items():
            clk["frequency"] = float(mod["parameters"].get(ps_freq_param(ps, i), 0) or 0)
    return parser


def write_shell_bit(path: Path, info: dict[str, Any]) -> None:
    """The simulated full bitstream: a magic line and the shell's parameters."""
    path.write_bytes(SHELL_MAGIC + json.dumps(info, indent=1).encode())


def read_shell_bit(path: Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if not data.startswith(SHELL_MAGIC):
        raise ValueError(f"{path}: not a simulated shell bitstream")
    return json.loads(data[len(SHELL_MAGIC):])
