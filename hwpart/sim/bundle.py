"""Overlay bundles as the FPGA device reads them, and simulated bundles written from RMs.

A bundle is a folder with ``manifest.yaml``: the shell (``.bit`` + ``.hwh``),
the slots, each RM (layers, shapes, stream types, cycles, C-simulation library)
with one partial (``.bit`` + ``.hwh``) per slot it may go into, and the sha256
of every file. This is the minimal interface the device needs; the overlay
builder (``hwpart.overlay``) writes the full manifest with the same fields.

:func:`write_sim_bundle` writes a bundle whose bitstreams are the simulated
board's stand-ins (:mod:`hwpart.sim.rm`, :mod:`hwpart.sim.board`) and whose
``.hwh`` files are generated (:mod:`hwpart.sim.hwh`): everything PYNQ needs to
run ``Overlay`` and ``pr_download`` against :class:`~hwpart.sim.board.SimBoard`.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from hwpart.board import regs
from hwpart.boards import Board, load_board
from hwpart.errors import ConfigError
from hwpart.overlay.manifest import sha256_file
from hwpart.sim import fastrm, hwh
from hwpart.sim.hwh import write_shell_bit
from hwpart.sim.rm import RmSpec, write_partial_bit

FORMAT = "hwpart-bundle/1"


@dataclass
class BundleRM:
    spec: RmSpec
    partials: dict[int, str]  # slot -> partial .bit, relative to the bundle


@dataclass
class Bundle:
    root: Path
    name: str
    board: str
    shell_bit: str
    slots: int
    rms: list[BundleRM]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256

    def path(self, rel: str) -> Path:
        return self.root / rel

    def rm(self, name: str) -> BundleRM:
        for r in self.rms:
            if r.spec.name == name:
                return r
        raise KeyError(name)


def load_bundle(root: Path | str) -> Bundle:
    """A bundle of either format: ``hwpart overlay build``'s, or a simulated one of ours."""
    root = Path(root)
    mf = root / "manifest.yaml"
    if not mf.is_file():
        raise ConfigError(f"{root}: no manifest.yaml (is this an overlay bundle?)")
    try:
        d = yaml.safe_load(mf.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{mf}: not YAML ({exc})") from exc
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        return from_overlay_manifest(root)
    try:
        rms = []
        for r in d["rms"]:
            spec = RmSpec.from_json({k: v for k, v in r.items() if k != "partials"}, base=root)
            rms.append(BundleRM(spec, {int(k): v for k, v in r["partials"].items()}))
        return Bundle(root, d["name"], d["board"], d["shell"]["bit"], int(d["slots"]), rms,
                      dict(d.get("files", {})))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{mf}: malformed bundle manifest ({type(exc).__name__}: {exc})") from exc


def write_sim_bundle(root: Path | str, name: str, rms: list[RmSpec], board: Board | str = "pynq-z2",
                     sg: bool = False, slots: int | None = None,
                     blocks: dict[str, tuple[int, int]] | None = None) -> Bundle:
    """A bundle for the simulated board: shell, one partial per RM per slot, sha256 of all.
    ``blocks``: where the shell's blocks sit (name -> (address, range)), default the
    layout hwpart builds (:func:`hwpart.board.regs.shell_map`); the board and the host
    read them back from the generated ``.hwh``."""
    root = Path(root)
    b = load_board(board) if isinstance(board, str) else board
    n_slots = slots or b.slots.count
    root.mkdir(parents=True, exist_ok=True)
    (root / "partials").mkdir(exist_ok=True)
    (root / "csim").mkdir(exist_ok=True)
    (root / "fast").mkdir(exist_ok=True)
    base = hwh.BASE[b.ps]
    amap = dict(blocks) if blocks is not None else regs.shell_map(base, n_slots)
    write_shell_bit(root / "shell.bit", {"board": b.name, "slots": n_slots, "sg": sg,
                                         "data_width_bits": b.dma.data_width_bits})
    (root / "shell.hwh").write_text(hwh.shell_hwh(name, n_slots, b.clocks.pl_mhz, sg,
                                                  b.dma.data_width_bits, base, ps=b.ps,
                                                  part=b.part, blocks=amap))
    entries = []
    for spec in rms:
        lib = root / "csim" / f"{spec.name}.so"
        shutil.copyfile(spec.library, lib)
        local = RmSpec(**{**spec.__dict__, "library": str(lib.resolve()),
                          "fast_model": _copy_fast_model(spec, root / "fast")})
        partials = {}
        for k in range(n_slots):
            bit = root / "partials" / f"slot{k}_{spec.name}.bit"  # as hwpart.overlay names them
            write_partial_bit(bit, local, k)
            bit.with_suffix(".hwh").write_text(hwh.partial_hwh(
                spec.name, amap[regs.block_names(k)[2]][0], ps=b.ps, part=b.part))
            partials[k] = str(bit.relative_to(root))
        d = local.relative_to(root)
        d["partials"] = partials
        entries.append(d)
    files = {str(p.relative_to(root)): sha256_file(p)
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.yaml"}
    manifest = {"format": FORMAT, "name": name, "board": b.name,
                "shell": {"bit": "shell.bit", "hwh": "shell.hwh"},
                "slots": n_slots,
                "dma": {"sg": sg, "data_width_bits": b.dma.data_width_bits},
                "rms": entries, "files": files}
    (root / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    return load_bundle(root)


def _copy_fast_model(spec: RmSpec, dst: Path) -> dict | None:
    """The RM's vectorised model, copied into the bundle (checked against its sha256 first)."""
    fm = spec.fast_model
    if not fm or not fm.get("file"):
        return fm
    src = Path(fm["file"])
    fastrm.load_model(src, fm.get("sha256") or "")  # refuses a changed or unreadable file
    out = dst / f"{spec.name}.json"
    shutil.copyfile(src, out)
    return {**fm, "file": str(out.resolve())}


def from_overlay_manifest(root: Path) -> Bundle:
    """Read a bundle written by ``hwpart overlay build`` (``hwpart.overlay.manifest``).

    Every file's sha256 is checked on load (that loader refuses a mismatch and
    names the file). A *built* bundle (Vivado made the bitstreams) is used as it
    is, on a board or on the simulated board if its bitstreams are simulated
    ones. A bundle with scripts only has no bitstreams yet: for the simulated
    board its stand-ins are generated under ``BUNDLE/sim/`` (shell, one partial
    per RM per slot, generated ``.hwh``, sha256 of each) from the manifest's
    RMs, their C-simulation libraries and the board's figures.
    """
    from hwpart.overlay.manifest import load_manifest

    m = load_manifest(root, verify=True)
    specs = []
    for r in m.rms:
        top = r.csim.symbol[: -len("_float")] if r.csim.symbol.endswith("_float") else r.csim.symbol
        fast = None
        if r.fast_model is not None:
            fast = {k: v for k, v in asdict(r.fast_model).items() if k != "file"}
            if r.fast_model.file:
                fast["file"] = str((root / r.fast_model.file).resolve())
                fast["sha256"] = next(f.sha256 for f in r.files if f.path == r.fast_model.file)
        specs.append(RmSpec(r.name, list(r.layers), tuple(r.in_shape), tuple(r.out_shape),
                            r.precision, r.precision, str((root / r.csim.library).resolve()),
                            top=top, latency_cycles=int(r.cycles.latency),
                            ii_cycles=max(1, int(r.cycles.ii)), fast_model=fast))
    if m.status == "built":
        rms = [BundleRM(spec, {int(k): v for k, v in r.partials.items()})
               for spec, r in zip(specs, m.rms, strict=True)]
        files = {f.path: f.sha256 for f in m.all_files()}
        return Bundle(root, m.name, m.board.name, m.shell.bitstream, len(m.slots), rms, files)
    sim = root / "sim"
    digest = sha256_file(root / "manifest.yaml")
    stamp = sim / "source.sha256"
    if not (stamp.is_file() and stamp.read_text().strip() == digest):
        b = write_sim_bundle(sim, m.name, specs, board=m.board.name, slots=len(m.slots))
        stamp.write_text(digest + "\n")
    else:
        b = load_bundle(sim)
    return b
