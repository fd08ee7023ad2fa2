"""``hwpart board install DIR``: deploy's board side -- verify a copied bundle, preload its partials.

Runs on the board (standard library + numpy), after ``hwpart deploy`` copied the
bundle and ``board.json`` into DIR:

1. **Verify.** Every file ``board.json`` lists is hashed here, on the board, and
   compared with its sha256 (:func:`hwpart.board.manifest.verify`). One bad
   file refuses the whole bundle, with its name: a partial bitstream changed in
   transit or on the SD card would be loaded into a slot and compute wrong
   answers silently, and the agent accepts only bitstreams of a verified bundle.
2. **Preload the partials** where the FPGA manager loads them from. PYNQ's
   ``Overlay.pr_download(region, path)`` reads a partial's ``.bit`` and ``.hwh``
   from the path it is given (here: the bundle folder, on the board's own disk),
   converts the ``.bit`` to the FPGA manager's ``.bin`` (the header stripped,
   32-bit words byte-swapped), writes it into ``/lib/firmware`` and names it to
   ``/sys/class/fpga_manager/fpga0/firmware`` (PYNQ 3.x/4.0
   ``pl_server/embedded_device.py``). Install does that conversion once, now,
   into ``/lib/firmware/hwpart/BUNDLE/`` (a folder of its own, so two bundles'
   ``slot0_rm0`` never collide), checks each ``.bit`` header names the same part
   as the shell's, and records the firmware names and sha256 in
   ``DIR/preloaded.json``. A swap can then hand the FPGA manager a file that is
   already there and checked, so it costs only the reconfiguration. Writing
   ``/lib/firmware`` needs root; without it install verifies, says so, and PYNQ
   converts each partial at its swap as usual.

   A bundle for the simulated board has stand-in bitstreams: there is nothing to
   convert, and ``preloaded.json`` says so.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import struct
from pathlib import Path, PurePosixPath
from typing import Any

from hwpart.errors import HwpartError

#: The FPGA manager's firmware folder (the kernel's request_firmware looks there).
FIRMWARE_ROOT = "/lib/firmware"
PRELOADED = "preloaded.json"
FORMAT = "hwpart-preloaded/1"


class InstallError(HwpartError):
    """A deployed bundle that does not verify, or a partial that cannot be preloaded."""


# --------------------------------------------------------------------------- .bit files


def parse_bit(data: bytes, name: str = "bitstream") -> dict[str, Any]:
    """The fields of a Xilinx ``.bit`` file: design, part, date, time, and the config data.

    Layout: a 2-byte length and that many bytes (a fixed preamble), a 2-byte
    field, then tagged fields ``a`` (design;...), ``b`` (part), ``c`` (date),
    ``d`` (time) -- each a 1-byte tag, 2-byte big-endian length, NUL-ended text --
    and ``e``: a 4-byte big-endian length and the configuration data.
    """
    def bad(why: str) -> InstallError:
        return InstallError(f"{name}: not a Xilinx .bit file ({why}); rebuild it with Vivado")

    try:
        (n,) = struct.unpack_from(">H", data, 0)
        off = 2 + n + 2
        out: dict[str, Any] = {}
        keys = {0x61: "design", 0x62: "part", 0x63: "date", 0x64: "time"}
        while True:
            tag = data[off]
            off += 1
            if tag == 0x65:
                (length,) = struct.unpack_from(">I", data, off)
                off += 4
                if off + length != len(data):
                    raise bad(f"data field says {length} bytes, file holds {len(data) - off}")
                if length % 4:
                    raise bad(f"data of {length} bytes is not whole 32-bit words")
                out["data"] = data[off:]
                return out
            if tag not in keys:
                raise bad(f"unknown field 0x{tag:02x} at byte {off - 1}")
            (length,) = struct.unpack_from(">H", data, off)
            off += 2
            text = data[off:off + length].rstrip(b"\0").decode("ascii", "replace")
            off += length
            out[keys[tag]] = text.split(";")[0] if tag == 0x61 else text
    except (struct.error, IndexError):
        raise bad("truncated header") from None


def bit_to_bin(data: bytes, name: str = "bitstream") -> bytes:
    """The FPGA manager's ``.bin`` of a ``.bit``: configuration data, each 32-bit word
    byte-swapped (what PYNQ writes to /lib/firmware before every download)."""
    import numpy as np

    words = np.frombuffer(parse_bit(data, name)["data"], dtype=">u4")
    return words.astype("<u4").tobytes()


def device_of(part: str) -> str:
    """The die of a part name as Vivado and ``.bit`` headers spell it (``xc7z020clg400-1`` and
    ``7z020clg400`` -> ``7z020``; ``xczu7ev-ffvc1156-2-e`` -> ``zu7ev``; ``xck26-...`` -> ``k26``)."""
    p = part.lower()
    p = p[2:] if p.startswith("xc") else p
    m = re.match(r"(7z\d+s?|zu\d+[a-z]*|k\d+|7[akvs]\d+t?)", p)
    return m.group(1) if m else p.split("-")[0]


# --------------------------------------------------------------------------- install


def install(directory: Path | str, firmware_dir: Path | str | None = None,
            preload: bool = True) -> dict[str, Any]:
    """Verify ``directory`` against its ``board.json`` and preload its partials.

    Returns what was done (also written to ``DIR/preloaded.json``); raises
    :class:`InstallError` naming the first bad file.
    """
    from hwpart.board import manifest as bm
    from hwpart.errors import ConfigError

    d = Path(directory).expanduser()
    try:
        m = bm.load_board_manifest(d)
        problems = bm.verify(m)
    except ConfigError as exc:
        raise InstallError(str(exc)) from None
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise InstallError(f"{problems[0]}{more}; refusing this bundle: re-deploy it")
    report: dict[str, Any] = {"format": FORMAT, "bundle": m.name, "board": m.board,
                              "verified_files": len(m.files),
                              "verified_bytes": sum(m.path(r).stat().st_size for r in m.files),
                              "simulated": m.simulated, "partials": {}}
    fw = Path(firmware_dir) if firmware_dir else Path(FIRMWARE_ROOT) / "hwpart" / m.name
    partials = sorted({bit for r in m.rms for bit in r.partials.values()})
    if not preload:
        report["preload"] = "skipped (--no-preload)"
    elif m.simulated:
        report["preload"] = ("nothing to convert: the simulated board's stand-in bitstreams "
                             "are read from the bundle folder")
        for bit in partials:
            report["partials"][bit] = {"bit": str(m.path(bit)), "bin": None}
    elif not _writable(fw):
        report["preload"] = (f"not done: {fw} is not writable (run install as root); PYNQ "
                             "converts each partial at its swap instead")
    else:
        shell = parse_bit(m.path(m.shell_bit).read_bytes(), str(m.path(m.shell_bit)))
        die = device_of(shell.get("part", ""))
        fw.mkdir(parents=True, exist_ok=True)
        for bit in partials:
            src = m.path(bit)
            raw = src.read_bytes()
            head = parse_bit(raw, str(src))
            if device_of(head.get("part", "")) != die:
                raise InstallError(f"{src}: built for part {head.get('part')!r}, the shell for "
                                   f"{shell.get('part')!r}; refusing this bundle: rebuild it")
            data = bit_to_bin(raw, str(src))
            out = fw / (PurePosixPath(bit).stem + ".bin")
            tmp = out.with_name(f".{out.name}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, out)
            name = os.path.relpath(out, FIRMWARE_ROOT)
            report["partials"][bit] = {
                "bit": str(src), "bin": str(out), "part": head.get("part"),
                "bytes": len(data), "sha256": bm.sha256_file(out),
                "firmware_name": None if name.startswith("..") else name}
        report["preload"] = f"{len(partials)} partials converted into {fw}"
    (d / PRELOADED).write_text(json.dumps(report, indent=1) + "\n")
    return report


def _writable(folder: Path) -> bool:
    p = folder
    while not p.exists():
        if p.parent == p:
            return False
        p = p.parent
    return os.access(p, os.W_OK)


# --------------------------------------------------------------------------- command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", help="the deployed bundle folder (holding board.json)")
    parser.add_argument("--firmware-dir", help="where to write the partials' .bin (default "
                                               f"{FIRMWARE_ROOT}/hwpart/BUNDLE; needs root)")
    parser.add_argument("--no-preload", action="store_true", help="verify only")


def run(args: argparse.Namespace) -> int:
    r = install(args.directory, args.firmware_dir, preload=not args.no_preload)
    print(f"verified {r['verified_files']} files ({r['verified_bytes'] / 1e6:.1f} MB) of bundle "
          f"{r['bundle']} against board.json: all sha256 match")
    print(f"preload: {r['preload']}")
    print(f"wrote {Path(args.directory).expanduser() / PRELOADED}")
    return 0
