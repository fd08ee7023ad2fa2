"""Register maps of the hwpart shell: one source for the board side, the sim models and the RTL bridge.

* AXI4-Stream switch, Xilinx PG085 (``sim/rtl/axis_switch.v``): CTRL, MI_MUX.
* Slot control and DFX decoupler (``sim/rtl/slot_ctrl.v``, ``sim/README.md``),
  with the RM identity window at +0x800.
* AXI DMA, Xilinx PG021: per-channel registers (S2MM at +0x30), DMASR bits and
  scatter-gather descriptor bits.

The address map (where each block sits in the control window) is
:mod:`hwpart.sim.hwh`'s.
"""

from __future__ import annotations

import hashlib

# ---------------------------------------------------------------- PG085 switch
SW_CTRL = 0x00
SW_MI_MUX = 0x40  # + 4*i for master i: bits [7:0] slave index, bit 31 disables
SW_COMMIT = 1 << 1
SW_DISABLE = 1 << 31

# ---------------------------------------------------------------- slot control
DECOUPLE, STATUS, RM_SELECT, RM_RESET, RM_ACTIVE, NUM_RMS = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14
ST_DECOUPLED, ST_RP_IDLE, ST_IN_RESET = 1 << 0, 1 << 1, 1 << 2  # STATUS bits
RM_INFO = 0x800  # magic, rm_id, n_in, n_out
RM_MAGIC = 0x4D52_5748  # 'HWRM' little-endian
RM_EMPTY = 0xFF  # RM_ACTIVE of an empty slot


def rm_id(name: str) -> int:
    """The RM identity word at RM_INFO + 4: the first 4 bytes of sha256(name)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")


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
