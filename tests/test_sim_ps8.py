"""Zynq UltraScale+ (PS8) boards on the simulated board: KV260 and ZCU104.

The generated ``.hwh`` carries a ``zynq_ultra_ps_e`` (not a Zynq-7000 PS), the
board's own part and the PS8 map (registers on M_AXI_HPM0_FPD from
0xA000_0000); PYNQ parses it with its UltraScale+ parser, which
``pr_download`` then insists on for every partial.
"""

from __future__ import annotations

import time
from xml.etree import ElementTree

import numpy as np
import pytest
import torch
from test_fpga_support import graph, jet_rms, make_plan, other_rm

pynq = pytest.importorskip("pynq")

from pynq.pl_server.hwh_parser import _HWHUltrascale, _HWHZynq  # noqa: E402

from hwpart.boards import load_board  # noqa: E402
from hwpart.sim import hwh  # noqa: E402
from hwpart.sim.board import install  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402


@pytest.fixture(scope="module")
def kv260_bundle(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("kv") / "b", "jet", [*jet_rms(), other_rm()],
                            board="kv260")


def _sysinfo(path) -> dict[str, str]:
    root = ElementTree.parse(str(path)).getroot()
    return dict(root.find("SYSTEMINFO").attrib)


def test_kv260_bundle_loads_and_runs(kv260_bundle):
    """CPU | FPGA (two slots chained) | CPU on a simulated KV260, bit for bit; then a PR swap."""
    from test_fpga_device import jet_reference, run_staged

    from hwpart.devices.cpu import CpuDevice
    from hwpart.devices.fpga import FpgaDevice
    from hwpart.stages import split

    b = kv260_bundle
    shell = b.path("shell.hwh")
    assert _sysinfo(shell) | {"NAME": ""} == {"ARCH": "zynquplus", "DEVICE": "xck26", "NAME": "",
                                              "PACKAGE": "sfvc784", "SPEEDGRADE": "-2LV"}
    assert hwh.hwh_family(shell) == ("ps8", "xck26")
    assert _sysinfo(b.path(b.rms[0].partials[1]).with_suffix(".hwh"))["ARCH"] == "zynquplus"

    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])])
    dev = FpgaDevice(b.root, fpga="sim", pace=False)
    x = torch.from_numpy(np.random.default_rng(3).uniform(-3, 3, (40, 16)).astype(np.float32))
    y = run_staged(split(lg, plan), {"cpu": CpuDevice(), "fpga": dev}, x)
    assert torch.equal(y, jet_reference(lg, x, jet_rms()))

    sim = dev.sim
    assert sim.board.name == "kv260"
    assert type(sim.parser) is _HWHUltrascale  # PYNQ's PS8 parser, chosen from the file
    assert pynq.pl_server.device.HWH is _HWHUltrascale  # what pr_download checks partials by
    ps = sim.ip_dict["zynq_ultra_ps_e_0"]
    assert ps["type"] == "xilinx.com:ip:zynq_ultra_ps_e:3.5"
    assert ps["parameters"]["PSU__CRL_APB__PL0_REF_CTRL__FREQMHZ"] == "100.0"
    assert sim.clocks.get_pl_clk(0) == 100.0  # set by Overlay.download from that parameter
    assert sim.ip_dict["dma"]["phys_addr"] == 0xA001_0000
    assert sim.ip_dict["switch"]["phys_addr"] == 0xA000_0000

    # a swap: pr_download of a PS8 partial (its own _HWHUltrascale parse) into slot 0
    swaps = sim.ledger.swaps
    dev.swap(0, "other32")
    assert sim.ledger.swaps == swaps + 1
    assert sim.slots[0].rm.spec.name == "other32"
    assert "slot_0/rm_info" in sim.ip_dict


def test_kv260_notebook_code(kv260_bundle):
    """Plain PYNQ on the simulated KV260: Overlay, pr_download, switch, DMA."""
    from pynq import Overlay, allocate

    from hwpart.sim.rm import CSimRunner

    b = kv260_bundle
    board = install("kv260", pace=False)
    ol = Overlay(str(b.path("shell.bit")))
    ol.pr_download("slot_1", str(b.path("partials/slot1_fc3.bit")))
    ol.switch.mi = np.array([2, -1, 0], dtype=np.int64)  # DMA -> slot 1 -> DMA; slot 0 off
    spec = b.rm("fc3").spec
    x = np.random.default_rng(0).uniform(-4, 4, (8, 32)).astype(np.float32)
    lin = spec.layout_in(64)
    src = allocate(shape=(lin.sample_bytes * 8,), dtype=np.uint8)
    dst = allocate(shape=(spec.layout_out(64).sample_bytes * 8,), dtype=np.uint8)
    src[:] = lin.pack(x)
    ol.dma.recvchannel.transfer(dst)
    ol.dma.sendchannel.transfer(src)
    for ch in (ol.dma.sendchannel, ol.dma.recvchannel):  # PYNQ's wait() would spin for ever
        deadline = time.monotonic() + 10
        while not ch.idle and time.monotonic() < deadline:
            time.sleep(0.001)
        assert ch.idle, "DMA transfer did not complete"
        ch.wait()
    out = spec.layout_out(64).unpack(np.asarray(dst), 8)
    assert np.array_equal(out, CSimRunner(spec).predict(x))
    assert board.slots[1].processed == 1


def test_zcu104_and_pynq_z2_handoffs():
    """Each board's .hwh names its own part and PS; PYNQ's parser for that family reads it."""
    for name, ps, device, package, speed in [("zcu104", "ps8", "xczu7ev", "ffvc1156", "-2"),
                                             ("pynq-z2", "ps7", "7z020", "clg400", "-1")]:
        b = load_board(name)
        text = hwh.shell_hwh("s", 2, b.clocks.pl_mhz, False, 64, hwh.BASE[b.ps], ps=b.ps,
                             part=b.part)
        root = ElementTree.fromstring(text)
        assert root.find("SYSTEMINFO").attrib | {"NAME": ""} == {
            "ARCH": hwh.PS_FAMILIES[ps].arch, "DEVICE": device, "NAME": "", "PACKAGE": package,
            "SPEEDGRADE": speed}
        p = hwh.parser_class(ps)(hwh_data=text)
        assert type(p) is (_HWHUltrascale if ps == "ps8" else _HWHZynq)
        assert p.clock_dict[0]["enable"] == 1 and p.clock_dict[1]["enable"] == 0
        master = {r.get("MASTERBUSINTERFACE") for r in root.iter("MEMRANGE")}
        assert master == {hwh.PS_FAMILIES[ps].master}


def test_design_for_another_family_is_refused(tmp_path):
    """A PYNQ-Z2 (PS7) shell on a simulated KV260 fails at Overlay, naming the .hwh."""
    from pynq import Overlay

    b = write_sim_bundle(tmp_path / "z2", "jet", [jet_rms()[1]], board="pynq-z2")
    install("kv260", pace=False)
    with pytest.raises(RuntimeError, match=r"shell\.hwh: a ps7 design for 7z020; board kv260"):
        Overlay(str(b.path("shell.bit")))


def test_shell_outside_the_ps8_window_is_refused():
    with pytest.raises(ValueError, match="M_AXI_HPM0_FPD's window"):
        hwh.shell_hwh("s", 2, 100.0, False, 64, 0x43C0_0000, ps="ps8", part="xck26-sfvc784-2LV-c")
