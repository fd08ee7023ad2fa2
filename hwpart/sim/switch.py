"""AXI4-Stream switch (Xilinx PG085) register model, same map as ``sim/rtl/axis_switch.v``.

Only the control path is modeled here (which slave each master takes); the
packets themselves move in :mod:`hwpart.sim.board`. The rules are the ones the
RTL implements and ``sim/README.md`` documents, so host code that drives this
model drives the RTL shell the same way:

* ``0x00`` CTRL: writing bit 1 commits the MI_MUX values. Packets move whole
  in this model, so a commit never lands mid-packet and reads back 0 at once.
* ``0x40 + 4*i`` MI_MUX of master *i*: bits [7:0] slave index, bit 31 disables.
  Reset value ``0x8000_0000`` (every master disabled). Writes take effect on commit.
* A slave index ``>= NUM_SI`` disables the master; two masters picking one slave:
  the lower-numbered master gets it (no broadcast).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwpart.board.regs import SW_COMMIT as COMMIT
from hwpart.board.regs import SW_CTRL as CTRL
from hwpart.board.regs import SW_DISABLE as DISABLE
from hwpart.board.regs import SW_MI_MUX as MI_MUX


@dataclass
class SwitchModel:
    num_si: int
    num_mi: int
    programmed: list[int] = field(default_factory=list)
    active: list[int] = field(default_factory=list)
    commits: int = 0

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.programmed = [DISABLE] * self.num_mi
        self.active = [DISABLE] * self.num_mi

    def read(self, offset: int) -> int:
        if offset == CTRL:
            return 0  # an update never waits for a packet boundary here
        i = (offset - MI_MUX) // 4
        if offset >= MI_MUX and offset % 4 == 0 and i < self.num_mi:
            return self.programmed[i]
        return 0

    def write(self, offset: int, value: int) -> bool:
        """Returns True when routing changed (the board then moves held packets)."""
        if offset == CTRL:
            if value & COMMIT:
                self.active = list(self.programmed)
                self.commits += 1
                return True
            return False
        i = (offset - MI_MUX) // 4
        if offset >= MI_MUX and offset % 4 == 0 and i < self.num_mi:
            self.programmed[i] = value & 0xFFFF_FFFF
        return False

    def master_for(self, slave: int) -> int | None:
        """The master that takes ``slave``'s packets now, or None (back-pressured)."""
        for m, v in enumerate(self.active):
            if v & DISABLE or (v & 0xFF) >= self.num_si:
                continue
            if (v & 0xFF) == slave:
                return m
        return None
