"""A reconfigurable slot: its control registers, its DFX decoupler and the RM it holds.

Same register map as ``sim/rtl/slot_ctrl.v`` (``sim/README.md``), base
``0x1000 * (1 + k)`` in the shell's control window:

| offset | name | meaning |
|---|---|---|
| 0x00 | DECOUPLE | bit 0: request decoupling (as PG375's register 0x0) |
| 0x04 | STATUS | bit 0 decoupled, bit 1 RP idle, bit 2 RM in reset (RO) |
| 0x08 | RM_SELECT | RM of the slot's bank to make active (RTL stand-in for pr_download) |
| 0x0C | RM_RESET | bit 0: hold the RM in reset |
| 0x10 | RM_ACTIVE | RM now active (RO) |
| 0x14 | NUM_RMS | how many RMs the bank holds (RO) |

The RTL slot has every RM compiled in and selects one; here the bank is the
list of RMs this slot has received by ``pr_download`` (the newest is active),
so the same RM_SELECT writes work on both. Packets move whole, so the
decoupler is always packet-safe: a packet is either fully inside the RM and
already computed, or still waiting at the switch. Decoupled, in reset or empty,
the slot accepts nothing -- traffic for it waits at the switch (back-pressure),
it is neither lost nor computed.

``0x800..0xFFF`` of the window is the RM's identity (``slot_{k}/rm_info`` in the
``.hwh``; the only addressable IP inside a reconfigurable partition, which is
what lets PYNQ see the partition as a hierarchy it can ``pr_download`` into):
0x800 magic ``'HWRM'``, 0x804 the first 4 bytes of sha256(RM name), 0x808 n_in,
0x80C n_out. Reads 0 when the slot is empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hwpart.sim.regs import (  # noqa: F401  (the map, re-exported for callers of this model)
    DECOUPLE,
    NUM_RMS,
    RM_ACTIVE,
    RM_INFO,
    RM_MAGIC,
    RM_RESET,
    RM_SELECT,
    ST_DECOUPLED,
    ST_IN_RESET,
    ST_RP_IDLE,
    STATUS,
    rm_id,
)
from hwpart.sim.regs import RM_EMPTY as EMPTY
from hwpart.sim.rm import SimRM


@dataclass
class SlotModel:
    index: int
    decouple: bool = False
    reset: bool = False
    bank: list[SimRM] = field(default_factory=list)
    active: int = EMPTY
    busy_until: float = 0.0  # modeled time the RM is busy until
    unsafe_swaps: int = 0  # partials loaded while coupled (hardware would glitch)
    processed: int = 0  # packets computed

    @property
    def rm(self) -> SimRM | None:
        return self.bank[self.active] if self.active < len(self.bank) else None

    @property
    def accepting(self) -> bool:
        return not self.decouple and not self.reset and self.rm is not None

    def status(self) -> int:
        # packets never stay inside the RP here, so it is idle whenever it is read
        return (ST_DECOUPLED if self.decouple else 0) | ST_RP_IDLE | (ST_IN_RESET if self.reset else 0)

    def install(self, rm: SimRM) -> None:
        """A partial bitstream landed: the RM joins the bank and becomes active."""
        if not self.decouple:
            self.unsafe_swaps += 1
        for i, old in enumerate(self.bank):
            if old.spec.name == rm.spec.name:
                self.bank[i] = rm
                self.active = i
                return
        self.bank.append(rm)
        self.active = len(self.bank) - 1

    def clear(self) -> None:
        self.decouple = self.reset = False
        self.bank.clear()
        self.active = EMPTY
        self.busy_until = 0.0

    def read(self, offset: int) -> int:
        if offset == DECOUPLE:
            return int(self.decouple)
        if offset == STATUS:
            return self.status()
        if offset == RM_SELECT or offset == RM_ACTIVE:
            return self.active
        if offset == RM_RESET:
            return int(self.reset)
        if offset == NUM_RMS:
            return len(self.bank)
        rm = self.rm
        if rm is not None and RM_INFO <= offset < RM_INFO + 16:
            return [RM_MAGIC, rm_id(rm.spec.name), rm.spec.n_in, rm.spec.n_out][(offset - RM_INFO) // 4]
        return 0

    def write(self, offset: int, value: int) -> bool:
        """Returns True when the slot may now accept traffic it refused before."""
        if offset == DECOUPLE:
            self.decouple = bool(value & 1)
        elif offset == RM_SELECT:
            sel = value & 0xFF
            if sel != self.active:
                if not self.decouple:
                    self.unsafe_swaps += 1
                self.active = sel if sel < len(self.bank) else EMPTY
        elif offset == RM_RESET:
            self.reset = bool(value & 1)
        return self.accepting
