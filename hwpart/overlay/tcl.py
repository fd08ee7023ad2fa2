"""Render the Vivado/Vitis HLS scripts of a bundle from the templates in ``hls/``.

Templates are plain files with ``@{name}`` placeholders (``@`` because Tcl
itself uses ``$``). Every address and switch port is computed once here, in
:func:`address_map`, from :func:`hwpart.board.regs.shell_map` -- the layout
the generated ``.hwh``, the RTL shell's defaults and the simulated board use --
and written both into the Tcl and into manifest.yaml. The host reads the
addresses back from the built shell's ``.hwh``, never from here. hwpart's own
blocks (``slot_ctrl``, ``rm_info``, with ``axil_reg_if``) are module
references to the same Verilog the RTL simulation runs, copied into the bundle.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hwpart.board import regs
from hwpart.boards import Board
from hwpart.datafiles import data_dir
from hwpart.sim import hwh

#: hwpart's own blocks in the Vivado shell: the RTL simulation's Verilog (sim/rtl)
RTL_MODULES = ("axil_reg_if.v", "slot_ctrl.v", "rm_info.v")
#: slot_ctrl's monitor-mode AXI4-Stream interfaces (X_INTERFACE_MODE in slot_ctrl.v) and the
#: decoupler <-> RM interface nets they tap
MONITOR = {"rp_in": "slot_{k}_in", "rp_out": "slot_{k}_out"}

#: Pblock ranges per board (estimates, see hls/pblocks.tcl); one per slot.
PBLOCKS = {
    "pynq-z2": ["CLOCKREGION_X1Y1:CLOCKREGION_X1Y1", "CLOCKREGION_X1Y2:CLOCKREGION_X1Y2"],
    "kv260": ["CLOCKREGION_X2Y0:CLOCKREGION_X3Y0", "CLOCKREGION_X2Y1:CLOCKREGION_X3Y1"],
    "zcu104": ["CLOCKREGION_X2Y0:CLOCKREGION_X3Y1", "CLOCKREGION_X2Y2:CLOCKREGION_X3Y3"],
}


class _T(string.Template):
    delimiter = "@"


def render(template: str, **values: object) -> str:
    """Fill ``hls/NAME``; a placeholder without a value is a bug, so it raises."""
    text = (data_dir("hls") / template).read_text()
    return _T(text).substitute({k: str(v) for k, v in values.items()})


@dataclass(frozen=True)
class SlotAddress:
    index: int
    switch_master: int  # feeds the slot
    switch_slave: int  # takes its output
    decoupler_address: int  # PG375's register
    slot_ctrl_address: int
    rm_info_address: int
    pblock: str


@dataclass(frozen=True)
class AddressMap:
    base: int
    switch: int
    dma: int
    switch_ports: int
    slots: tuple[SlotAddress, ...]
    blocks: dict[str, tuple[int, int]]  # every block: name -> (address, range)


def address_map(board: Board, slots: int) -> AddressMap:
    base = hwh.BASE[board.ps]  # where the PS's control master starts (hwh.PS_FAMILIES)
    blocks = regs.shell_map(base, slots)
    ranges = PBLOCKS.get(board.name, [])
    out = tuple(
        SlotAddress(k, 1 + k, 1 + k, *(blocks[n][0] for n in regs.block_names(k)),
                    ranges[k] if k < len(ranges) else f"(define a pblock for slot {k})")
        for k in range(slots))
    return AddressMap(base, blocks["switch"][0], blocks["dma"][0], 1 + slots, out, blocks)


#: each block's address segment in the shell's block design
SEGMENTS = {"switch": "switch/S_AXI_CTRL/Reg", "dma": "dma/S_AXI_LITE/Reg",
            "decoupler": "decoupler_{k}/s_axi_reg/Reg", "slot_ctrl": "slot_ctrl_{k}/s_axil/reg0",
            "rm_info": "slot_{k}/rm_info/s_axil/reg0"}


def address_lines(amap: AddressMap) -> list[str]:
    """One ``assign_bd_address`` per block of ``amap``."""
    out = []
    for name, (addr, size) in amap.blocks.items():
        kind, k = regs.block_kind(name) or ("", None)
        out.append(f"assign_bd_address -offset 0x{addr:08X} -range 0x{size:X} "
                   f"[get_bd_addr_segs {SEGMENTS[kind].format(k=k)}]")
    return out


def configurations(rms: list[str], slots: int) -> list[list[str]]:
    """Config j puts RM (j + k) mod R in slot k: R configs cover every (slot, RM) pair."""
    if not rms:
        return []
    return [[rms[(j + k) % len(rms)] for k in range(slots)] for j in range(len(rms))]


def partial_path(slot: int, rm: str) -> str:
    return f"partials/slot{slot}_{rm}.bit"


def render_bundle(board: Board, amap: AddressMap, rms: list[dict[str, object]],
                  name: str, stream_bits: int) -> dict[str, str]:
    """All scripts of a bundle: relative path -> text. ``rms``: name, layers, top, n_in,
    n_out (values per sample)."""
    names = [str(r["name"]) for r in rms]
    if 2 + 3 * len(amap.slots) > 16:  # DMA, switch, 3 per slot
        raise ValueError(f"{len(amap.slots)} slots need {2 + 3 * len(amap.slots)} AXI4-Lite "
                         "ports; the shell's SmartConnect has 16 (at most 4 slots)")
    files: dict[str, str] = {}
    ps = render(f"{board.ps}.tcl", pl_mhz=f"{board.clocks.pl_mhz:g}")
    files["vivado/ps.tcl"] = ps
    slot_cells = []
    synth_bds = ":".join(f"rm_{n}.bd" for n in names)
    for s in amap.slots:
        k = s.index
        slot_cells.append(render(
            "slot.tcl", k=k, dec_port=f"{2 + 3 * k:02d}", ctrl_port=f"{3 + 3 * k:02d}",
            info_port=f"{4 + 3 * k:02d}",
            switch_master=s.switch_master, switch_master_2=f"{s.switch_master:02d}",
            switch_slave=s.switch_slave, switch_slave_2=f"{s.switch_slave:02d}",
            first_rm=names[0] if names else "empty", synth_bds=synth_bds))
    table = " ".join(f"{r['name']} 0x{regs.rm_id(str(r['name'])):08X} {r['n_in']} {r['n_out']}"
                     for r in rms)
    files["vivado/shell_bd.tcl"] = render(
        "shell_bd.tcl", board=board.name, part=board.part, slots=len(amap.slots),
        rm_table=table, stream_bytes=stream_bits // 8, stream_bits=stream_bits,
        pl_hz=int(board.clocks.pl_mhz * 1e6), ctrl_ports=2 + 3 * len(amap.slots),
        switch_ports=amap.switch_ports, slot_cells="\n".join(slot_cells),
        addresses="\n".join(address_lines(amap)))
    rtl = data_dir("sim") / "rtl"
    for f in RTL_MODULES:
        files[f"vivado/rtl/{f}"] = (rtl / f).read_text()
    files["vivado/pblocks.tcl"] = render("pblocks.tcl", part=board.part, board=board.name,
                                         pblocks="\n".join(_pblock(s) for s in amap.slots))
    configs = configurations(names, len(amap.slots))
    cfg_lines, copies = [], []
    for j, placement in enumerate(configs):
        parts = " ".join(f"shell_i/slot_{k}:rm_{rm}_inst_0" for k, rm in enumerate(placement))
        cfg_lines.append(f"create_pr_configuration -name config_{j} -partitions [list {parts}]")
        run = "impl_1" if j == 0 else f"child_{j}_impl_1"
        if j == 0:
            cfg_lines.append("set_property PR_CONFIGURATION config_0 [get_runs impl_1]")
        else:
            cfg_lines.append(f"create_run {run} -parent_run impl_1 -flow {{Vivado Implementation "
                             f"2023}} -pr_config config_{j}")
        for k, rm in enumerate(placement):
            src = f"$runs/{run}/shell_i_slot_{k}_rm_{rm}_inst_0_partial.bit"
            copies.append(f"file copy -force {src} $bundle/{partial_path(k, rm)}")
            copies.append(f"file copy -force $bundle/vivado/shell_prj/shell_prj.gen/sources_1/bd/"
                          f"rm_{rm}/hw_handoff/rm_{rm}.hwh $bundle/"
                          f"{partial_path(k, rm)[:-4]}.hwh")
    files["vivado/dfx.tcl"] = render(
        "dfx.tcl", board=board.name, n_configs=len(configs), configs="\n".join(cfg_lines),
        copies="\n".join(copies), shell_bit="shell/shell.bit", shell_hwh="shell/shell.hwh")
    files["vivado/build_all.tcl"] = render("build_all.tcl", name=name, board=board.name,
                                           rm_names=" ".join(names))
    for r in rms:
        files[f"{r['name']}/hls.tcl"] = render(
            "rm_hls.tcl", rm=r["name"], layers=r["layers"], part=board.part,
            clock_ns=f"{1e3 / board.clocks.pl_mhz:g}", top=r["top"], stream_bits=stream_bits)
    return files


def _pblock(s: SlotAddress) -> str:
    return "\n".join([
        f"create_pblock pblock_slot_{s.index}",
        f"add_cells_to_pblock pblock_slot_{s.index} [get_cells shell_i/slot_{s.index}]",
        f"resize_pblock pblock_slot_{s.index} -add {{{s.pblock}}}",
        f"set_property SNAPPING_MODE ON [get_pblocks pblock_slot_{s.index}]",
        f"set_property HD.RECONFIGURABLE 1 [get_cells shell_i/slot_{s.index}]",
    ])
