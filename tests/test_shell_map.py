"""One register map for the Vivado Tcl, the generated .hwh, the simulated board and the host
driver; every address from the loaded .hwh; PG375's decouple-at-once, and the driver
idling a slot before it decouples it. (The RTL shell's side: tests/rtl/test_shell_top.py
probes every block at regs.shell_map's addresses with shell_top's default parameters.)"""

from __future__ import annotations

import re
import threading
import time

import numpy as np
import pytest
import torch
from test_fpga_device import jet_reference, run_staged
from test_fpga_support import graph, jet_rms, make_plan

pynq = pytest.importorskip("pynq")

from hwpart.board import regs  # noqa: E402
from hwpart.board.manifest import load_board_manifest, write_board_manifest  # noqa: E402
from hwpart.board.shell import ShellDriver  # noqa: E402
from hwpart.boards import load_board  # noqa: E402
from hwpart.devices.fpga import FpgaDevice, FpgaError  # noqa: E402
from hwpart.overlay import tcl  # noqa: E402
from hwpart.sim import hwh  # noqa: E402
from hwpart.sim.board import BusError, install  # noqa: E402
from hwpart.sim.bundle import write_sim_bundle  # noqa: E402
from hwpart.stages import split  # noqa: E402

BASE = hwh.BASE["ps7"]
#: every block somewhere else than the layout hwpart builds, in another order
MOVED = {"switch": (BASE + 0x9_4000, 0x1000), "dma": (BASE + 0x4_0000, 0x1_0000),
         "decoupler_0": (BASE + 0x8_3000, 0x1000), "decoupler_1": (BASE + 0x5_0000, 0x1000),
         "slot_ctrl_0": (BASE + 0x6_1000, 0x1000), "slot_ctrl_1": (BASE + 0x9_0000, 0x1000),
         "slot_0/rm_info": (BASE + 0x7_7000, 0x1000), "slot_1/rm_info": (BASE + 0x1000, 0x1000)}


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("moved") / "b", "jet", jet_rms(), blocks=MOVED)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return write_sim_bundle(tmp_path_factory.mktemp("plain") / "b", "jet", jet_rms())


def test_a_shell_with_every_block_moved_runs_the_jet_tagger_end_to_end(moved):
    """CPU | FPGA (both slots chained) | CPU, bit-exact, with no block where hwpart puts it."""
    from hwpart.devices.cpu import CpuDevice

    assert all(MOVED[n][0] != a for n, (a, _) in regs.shell_map(BASE, 2).items())
    lg = graph("jet_tagger")
    plan = make_plan(lg, [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4", "_5"]),
                          ("cpu", ["_6", "_7"])])
    dev = FpgaDevice(moved.root, fpga="sim", pace=False)
    x = torch.from_numpy(np.random.default_rng(3).uniform(-3, 3, (21, 16)).astype(np.float32))
    y = run_staged(split(lg, plan), {"cpu": CpuDevice(), "fpga": dev}, x)
    assert torch.equal(y, jet_reference(lg, x, jet_rms()))
    board = dev.sim
    assert {b.name: (b.base, b.range) for b in board.blocks} == MOVED
    assert [s.processed for s in board.slots] == [1, 1] and board.switch.commits > 0
    # nothing answers where the built layout would have put the blocks
    for addr, _ in regs.shell_map(BASE, 2).values():
        if not any(addr in b for b in board.blocks):
            with pytest.raises(BusError, match=f"0x{addr:08X}"):
                board.read_registers(addr, 4)


def test_an_unmapped_access_is_a_bus_error_naming_the_address(plain):
    board = install(pace=False)
    with pytest.raises(BusError, match=r"no block of \(no overlay loaded\) decodes address 0x43C00000"):
        pynq.MMIO(BASE, 0x1000).read(0)
    pynq.Overlay(str(plain.path("shell.bit")))
    gap = BASE + 0x5000  # between decoupler_1 and the DMA
    with pytest.raises(BusError, match="no block of shell.hwh decodes address 0x43C05000") as e:
        pynq.MMIO(gap, 0x100).read(0x0)
    assert "decoupler_1 0x43C02000-0x43C02FFF" in str(e.value)  # what is there instead
    with pytest.raises(BusError, match="0x43C05004"):
        pynq.MMIO(gap, 0x100).write(0x4, 1)
    # a DMA channel whose registers are not where the code looks never reads "running"
    with pytest.raises(BusError, match="0x43C50004"):
        pynq.MMIO(BASE + 0x5_0000, 0x100).read(0x4)
    assert board.switch.commits == 0 and all(not s.decouple for s in board.slots)


