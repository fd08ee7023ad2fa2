"""The FPGA as a device: hls4ml RMs in DFX slots of the hwpart shell, driven through PYNQ.

Written against PYNQ's public API only -- ``Overlay`` for the shell,
``Overlay.pr_download`` for partials, ``MMIO`` for the slot decouplers and the
AXI4-Stream switch (PG085), ``pynq.allocate`` buffers and
``pynq.lib.dma.DMA`` channels for data -- so the same code drives a board
(``Device.active_device`` on the PYNQ image), a remote board, or the simulated
board (:mod:`hwpart.sim.board`). Which one: ``fpga="sim"`` / ``"board"`` /
``"auto"`` (a board when PYNQ finds one, else the simulated board), or
``HWPART_FPGA``. The bundle: ``overlay=`` or ``HWPART_OVERLAY``.

Data path of one stage run: float tensor -> channels-last rows
(:func:`hwpart.overlay.hls.to_stream`) -> ``ap_fixed`` words of the first RM's
input type (:mod:`hwpart.sim.fixed`, vectorised numpy) -> DMA MM2S -> switch ->
slot(s) -> switch -> DMA S2MM -> words of the last RM's output type -> float.
The conversion is the one hls4ml's C simulation applies, so the result is
bit-identical to the C simulation of the same float input.

Locks, as the shell shares its parts: one per slot, and one for the DMA
engine, which every slot shares and which the switch gives to one chain at a
time (:mod:`hwpart.timing`). A transfer holds its chain's slot locks, then the
engine; a PR swap holds only its own slot's lock, so swapping one slot does not
stall a transfer through another.

PR swap (one slot, between batches, under that slot's lock so no transfer
through it is in flight): route nothing into or out of the slot -> decouple and
wait for the status bit -> ``pr_download`` -> pulse the RM reset -> recouple ->
read the RM's identity register to check the right RM is there. The partial's
``.bit`` and ``.hwh`` are checked against the manifest's sha256 *before*
anything is downloaded; a mismatch refuses the swap and names the file.

Service time: after each batch the handle carries the time the batch spent in
the device (``LoadedStage.service_s``), without lock waits; on the simulated
board that is the board's *modeled* timeline of the round trip (MM2S issue to
S2MM completion) plus any PR swap it needed, so reports compare the plan with
the modeled board, and show the simulator's host time apart.

Faults: :meth:`FpgaDevice.fail` takes the device down (a scenario's injected
failure, :mod:`hwpart.npm.scenario`): from then on every transfer and every
swap raises :class:`FpgaDown`, naming the slot, so the re-allocator sees a
device that raises, as it would a board that stopped answering. A batch already
past the check finishes. :meth:`FpgaDevice.restore` brings it back the way a
board comes back: the shell is reloaded (:meth:`FpgaDevice.open` after
``_recover``), so every slot is empty and the next batch swaps its RMs in again.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwpart import timing
from hwpart.devices.base import LoadedStage, Metrics, merge_outputs, register_device
from hwpart.errors import DeviceError
from hwpart.graph import LayerGraph
from hwpart.partition import unit_slots
from hwpart.sim.bundle import Bundle, BundleRM, load_bundle, sha256_file
from hwpart.sim.fixed import StreamLayout
from hwpart.sim.regs import (  # one source for the register maps (PG085, slot control, PG021)
    DECOUPLE,
    DMASR_ERRORS,
    MM2S_DMASR,
    RM_INFO,
    RM_MAGIC,
    RM_RESET,
    S2MM_DMASR,
    ST_DECOUPLED,
    ST_IN_RESET,
    STATUS,
    SW_COMMIT,
    SW_CTRL,
    SW_DISABLE,
    SW_MI_MUX,
    rm_id,
)
from hwpart.stages import Stage


class FpgaError(DeviceError):
    """An FPGA failure, naming the slot and the RM involved."""

    def __init__(self, message: str, slot: int | None = None, rm: str | None = None) -> None:
        where = f"fpga slot {slot}" if slot is not None else "fpga"
        super().__init__(f"{where}{f' (RM {rm})' if rm else ''}: {message}")
        self.slot, self.rm = slot, rm


class DmaError(FpgaError):
    """The AXI DMA reported an error bit (DMASR)."""

    def __init__(self, message: str, slot: int | None, rm: str | None, status: int) -> None:
        super().__init__(message, slot, rm)
        self.status = status


class DmaTimeout(FpgaError):
    """A transfer did not complete in time (slot decoupled, route missing, hung RM)."""


class FpgaDown(FpgaError):
    """The device is down (:meth:`FpgaDevice.fail`): nothing runs until it is restored."""


class BundleIntegrityError(FpgaError):
    """A bundle file's sha256 differs from the manifest: refused before download."""


