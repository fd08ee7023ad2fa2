"""Generated ``.hwh`` files, so ``pynq.Overlay`` and ``pr_download`` run without Vivado.

PYNQ learns an overlay's address map only from the Vivado hardware handoff.
These generators write the smallest handoff PYNQ 4.0's ``_HWHZynq`` parser
accepts (checked facts, ``DESIGN.md``): a ``processing_system7`` module with
every FCLK parameter the parser and the Clocks code read, one ``MEMRANGE`` per
addressable IP on ``M_AXI_GP0``, each IP a module with a 4-part VLNV, and the
lower-case ``c_*`` parameters ``pynq.lib.dma.DMA`` reads.

Address map and cell names are those of the Vivado shell (``hls/shell_bd.tcl``,
``hwpart.overlay.tcl.address_map``) and of the RTL shell's 16-bit control
window (``sim/rtl/shell_top.v``), from ``base`` (0x43C0_0000 on PS7,
0xA000_0000 on PS8): ``switch`` at +0x0000 (PG085), slot *k*'s control
``decoupler_{k}`` at +0x1000*(1+k), ``dma`` (PG021) at +0x10000, and inside
slot *k*'s window at +0x800 the RM's identity window ``slot_{k}/rm_info`` --
the one addressable IP inside reconfigurable partition ``slot_{k}``. PYNQ only
knows hierarchies that contain addressable IP, and
``Overlay.pr_download(region, ...)`` needs ``region`` to be a hierarchy; the
identity window is also what lets the host check which RM a slot holds. Each
partial's ``.hwh`` declares its own ``rm_info``; PYNQ merges it under
``slot_{k}/`` on download, as with a real DFX design.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

BASE = {"ps7": 0x43C0_0000, "ps8": 0xA000_0000}
DMA_OFFSET = 0x1_0000
DMA_RANGE = 0x1_0000
CTRL_BASE = BASE["ps7"]
SLOT_STRIDE = 0x1000
RM_INFO_OFFSET = 0x800
RM_INFO_RANGE = 0x800
PS_VLNV = "xilinx.com:ip:processing_system7:5.5"
SHELL_MAGIC = b"HWPART-SIM-SHELL 1\n"


def slot_ctrl_addr(k: int, base: int = CTRL_BASE) -> int:
    return base + SLOT_STRIDE * (1 + k)


def _params(d: dict[str, object]) -> str:
    return "".join(f"<PARAMETER NAME={quoteattr(k)} VALUE={quoteattr(str(v))}/>" for k, v in d.items())


def _memrange(inst: str, base: int, size: int, iface: str = "S_AXI") -> str:
    return (f'<MEMRANGE ADDRESSBLOCK="Reg" BASENAME="C_BASEADDR" BASEVALUE="0x{base:08X}" '
            f'HIGHNAME="C_HIGHADDR" HIGHVALUE="0x{base + size - 1:08X}" INSTANCE="{inst}" '
            f'IS_DATA="TRUE" IS_INSTRUCTION="TRUE" MASTERBUSINTERFACE="M_AXI_GP0" '
            f'MEMTYPE="REGISTER" SLAVEBUSINTERFACE="{iface}"/>')


def _module(full: str, inst: str, modtype: str, vlnv: str, params: dict[str, object],
            extra: str = "", bdtype: str | None = None) -> str:
    bd = f' BDTYPE="{bdtype}"' if bdtype else ""
    return (f'<MODULE FULLNAME="/{full}" INSTANCE="{inst}" MODTYPE="{modtype}" VLNV="{vlnv}"{bd}>'
            f"<PARAMETERS>{_params(params)}</PARAMETERS>{extra}</MODULE>")


def _ps_params(pl_mhz: float) -> dict[str, object]:
    """FCLK0 at the board's PL clock (divisors from a 1000 MHz IO PLL), FCLK1-3 off."""
    div = max(1, round(1000.0 / pl_mhz))
    d0, d1 = (div, 1) if div <= 63 else (63, -(-div // 63))
    p: dict[str, object] = {}
    for i in range(4):
        on = i == 0
        p[f"PCW_FPGA_FCLK{i}_ENABLE"] = 1 if on else 0
        p[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR0"] = d0 if on else 1
        p[f"PCW_FCLK{i}_PERIPHERAL_DIVISOR1"] = d1 if on else 1
        p[f"PCW_FPGA{i}_PERIPHERAL_FREQMHZ"] = pl_mhz if on else 0
    return p


def _doc(name: str, modules: str) -> str:
    return ('<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
            f'<EDKSYSTEM EDWVERSION="1.2" TIMESTAMP="0" VIVADOVERSION="hwpart-sim">'
            f'<SYSTEMINFO ARCH="zynq" DEVICE="7z020" NAME={quoteattr(name)} PACKAGE="clg400" '
            f'SPEEDGRADE="-1"/><EXTERNALPORTS/><MODULES>{modules}</MODULES></EDKSYSTEM>\n')


def shell_hwh(name: str, slots: int, pl_mhz: float, sg: bool, data_width_bits: int,
              base: int = CTRL_BASE, sg_length_width: int = 26) -> str:
    """The static shell: PS, AXI DMA, AXI4-Stream switch, per-slot control, empty partitions."""
    ranges = [_memrange("dma", base + DMA_OFFSET, DMA_RANGE, "S_AXI_LITE"),
              _memrange("switch", base, SLOT_STRIDE, "S_AXI_CTRL")]
    mods = []
    for k in range(slots):
        a = slot_ctrl_addr(k, base)
        ranges.append(_memrange(f"decoupler_{k}", a, RM_INFO_OFFSET, "s_axi_reg"))
        ranges.append(_memrange(f"slot_{k}_rm_info", a + RM_INFO_OFFSET, RM_INFO_RANGE))
        mods.append(_module(f"decoupler_{k}", f"decoupler_{k}", "slot_ctrl",
                            "hwpart:user:slot_ctrl:1.0", {"SLOT_INDEX": k}))
        mods.append(_module(f"slot_{k}/rm_info", f"slot_{k}_rm_info", "rm_info",
                            "hwpart:user:rm_info:1.0", {"RM": "empty"}))
        mods.append(_module(f"slot_{k}", f"slot_{k}", "slot", "xilinx.com:ip:rp:1.0",
                            {"ENABLE_DFX": "true"}, bdtype="BLOCK_CONTAINER"))
    ps = _module("processing_system7_0", "processing_system7_0", "processing_system7", PS_VLNV,
                 _ps_params(pl_mhz),
                 extra=(f"<MEMORYMAP>{''.join(ranges)}</MEMORYMAP><BUSINTERFACES>"
                        '<BUSINTERFACE BUSNAME="ps7_axi_periph" NAME="M_AXI_GP0" TYPE="MASTER" '
                        'VLNV="xilinx.com:interface:aximm:1.0"/></BUSINTERFACES>'))
    dma = _module("dma", "dma", "axi_dma", "xilinx.com:ip:axi_dma:7.1", {
        "c_include_sg": int(sg), "c_include_mm2s": 1, "c_include_s2mm": 1,
        "c_m_axi_mm2s_data_width": data_width_bits, "c_m_axi_s2mm_data_width": data_width_bits,
        "c_include_mm2s_dre": 0, "c_include_s2mm_dre": 0, "c_micro_dma": 0,
        "c_sg_length_width": sg_length_width, "c_sg_include_stscntrl_strm": 0})
    sw = _module("switch", "switch", "axis_switch", "xilinx.com:ip:axis_switch:1.1",
                 {"NUM_SI": 1 + slots, "NUM_MI": 1 + slots, "ROUTING_MODE": 1})
    return _doc(name, ps + dma + sw + "".join(mods))


def partial_hwh(rm_name: str, slot_base: int) -> str:
    """A partial for one slot: only its identity window (fullpath ``rm_info``).

    The address is the slot's window, so a partial is built per slot -- as DFX
    partials are (one per RM per partition).
    """
    mm = f"<MEMORYMAP>{_memrange('rm_info', slot_base + RM_INFO_OFFSET, RM_INFO_RANGE)}</MEMORYMAP>"
    return _doc(rm_name, _module("rm_info", "rm_info", "rm_info", "hwpart:user:rm_info:1.0",
                                 {"RM": rm_name}, extra=mm))


def write_shell_bit(path: Path, info: dict[str, Any]) -> None:
    """The simulated full bitstream: a magic line and the shell's parameters."""
    path.write_bytes(SHELL_MAGIC + json.dumps(info, indent=1).encode())


def read_shell_bit(path: Path) -> dict[str, Any]:
    data = Path(path).read_bytes()
    if not data.startswith(SHELL_MAGIC):
        raise ValueError(f"{path}: not a simulated shell bitstream")
    return json.loads(data[len(SHELL_MAGIC):])