def _tcl_addresses(text: str) -> dict[str, tuple[int, int]]:
    segs = {v.format(k=r"(\d+)"): k for k, v in tcl.SEGMENTS.items()}
    out = {}
    for off, size, seg in re.findall(r"assign_bd_address -offset (0x[0-9A-F]+) -range "
                                     r"(0x[0-9A-F]+) \[get_bd_addr_segs (\S+)\]", text):
        for pat, kind in segs.items():
            m = re.fullmatch(pat, seg)
            if m:
                name = kind if not m.groups() else dict(zip(
                    ("decoupler", "slot_ctrl", "rm_info"), regs.block_names(int(m[1])),
                    strict=True))[kind]
                out[name] = (int(off, 16), int(size, 16))
    return out


@pytest.mark.parametrize("board_name", ["pynq-z2", "kv260"])
def test_tcl_hwh_and_simulated_board_list_the_same_addresses(board_name, tmp_path):
    """The Vivado shell's assign_bd_address lines, the generated .hwh as PYNQ parses it and
    the simulated board's decode all equal regs.shell_map; each block is the same IP."""
    board = load_board(board_name)
    amap = tcl.address_map(board, 2)
    want = regs.shell_map(hwh.BASE[board.ps], 2)
    files = tcl.render_bundle(board, amap, [{"name": "fc2", "layers": "_2,_3", "top": "fc2",
                                             "n_in": 64, "n_out": 32}], "jet", 64)
    shell_tcl = files["vivado/shell_bd.tcl"]
    assert _tcl_addresses(shell_tcl) == want
    # the blocks the Tcl instantiates are the IPs the .hwh names, hwpart's from sim/rtl
    assert "xilinx.com:ip:dfx_decoupler decoupler_" in files["vivado/shell_bd.tcl"] + "".join(
        files.values())
    for k in range(2):
        assert f"-reference slot_ctrl slot_ctrl_{k}" in shell_tcl
        assert "HAS_AXI_LITE 1" in shell_tcl
    assert "-reference rm_info rm_info" in shell_tcl
    assert f"fc2 0x{regs.rm_id('fc2'):08X} 64 32" in shell_tcl  # the RM's identity words
    for f in tcl.RTL_MODULES:
        assert files[f"vivado/rtl/{f}"].startswith("//")
    verilog = files["vivado/rtl/slot_ctrl.v"]
    ports = set(re.findall(r"\b(?:input|output)\s+(?:wire|reg)\s+(?:\[[^]]+\]\s*)?(\w+)", verilog))
    assert {"decouple_status", "rm_reset", "rm_in_reset", "rm_active", "rst", "clk"} <= ports
    for intf, net in tcl.MONITOR.items():  # the monitor taps, as the Verilog declares them
        for sig in ("TVALID", "TREADY", "TLAST"):
            assert f'"xilinx.com:interface:axis:1.0 {intf} {sig}"' in verilog
            assert f"{intf}_{sig.lower()}" in ports
        for k in range(2):
            assert (f"connect_bd_intf_net -intf_net {net.format(k=k)} "
                    f"[get_bd_intf_pins slot_ctrl_{k}/{intf}]") in shell_tcl
            assert shell_tcl.count(f"-intf_net {net.format(k=k)} ") == 2  # the RM's and the tap

    b = write_sim_bundle(tmp_path / "b", "jet", jet_rms(), board=board)
    parsed = hwh.read_hwh(b.path("shell.hwh"))
    got = {n: (int(ip["phys_addr"]), int(ip["addr_range"])) for n, ip in parsed.ip_dict.items()
           if regs.block_kind(n, ip["type"])}
    assert got == want
    for n, ip in parsed.ip_dict.items():
        kind = regs.block_kind(n, ip["type"])
        if kind:
            assert ip["type"].startswith(regs.VLNV[kind[0]] + ":")
    sim = install(board_name, pace=False)
    pynq.Overlay(str(b.path("shell.bit")))
    assert {blk.name: (blk.base, blk.range) for blk in sim.blocks} == want