def fpga_mode(mode: str | None = None) -> str:
    m = (mode or os.environ.get("HWPART_FPGA") or "auto").strip().lower()
    if m not in ("sim", "board", "auto"):
        raise DeviceError(f"unknown FPGA mode {m!r} (HWPART_FPGA / --fpga): use sim, board or auto")
    return m


def board_present() -> bool:
    """True when PYNQ finds a real (embedded or remote) device, i.e. not the simulated one."""
    import pynq

    from hwpart.sim.board import SimBoard

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return any(not isinstance(d, SimBoard) for d in pynq.Device.devices)
        except Exception:
            return False


@dataclass
class _Slot:
    mmio: Any
    rm: str | None = None


@dataclass
class BatchTiming:
    """Where one batch's time went (see the module docstring)."""

    service_s: float  # in the device: modeled board time on the simulated board
    wait_s: float  # waiting for the slots' and the DMA engine's locks
    modeled: bool


@dataclass
class _Plan:
    """A loaded stage on the fabric: the RMs in stream order and their slots."""

    rms: list[BundleRM]
    slots: list[int]
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    buffers: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # batch -> (in, out)
    layouts: dict[int, tuple[StreamLayout, StreamLayout]] = field(default_factory=dict)
    last: BatchTiming | None = None  # the latest batch (one worker per plan)

    def layout(self, word_bits: int) -> tuple[StreamLayout, StreamLayout]:
        """(stream layout in, out) for the shell's DMA word width, built once."""
        if word_bits not in self.layouts:
            self.layouts[word_bits] = (self.rms[0].spec.layout_in(word_bits),
                                       self.rms[-1].spec.layout_out(word_bits))
        return self.layouts[word_bits]


