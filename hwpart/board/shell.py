"""The hwpart shell driven through PYNQ's API, on packed stream words: no torch, no host modules.

One driver for every place the fabric is driven from: the host's FPGA device
on a local board or the simulated board (:mod:`hwpart.devices.fpga`), the board
agent (:mod:`hwpart.board.agent`) and ``hwpart board check``. It works on the
RMs' stream words (``uint8`` arrays, a whole number of samples), so the
float <-> ``ap_fixed`` packing stays on the host, where numpy is fast and the
RM's types are known.

PYNQ API only -- ``Overlay`` for the shell, ``Overlay.pr_download`` for
partials, ``MMIO`` for the AXI4-Stream switch (PG085), the slots' DFX
decouplers (PG375), slot controls and RM identity blocks, ``pynq.allocate``
buffers and ``pynq.lib.dma.DMA`` channels for data -- so the same code drives a
board (``Device.active_device`` on the PYNQ image) or the simulated board
(:mod:`hwpart.sim.board`). It runs on PYNQ 3.0.x (Python 3.10) and 3.1/4.0.
Every address is the loaded shell's ``ip_dict`` (its ``.hwh``), found by IP
type and cell name (:func:`hwpart.board.regs.shell_blocks`): wherever Vivado's
address editor put a block, the driver finds it there.

Locks, as the shell shares its parts: one per slot, and one for the DMA engine,
which every slot shares and which the switch gives to one chain at a time. A
transfer holds its chain's slot locks (in slot order), then the engine; a PR
swap holds only its own slot's lock, so swapping one slot does not stall a
transfer through another.

PR swap (one slot, under that slot's lock so no transfer through it is in
flight): route nothing more into the slot -> wait until the slot control
reports the RP idle (every packet that entered has left) -> route nothing out
of it -> decouple and read the status back -> ``pr_download`` -> pulse the RM
reset -> recouple -> read the RM's identity block to check the right RM is
there. The idle wait comes first because PG375 decouples at once: a packet
still streaming through the RP would be cut, and one waiting at its output
lost with the old RM. A slot that does not go idle is not decoupled; the swap
fails and names it. The partial's ``.bit``
and ``.hwh`` are checked against ``board.json``'s sha256 *before* anything is
downloaded; a file it does not list, or one that changed, is refused.

Faults: a DMA error bit, a time-out or any failure inside a transfer drops the
shell, and the next use reloads it (:meth:`ShellDriver.open`): reloading the
full bitstream resets the DMA, the switch and every slot, so nothing stuck in
the fabric leaks into a later batch.

Time: each batch reports the time it spent in the fabric (MM2S issue to S2MM
completion, plus any PR swap it needed) and the time it waited for locks. With
a :class:`BoardModel` (the simulated board) that is the board's *modeled*
timeline, labelled ``modeled``; otherwise it is measured here with
``time.perf_counter``.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from hwpart.board.errors import BundleIntegrityError, DmaError, DmaTimeout, FpgaError
from hwpart.board.manifest import BoardManifest, BoardRM, sha256_file
from hwpart.board.regs import (
    DECOUPLE,
    DMASR_ERRORS,
    MM2S_DMASR,
    RM_INFO,
    RM_MAGIC,
    RM_RESET,
    S2MM_DMASR,
    SLOT_ID,
    SLOT_MAGIC,
    ST_IN_RESET,
    ST_RP_IDLE,
    STATUS,
    SW_COMMIT,
    SW_CTRL,
    SW_DISABLE,
    SW_MI_MUX,
    block_names,
    shell_blocks,
)

#: the route of a DMA loopback: MM2S straight back into S2MM through the switch
LOOPBACK: tuple[int, ...] = (-1,)


class BoardModel(Protocol):
    """What a simulated board tells the driver of its modeled timeline (a real one has none)."""

    last_pr_s: float  # modeled time of the latest partial reconfiguration

    def round_trip_budget_s(self, slots: Sequence[int], samples: int, nbytes: int) -> float:
        """Modeled time of one round trip of ``nbytes`` through ``slots`` as configured now
        (no slots: a DMA loopback)."""
        ...

    def last_round_trip_s(self) -> float:
        """Modeled time of the latest round trip, MM2S issue to S2MM completion."""
        ...

    def modeled_busy_s(self) -> float:
        """Modeled busy time so far (DMA, RMs, PR swaps)."""
        ...


@dataclass
class SlotState:
    """One reconfigurable slot: its decoupler (PG375), slot control and RM identity block, and
    the RM it holds (None: unknown/empty)."""

    decoupler: Any = None
    ctrl: Any = None
    info: Any = None
    rm: str | None = None


@dataclass
class RunTiming:
    """Where one batch's time went (see the module docstring)."""

    service_s: float  # in the fabric, including swap_s: modeled on the simulated board
    swap_s: float  # PR swaps this batch needed
    wait_s: float  # waiting for the slots' and the DMA engine's locks
    modeled: bool
    link_s: float = 0.0  # across the network to a board agent and back (0 when local)