def test_pg375_decouples_at_once_and_cuts_a_packet_in_flight(plain):
    """Decouple written while the RM still streams a packet: the packet is cut, as with
    the IP (no packet boundary is awaited); its S2MM never completes."""
    board = install(pace=True)
    ol = pynq.Overlay(str(plain.path("shell.bit")))
    ol.pr_download("slot_0", str(plain.path("partials/slot0_fc3.bit")))
    board.set_slot_speed(0, stall_s=0.5)  # the RM holds each packet 0.5 s (modeled)
    ol.switch.mi = np.array([1, 0], dtype=np.int64)
    inb, outb = pynq.allocate((4, 32), np.int16), pynq.allocate((4, 32), np.int16)
    ol.dma.recvchannel.transfer(outb)
    ol.dma.sendchannel.transfer(inb)
    assert not ol.slot_ctrl_0.read(regs.STATUS) & regs.ST_RP_IDLE  # a packet is inside
    ol.decoupler_0.write(regs.DECOUPLE, 1)
    assert ol.decoupler_0.read(regs.DECOUPLE) == 1  # status at once, no boundary awaited
    assert board.slots[0].cut == 1
    ol.decoupler_0.write(regs.DECOUPLE, 0)
    time.sleep(0.7)
    assert not ol.dma.recvchannel.idle and board.dma.cut == 1  # waits for a lost last beat
    assert np.all(np.asarray(outb) == 0)


def _driver(bundle, timeout_s=2.0):
    board = install(pace=False)
    m = load_board_manifest(write_board_manifest(bundle.root).parent)
    return board, ShellDriver(m, timeout_s=timeout_s, model=board)


def test_the_driver_idles_a_slot_before_it_decouples_it(plain):
    """Every decouple the driver writes comes after the master feeding the slot was
    disabled and slot_ctrl reported the RP idle; swaps between batches lose nothing."""
    board, drv = _driver(plain)
    trace: list[tuple[str, int, int]] = []
    read, write = board.read_registers, board.write_registers

    def traced_read(a, n):
        data = read(a, n)
        trace.append(("r", a, int.from_bytes(data[:4], "little")))
        return data

    def traced_write(a, data):
        trace.append(("w", a, int.from_bytes(bytes(data)[:4], "little")))
        write(a, data)

    board.read_registers, board.write_registers = traced_read, traced_write
    fc3 = plain.rm("fc3").spec
    words = np.random.default_rng(0).integers(-2000, 2000, (6, 32)).astype(np.int16)
    for rm_in_slot0 in ("fc3", "fc2", "fc3"):
        drv.swap(0, rm_in_slot0)
        drv.run(["fc3"], [1], words.view(np.uint8))
    out, _ = drv.run(["fc3"], [0], words.view(np.uint8))
    assert out.view(np.int16).shape[0] == words.size and board.slots[0].cut == 0
    blk = {b.name: b.base for b in board.blocks}
    for k in range(2):
        dec, ctrl = blk[f"decoupler_{k}"], blk[f"slot_ctrl_{k}"]
        feed = blk["switch"] + regs.SW_MI_MUX + 4 * (1 + k)
        for i, (op, a, v) in enumerate(trace):
            if (op, a) == ("w", dec) and v & 1:
                before = trace[:i]
                status = [v2 for op2, a2, v2 in before if (op2, a2) == ("r", ctrl + regs.STATUS)]
                assert status and status[-1] & regs.ST_RP_IDLE, "decoupled without idle"
                fed = [v2 for op2, a2, v2 in before if (op2, a2) == ("w", feed)]
                assert not fed or fed[-1] == regs.SW_DISABLE, "decoupled while routed"
    assert sum(1 for op, a, v in trace if (op, a) == ("w", blk["decoupler_0"]) and v & 1) == 3
    assert fc3.n_in == 32