class FpgaDevice:
    """See the module docstring. ``timeout_s``: per transfer, beyond the modeled time."""

    kind = "fpga"

    def __init__(self, overlay: str | Path | None = None, fpga: str | None = None,
                 board: str | None = None, timeout_s: float = 2.0, pace: bool | None = None,
                 name: str = "fpga") -> None:
        self.name = name
        self.mode = fpga_mode(fpga)
        self.overlay_path = overlay or os.environ.get("HWPART_OVERLAY")
        self.board_name = board
        self.timeout_s = timeout_s
        self.pace = pace
        self.bundle: Bundle | None = None
        self.sim: Any = None  # the SimBoard when simulated
        self.pdev: Any = None  # the pynq.Device every call goes to
        self.ol: Any = None
        self._lock = threading.RLock()  # bring-up, recovery and the switch's registers
        self._dma_lock = threading.Lock()  # the one DMA engine (and the switch's route)
        self._slot_locks: list[threading.RLock] = []
        self._slots: list[_Slot] = []
        self._route: tuple[int, ...] | None = None
        self._t_metrics = time.perf_counter()
        self._modeled_last = 0.0
        self.swaps = 0
        self._verified: set[tuple[str, int, int, str]] = set()  # (path, size, mtime_ns, sha256)
        self._down: str | None = None  # why the device is down (fail()), None when up

    # ------------------------------------------------------------------ bring-up

    def _load_bundle(self) -> Bundle:
        if self.bundle is None:
            if not self.overlay_path:
                raise DeviceError("no overlay bundle for the FPGA: pass --overlay BUNDLE "
                                  "or set HWPART_OVERLAY")
            self.bundle = load_bundle(self.overlay_path)
        return self.bundle

    def available(self) -> tuple[bool, str]:
        try:
            import pynq  # noqa: F401
        except ImportError:
            return False, "pynq is not installed (pip install hwpart[sim] or [board])"
        where = "simulated board" if self.mode == "sim" else (
            "PYNQ board" if self.mode == "board" else "PYNQ board or simulated board")
        if not self.overlay_path:
            return False, f"{where}; no overlay bundle (--overlay BUNDLE / HWPART_OVERLAY)"
        try:
            b = self._load_bundle()
        except Exception as exc:
            return False, f"overlay bundle unreadable: {exc}"
        return True, f"{where}, bundle {b.name} ({len(b.rms)} RMs, {b.slots} slots)"

    def open(self) -> None:
        """Load the shell (once, and again after a failure): sha256-checked, then ``Overlay``.

        Reloading the full bitstream is also how a failed transfer is recovered:
        it resets the DMA, the switch and every slot, so nothing stuck in the
        fabric can leak into a later batch.
        """
        with self._lock:
            if self.ol is not None:
                return
            import pynq

            b = self._load_bundle()
            if self.pdev is None:
                mode = self.mode
                if mode == "auto":
                    mode = "board" if board_present() else "sim"
                if mode == "sim":
                    from hwpart.sim.board import install

                    self.sim = install(self.board_name or b.board, pace=self.pace)
                    self.pdev = self.sim
                    self.name = f"fpga ({self.sim.name}, simulated)"
                else:
                    self.pdev = pynq.Device.active_device
                    self.name = f"fpga ({self.pdev.name})"
            shell = b.path(b.shell_bit)
            self._verify(shell, None, None)
            self._verify(shell.with_suffix(".hwh"), None, None)
            self.ol = pynq.Overlay(str(shell), device=self.pdev)
            dma = [k for k, v in self.ol.ip_dict.items()
                   if str(v.get("type", "")).startswith("xilinx.com:ip:axi_dma:")]
            if len(dma) != 1:
                raise FpgaError(f"{shell}: expected one AXI DMA in the shell, found {dma}")
            self.dma = getattr(self.ol, dma[0])
            params = self.dma.description["parameters"]
            self.word_bits = int(params["c_m_axi_mm2s_data_width"])
            self.sg = bool(int(params.get("c_include_sg", 0)))
            # the addresses the bundle's manifest records (same map on board, sim and RTL)
            self.switch = pynq.MMIO(b.switch_address, 0x1000, device=self.pdev)
            self._slots = [_Slot(pynq.MMIO(a, 0x1000, device=self.pdev)) for a in b.decouplers]
            while len(self._slot_locks) < len(self._slots):  # kept across reloads
                self._slot_locks.append(threading.RLock())
            self._route = None

    def _verify(self, path: Path, slot: int | None, rm: str | None) -> None:
        b = self._load_bundle()
        rel = str(path.relative_to(b.root))
        want = b.files.get(rel)
        if want is None:
            raise BundleIntegrityError(f"{path} has no sha256 in {b.root / 'manifest.yaml'}; "
                                       "refusing to download it", slot, rm)
        if not path.is_file():
            raise BundleIntegrityError(f"{path} is missing from the bundle", slot, rm)
        st = path.stat()
        key = (str(path), st.st_size, st.st_mtime_ns, want)
        if key in self._verified:  # checked already and unchanged since: no re-hash per swap
            return
        got = sha256_file(path)
        if got != want:
            raise BundleIntegrityError(
                f"{path}: sha256 {got[:16]}... does not match the manifest ({want[:16]}...); "
                "refusing to download it (rebuild or re-deploy the bundle)", slot, rm)
        self._verified.add(key)

    # ------------------------------------------------------------------ Device protocol

    def capabilities(self, lg: LayerGraph) -> set[str]:
        try:
            b = self._load_bundle()
        except Exception:
            return set()
        nodes = set(lg.dag.nodes)
        return {n for r in b.rms for n in r.spec.layers if n in nodes}

    def _chain_for(self, nodes: list[str]) -> list[BundleRM]:
        """RMs whose layers, in order, are exactly ``nodes`` (one RM, or a chain of them)."""
        b = self._load_bundle()
        chain = timing.rm_chain([r.spec.layers for r in b.rms], nodes)
        if chain is None:
            raise DeviceError(f"no RM (or chain of RMs) in bundle {b.name} implements layers "
                              f"{nodes}; available: {[r.spec.layers for r in b.rms]}")
        return [b.rms[i] for i in chain]

    def load(self, stage: Stage) -> LoadedStage:
        self.open()
        b = self._load_bundle()
        chain = self._chain_for(list(stage.nodes))
        if len(chain) > b.slots:
            raise DeviceError(f"stage {stage.name} needs {len(chain)} slots, the shell has {b.slots}")
        for a, c in zip(chain, chain[1:], strict=False):
            if a.spec.tout != c.spec.tin or a.spec.n_out != c.spec.n_in:
                raise DeviceError(f"RMs {a.spec.name} -> {c.spec.name} cannot be chained: "
                                  f"{a.spec.out_type}x{a.spec.n_out} vs {c.spec.in_type}x{c.spec.n_in}")
        acts = [n for n in stage.inputs if n not in stage.consts]
        if len(acts) != 1:
            raise DeviceError(f"stage {stage.name}: an FPGA stage takes one activation input, "
                              f"got {acts}")
        slots = list(unit_slots(stage.unit)) or [0]  # "fpga0+1": the plan's own slots
        plan = self.plan([r.spec.name for r in chain], slots)
        for r, k in zip(plan.rms, plan.slots, strict=True):
            with self._slot_locks[k]:
                self._ensure(k, r)
        return LoadedStage(stage, self.name, {"plan": plan, "input": acts[0]})

    def plan(self, rm_names: list[str], slots: int | list[int] = 0) -> _Plan:
        """RMs chained in stream order (for :meth:`run_array`): in ``slots`` when it names
        one per RM, else in consecutive slots from the first one given."""
        b = self._load_bundle()
        chain = [b.rm(n) for n in rm_names]
        given = timing.chain_slots([slots] if isinstance(slots, int) else list(slots),
                                   len(chain), b.slots)
        if any(not 0 <= k < b.slots for k in given):
            raise DeviceError(f"slots {given} for RMs {rm_names}: the shell of bundle {b.name} "
                              f"has slots 0..{b.slots - 1}")
        return _Plan(chain, given, tuple(chain[0].spec.in_shape), tuple(chain[-1].spec.out_shape))

    def run(self, handle: LoadedStage, env: dict[str, Any]) -> dict[str, Any]:
        plan: _Plan = handle.state["plan"]
        x = env[handle.state["input"]]
        out = self.run_array(plan, x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else x)
        if plan.last is not None:
            handle.service_s, handle.service_modeled = plan.last.service_s, plan.last.modeled
            handle.wait_s = plan.last.wait_s
        return merge_outputs(handle.stage, env, torch.from_numpy(out))

    def unload(self, handle: LoadedStage) -> None:
        handle.state["plan"].buffers.clear()  # RMs stay in their slots: a reload is free

    def metrics(self) -> Metrics:
        """Utilisation of the simulated board is the *modeled* busy time per wall second."""
        m: Metrics = {"util": None, "power_w": None, "energy_j": None,
                      "mem_used_b": None, "mem_total_b": None, "modeled_busy_s": None}
        if self.sim is not None:
            s = self.sim.modeled()
            busy = s["modeled_dma_s"] + s["modeled_rm_s"] + s["modeled_pr_s"]
            now = time.perf_counter()
            dt, self._t_metrics = now - self._t_metrics, now
            m["util"] = min(1.0, (busy - self._modeled_last) / dt) if dt > 0 else None
            self._modeled_last = busy
            m["modeled_busy_s"] = busy
            m["mem_used_b"] = float(self.sim.ddr.used_bytes)
            m["mem_total_b"] = float(self.sim.ddr.size)
        return m

    # ------------------------------------------------------------------ fabric control

    def _ensure(self, k: int, r: BundleRM) -> float:
        """Swap ``r`` into slot ``k`` unless it is there (caller holds the slot's lock);
        returns the swap's time (modeled on the simulated board), 0 when none was needed."""
        if self._slots[k].rm == r.spec.name:
            return 0.0
        t0 = time.perf_counter()
        self.swap(k, r.spec.name)
        return self.sim.last_pr_s if self.sim is not None else time.perf_counter() - t0

    def swap(self, k: int, rm_name: str) -> None:
        """Put RM ``rm_name`` into slot ``k`` (the PR sequence of the module docstring)."""
        self.open()
        b = self._load_bundle()
        r = b.rm(rm_name)
        if k not in r.partials:
            raise FpgaError(f"bundle has no partial of this RM for slot {k}", k, rm_name)
        bit = b.path(r.partials[k])
        import pynq

        with self._slot_locks[k] if k < len(self._slot_locks) else self._lock:
            self._check_up([k], rm_name)
            self._verify(bit, k, rm_name)
            self._verify(bit.with_suffix(".hwh"), k, rm_name)
            slot = self._slots[k]
            self._isolate(k)  # nothing routed into or out of this slot while swapping
            slot.mmio.write(DECOUPLE, 1)
            self._poll(lambda: slot.mmio.read(STATUS) & ST_DECOUPLED, k, rm_name, "decouple")
            slot.rm = None
            region = f"slot_{k}"
            try:
                if region in self.ol.hierarchy_dict:
                    self.ol.pr_download(region, str(bit))
                else:  # a partition with no addressable IP is no PYNQ hierarchy
                    pynq.Bitstream(str(bit), partial=True, device=self.pdev).download()
            except Exception as exc:  # the slot is decoupled and half-written: reload all
                self._recover()
                raise FpgaError(f"partial reconfiguration with {bit.name} failed: "
                                f"{type(exc).__name__}: {exc}", k, rm_name) from exc
            slot.mmio.write(RM_RESET, 1)
            slot.mmio.write(RM_RESET, 0)
            self._poll(lambda: not slot.mmio.read(STATUS) & ST_IN_RESET, k, rm_name, "reset")
            slot.mmio.write(DECOUPLE, 0)
            magic, ident = slot.mmio.read(RM_INFO), slot.mmio.read(RM_INFO + 4)
            if magic != RM_MAGIC or ident != rm_id(rm_name):
                raise FpgaError(f"after pr_download the slot reports RM id 0x{ident:08x} "
                                f"(magic 0x{magic:08x}), not this RM", k, rm_name)
            slot.rm = rm_name
            self.swaps += 1

    def _poll(self, cond: Any, k: int, rm: str, what: str) -> None:
        deadline = time.perf_counter() + self.timeout_s
        while not cond():
            if time.perf_counter() > deadline:
                raise FpgaError(f"{what} did not complete in {self.timeout_s} s", k, rm)
            time.sleep(1e-5)

    def _set_route(self, slots: tuple[int, ...]) -> None:
        """DMA -> slots[0] -> ... -> slots[-1] -> DMA; every other master disabled.
        Called under the DMA lock: the engine's route is the only one in use."""
        with self._lock:
            if self._route == slots:
                return
            n = 1 + len(self._slots)
            mux = [SW_DISABLE] * n
            if slots:
                mux[1 + slots[0]] = 0
                for a, c in zip(slots, slots[1:], strict=False):
                    mux[1 + c] = 1 + a
                mux[0] = 1 + slots[-1]
            for i, v in enumerate(mux):
                self.switch.write(SW_MI_MUX + 4 * i, v)
            self.switch.write(SW_CTRL, SW_COMMIT)
            self._route = slots

    def _isolate(self, k: int) -> None:
        """Route nothing into or out of slot ``k``, leaving other slots' routes alone (the
        caller holds slot ``k``'s lock, so no transfer through it is in flight)."""
        with self._lock:
            if self._route is None or k in self._route:  # that route is idle: drop it
                self._set_route(tuple())

    # ------------------------------------------------------------------ data path

    def run_array(self, plan: _Plan, x: np.ndarray) -> np.ndarray:
        """(N, *in_shape) float -> (N, *out_shape) float32 through the fabric."""
        from hwpart.overlay.hls import from_stream, to_stream

        if tuple(x.shape[1:]) != plan.in_shape:
            raise DeviceError(f"RM {plan.rms[0].spec.name} takes per-sample shape {plan.in_shape}, "
                              f"got {tuple(x.shape[1:])}")
        n = x.shape[0]
        rows = to_stream(np.asarray(x, dtype=np.float32))
        self._check_up(plan.slots, plan.rms[0].spec.name)
        self.open()  # no-op unless a failure dropped the shell
        lin, lout = plan.layout(self.word_bits)
        inb, outb = self._buffers(plan, n, lin.sample_bytes, lout.sample_bytes)
        inb[:] = lin.pack(rows)  # host work, outside the locks
        t_ask = time.perf_counter()
        locks = [self._slot_locks[k] for k in sorted(set(plan.slots))]
        for lk in locks:  # always in slot order, then the engine: no lock-order cycle
            lk.acquire()
        try:
            t_slots = time.perf_counter()
            self._check_up(plan.slots, plan.rms[0].spec.name)  # it may have failed meanwhile
            swap_s = sum(self._ensure(k, r) for r, k in zip(plan.rms, plan.slots, strict=True))
            swaps_host = time.perf_counter() - t_slots
            with self._dma_lock:
                t_dma = time.perf_counter()
                self._set_route(tuple(plan.slots))
                self._transfer(plan, inb, outb, n)
                t_done = time.perf_counter()
        finally:
            for lk in reversed(locks):
                lk.release()
        wait = (t_slots - t_ask) + (t_dma - t_slots - swaps_host)
        if self.sim is not None:  # the board's own modeled timeline of this round trip
            sent, got = self.sim.dma.mm2s.last, self.sim.dma.s2mm.last
            board_s = got.done_model_s - sent.issued_host_s
            plan.last = BatchTiming(board_s + swap_s, wait, True)
        else:
            plan.last = BatchTiming(t_done - t_dma + swap_s, wait, False)
        y = lout.unpack(outb, n)
        return from_stream(y, plan.out_shape).astype(np.float32, copy=False)

    def _buffers(self, plan: _Plan, n: int, in_bytes: int, out_bytes: int) -> tuple[Any, Any]:
        """DMA buffers for a batch of ``n``, kept per batch size (reused: we wait for each)."""
        import pynq

        if n not in plan.buffers:
            inb = pynq.allocate(n * in_bytes, np.uint8, target=self.pdev)
            outb = pynq.allocate(n * out_bytes, np.uint8, target=self.pdev)
            if len(plan.buffers) >= 4:  # a few batch sizes at most (the last batch is short)
                plan.buffers.pop(next(iter(plan.buffers)))
            plan.buffers[n] = (inb, outb)
        return plan.buffers[n]

    def _modeled_s(self, plan: _Plan, inb: Any, outb: Any, n: int) -> float:
        """Modeled time of one round trip on the simulated board (:mod:`hwpart.timing`);
        0 on a board."""
        if self.sim is None:
            return 0.0
        chain = [timing.RmTiming.of_spec(r.spec, self.word_bits) for r in plan.rms]
        st = timing.stage_time(self.sim.board, chain, n)
        # each slot at its own speed: an injected clock-down / stall is not a time-out
        return st.dma_in_s + st.dma_out_s + sum(
            self.sim.slot_rm_s(k, t) for k, t in zip(plan.slots, st.rm_s, strict=True))

    def _transfer(self, plan: _Plan, inb: Any, outb: Any, n: int) -> None:
        """Both DMA channels through their public PYNQ API, with our own time-out:
        ``timeout_s`` beyond the transfer's modeled time (see :meth:`_modeled_s`)."""
        slot, rm = plan.slots[-1], "->".join(r.spec.name for r in plan.rms)
        recv, send = self.dma.recvchannel, self.dma.sendchannel
        for ch in (recv, send):  # simple mode runs between transfers; SG must start halted
            if not self.sg and not ch.running:
                ch.start()
        try:
            recv.transfer(outb)
            send.transfer(inb)
            deadline = time.perf_counter() + self._modeled_s(plan, inb, outb, n) + self.timeout_s
            for ch, what, sr in ((send, "MM2S", MM2S_DMASR), (recv, "S2MM", S2MM_DMASR)):
                while not ch.idle:
                    if ch.error:
                        st = self.dma.mmio.read(sr)
                        self._recover()
                        bits = [v for b, v in DMASR_ERRORS.items() if st & b]
                        raise DmaError(f"{what} error DMASR=0x{st:08x}: {', '.join(bits)}",
                                       slot, rm, st)
                    if time.perf_counter() > deadline:
                        self._recover()
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
            self._recover()
            raise FpgaError(f"DMA transfer failed: {type(exc).__name__}: {exc}", slot,
                            rm) from exc

    # ------------------------------------------------------------------ faults

    @property
    def down(self) -> str | None:
        """Why the device is down (the reason given to :meth:`fail`), or None when up."""
        return self._down

    def fail(self, reason: str = "device failure") -> None:
        """Take the device down: every later transfer or swap raises :class:`FpgaDown`.

        No lock is taken: a batch already past its check completes, as one already
        in the fabric would when a board stops answering after it.
        """
        self._down = reason or "device failure"

    def restore(self) -> None:
        """Bring the device back: clear the fault and reload the shell.

        Takes every slot's lock, then the DMA lock (run_array's order), so no
        transfer or swap is in flight while the shell is reloaded. A device that
        was never opened is only marked up (its first use opens it).
        """
        locks = list(self._slot_locks)
        for lk in locks:
            lk.acquire()
        try:
            with self._dma_lock:
                self._down = None
                if self.pdev is not None:
                    self._recover()
                    self.open()
        finally:
            for lk in reversed(locks):
                lk.release()

    def _check_up(self, slots: list[int], rm: str) -> None:
        if self._down is not None:
            raise FpgaDown(f"device is down ({self._down}); slots {list(slots)} unavailable "
                           "until it is restored", slots[0] if slots else None, rm)

    def _recover(self) -> None:
        """Drop the shell so the next use reloads it (see :meth:`open`)."""
        self.ol = None
        self._slots = []
        self._route = None


def configure(fpga: str | None = None, overlay: str | Path | None = None) -> None:
    """What ``hwpart run --fpga MODE --overlay BUNDLE`` sets: the defaults the registry's
    factory reads (``HWPART_FPGA``, ``HWPART_OVERLAY``), so plans built anywhere get them."""
    if fpga is not None:
        os.environ["HWPART_FPGA"] = fpga_mode(fpga)
    if overlay is not None:
        os.environ["HWPART_OVERLAY"] = str(overlay)


def _factory(**options: Any) -> FpgaDevice:
    return FpgaDevice(**options)


register_device("fpga", _factory, replace=True)