class ShellDriver:
    """See the module docstring. ``device``: the ``pynq.Device`` to drive (default: PYNQ's
    active device); ``timeout_s``: per transfer and per register poll, beyond any modeled
    time; ``model``: the simulated board's timeline, when it is one."""

    def __init__(self, manifest: BoardManifest, device: Any = None, timeout_s: float = 2.0,
                 model: BoardModel | None = None, max_buffers: int = 16) -> None:
        self.manifest = manifest
        self.device = device
        self.timeout_s = timeout_s
        self.model = model
        self.max_buffers = max_buffers
        self.ol: Any = None
        self.dma: Any = None
        self.switch: Any = None
        self.word_bits = manifest.data_width_bits
        self.sg = False
        self.slots: list[SlotState] = []
        self.swaps = 0
        self.last_pr_bytes = 0  # the latest swap's partial: modeled size on a simulated board
        self.batches = 0
        self.busy_s = 0.0  # measured time in transfers and swaps (a board without a model)
        self._lock = threading.RLock()  # bring-up, recovery, the switch, the buffer table
        self._dma_lock = threading.Lock()
        self._slot_locks = [threading.RLock() for _ in range(manifest.slots)]
        self._route: tuple[int, ...] | None = None
        self._mux: list[int] = []  # what the switch's MI_MUX registers hold now
        self._verified: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256)
        self._buffers: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = OrderedDict()

    # ------------------------------------------------------------------ bring-up

    @property
    def is_open(self) -> bool:
        return self.ol is not None

    def open(self) -> float:
        """Load the shell unless it is loaded (sha256-checked, then ``Overlay``); returns the
        seconds it took, 0 when it was loaded already."""
        with self._lock:
            if self.ol is not None:
                return 0.0
            import pynq

            t0 = time.perf_counter()
            m = self.manifest
            shell = self._verify(m.shell_bit, None, None)
            self._verify(m.shell_hwh, None, None)
            kw = {} if self.device is None else {"device": self.device}
            ol = pynq.Overlay(str(shell), **kw)
            dma = [k for k, v in ol.ip_dict.items()
                   if str(v.get("type", "")).startswith("xilinx.com:ip:axi_dma:")]
            if len(dma) != 1:
                raise FpgaError(f"{shell}: expected one AXI DMA in the shell, found {dma}")
            self.dma = getattr(ol, dma[0])
            params = self.dma.description["parameters"]
            width = int(params["c_m_axi_mm2s_data_width"])
            if width != m.data_width_bits:
                raise FpgaError(f"{shell}: the DMA streams {width}-bit words but {m.source} says "
                                f"{m.data_width_bits}; rewrite board.json from this bundle")
            self.word_bits = width
            self.sg = bool(int(params.get("c_include_sg", 0)))
            try:  # every address from the shell's .hwh, wherever Vivado put each block
                blocks = {b.name: b for b in shell_blocks(ol.ip_dict, m.slots, m.shell_hwh)}
            except ValueError as exc:
                raise FpgaError(f"{exc}; was {shell} built from another shell?") from exc

            def mmio(name: str) -> Any:
                return pynq.MMIO(blocks[name].base, blocks[name].range, **kw)

            self.switch = mmio("switch")
            self.slots = [SlotState(*(mmio(n) for n in block_names(k)))
                          for k in range(m.slots)]
            for k, st in enumerate(self.slots):
                ident = st.ctrl.read(SLOT_ID)
                if ident != SLOT_MAGIC:
                    raise FpgaError(f"{shell}: slot_ctrl_{k} at 0x{st.ctrl.base_addr:08X} reads "
                                    f"0x{ident:08x}, not hwpart's slot control; the .hwh does "
                                    "not match the loaded bitstream", k)
            self._route = None
            self._mux = [SW_DISABLE] * (1 + m.slots)  # a freshly loaded switch routes nothing
            self._buffers.clear()
            self.ol = ol
            return time.perf_counter() - t0

    def _verify(self, rel: str, slot: int | None, rm: str | None) -> Path:
        """``rel`` inside the bundle, checked against board.json's sha256 (hashed again only
        when its size or mtime changed)."""
        m = self.manifest
        path = m.path(rel)
        want = m.files.get(rel)
        if want is None:
            raise BundleIntegrityError(f"{path} has no sha256 in {m.source}; refusing to "
                                       "download it", slot, rm)
        if not path.is_file():
            raise BundleIntegrityError(f"{path} is missing from the bundle", slot, rm)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, want)
        if key in self._verified:
            return path
        got = sha256_file(path)
        if got != want:
            raise BundleIntegrityError(
                f"{path}: sha256 {got[:16]}... does not match {m.source} ({want[:16]}...); "
                "refusing to download it (rebuild or re-deploy the bundle)", slot, rm)
        self._verified.add(key)
        return path

    def recover(self) -> None:
        """Drop the shell so the next use reloads it (see :meth:`open`)."""
        with self._lock:
            self.ol = None
            self.slots = []
            self._route = None
            self._buffers.clear()

    def restore(self, while_idle: Callable[[], None] | None = None) -> None:
        """Reload the shell with every slot's lock and the DMA lock held (a transfer's
        order), so nothing is in flight; ``while_idle`` runs first, under the same locks."""
        for lk in self._slot_locks:
            lk.acquire()
        try:
            with self._dma_lock:
                if while_idle is not None:
                    while_idle()
                self.recover()
                self.open()
        finally:
            for lk in reversed(self._slot_locks):
                lk.release()

    # ------------------------------------------------------------------ PR swaps

    def slot_rms(self) -> list[str | None]:
        return [s.rm for s in self.slots] if self.slots else [None] * self.manifest.slots

    def _check_slot(self, k: int, rm: BoardRM) -> str:
        if not 0 <= k < self.manifest.slots:
            raise FpgaError(f"the shell has slots 0..{self.manifest.slots - 1}", k, rm.name)
        bit = rm.partials.get(k)
        if bit is None:
            raise FpgaError(f"{self.manifest.source} lists no partial of this RM for slot {k}",
                            k, rm.name)
        return bit

    def swap(self, k: int, rm_name: str, admit: Callable[[], None] | None = None) -> float:
        """Put RM ``rm_name`` into slot ``k`` (the PR sequence of the module docstring), even
        when it is there already; returns its time (modeled on the simulated board).
        ``admit`` runs under the slot's lock first and may raise to refuse the swap."""
        return self._in_slot(k, rm_name, admit, self._swap)

    def ensure(self, k: int, rm_name: str, admit: Callable[[], None] | None = None) -> float:
        """:meth:`swap` unless slot ``k`` holds the RM already (then 0)."""
        return self._in_slot(k, rm_name, admit, self._ensure)

    def _in_slot(self, k: int, rm_name: str, admit: Callable[[], None] | None,
                 act: Callable[[int, BoardRM], float]) -> float:
        """``act(k, rm)`` under slot ``k``'s lock, after ``admit``: swap and ensure alike."""
        rm = self.manifest.rm(rm_name)
        self._check_slot(k, rm)
        self.open()
        with self._slot_locks[k]:
            if admit is not None:
                admit()
            return act(k, rm)

    def _ensure(self, k: int, rm: BoardRM) -> float:
        return 0.0 if self.slots[k].rm == rm.name else self._swap(k, rm)

    def _swap(self, k: int, rm: BoardRM) -> float:
        """The PR sequence; the caller holds slot ``k``'s lock."""
        import pynq

        bit_rel = self._check_slot(k, rm)
        bit = self._verify(bit_rel, k, rm.name)
        self._verify(str(Path(bit_rel).with_suffix(".hwh").as_posix()), k, rm.name)
        self.open()
        t0 = time.perf_counter()
        slot = self.slots[k]
        self._quiesce(k, rm.name)  # nothing in the RP, nothing routed into or out of it
        slot.decoupler.write(DECOUPLE, 1)
        self._poll(lambda: slot.decoupler.read(DECOUPLE) & 1, k, rm.name, "decouple")
        slot.rm = None
        region = f"slot_{k}"
        try:
            if region in self.ol.hierarchy_dict:
                self.ol.pr_download(region, str(bit))
            else:  # a partition with no addressable IP is no PYNQ hierarchy
                kw = {} if self.device is None else {"device": self.device}
                pynq.Bitstream(str(bit), partial=True, **kw).download()
        except Exception as exc:  # the slot is decoupled and half-written: reload all
            self.recover()
            raise FpgaError(f"partial reconfiguration with {bit.name} failed: "
                            f"{type(exc).__name__}: {exc}", k, rm.name) from exc
        slot.ctrl.write(RM_RESET, 1)
        slot.ctrl.write(RM_RESET, 0)
        self._poll(lambda: not slot.ctrl.read(STATUS) & ST_IN_RESET, k, rm.name, "reset")
        slot.decoupler.write(DECOUPLE, 0)
        magic, ident = slot.info.read(RM_INFO), slot.info.read(RM_INFO + 4)
        if magic != RM_MAGIC or ident != rm.identity:
            raise FpgaError(f"after pr_download the slot reports RM id 0x{ident:08x} "
                            f"(magic 0x{magic:08x}), not this RM's 0x{rm.identity:08x}",
                            k, rm.name)
        slot.rm = rm.name
        self.swaps += 1
        took = time.perf_counter() - t0
        self.last_pr_bytes = int(getattr(self.model, "last_pr_bytes", 0) or bit.stat().st_size)
        if self.model is not None:
            return float(self.model.last_pr_s)
        self.busy_s += took
        return took

    def _poll(self, cond: Callable[[], Any], k: int, rm: str, what: str) -> None:
        deadline = time.perf_counter() + self.timeout_s
        while not cond():
            if time.perf_counter() > deadline:
                raise FpgaError(f"{what} did not complete in {self.timeout_s} s", k, rm)
            time.sleep(1e-5)

    # ------------------------------------------------------------------ the switch

    def _set_route(self, route: tuple[int, ...]) -> None:
        """DMA -> slots[0] -> ... -> slots[-1] -> DMA (or DMA -> DMA for :data:`LOOPBACK`);
        every other master disabled. Called under the DMA lock: one route at a time."""
        with self._lock:
            if self._route == route:
                return
            n = 1 + len(self.slots)
            mux = [SW_DISABLE] * n
            if route == LOOPBACK:
                mux[0] = 0
            elif route:
                mux[1 + route[0]] = 0
                for a, c in zip(route, route[1:], strict=False):
                    mux[1 + c] = 1 + a
                mux[0] = 1 + route[-1]
            self._program(mux)
            self._route = route

    def _program(self, mux: list[int]) -> None:
        """Write the MI_MUX registers that change, then commit (PG085)."""
        for i, v in enumerate(mux):
            if self._mux[i] != v:
                self.switch.write(SW_MI_MUX + 4 * i, v)
        self.switch.write(SW_CTRL, SW_COMMIT)
        self._mux = list(mux)

    def _quiesce(self, k: int, rm: str) -> None:
        """Make slot ``k`` safe to decouple (see the module docstring): stop traffic into it,
        wait until its RP is idle, then stop traffic out of it. Other slots' routes stay
        (the caller holds slot ``k``'s lock, so no transfer through it is in flight)."""
        ctrl = self.slots[k].ctrl
        with self._lock:
            if self._mux[1 + k] != SW_DISABLE:
                self._program([SW_DISABLE if i == 1 + k else v for i, v in enumerate(self._mux)])
                self._route = None
        self._poll(lambda: ctrl.read(STATUS) & ST_RP_IDLE, k, rm,
                   "waiting for the slot's RP to go idle before decoupling it (PG375 would cut "
                   "what it holds)")
        with self._lock:
            if 1 + k in self._mux:
                self._program([SW_DISABLE if v == 1 + k else v for v in self._mux])
                self._route = None

    # ------------------------------------------------------------------ data path

    def chain(self, rms: Sequence[str], slots: Sequence[int]) -> list[BoardRM]:
        """Check a chain (RM names in stream order, one slot each) against board.json."""
        if len(rms) != len(slots) or len(set(slots)) != len(slots):
            raise FpgaError(f"a chain needs one distinct slot per RM, got RMs {list(rms)} in "
                            f"slots {list(slots)}")
        chain = [self.manifest.rm(r) for r in rms]
        for r, k in zip(chain, slots, strict=True):
            self._check_slot(k, r)
        for a, c in zip(chain, chain[1:], strict=False):
            if a.out_bytes != c.in_bytes:
                raise FpgaError(f"RMs {a.name} -> {c.name} cannot be chained: {a.out_bytes} "
                                f"bytes per sample out, {c.in_bytes} in")
        return chain

    def run(self, rms: Sequence[str], slots: Sequence[int], words: np.ndarray,
            admit: Callable[[], None] | None = None) -> tuple[np.ndarray, RunTiming]:
        """One batch of stream words through the chain ``rms`` in ``slots`` (swapping in
        what is missing): one DMA round trip. Empty ``rms``: a DMA loopback (MM2S straight
        into S2MM). ``admit`` runs under the chain's slot locks and may raise to refuse the
        batch (the host's fail switch). Returns the result's words (a new array) and where
        the time went."""
        words = np.ascontiguousarray(words).reshape(-1).view(np.uint8)
        chain = self.chain(rms, slots)
        route = tuple(slots) if chain else LOOPBACK
        in_b = chain[0].in_bytes if chain else self.word_bits // 8
        out_b = chain[-1].out_bytes if chain else in_b
        where = (slots[-1] if slots else None, "->".join(rms) or "loopback")
        if words.size == 0 or words.size % in_b:
            raise FpgaError(f"{words.size} bytes is not a whole number of {in_b}-byte samples",
                            *where)
        n = words.size // in_b
        self.open()  # no-op unless a failure dropped the shell
        t_ask = time.perf_counter()
        locks = [self._slot_locks[k] for k in sorted(set(slots))]
        for lk in locks:  # always in slot order, then the engine: no lock-order cycle
            lk.acquire()
        try:
            t_slots = time.perf_counter()
            if admit is not None:
                admit()
            self.open()
            swap_s = sum(self._ensure(k, r) for r, k in zip(chain, slots, strict=True))
            inb, outb = self._buffers_for((tuple(rms), route), n, in_b, out_b)
            inb[:] = words
            t_pre = time.perf_counter()
            with self._dma_lock:
                t_dma = time.perf_counter()
                self._set_route(route)
                self._transfer(route, inb, outb, n, *where)
                t_done = time.perf_counter()
                board_s = (self.model.last_round_trip_s() if self.model is not None
                           else t_done - t_dma)
            out = np.array(outb, dtype=np.uint8, copy=True)
        finally:
            for lk in reversed(locks):
                lk.release()
        self.batches += 1
        if self.model is None:
            self.busy_s += t_done - t_dma
        wait = (t_slots - t_ask) + (t_dma - t_pre)
        return out, RunTiming(board_s + swap_s, swap_s, wait, self.model is not None)

    def release(self, rms: Sequence[str], slots: Sequence[int]) -> None:
        """Free the DMA buffers kept for this chain (the RMs stay in their slots)."""
        route = tuple(slots) if rms else LOOPBACK
        with self._lock:
            for key in [k for k in self._buffers if k[:2] == (tuple(rms), route)]:
                del self._buffers[key]

    def _buffers_for(self, chain_key: tuple[Any, ...], n: int, in_b: int,
                     out_b: int) -> tuple[Any, Any]:
        """DMA buffers for a batch of ``n`` through one chain, kept (most recently used
        first) and reused: the chain's slot locks are held while they are in use."""
        import pynq

        key = (*chain_key, n)
        with self._lock:
            if key in self._buffers:
                self._buffers.move_to_end(key)
                return self._buffers[key]
        kw = {} if self.device is None else {"target": self.device}
        bufs = (pynq.allocate(n * in_b, np.uint8, **kw), pynq.allocate(n * out_b, np.uint8, **kw))
        with self._lock:
            self._buffers[key] = bufs
            while len(self._buffers) > self.max_buffers:
                self._buffers.popitem(last=False)
        return bufs

    def _transfer(self, route: tuple[int, ...], inb: Any, outb: Any, n: int,
                  slot: int | None, rm: str) -> None:
        """Both DMA channels through their public PYNQ API, with our own time-out:
        ``timeout_s`` beyond the round trip's modeled time (0 on a board)."""
        recv, send = self.dma.recvchannel, self.dma.sendchannel
        for ch in (recv, send):  # simple mode runs between transfers; SG must start halted
            if not self.sg and not ch.running:
                ch.start()
        try:
            recv.transfer(outb)
            send.transfer(inb)
            budget = 0.0
            if self.model is not None:
                budget = self.model.round_trip_budget_s(() if route == LOOPBACK else route, n,
                                                        int(inb.nbytes))
            deadline = time.perf_counter() + budget + self.timeout_s
            for ch, what, sr in ((send, "MM2S", MM2S_DMASR), (recv, "S2MM", S2MM_DMASR)):
                while not ch.idle:
                    if ch.error:
                        st = self.dma.mmio.read(sr)
                        self.recover()
                        bits = [v for b, v in DMASR_ERRORS.items() if st & b]
                        raise DmaError(f"{what} error DMASR=0x{st:08x}: {', '.join(bits)}",
                                       slot, rm, st)
                    if time.perf_counter() > deadline:
                        self.recover()
                        raise DmaTimeout(f"{what} transfer did not complete in {self.timeout_s} s "
                                         "beyond its modeled time "
                                         "(slot decoupled or empty, route missing, or RM hung)",
                                         slot, rm)
                with warnings.catch_warnings():  # SG wait() calls the deprecated buffer.close()
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ch.wait()
        except FpgaError:
            raise
        except Exception as exc:  # the fabric's state is unknown: reload the shell next time
            self.recover()
            raise FpgaError(f"DMA transfer failed: {type(exc).__name__}: {exc}", slot,
                            rm) from exc

    # ------------------------------------------------------------------ metrics

    def metrics(self) -> dict[str, Any]:
        """Counters and busy time (the simulated board's modeled busy time, when it is one)."""
        busy = self.model.modeled_busy_s() if self.model is not None else self.busy_s
        return {"batches": self.batches, "swaps": self.swaps, "busy_s": busy,
                "modeled": self.model is not None, "slots": self.slot_rms(),
                "shell_loaded": self.ol is not None}
