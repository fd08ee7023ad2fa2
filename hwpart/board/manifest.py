"""``board.json``: what the board side knows of an overlay bundle, readable with the stdlib.

A board image has no pydantic or PyYAML, so it cannot read ``manifest.yaml``.
The host writes this smaller JSON file from the bundle
(:func:`write_board_manifest`); the board agent, ``hwpart board check`` and
deploy's board side read it (:func:`load_board_manifest`) and check every file
against it (:func:`verify`). It holds only what driving the shell needs:

* the shell's ``.bit``/``.hwh``, the slot count and the DMA's stream word
  width -- no addresses: those are the ``.hwh``'s, read when the shell loads;
* per RM: its name, the identity word the slot's ``rm_info`` reports (``RM_INFO + 4``,
  :func:`hwpart.board.regs.rm_id`), the bytes of one sample's stream words in
  and out at that word width, and its partial ``.bit`` per slot (each with its
  ``.hwh`` next to it, PYNQ's convention);
* the sha256 of every file of the bundle.

Paths are relative to the folder ``board.json`` sits in, which is the bundle
folder (the one holding ``manifest.yaml``) or a copy of it; a path that leaves
that folder is refused, so nothing outside a verified bundle is ever
downloaded into the fabric.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hwpart.board.regs import rm_id
from hwpart.errors import ConfigError

FORMAT = "hwpart-board/1"
FILENAME = "board.json"


def sha256_file(path: Path | str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (partials are megabytes; boards have little RAM)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                return h.hexdigest()
            h.update(block)


@dataclass(frozen=True)
class BoardRM:
    """One reconfigurable module as the board drives it."""

    name: str
    identity: int  # the word the slot reads back at RM_INFO + 4
    in_bytes: int  # one sample's stream words into the RM, at the shell's word width
    out_bytes: int  # one sample's stream words out of it
    partials: dict[int, str]  # slot -> partial .bit, relative to the bundle folder


@dataclass
class BoardManifest:
    """See the module docstring. ``root``: the folder paths are relative to (not stored)."""

    name: str
    board: str
    shell_bit: str
    slots: int
    data_width_bits: int
    rms: list[BoardRM]
    files: dict[str, str] = field(default_factory=dict)  # relative path -> sha256
    simulated: bool = False  # stand-in bitstreams of the simulated board, not Vivado's
    root: Path = Path(".")
    source: str = FILENAME  # where it was read from, for messages

    @property
    def shell_hwh(self) -> str:
        return str(PurePosixPath(self.shell_bit).with_suffix(".hwh"))

    def rm(self, name: str) -> BoardRM:
        for r in self.rms:
            if r.name == name:
                return r
        raise ConfigError(f"{self.source}: no RM named {name!r} in bundle {self.name} "
                          f"(it lists {[r.name for r in self.rms]})")

    def path(self, rel: str) -> Path:
        """The file ``rel`` inside the bundle folder; refuses one that would leave it."""
        p = PurePosixPath(rel)
        if p.is_absolute() or ".." in p.parts or not p.parts:
            raise ConfigError(f"{self.source}: path {rel!r} leaves the bundle folder; "
                              "only files inside it are accepted")
        return self.root / Path(*p.parts)

    def to_json(self) -> dict[str, Any]:
        return {"format": FORMAT, "name": self.name, "board": self.board,
                "simulated": self.simulated,
                "shell": {"bit": self.shell_bit, "hwh": self.shell_hwh,
                          "data_width_bits": self.data_width_bits},
                "slots": self.slots,
                "rms": [{"name": r.name, "identity": r.identity, "in_bytes": r.in_bytes,
                         "out_bytes": r.out_bytes,
                         "partials": {str(k): v for k, v in sorted(r.partials.items())}}
                        for r in self.rms],
                "files": dict(sorted(self.files.items()))}

    @classmethod
    def from_json(cls, d: Any, root: Path | str = ".", source: str = FILENAME) -> BoardManifest:
        """Parse and check a ``board.json`` document; a bad field raises :class:`ConfigError`
        naming it."""
        def bad(where: str, what: str) -> ConfigError:
            return ConfigError(f"{source}: field {where!r}: {what} (rewrite it with "
                               "write_board_manifest on the host, or re-deploy the bundle)")

        def get(obj: Any, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise bad(where, "missing")
            v = obj[key]
            if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
                raise bad(where, f"expected {getattr(kind, '__name__', kind)}, got {v!r}")
            return v

        def count(obj: Any, key: str, where: str, minimum: int = 1) -> int:
            v = get(obj, key, where, int)
            if v < minimum:
                raise bad(where, f"expected an integer >= {minimum}, got {v}")
            return v

        if not isinstance(d, dict):
            raise ConfigError(f"{source}: not a JSON object")
        if d.get("format") != FORMAT:
            raise bad("format", f"expected {FORMAT!r}, got {d.get('format')!r}")
        shell = get(d, "shell", "shell", dict)
        slots = count(d, "slots", "slots")
        rms = []
        names: set[str] = set()
        for i, r in enumerate(get(d, "rms", "rms", list)):
            w = f"rms[{i}]"
            name = get(r, "name", f"{w}.name", str)
            if not name or name in names:
                raise bad(f"{w}.name", f"empty or repeated RM name {name!r}")
            names.add(name)
            parts = get(r, "partials", f"{w}.partials", dict)
            partials: dict[int, str] = {}
            for k, v in parts.items():
                if not (str(k).isdigit() and int(k) < slots and isinstance(v, str) and v):
                    raise bad(f"{w}.partials.{k}", f"expected slot 0..{slots - 1} -> a "
                              f".bit path, got {k!r}: {v!r}")
                partials[int(k)] = v
            rms.append(BoardRM(name, get(r, "identity", f"{w}.identity", int),
                               count(r, "in_bytes", f"{w}.in_bytes"),
                               count(r, "out_bytes", f"{w}.out_bytes"), partials))
        files = get(d, "files", "files", dict)
        for k, v in files.items():
            if not (isinstance(v, str) and len(v) == 64
                    and all(c in "0123456789abcdef" for c in v)):
                raise bad(f"files.{k}", f"expected a sha256 (64 lower-case hex digits), got {v!r}")
        m = cls(get(d, "name", "name", str), get(d, "board", "board", str),
                get(shell, "bit", "shell.bit", str), slots,
                count(shell, "data_width_bits", "shell.data_width_bits", 8), rms, dict(files),
                bool(d.get("simulated", False)), Path(root), source)
        for rel in [m.shell_bit, *(p for r in m.rms for p in r.partials.values())]:
            m.path(rel)  # refuses a path that leaves the bundle folder
        return m


def load_board_manifest(directory: Path | str) -> BoardManifest:
    """``DIR/board.json``, checked field by field (see :meth:`BoardManifest.from_json`)."""
    d = Path(directory)
    f = d / FILENAME if d.is_dir() or not d.name.endswith(".json") else d
    if not f.is_file():
        raise ConfigError(f"{f}: no board manifest (write it on the host with "
                          "hwpart.board.manifest.write_board_manifest, or deploy the bundle)")
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{f}: not readable JSON ({exc}); re-deploy the bundle") from exc
    return BoardManifest.from_json(doc, f.parent, str(f))


def verify(directory: Path | str | BoardManifest) -> list[str]:
    """Every file ``board.json`` lists, against its sha256: one line per problem, [] when all
    match. The files a swap or a shell load needs must be listed; an unlisted one is a
    problem too."""
    m = directory if isinstance(directory, BoardManifest) else load_board_manifest(directory)
    problems = []
    needed = [m.shell_bit, m.shell_hwh]
    for r in m.rms:
        for bit in r.partials.values():
            needed += [bit, str(PurePosixPath(bit).with_suffix(".hwh"))]
    for rel in needed:
        if rel not in m.files:
            problems.append(f"{m.path(rel)}: needed by the shell or an RM but has no sha256 "
                            f"in {m.source}")
    for rel, want in m.files.items():
        try:
            p = m.path(rel)
        except ConfigError as exc:
            problems.append(str(exc))
            continue
        if not p.is_file():
            problems.append(f"{p}: missing (listed in {m.source})")
            continue
        got = sha256_file(p)
        if got != want:
            problems.append(f"{p}: sha256 {got[:16]}... differs from {m.source} ({want[:16]}...)")
    return problems


# --------------------------------------------------------------------------- host side


def board_manifest_of(bundle: Any, base: Path | str | None = None) -> BoardManifest:
    """The board manifest of a loaded :class:`hwpart.sim.bundle.Bundle` (host side), paths
    relative to ``base`` (default: the bundle's root). Imports host modules lazily."""
    root = Path(bundle.root).resolve()
    base_p = Path(base).resolve() if base is not None else root

    def rel(p: str) -> str:
        r = os.path.relpath(root / p, base_p)
        if r.startswith(".."):
            raise ConfigError(f"{root / p} is outside {base_p}: give the bundle folder itself")
        return PurePosixPath(*Path(r).parts).as_posix()

    width = _shell_word_bits(root / bundle.shell_bit) or _board_word_bits(bundle.board)
    rms = [BoardRM(r.spec.name, rm_id(r.spec.name), r.spec.layout_in(width).sample_bytes,
                   r.spec.layout_out(width).sample_bytes,
                   {int(k): rel(v) for k, v in r.partials.items()})
           for r in bundle.rms]
    return BoardManifest(bundle.name, bundle.board, rel(bundle.shell_bit), int(bundle.slots),
                         width,
                         rms, {rel(k): v for k, v in bundle.files.items()},
                         _is_simulated(root / bundle.shell_bit), base_p,
                         str(root / "manifest.yaml"))


def write_board_manifest(bundle: Any, dest_dir: Path | str | None = None) -> Path:
    """Write ``board.json`` for a bundle (its folder, or a loaded ``Bundle``) into ``dest_dir``.

    ``dest_dir`` is the bundle folder or a copy of it (what deploy puts on the
    board); it defaults to the bundle folder. Paths are relative to the bundle
    folder, so they hold in the copy. Returns the file written.
    """
    if isinstance(bundle, (str, os.PathLike)):
        from hwpart.sim.bundle import load_bundle

        base = Path(bundle)
        m = board_manifest_of(load_bundle(base), base)
    else:
        base = Path(bundle.root)
        m = board_manifest_of(bundle, base)
    dest = Path(dest_dir) if dest_dir is not None else base
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / FILENAME
    tmp = out.with_name(f".{FILENAME}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(m.to_json(), indent=1) + "\n")
    os.replace(tmp, out)
    return out


def _shell_word_bits(shell_bit: Path) -> int | None:
    """The AXI DMA's MM2S data width from the shell's ``.hwh`` (what the driver will see)."""
    import xml.etree.ElementTree as ET

    hwh = shell_bit.with_suffix(".hwh")
    try:
        tree = ET.parse(hwh)
    except (OSError, ET.ParseError):
        return None
    for mod in tree.iter("MODULE"):
        if str(mod.get("VLNV", "")).startswith("xilinx.com:ip:axi_dma:"):
            for p in mod.iter("PARAMETER"):
                if str(p.get("NAME", "")).lower() == "c_m_axi_mm2s_data_width":
                    return int(str(p.get("VALUE")))
    return None


def _board_word_bits(board: str) -> int:
    from hwpart.boards import load_board

    return int(load_board(board).dma.data_width_bits)


def _is_simulated(shell_bit: Path) -> bool:
    from hwpart.sim.hwh import SHELL_MAGIC

    try:
        with open(shell_bit, "rb") as f:
            return f.read(len(SHELL_MAGIC)) == SHELL_MAGIC
    except OSError:
        return False
