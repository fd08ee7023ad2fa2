"""The simulated board driven by plain, unmodified PYNQ code (as a PYNQ notebook would).

Nothing here goes through hwpart's FPGA device: ``Overlay``, ``pr_download``,
``pynq.lib.dma.DMA`` and PYNQ's own ``StreamSwitch`` driver talk to the
register models, which is what makes the same host code fit a real board.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from test_fpga_support import jet_rms

pynq = pytest.importorskip("pynq")

from hwpart.sim.board import install  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.sim.rm import CSimRunner  # noqa: E402


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    rms = jet_rms()
    root = tmp_path_factory.mktemp("bundles")
    return {sg: write_sim_bundle(root / f"sg{int(sg)}", "jet", rms, sg=sg) for sg in (False, True)}


def _x(n: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-4, 4, (n, width)).astype(np.float32)


@pytest.mark.parametrize("sg", [False, True], ids=["simple", "sg"])
def test_pynq_notebook_code(bundles, sg):
    """Overlay + pr_download + switch + DMA transfer/wait, written like a PYNQ notebook."""
    b = bundles[sg]
    board = install(pace=False)
    from pynq import Overlay, allocate

    ol = Overlay(str(b.path("shell.bit")))
    assert isinstance(ol.dma, pynq.lib.dma.DMA)
    ol.pr_download("slot_0", str(b.path("partials/slot0_fc3.bit")))
    ol.switch.mi = np.array([1, 0], dtype=np.int64)  # DMA -> slot 0 -> DMA
    spec = b.rm("fc3").spec
    x = _x(16, 32)
    in_buf = allocate(shape=(16, 32), dtype=np.int16)
    out_buf = allocate(shape=(16, 32), dtype=np.int16)
    in_buf[:] = spec.tin.encode(x)
    ol.dma.recvchannel.transfer(out_buf)
    ol.dma.sendchannel.transfer(in_buf)
    ol.dma.sendchannel.wait()
    ol.dma.recvchannel.wait()
    assert ol.dma.recvchannel.transferred == out_buf.nbytes
    ref = CSimRunner(spec).predict(x)
    assert np.array_equal(spec.tout.decode(np.asarray(out_buf)), ref)
    assert board.slots[0].processed == 1
    assert "slot_0/rm_info" in ol.ip_dict
    assert board.dma.sg == sg


def test_decoupled_slot_holds_traffic(bundles):
    """A packet for a decoupled slot waits at the switch: not computed, not lost."""
    b = bundles[False]
    board = install(pace=False)
    ol = pynq.Overlay(str(b.path("shell.bit")))
    ol.pr_download("slot_0", str(b.path("partials/slot0_fc3.bit")))
    ol.switch.mi = np.array([1, 0], dtype=np.int64)
    dec = ol.decoupler_0  # PG375: one register, bit 0 decouple, reads the status
    dec.write(0x00, 1)
    assert dec.read(0x00) == 1 and ol.slot_ctrl_0.read(0x04) & 1  # STATUS bit 0 decoupled
    spec = b.rm("fc3").spec
    x = _x(4, 32, seed=1)
    inb, outb = pynq.allocate((4, 32), np.int16), pynq.allocate((4, 32), np.int16)
    inb[:] = spec.tin.encode(x)
    dma = ol.dma
    dma.recvchannel.transfer(outb)
    dma.sendchannel.transfer(inb)
    time.sleep(0.02)
    assert not dma.sendchannel.idle and not dma.recvchannel.idle
    assert board.slots[0].processed == 0 and np.all(np.asarray(outb) == 0)
    dec.write(0x00, 0)  # recouple: the held packet moves on
    dma.sendchannel.wait()
    dma.recvchannel.wait()
    assert np.array_equal(spec.tout.decode(np.asarray(outb)), CSimRunner(spec).predict(x))


def test_switch_chains_two_slots(bundles):
    """DMA -> slot 0 (64->32) -> slot 1 (32->32) -> DMA computes the composition."""
    b = bundles[False]
    board = install(pace=False)
    ol = pynq.Overlay(str(b.path("shell.bit")))
    ol.pr_download("slot_0", str(b.path("partials/slot0_fc2.bit")))
    ol.pr_download("slot_1", str(b.path("partials/slot1_fc3.bit")))
    # master 0 (S2MM) <- slot 1 out, master 1 (slot 0 in) <- MM2S, master 2 (slot 1 in) <- slot 0 out
    ol.switch.mi = np.array([2, 0, 1], dtype=np.int64)
    a, c = b.rm("fc2").spec, b.rm("fc3").spec
    x = _x(8, 64, seed=2)
    inb, outb = pynq.allocate((8, 64), np.int16), pynq.allocate((8, 32), np.int16)
    inb[:] = a.tin.encode(x)
    ol.dma.recvchannel.transfer(outb)
    ol.dma.sendchannel.transfer(inb)
    ol.dma.sendchannel.wait()
    ol.dma.recvchannel.wait()
    ref = CSimRunner(c).predict(CSimRunner(a).predict(x))
    assert np.array_equal(c.tout.decode(np.asarray(outb)), ref)
    assert [s.processed for s in board.slots] == [1, 1]


def test_dma_error_bits_reach_pynq(bundles):
    """A packet longer than the S2MM buffer sets DMAIntErr and halts the channel (PG021).

    PYNQ's simple-mode ``wait()`` checks ``running`` first, so on a halted
    channel it reports "not started" rather than the error bit, on a board too.
    """
    b = bundles[False]
    install(pace=False)
    ol = pynq.Overlay(str(b.path("shell.bit")))
    ol.switch.mi = np.array([0], dtype=np.int64)  # loopback MM2S -> S2MM
    inb, outb = pynq.allocate(64, np.uint8), pynq.allocate(32, np.uint8)
    inb[:] = np.arange(64, dtype=np.uint8)
    dma = ol.dma
    dma.recvchannel.transfer(outb)
    dma.sendchannel.transfer(inb)
    dma.sendchannel.wait()
    assert dma.recvchannel.error
    assert dma.recvchannel._mmio.read(0x34) & 0x11 == 0x11  # DMAIntErr + halted
    with pytest.raises(RuntimeError):
        dma.recvchannel.wait()


def test_loopback_and_pacing(bundles):
    """Paced: the idle bit rises no earlier than the modeled time; unpaced: at once."""
    b = bundles[False]
    board = install(pace=True)
    ol = pynq.Overlay(str(b.path("shell.bit")))
    ol.switch.mi = np.array([0], dtype=np.int64)
    inb, outb = pynq.allocate(4096, np.uint8), pynq.allocate(4096, np.uint8)
    inb[:] = np.random.default_rng(3).integers(0, 255, 4096, dtype=np.uint8)
    dma = ol.dma
    t0 = time.perf_counter()
    dma.recvchannel.transfer(outb)
    dma.sendchannel.transfer(inb)
    dma.sendchannel.wait()
    dma.recvchannel.wait()
    host = time.perf_counter() - t0
    assert np.array_equal(np.asarray(outb), np.asarray(inb))
    modeled = 2 * board.timing.dma_s(4096)  # in then out, each latency + bytes / bandwidth
    assert host >= modeled * 0.999
    s2mm = [r for r in board.ledger.transfers if r.channel == "s2mm"][-1]
    assert s2mm.observed_host_s >= s2mm.done_model_s


def test_allocator_reuses_freed_buffers():
    board = install(pace=False, ddr_mb=1)
    a = pynq.allocate((1000,), np.uint32)
    addr = a.physical_address
    assert a[10:].physical_address == addr + 40
    del a
    import gc

    gc.collect()
    b = pynq.allocate((1000,), np.uint32)
    assert b.physical_address == addr
    assert board.ddr.used_bytes >= 4000
    with pytest.raises(MemoryError):
        pynq.allocate((2 * 1024 * 1024,), np.uint8)
