"""Render the Vivado/Vitis HLS scripts of a bundle from the templates in ``hls/``.

Templates are plain files with ``@{name}`` placeholders (``@`` because Tcl
itself uses ``$``). Every address and switch port is computed once here, in
:func:`address_map`, and written both into the Tcl and into manifest.yaml, so
the two cannot disagree; the layout is the simulated shell's (sim/README.md):
switch at base + 0x0000, slot k's decoupler at base + 0x1000*(1+k), switch
master/slave 1+k for slot k, DMA at base + 0x10000.
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from hwpart.boards import Board
from hwpart.datafiles import data_dir

#: Where the PS's control master starts on each PS (the PYNQ images' usual ranges).
BASE_ADDRESS = {"ps7": 0x43C0_0000, "ps8": 0xA000_0000}
DMA_OFFSET = 0x1_0000
SLOT_WINDOW = 0x1000

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
    decoupler_address: int
    pblock: str


@dataclass(frozen=True)
class AddressMap:
    base: int
    switch: int
    dma: int
    switch_ports: int
    slots: tuple[SlotAddress, ...]


def address_map(board: Board, slots: int) -> AddressMap:
    base = BASE_ADDRESS[board.ps]
    ranges = PBLOCKS.get(board.name, [])
    out = tuple(
        SlotAddress(k, 1 + k, 1 + k, base + SLOT_WINDOW * (1 + k),
                    ranges[k] if k < len(ranges) else f"(define a pblock for slot {k})")
        for k in range(slots))
    return AddressMap(base, base, base + DMA_OFFSET, 1 + slots, out)


def configurations(rms: list[str], slots: int) -> list[list[str]]:
    """Config j puts RM (j + k) mod R in slot k: R configs cover every (slot, RM) pair."""
    if not rms:
        return []
    return [[rms[(j + k) % len(rms)] for k in range(slots)] for j in range(len(rms))]


def partial_path(slot: int, rm: str) -> str:
    return f"partials/slot{slot}_{rm}.bit"


def render_bundle(board: Board, amap: AddressMap, rms: list[dict[str, object]],
                  name: str, stream_bits: int) -> dict[str, str]:
    """All scripts of a bundle: relative path -> text. ``rms``: name, layers, top, ..."""
    names = [str(r["name"]) for r in rms]
    files: dict[str, str] = {}
    ps = render(f"{board.ps}.tcl", pl_mhz=f"{board.clocks.pl_mhz:g}")
    files["vivado/ps.tcl"] = ps
    slot_cells, slot_addr = [], []
    synth_bds = ":".join(f"rm_{n}.bd" for n in names)
    for s in amap.slots:
        slot_cells.append(render(
            "slot.tcl", k=s.index, ctrl_port=f"{2 + s.index:02d}",
            switch_master=s.switch_master, switch_master_2=f"{s.switch_master:02d}",
            switch_slave=s.switch_slave, switch_slave_2=f"{s.switch_slave:02d}",
            first_rm=names[0] if names else "empty", synth_bds=synth_bds))
        slot_addr.append(f"assign_bd_address -offset 0x{s.decoupler_address:08X} -range 0x1000 "
                         f"[get_bd_addr_segs decoupler_{s.index}/s_axi_reg/Reg]")
    files["vivado/shell_bd.tcl"] = render(
        "shell_bd.tcl", board=board.name, part=board.part, slots=len(amap.slots),
        rm_names=" ".join(names), stream_bytes=stream_bits // 8, stream_bits=stream_bits,
        pl_hz=int(board.clocks.pl_mhz * 1e6), ctrl_ports=2 + len(amap.slots),
        switch_ports=amap.switch_ports, slot_cells="\n".join(slot_cells),
        switch_address=f"0x{amap.switch:08X}", dma_address=f"0x{amap.dma:08X}",
        slot_addresses="\n".join(slot_addr))
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
