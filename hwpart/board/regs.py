"""The hwpart shell's register maps and its default address map: one source for the board
side, the simulated board, the RTL shell and the Vivado Tcl.

Blocks of the shell (cell names as in ``hls/shell_bd.tcl`` and the ``.hwh``):

* ``switch``: AXI4-Stream switch, Xilinx PG085 (``sim/rtl/axis_switch.v``): CTRL, MI_MUX.
* ``dma``: AXI DMA, Xilinx PG021: per-channel registers (S2MM at +0x30), DMASR bits and
  scatter-gather descriptor bits. Not in the RTL shell (its stream ends are the testbench).
* ``decoupler_{k}``: DFX Decoupler, Xilinx PG375, built with ``HAS_AXI_LITE``: its one
  register at 0x0, bit 0 = decouple; a read returns the decoupling status. It decouples
  *at once*, with no notion of packets (``sim/rtl/dfx_decoupler.v``).
* ``slot_ctrl_{k}``: hwpart's own block (``sim/rtl/slot_ctrl.v``, a module reference in the
  Tcl): watches the streams into and out of the reconfigurable partition (RP idle), holds
  the RM in reset, and (RTL simulation and simulated board only) selects an RM of the
  slot's bank, the stand-in for the configuration port.
* ``slot_{k}/rm_info``: hwpart's RM identity block (``sim/rtl/rm_info.v``), the one
  addressable IP inside reconfigurable partition ``slot_{k}``: it is what makes the
  partition a PYNQ hierarchy for ``pr_download``, and what lets the host check which RM
  a slot holds.

Where each block sits is the loaded overlay's ``.hwh`` (``ip_dict``): the host and the
simulated board read it from there. :func:`shell_map` is only the layout hwpart *builds*
(the Tcl's ``assign_bd_address``, the generated ``.hwh`` and the RTL's defaults).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

# ---------------------------------------------------------------- PG085 switch
SW_CTRL = 0x00
SW_MI_MUX = 0x40  # + 4*i for master i: bits [7:0] slave index, bit 31 disables
SW_COMMIT = 1 << 1
SW_DISABLE = 1 << 31

# ---------------------------------------------------------------- PG375 DFX decoupler
DECOUPLE = 0x00  # the one AXI-Lite register (HAS_AXI_LITE): bit 0 decouple; reads the status

# ---------------------------------------------------------------- slot control (hwpart)
SLOT_ID, STATUS, RM_SELECT, RM_RESET, RM_ACTIVE, NUM_RMS = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
SLOT_MAGIC = 0x4353_5748  # SLOT_ID: 'HWSC' little-endian
ST_DECOUPLED, ST_RP_IDLE, ST_IN_RESET = 1 << 0, 1 << 1, 1 << 2  # STATUS bits
RM_EMPTY = 0xFF  # RM_ACTIVE of an empty slot

# ---------------------------------------------------------------- RM identity (hwpart)
RM_INFO = 0x00  # magic, rm_id, n_in, n_out at RM_INFO + 0, 4, 8, 12 of the rm_info block
RM_MAGIC = 0x4D52_5748  # 'HWRM' little-endian


def rm_id(name: str) -> int:
    """The RM identity word at RM_INFO + 4: the first 4 bytes of sha256(name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


# ---------------------------------------------------------------- the built layout
SWITCH_OFFSET, DMA_OFFSET, SLOT_CTRL_OFFSET, RM_INFO_OFFSET = 0x0_0000, 0x1_0000, 0x2_0000, 0x3_0000
WINDOW, DMA_RANGE = 0x1000, 0x1_0000
MAX_SLOTS = 15  # decoupler_{k} at 0x1000 * (1 + k) stays below the DMA

#: the IP type (VLNV without version) of each kind of block, as the ``.hwh`` names it
VLNV = {"switch": "xilinx.com:ip:axis_switch", "dma": "xilinx.com:ip:axi_dma",
        "decoupler": "xilinx.com:ip:dfx_decoupler", "slot_ctrl": "hwpart.org:user:slot_ctrl",
        "rm_info": "hwpart.org:user:rm_info"}


def block_names(k: int) -> tuple[str, str, str]:
    """Slot ``k``'s blocks: (decoupler, slot control, RM identity), as ``ip_dict`` keys."""
    return f"decoupler_{k}", f"slot_ctrl_{k}", f"slot_{k}/rm_info"


_SLOT_CELL = re.compile(r"^(?:decoupler_(?P<decoupler>\d+)|slot_ctrl_(?P<slot_ctrl>\d+)"
                        r"|slot_(?P<rm_info>\d+)/rm_info)$")


def block_kind(name: str, vlnv: str = "") -> tuple[str, int | None] | None:
    """(kind, slot) of a shell block from its ``ip_dict`` name and type (VLNV), None for an
    IP that is not one of the shell's: the kind from the IP's type, as PYNQ binds drivers,
    the slot from the cell name, which is the only place a design says which slot a
    block belongs to. Without a type, the name alone says both."""
    m = _SLOT_CELL.match(name)
    slot = int(m[m.lastgroup]) if m and m.lastgroup else None
    if vlnv:
        kind = next((k for k, v in VLNV.items() if vlnv.startswith(v + ":")), None)
    else:
        kind = name if name in ("switch", "dma") else m.lastgroup if m else None
    if kind is None or (kind in ("decoupler", "slot_ctrl", "rm_info")) != (slot is not None):
        return None
    return kind, slot


def shell_map(base: int, slots: int) -> dict[str, tuple[int, int]]:
    """The layout hwpart builds: block name -> (address, range), from ``base``.

    | block | address |
    |---|---|
    | switch | base + 0x0_0000 |
    | decoupler_{k} | base + 0x0_1000 * (1 + k) |
    | dma | base + 0x1_0000 (64 KiB) |
    | slot_ctrl_{k} | base + 0x2_0000 + 0x1000 * k |
    | slot_{k}/rm_info | base + 0x3_0000 + 0x1000 * k |

    Every other block is 4 KiB.
    """
    if not 0 < slots <= MAX_SLOTS:
        raise ValueError(f"{slots} slots: the shell's layout has room for 1..{MAX_SLOTS}")
    m = {"switch": (base + SWITCH_OFFSET, WINDOW)}
    for k in range(slots):
        dec, ctrl, info = block_names(k)
        m[dec] = (base + WINDOW * (1 + k), WINDOW)
        m[ctrl] = (base + SLOT_CTRL_OFFSET + WINDOW * k, WINDOW)
        m[info] = (base + RM_INFO_OFFSET + WINDOW * k, WINDOW)
    m["dma"] = (base + DMA_OFFSET, DMA_RANGE)
    return m


@dataclass(frozen=True)
class Block:
    """One addressable block of the loaded shell, where its ``.hwh`` puts it."""

    name: str  # the ip_dict key, e.g. ``decoupler_0``
    kind: str  # switch, dma, decoupler, slot_ctrl, rm_info
    slot: int | None
    base: int
    range: int

    def __contains__(self, a: int) -> bool:
        return self.base <= a < self.base + self.range


def shell_blocks(ip_dict: dict[str, Any], slots: int, where: str) -> list[Block]:
    """The shell's blocks in a parsed ``.hwh`` (PYNQ's ``ip_dict``), by IP type and cell
    name (:func:`block_kind`); a missing block or an overlap is refused, naming the
    ``.hwh`` and the cell."""
    out: list[Block] = []
    for name, ip in ip_dict.items():
        kind = block_kind(name, str(ip.get("type", "")))
        if kind is None or "phys_addr" not in ip:
            continue
        out.append(Block(name, kind[0], kind[1], int(ip["phys_addr"]), int(ip["addr_range"])))
    want = {"switch", "dma", *(n for k in range(slots) for n in block_names(k))}
    names = [b.name for b in out]
    missing = sorted(want - set(names))
    if missing:
        raise ValueError(f"{where}: no {', '.join(missing)} in the design (a {slots}-slot "
                         "hwpart shell has a switch, a dma and per slot decoupler_K, "
                         "slot_ctrl_K and slot_K/rm_info)")
    return check_overlaps(out, where)


def check_overlaps(blocks: list[Block], where: str) -> list[Block]:
    """``blocks`` sorted by address; ValueError naming the first two that overlap."""
    out = sorted(blocks, key=lambda b: b.base)
    for a, b in zip(out, out[1:], strict=False):
        if a.base + a.range > b.base:
            raise ValueError(f"{where}: {a.name} 0x{a.base:08X}+0x{a.range:X} overlaps "
                             f"{b.name} at 0x{b.base:08X}")
    return out


# ---------------------------------------------------------------- PG021 AXI DMA
DMACR, DMASR, CURDESC, CURDESC_MSB, TAILDESC, TAILDESC_MSB = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
ADDR, ADDR_MSB, LENGTH = 0x18, 0x1C, 0x28
S2MM_OFFSET = 0x30
MM2S_DMASR, S2MM_DMASR = DMASR, S2MM_OFFSET + DMASR

RS, RESET = 1 << 0, 1 << 2  # DMACR
HALTED, IDLE, SG_INCLD = 1 << 0, 1 << 1, 1 << 3  # DMASR
DMA_INT_ERR, DMA_SLV_ERR, DMA_DEC_ERR = 1 << 4, 1 << 5, 1 << 6
SG_INT_ERR, SG_SLV_ERR, SG_DEC_ERR = 1 << 8, 1 << 9, 1 << 10
IOC_IRQ, DLY_IRQ, ERR_IRQ = 1 << 12, 1 << 13, 1 << 14
DMASR_ERRORS = {DMA_INT_ERR: "DMAIntErr (internal: length 0 or packet longer than the buffer)",
                DMA_SLV_ERR: "DMASlvErr (slave error on the memory interface)",
                DMA_DEC_ERR: "DMADecErr (invalid address)", SG_INT_ERR: "SGIntErr",
                SG_SLV_ERR: "SGSlvErr", SG_DEC_ERR: "SGDecErr (invalid descriptor address)"}

D_SOF, D_EOF, D_CMPLT = 1 << 27, 1 << 26, 1 << 31  # descriptor control/status bits we use
LEN_MASK = 0x03FF_FFFF