def test_a_slot_that_holds_data_is_not_decoupled(plain):
    """A packet stuck in the RP (its route out gone): the swap refuses, naming the slot,
    and nothing is cut -- PG375 would cut it."""
    board, drv = _driver(plain, timeout_s=0.3)
    drv.ensure(0, "fc3")
    ol = drv.ol  # another program on the board routes a packet in and nothing out
    ol.switch.write(regs.SW_MI_MUX + 4, 0)
    ol.switch.write(regs.SW_MI_MUX, regs.SW_DISABLE)
    ol.switch.write(regs.SW_CTRL, regs.SW_COMMIT)
    inb = pynq.allocate((4, 32), np.int16)
    ol.dma.sendchannel.transfer(inb)
    done = threading.Event()
    threading.Thread(target=lambda: (ol.dma.sendchannel.wait(), done.set()), daemon=True).start()
    assert done.wait(5) and len(board.slots[0].out) == 1
    with pytest.raises(FpgaError, match=r"slot 0.*idle before decoupling"):
        drv.swap(0, "fc2")
    assert board.slots[0].cut == 0 and not board.slots[0].decouple
    assert len(board.slots[0].out) == 1  # still there, intact


def test_the_rtl_shells_default_parameters_are_the_same_layout():
    """shell_top.v's default addresses, read from the Verilog, are regs.shell_map's (relative
    to the shell's base; the DMA is not in the RTL). tests/rtl/test_shell_top.py then probes
    every block there in simulation."""
    from hwpart.rtlbridge import sim_rtl

    text = (sim_rtl() / "shell_top.v").read_text()

    def param(name: str) -> str:
        m = re.search(rf"parameter\s+\[[^]]+\]\s+{name}\s*=\s*([^,\n]+)", text)
        assert m, f"shell_top.v has no parameter {name}"
        return m[1].strip()

    def hexval(v: str) -> int:
        return int(v.split("'h")[1].replace("_", ""), 16)

    stride = re.search(r"slot_addrs\[32\*k \+: 32\] = first \+ 32'h([0-9A-Fa-f_]+) \* k", text)
    assert stride and int(stride[1].replace("_", ""), 16) == regs.WINDOW
    for slots in (1, 2, 3):
        rtl = {"switch": hexval(param("SWITCH_ADDR"))}
        for k in range(slots):
            for name, p in zip(regs.block_names(k), ("DECOUPLER_ADDRS", "SLOT_CTRL_ADDRS",
                                                     "RM_INFO_ADDRS"), strict=True):
                first = hexval(re.fullmatch(r"slot_addrs\((.+)\)", param(p))[1])
                rtl[name] = first + regs.WINDOW * k
        want = {n: a for n, (a, _) in regs.shell_map(0, slots).items() if n != "dma"}
        assert rtl == want


def test_an_unpaced_board_does_not_hold_a_slot_busy_on_modeled_time(plain):
    """Unpaced, a transfer completes without waiting for its modeled time, so the modeled
    timeline runs ahead of the host; the slot is idle once its packets are out."""
    board = install(pace=False)
    ol = pynq.Overlay(str(plain.path("shell.bit")))
    ol.pr_download("slot_0", str(plain.path("partials/slot0_fc3.bit")))
    board.set_slot_speed(0, stall_s=100.0)  # 100 s per packet on the modeled timeline
    ol.switch.mi = np.array([1, 0], dtype=np.int64)
    inb, outb = pynq.allocate((4, 32), np.int16), pynq.allocate((4, 32), np.int16)
    ol.dma.recvchannel.transfer(outb)
    ol.dma.sendchannel.transfer(inb)
    ol.dma.sendchannel.wait()
    ol.dma.recvchannel.wait()
    assert board.slots[0].busy_until > time.perf_counter() + 50  # modeled, far ahead
    assert ol.slot_ctrl_0.read(regs.STATUS) & regs.ST_RP_IDLE
    ol.decoupler_0.write(regs.DECOUPLE, 1)
    assert board.slots[0].cut == 0 and board.dma.cut == 0
