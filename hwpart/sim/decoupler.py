"""A reconfigurable slot as the simulated board models it: its PG375 decoupler, hwpart's slot
control, the RM identity block and the RM the partition holds.

Three blocks per slot, each at the address the shell's ``.hwh`` gives it
(:mod:`hwpart.board.regs` has the registers):

* ``decoupler_{k}``, Xilinx DFX Decoupler (PG375) with ``HAS_AXI_LITE``: one
  register at 0x0, bit 0 = decouple; a read returns the status. Like the IP it
  decouples *at once*: a packet the RP is still streaming when decouple lands
  is cut (its output never gets its last beat, so the S2MM that waits for it
  never completes), and a complete packet held at the RP's output by
  back-pressure stays there until the partition is reconfigured or reset,
  which loses it. That is why the host driver stops routing into the slot and
  waits for *RP idle* (slot control STATUS bit 1) before it decouples.
* ``slot_ctrl_{k}``, hwpart's own block: SLOT_ID, STATUS (decoupled, RP idle,
  RM in reset), RM_SELECT / RM_ACTIVE / NUM_RMS over the slot's bank, RM_RESET.
  The RTL slot has every RM compiled in and selects one; here the bank is the
  list of RMs this slot has received by ``pr_download`` (the newest active),
  so the same RM_SELECT writes work on both. A Vivado shell has one RM per
  partition at a time (NUM_RMS = 1).
* ``slot_{k}/rm_info``, the identity of the RM now active: magic, rm_id,
  n_in, n_out; 0 when empty.

Packets move whole through the simulated fabric; what is "inside the RP" is
judged on the modeled timeline: a packet is in it from its accept time until
its last output beat's time, or while it waits at the RP's output.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hwpart.board.regs import (
    DECOUPLE,
    NUM_RMS,
    RM_ACTIVE,
    RM_INFO,
    RM_MAGIC,
    RM_RESET,
    RM_SELECT,
    SLOT_ID,
    SLOT_MAGIC,
    ST_DECOUPLED,
    ST_IN_RESET,
    ST_RP_IDLE,
    STATUS,
    rm_id,
)
from hwpart.board.regs import RM_EMPTY as EMPTY
from hwpart.sim.dma import Packet
from hwpart.sim.rm import SimRM


@dataclass
class SlotModel:
    index: int
    decouple: bool = False
    reset: bool = False
    bank: list[SimRM] = field(default_factory=list)
    active: int = EMPTY
    busy_until: float = 0.0  # modeled time the RM's last accepted packet has left it
    out: deque[Packet] = field(default_factory=deque)  # RM output not yet taken by the switch
    unsafe_swaps: int = 0  # partials loaded while coupled (hardware would glitch)
    processed: int = 0  # packets computed
    cut: int = 0  # packets cut or lost in the RP by a decouple, a swap or a reset
    # packets that left :attr:`out` but whose last beat is still ahead on the modeled timeline
    leaving: deque[Packet] = field(default_factory=deque)

    @property
    def rm(self) -> SimRM | None:
        return self.bank[self.active] if self.active < len(self.bank) else None

    @property
    def accepting(self) -> bool:
        return not self.decouple and not self.reset and self.rm is not None

    def idle(self, now: float) -> bool:
        """The RP holds nothing: no packet being computed or streamed, none waiting to leave."""
        while self.leaving and self.leaving[0].ready_s <= now:
            self.leaving.popleft()
        return not self.out and not self.leaving and self.busy_until <= now

    def accept(self, data: Packet, width_bits: int, t_acc: float,
               price: Callable[[SimRM, int], float]) -> tuple[float, int]:
        """Compute one packet that entered at ``t_acc``; ``price(rm, samples)`` is its modeled
        RM time. Its output waits in :attr:`out` for the switch and shares the input's
        ``flight``, so a cut downstream reaches the transfer it belongs to. Returns (RM
        seconds, samples)."""
        rm = self.rm
        assert rm is not None
        result, n = rm.process(data.data, width_bits)
        rm_s = price(rm, n)
        self.busy_until = max(t_acc, self.busy_until) + rm_s
        self.processed += 1
        self.out.append(Packet(result, self.busy_until, flight=data.flight))
        return rm_s, n

    def leave(self, pkt: Packet) -> None:
        """The switch takes ``pkt`` (the head of :attr:`out`) on."""
        self.leaving.append(pkt)

    def _lose(self, now: float, held_too: bool) -> None:
        """Cut what the RP is still streaming at ``now``; ``held_too``: lose the complete
        packets waiting at its output as well (reconfiguration, reset)."""
        held = {id(p) for p in self.out} if held_too else set()
        for p in [*self.leaving, *self.out]:
            if p.ready_s > now or id(p) in held:
                p.cut()
                self.cut += 1
        self.leaving.clear()
        keep = [p for p in self.out if not p.flight.cut]
        self.out.clear()  # in place: the board's fabric holds this deque
        self.out.extend(keep)

    def install(self, rm: SimRM, now: float) -> None:
        """A partial bitstream landed: the RM joins the bank and becomes active; whatever
        the partition held is gone."""
        if not self.decouple:
            self.unsafe_swaps += 1
        self._lose(now, held_too=True)
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
        self.out.clear()
        self.active = EMPTY
        self.leaving.clear()
        self.busy_until = 0.0

    # ---------------------------------------------------------------- registers

    def read_decoupler(self, offset: int) -> int:
        return int(self.decouple) if offset == DECOUPLE else 0

    def write_decoupler(self, offset: int, value: int, now: float) -> bool:
        """PG375's register: decouples at once (see the module docstring). Returns True when
        the slot may now accept traffic."""
        if offset == DECOUPLE:
            on = bool(value & 1)
            if on and not self.decouple:
                self._lose(now, held_too=False)
            self.decouple = on
        return self.accepting

    def read_ctrl(self, offset: int, now: float) -> int:
        if offset == SLOT_ID:
            return SLOT_MAGIC
        if offset == STATUS:
            return ((ST_DECOUPLED if self.decouple else 0) | (ST_RP_IDLE if self.idle(now) else 0)
                    | (ST_IN_RESET if self.reset else 0))
        if offset in (RM_SELECT, RM_ACTIVE):
            return self.active
        if offset == RM_RESET:
            return int(self.reset)
        if offset == NUM_RMS:
            return len(self.bank)
        return 0

    def write_ctrl(self, offset: int, value: int, now: float) -> bool:
        """Returns True when the slot may now accept traffic it refused before."""
        if offset == RM_SELECT:
            sel = value & 0xFF
            if sel != self.active:
                if not self.decouple:
                    self.unsafe_swaps += 1
                self._lose(now, held_too=True)
                self.active = sel if sel < len(self.bank) else EMPTY
        elif offset == RM_RESET:
            self.reset = bool(value & 1)
            if self.reset:
                self._lose(now, held_too=True)
        return self.accepting

    def read_info(self, offset: int) -> int:
        rm = self.rm
        if rm is None or not RM_INFO <= offset < RM_INFO + 16:
            return 0
        return [RM_MAGIC, rm_id(rm.spec.name), rm.spec.n_in, rm.spec.n_out][(offset - RM_INFO) // 4]
