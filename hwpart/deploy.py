"""``hwpart deploy BUNDLE USER@HOST``: put an overlay bundle and hwpart's board side on a PYNQ board.

Over SSH (paramiko), in this order, stopping at the first problem with one line
that names the host, the file or the field, and says what to do:

1. check the bundle here (every sha256, as ``hwpart overlay show`` does), so a
   bundle that is already wrong never leaves the host;
2. connect, with the user's ``~/.ssh/config``, agent and keys, and check the
   host key against ``known_hosts`` (unknown keys are refused unless
   ``--accept-new-host-key``, as ssh's ``StrictHostKeyChecking=accept-new``);
3. read the board's facts with its own Python: Python and PYNQ versions, which
   board it is (PYNQ's ``BOARD``, ``/proc/device-tree/chosen/pynq_board``,
   ``/etc/xocl.txt``, the device tree's ``compatible``), free space;
4. refuse a board whose PYNQ the bundle does not support, a board of another
   part, a board with too little space;
5. copy the files the board manifest (``board.json``) lists, ``board.json``
   itself, and a wheel of hwpart (the board needs only ``hwpart.board``, which
   imports numpy, pynq and zmq, never torch);
6. install the wheel into the board's Python (``--install site``, the default:
   PYNQ's venv, with sudo where it is root's) or into the bundle folder
   (``--install target``: no root, a launcher script sets ``PYTHONPATH``);
7. run ``hwpart board install`` on the board: it checks every sha256 there (a
   file changed in transit or on the board is refused, by name) and preloads the
   partial bitstreams (:mod:`hwpart.board.install`);
8. print what to run next, on the board and on the host.

``--dry-run`` lists the same steps and the files, and connects to nothing: what
it cannot know without the board (versions, space) it names as a check to make.
Why SSH and not PYNQ's own remote device: docs/deploy.md.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from hwpart.errors import ConfigError, HwpartError

#: PYNQ 3.x images: the Python that has pynq (a venv with system site packages),
#: created by sdbuild's python_packages_jammy and by Kria-PYNQ's install.sh.
PYNQ_VENV_PYTHON = "/usr/local/share/pynq-venv/bin/python3"

#: PYNQ board names as images report them -> the FPGA part, for boards hwpart has
#: no YAML for (boards/*.yaml win where they exist). Parts: the boards' user guides.
KNOWN_PARTS = {
    "pynq-z1": "xc7z020clg400-1",
    "pynq-z2": "xc7z020clg400-1",
    "kv260": "xck26-sfvc784-2LV-c",
    "kr260": "xck26-sfvc784-2LV-c",
    "zcu104": "xczu7ev-ffvc1156-2-e",
    "zcu102": "xczu9eg-ffvb1156-2-e",
    "ultra96v2": "xczu3eg-sbva484-1-i",
}

#: ``/proc/device-tree/compatible`` entries -> PYNQ board name (Kria images have no BOARD
#: in a non-login shell; their device tree names the carrier card).
COMPATIBLE_BOARDS = {
    "xlnx,zynqmp-sk-kv260": "kv260",
    "xlnx,zynqmp-sk-kr260": "kr260",
    "xlnx,zynqmp-zcu104": "zcu104",
    "xlnx,zynqmp-zcu102": "zcu102",
}

#: Space kept free beyond what the bundle needs: an SD card filled to the last byte
#: breaks the board's own logging and package manager.
SPACE_MARGIN_BYTES = 32 * 1024 * 1024

BOARD_MANIFEST = "board.json"
LAUNCHER = "hwpart-board"


class DeployError(HwpartError):
    """A deploy that cannot go on: the message names the host, file or field at fault."""


# --------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Target:
    user: str | None
    host: str
    port: int | None

    def __str__(self) -> str:
        who = f"{self.user}@" if self.user else ""
        return f"{who}{self.host}" + (f":{self.port}" if self.port else "")


def parse_target(text: str) -> Target:
    """``[USER@]HOST[:PORT]`` (``[v6addr]:PORT`` for IPv6)."""
    user, _, rest = text.rpartition("@")
    port: int | None = None
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", rest) or re.fullmatch(r"([^:]+)(?::(\d+))?", rest)
    if not m or not m.group(1):
        raise DeployError(f"target {text!r}: expected USER@HOST or USER@HOST:PORT, e.g. "
                          "xilinx@192.168.2.99")
    if m.group(2):
        port = int(m.group(2))
        if not 0 < port < 65536:
            raise DeployError(f"target {text!r}: port {port} is out of range")
    return Target(user or None, m.group(1), port)


# --------------------------------------------------------------------------- bundle


@dataclass
class BundleInfo:
    """What deploy needs to know of a bundle, whichever of the two formats it is."""

    root: Path
    name: str
    board: str  # hwpart board name the bundle was built for
    part: str
    family: str
    pynq_version: str
    status: str  # "built" | "scripts" | "simulated"
    files: dict[str, str]  # relative path -> sha256 (manifest.yaml excluded)
    partials: list[str] = field(default_factory=list)
    model: str | None = None
    input_shape: list[int] | None = None

    def size(self, rel: str) -> int:
        return (self.root / rel).stat().st_size

    @property
    def total_bytes(self) -> int:
        return sum(self.size(r) for r in self.files) + (self.root / "manifest.yaml").stat().st_size


def load_bundle_info(path: str | Path) -> BundleInfo:
    """Read and check a bundle here (every sha256), before anything goes to a board."""
    import yaml

    from hwpart.boards import load_board
    from hwpart.overlay.manifest import load_manifest, sha256_file

    root = Path(path)
    mf = root / "manifest.yaml"
    if not mf.is_file():
        raise DeployError(f"{root}: no manifest.yaml; deploy takes an overlay bundle folder "
                          "(`hwpart overlay build ... -o bitstreams/NAME`)")
    try:
        raw = yaml.safe_load(mf.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{mf}: not YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(raw, dict) and raw.get("format") == "hwpart-bundle/1":
        # a bundle for the simulated board (hwpart.sim.bundle): board figures from its YAML
        board = load_board(str(raw.get("board", "")))
        files = dict(raw.get("files") or {})
        for rel, want in files.items():
            _check_rel(rel, mf)
            p = root / rel
            if not p.is_file():
                raise DeployError(f"{p}: listed in {mf} but missing; rebuild or re-copy the bundle")
            if sha256_file(p) != want:
                raise DeployError(f"{p}: sha256 does not match {mf}; rebuild or re-copy the "
                                  "bundle before deploying it")
        partials = [str(v) for r in raw.get("rms", []) for v in (r.get("partials") or {}).values()]
        return BundleInfo(root, str(raw["name"]), board.name, board.part, board.family,
                          board.pynq_version, "simulated", files, sorted(partials))
    m = load_manifest(root, verify=True)
    try:
        family = load_board(m.board.name).family
    except ConfigError:
        family = "zynq-7000" if m.board.ps == "ps7" else "zynq-ultrascale+"
    files = {f.path: f.sha256 for f in m.all_files()}
    partials = sorted(p for r in m.rms for p in r.partials.values())
    return BundleInfo(root, m.name, m.board.name, m.board.part, family, m.board.pynq_version,
                      m.status, files, partials, m.model.name, list(m.model.input_shape))


def _check_rel(rel: str, where: Path) -> None:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise DeployError(f"{where}: file '{rel}' is outside the bundle; paths must be "
                          "relative to the bundle folder")


def board_manifest(info: BundleInfo, out_dir: Path) -> tuple[Path, dict[str, str]]:
    """Write ``board.json`` for ``info`` into ``out_dir``; return it and the files it lists.

    The board manifest is :mod:`hwpart.board.manifest`'s (the board side reads it
    without PyYAML); what it lists is what deploy copies.
    """
    from hwpart.board import manifest as bm

    path = Path(bm.write_board_manifest(info.root, out_dir))
    listed = _listed_files(bm.load_board_manifest(out_dir))
    for rel in listed:
        _check_rel(rel, path)
    return path, listed


def _listed_files(doc: Any) -> dict[str, str]:
    """relative path -> sha256 from a loaded board manifest (a dict or an object)."""
    files = doc.get("files") if isinstance(doc, dict) else getattr(doc, "files", None)
    if isinstance(files, dict):
        return {str(k): str(v if isinstance(v, str) else v["sha256"]) for k, v in files.items()}
    out: dict[str, str] = {}
    for f in files or []:
        rel = f["path"] if isinstance(f, dict) else f.path
        sha = f["sha256"] if isinstance(f, dict) else f.sha256
        out[str(rel)] = str(sha)
    return out


# --------------------------------------------------------------------------- board facts

#: Runs on the board with its Python (any 3.x, so an old one still answers): one JSON line.
PROBE = r"""
import json, os, platform, shutil, sys
d = {"python": sys.executable, "version": list(sys.version_info[:3]),
     "machine": platform.machine(), "euid": os.geteuid(), "home": os.path.expanduser("~"),
     "board_env": os.environ.get("BOARD")}
try:
    import sysconfig
    site = sysconfig.get_paths()["purelib"]
    d["site"] = site
    d["site_writable"] = os.access(site, os.W_OK)
except Exception as exc:
    d["site"], d["site_writable"] = None, False
try:
    from importlib.metadata import version
    d["pynq"] = version("pynq")
except Exception:
    try:
        import pynq
        d["pynq"] = getattr(pynq, "__version__", None)
    except Exception as exc:
        d["pynq"] = None
        d["pynq_error"] = type(exc).__name__ + ": " + str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
def read(p):
    try:
        with open(p, "rb") as f:
            return [s for s in f.read().replace(b"\0", b"\n").decode("ascii", "replace").split("\n") if s.strip()]
    except OSError:
        return []
d["pynq_board"] = read("/proc/device-tree/chosen/pynq_board")
d["xocl"] = read("/etc/xocl.txt")
d["compatible"] = read("/proc/device-tree/compatible")
d["fpga_manager"] = os.path.exists("/sys/class/fpga_manager/fpga0/firmware")
def free(p):
    while p and not os.path.exists(p):
        p = os.path.dirname(p)
    p = p or "/"
    return [p, shutil.disk_usage(p).free, os.stat(p).st_dev]
dest = os.path.expanduser(sys.argv[1]) if len(sys.argv) > 1 else d["home"]
d["dest"] = dest
d["dest_free"] = free(dest)
d["firmware_free"] = free("/lib/firmware")
d["firmware_writable"] = os.access("/lib/firmware", os.W_OK)
print("HWPART-PROBE " + json.dumps(d))
"""


@dataclass
class BoardFacts:
    host: str
    python: str
    version: tuple[int, int, int]
    machine: str
    euid: int
    home: str
    site_writable: bool
    pynq: str | None
    pynq_error: str | None
    board: str | None  # normalised PYNQ board name, lower case
    board_from: str  # where the name came from
    fpga_manager: bool
    dest: str
    dest_free: int
    firmware_free: int
    firmware_writable: bool
    raw: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, host: str, out: str) -> BoardFacts:
        line = next((ln for ln in out.splitlines() if ln.startswith("HWPART-PROBE ")), None)
        if line is None:
            raise DeployError(f"{host}: the board's Python printed no facts ({out.strip()[:120]!r})")
        d = json.loads(line[len("HWPART-PROBE "):])
        board, src = identify_board(d)
        return cls(host=host, python=d["python"], version=tuple(d["version"]),
                   machine=d["machine"], euid=int(d["euid"]), home=d["home"],
                   site_writable=bool(d.get("site_writable")), pynq=d.get("pynq"),
                   pynq_error=d.get("pynq_error"), board=board, board_from=src,
                   fpga_manager=bool(d.get("fpga_manager")), dest=d["dest"],
                   dest_free=int(d["dest_free"][1]), firmware_free=int(d["firmware_free"][1]),
                   firmware_writable=bool(d.get("firmware_writable")), raw=d)


def identify_board(d: dict[str, Any]) -> tuple[str | None, str]:
    """The board's PYNQ name, lower case, and where it was read.

    PYNQ's own images export ``BOARD`` from ``/proc/device-tree/chosen/pynq_board``
    (sdbuild/packages/pynq/boardname.sh) and write it to ``/etc/xocl.txt``; Kria-PYNQ
    exports it from ``/etc/profile.d/pynq_venv.sh``, which a non-login SSH command
    does not read, so the device tree's ``compatible`` is the last resort.
    """
    for key, label in (("board_env", "BOARD"), ("pynq_board", "/proc/device-tree/chosen/pynq_board"),
                       ("xocl", "/etc/xocl.txt")):
        v = d.get(key)
        v = v[0] if isinstance(v, list) and v else v
        if isinstance(v, str) and v.strip() and v.strip().lower() != "unknown":
            return v.strip().lower(), label
    for c in d.get("compatible") or []:
        for prefix, name in COMPATIBLE_BOARDS.items():
            if c.startswith(prefix):
                return name, "/proc/device-tree/compatible"
    return None, ""


# --------------------------------------------------------------------------- checks


def _vtuple(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def check_python(facts: BoardFacts) -> None:
    if facts.version[:2] < (3, 10):
        raise DeployError(f"{facts.host}: {facts.python} is Python "
                          f"{'.'.join(map(str, facts.version))}; hwpart's board side needs 3.10+ "
                          "(PYNQ 3.0+ images have it: pass --python "
                          f"{PYNQ_VENV_PYTHON})")


def check_pynq(facts: BoardFacts, info: BundleInfo, allow_other: bool = False) -> str:
    """The board's PYNQ must be the bundle's major.minor (the patch may differ).

    A bundle's shell is built with the Vivado of that PYNQ release, and its
    ``.hwh`` is read by that release's parser; PYNQ 4.0 dropped the Zynq-7000.
    """
    want = info.pynq_version
    if facts.pynq is None:
        why = f" ({facts.pynq_error})" if facts.pynq_error else ""
        raise DeployError(f"{facts.host}: PYNQ is not importable by {facts.python}{why}; is this a "
                          f"PYNQ image? pass --python with PYNQ's Python (e.g. {PYNQ_VENV_PYTHON})")
    got_v, want_v = _vtuple(facts.pynq), _vtuple(want)
    if got_v[:1] and got_v[0] < 3:
        raise DeployError(f"{facts.host} runs PYNQ {facts.pynq}; hwpart's board side needs PYNQ "
                          "3.0 or later: flash a PYNQ 3.x image (docs/deploy.md)")
    if got_v[:2] != want_v[:2] and not allow_other:
        raise DeployError(f"{facts.host} runs PYNQ {facts.pynq}; bundle {info.name} supports PYNQ "
                          f"{'.'.join(map(str, want_v[:2]))}.x (built for {info.board} with PYNQ "
                          f"{want}): flash that image, rebuild the bundle for this one, or pass "
                          "--allow-pynq-mismatch to try anyway")
    return facts.pynq


def board_part(name: str) -> str | None:
    """The FPGA part of a board by PYNQ name: hwpart's boards/*.yaml first, then KNOWN_PARTS."""
    from hwpart.boards import load_board

    try:
        return load_board(name).part
    except ConfigError:
        return KNOWN_PARTS.get(name)


def check_part(facts: BoardFacts, info: BundleInfo, assume: str | None = None) -> str:
    """The board's part must be the bundle's: a partial built for another device is refused
    by the FPGA manager at best, and at worst half-writes a region."""
    name = assume.lower() if assume else facts.board
    if name is None:
        raise DeployError(f"{facts.host}: cannot tell which board this is (no BOARD, "
                          "/proc/device-tree/chosen/pynq_board, /etc/xocl.txt or known "
                          "compatible string); pass --board-name NAME (e.g. pynq-z2, kv260)")
    part = board_part(name)
    if part is None:
        raise DeployError(f"{facts.host} is a {name!r} board, whose FPGA part hwpart does not know; "
                          "add boards/NAME.yaml (docs/boards.md) or pass --board-name with a "
                          "board of the same part")
    if part.lower() != info.part.lower():
        raise DeployError(f"{facts.host} is a {name} ({part}, from "
                          f"{facts.board_from if not assume else '--board-name'}); bundle "
                          f"{info.name} was built for {info.board} ({info.part}): rebuild it "
                          f"with `hwpart overlay build ... --board {name}`")
    return part


def check_space(facts: BoardFacts, need_dest: int, need_firmware: int) -> None:
    if need_dest + SPACE_MARGIN_BYTES > facts.dest_free:
        raise DeployError(f"{facts.host}:{facts.dest} has {_mb(facts.dest_free)} free; the bundle "
                          f"needs {_mb(need_dest)} plus {_mb(SPACE_MARGIN_BYTES)} kept free: free "
                          "space on the board or pass --dest on a larger disk")
    if need_firmware and need_firmware + SPACE_MARGIN_BYTES > facts.firmware_free:
        raise DeployError(f"{facts.host}:/lib/firmware has {_mb(facts.firmware_free)} free; "
                          f"preloading the partials needs {_mb(need_firmware)} plus "
                          f"{_mb(SPACE_MARGIN_BYTES)} kept free: free space there or pass "
                          "--no-preload")


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


# --------------------------------------------------------------------------- ssh


class Remote:
    """One SSH connection (paramiko): commands, and files over SFTP."""

    def __init__(self, client: Any, target: Target, label: str) -> None:
        self.client = client
        self.target = target
        self.label = label
        self._sftp: Any = None

    def run(self, command: str, stdin: bytes | None = None,
            timeout: float = 600.0) -> tuple[int, str, str]:
        chan = self.client.get_transport().open_session(timeout=30)
        chan.settimeout(timeout)
        chan.exec_command(command)
        if stdin is not None:
            chan.sendall(stdin)
        chan.shutdown_write()
        out, err = bytearray(), bytearray()
        deadline = time.monotonic() + timeout
        while True:
            got = False
            while chan.recv_ready():
                out += chan.recv(65536)
                got = True
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
                got = True
            if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                break
            if time.monotonic() > deadline:
                chan.close()
                raise DeployError(f"{self.label}: `{command[:60]}` took longer than {timeout:.0f} s")
            if not got:
                time.sleep(0.01)
        rc = chan.recv_exit_status()
        chan.close()
        return rc, out.decode(errors="replace"), err.decode(errors="replace")

    @property
    def sftp(self) -> Any:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def makedirs(self, path: str) -> None:
        parts = PurePosixPath(path).parts
        cur = PurePosixPath(parts[0])
        for part in parts[1:]:
            cur = cur / part
            try:
                self.sftp.stat(str(cur))
            except FileNotFoundError:
                self.sftp.mkdir(str(cur))

    def put(self, local: Path, remote: str) -> None:
        self.sftp.put(str(local), remote)

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
        self.client.close()


def connect(target: Target, identity: str | None = None, known_hosts: str | None = None,
            accept_new: bool = False, password: str | None = None,
            timeout: float = 10.0, config_path: str | None = None) -> Remote:
    """Log in as ssh would: ``~/.ssh/config``, the agent and keys, ``known_hosts``.

    An unknown host key is refused (unless ``accept_new``, which records it), and a
    changed one always: a deploy copies what the board will run as root.
    """
    import paramiko

    cfg_file = Path(config_path or os.path.expanduser("~/.ssh/config"))
    hc: dict[str, Any] = {}
    if cfg_file.is_file():
        hc = dict(paramiko.SSHConfig.from_path(str(cfg_file)).lookup(target.host))
    hostname = hc.get("hostname", target.host)
    port = target.port or int(hc.get("port", 22))
    user = target.user or hc.get("user") or getpass.getuser()
    label = f"{user}@{target.host}" + (f":{port}" if port != 22 else "")
    keys = [identity] if identity else [os.path.expanduser(k) for k in hc.get("identityfile", [])]
    client = paramiko.SSHClient()
    kh = Path(known_hosts or os.path.expanduser("~/.ssh/known_hosts"))
    if known_hosts is None:
        client.load_system_host_keys()
    elif kh.is_file():
        client.load_host_keys(str(kh))
    if accept_new:
        kh.parent.mkdir(parents=True, exist_ok=True)
        kh.touch(exist_ok=True)
        client.load_host_keys(str(kh))  # so the accepted key is saved there
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    sock = paramiko.ProxyCommand(hc["proxycommand"]) if hc.get("proxycommand") else None
    try:
        client.connect(hostname, port=port, username=user, key_filename=keys or None, sock=sock,
                       password=password, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, allow_agent=identity is None,
                       look_for_keys=identity is None)
    except paramiko.BadHostKeyException:
        client.close()
        raise DeployError(f"{label}: the host key differs from the one in {kh} (a re-flashed "
                          f"board, or someone in between): check it, then `ssh-keygen -R "
                          f"{target.host}` and connect once with ssh") from None
    except paramiko.AuthenticationException:
        client.close()
        tried = ", ".join(keys) if keys else "agent and default keys"
        raise DeployError(f"{label}: login failed ({tried}{', password' if password else ''}); "
                          f"copy a key with `ssh-copy-id {user}@{target.host}` or pass "
                          "--ask-password (PYNQ images: user xilinx)") from None
    except paramiko.SSHException as exc:
        client.close()
        if "known_hosts" in str(exc):
            raise DeployError(f"{label}: unknown host key (not in {kh}); check it with `ssh "
                              f"{user}@{target.host}` once, or pass --accept-new-host-key") from None
        raise DeployError(f"{label}: SSH failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}; "
                          "is this an SSH server?") from None
    except socket.gaierror as exc:
        client.close()
        raise DeployError(f"{label}: unknown host name ({exc.strerror}); check the address "
                          "(the board's IP is on its serial console or your router)") from None
    except (OSError, TimeoutError) as exc:  # refused, unreachable, timed out
        client.close()
        why = getattr(exc, "strerror", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DeployError(f"{label}: unreachable ({why}); is the board on, on this network, and "
                          "running sshd?") from None
    return Remote(client, target, label)


# --------------------------------------------------------------------------- wheel


def build_wheel(out_dir: Path) -> Path:
    """A wheel of this hwpart, from its source tree (pip wheel, no dependencies).

    The board installs it with ``--no-deps``: torch and the host's other
    dependencies stay off the board; ``hwpart.board`` needs only what PYNQ images have.
    The wheel is built from a copy of the sources, so setuptools' ``build/`` folder in
    the checkout (stale modules stay there after a rename) never reaches a board, and
    two builds at once do not share it.
    """
    import shutil

    from hwpart.datafiles import DATA_FOLDERS, import_root

    src = import_root()
    if not (src / "pyproject.toml").is_file():
        raise DeployError(f"hwpart at {src} is installed without its source tree, so deploy "
                          "cannot build its wheel; pass --wheel FILE (a hwpart wheel)")
    out_dir.mkdir(parents=True, exist_ok=True)
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "sim_build", "results*.xml",
                                  "*.egg-info")
    with tempfile.TemporaryDirectory(prefix="hwpart-wheel-") as tmp:
        copy = Path(tmp) / "src"
        copy.mkdir()
        for f in ("pyproject.toml", "README.md"):
            shutil.copy2(src / f, copy / f)
        for d in ("hwpart", *DATA_FOLDERS):
            if (src / d).is_dir():
                shutil.copytree(src / d, copy / d, ignore=junk)
        cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "wheel", "--no-deps",
               "--no-build-isolation", "-q", "-w", str(out_dir), str(copy)]
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
    wheels = sorted(out_dir.glob("hwpart-*.whl"))
    if r.returncode != 0 or not wheels:
        last = (r.stderr.strip().splitlines() or ["no output"])[-1]
        raise DeployError(f"building the hwpart wheel from {src} failed ({last}); pass --wheel FILE")
    return wheels[-1]


# --------------------------------------------------------------------------- the deploy


@dataclass
class Options:
    dest: str | None = None
    python: str | None = None
    install: str = "site"  # "site" | "target"
    preload: bool = True
    firmware_dir: str | None = None
    wheel: Path | None = None
    allow_pynq_mismatch: bool = False
    board_name: str | None = None
    sudo_password: str | None = None
    cost_input: Path | None = None
    keys: Path | None = None  # `hwpart board keys DIR`: the agent's files go to DEST/keys
    model: str | None = None  # the model spec, for the printed host command


def dest_for(info: BundleInfo, dest: str | None, home: str = "~") -> str:
    d = dest or f"~/hwpart/{info.name}"
    if d == "~" or d.startswith("~/"):
        d = home.rstrip("/") + d[1:]
    return d


def steps(info: BundleInfo, target: Target, opt: Options, files: dict[str, str],
          dest: str, python: str) -> list[str]:
    """The actions, in order, as ``--dry-run`` prints them and a deploy does them."""
    need = sum(info.size(r) for r in files) + (info.root / "manifest.yaml").stat().st_size
    out = [
        f"check every sha256 of {info.root} here ({len(info.files)} files)",
        f"connect to {target} (~/.ssh/config, agent/keys; host key must be in known_hosts)",
        f"read the board's facts with {python}: Python >= 3.10, PYNQ {_mm(info.pynq_version)}.x, "
        f"board part {info.part} ({info.board}), free space at {dest}",
        f"create {dest}/ and copy manifest.yaml, {BOARD_MANIFEST} and {len(files)} listed files "
        f"({_mb(need)})",
        f"copy a wheel of hwpart to {dest}/dist/"
        + (f" (given: {opt.wheel.name})" if opt.wheel else " (built here with pip wheel)"),
    ]
    if opt.cost_input is not None:
        out.append(f"copy the board-CPU cost input {opt.cost_input.name} to {dest}/")
    if opt.keys is not None:
        out.append(f"copy the agent's keys from {opt.keys} ({', '.join(agent_key_files(opt.keys))}) "
                   f"to {dest}/keys/ (secret: mode 600; the host's secret stays here)")
    if opt.install == "site":
        out.append(f"pip install --no-deps --no-index the wheel into {python}'s environment "
                   "(with sudo when that is root's, as PYNQ's venv is)")
    else:
        out.append(f"pip install --no-deps --no-index --target {dest}/lib the wheel (no root)")
    out.append(f"write {dest}/{LAUNCHER}, which runs `{python} -m hwpart board ...`")
    if not opt.preload:
        pre = "no preload (--no-preload)"
    elif info.status == "simulated":
        pre = (f"nothing to preload: the {len(info.partials)} partials are the simulated board's "
               "stand-ins (refused by a board with an FPGA manager)")
    else:
        pre = (f"preload the {len(info.partials)} partial bitstreams as FPGA-manager .bin files "
               f"into {opt.firmware_dir or '/lib/firmware/hwpart/' + info.name}/ (root)")
    out.append(f"on the board: `hwpart board install {dest}`: check every sha256 of "
               f"{BOARD_MANIFEST} there; {pre}")
    out.append("print the commands to run next (board check, board serve, host run)")
    return out


def _mm(v: str) -> str:
    return ".".join(str(x) for x in _vtuple(v)[:2])


def run_deploy(bundle: str | Path, target_text: str, opt: Options, dry_run: bool = False,
               connect_fn: Callable[[Target], Remote] | None = None,
               say: Callable[[str], None] = print) -> int:
    """The whole deploy (see the module docstring); ``connect_fn`` opens the SSH session."""
    target = parse_target(target_text)
    info = load_bundle_info(bundle)
    if info.status == "scripts":
        raise DeployError(f"{info.root}: bundle {info.name} has no bitstreams yet (status: "
                          "scripts): run its Vivado scripts (docs/deploy.md, `hwpart overlay build "
                          "--vivado`) and `hwpart overlay seal`, then deploy")
    with tempfile.TemporaryDirectory(prefix="hwpart-deploy-") as tmp:
        tmpd = Path(tmp)
        bj, files = board_manifest(info, tmpd)
        if dry_run:
            say(f"hwpart deploy --dry-run: {info.name} -> {target} (nothing is connected to or "
                "changed)")
            for i, s in enumerate(steps(info, target, opt, files, dest_for(info, opt.dest),
                                        opt.python or f"{PYNQ_VENV_PYTHON} (or python3)"), 1):
                say(f"  {i:2d}. {s}")
            say("  files:")
            for rel in ["manifest.yaml", *sorted(files)]:
                say(f"      {rel}  ({info.size(rel) if rel != 'manifest.yaml' else (info.root / rel).stat().st_size} B)")
            return 0
        if opt.wheel is not None and not opt.wheel.is_file():
            raise DeployError(f"--wheel {opt.wheel}: no such file")
        remote = (connect_fn or connect)(target)
        try:
            return _deploy(remote, info, opt, bj, files,
                           lambda: opt.wheel or build_wheel(tmpd / "dist"), say)
        finally:
            remote.close()


def _deploy(remote: Remote, info: BundleInfo, opt: Options, board_json: Path,
            files: dict[str, str], get_wheel: Callable[[], Path],
            say: Callable[[str], None]) -> int:
    host = remote.label
    python = opt.python or _find_python(remote)
    dest0 = opt.dest or f"~/hwpart/{info.name}"
    rc, out, err = remote.run(f"{shlex.quote(python)} - {shlex.quote(dest0)}", PROBE.encode(),
                              timeout=120)
    if rc != 0:
        last = (err.strip().splitlines() or out.strip().splitlines() or ["no output"])[-1]
        raise DeployError(f"{host}: {python} could not run the probe ({last}); pass --python with "
                          "the board's PYNQ Python")
    facts = BoardFacts.parse(host, out)
    check_python(facts)
    pynq = check_pynq(facts, info, opt.allow_pynq_mismatch)
    part = check_part(facts, info, opt.board_name)
    if info.status == "simulated" and facts.fpga_manager:
        raise DeployError(f"{host} has an FPGA manager (a real board) but bundle {info.name} holds "
                          "the simulated board's stand-in bitstreams: deploy a bundle built by "
                          "Vivado (docs/deploy.md)")
    dest = dest_for(info, opt.dest, facts.home)
    wheel = get_wheel()  # built only once the board passed its checks
    need = (sum(info.size(r) for r in files) + (info.root / "manifest.yaml").stat().st_size
            + board_json.stat().st_size + 3 * wheel.stat().st_size)  # wheel + its install
    firmware = sum(info.size(p) for p in info.partials if p in files) if opt.preload else 0
    # one SD card usually holds both: then they share its free space
    same_fs = (opt.firmware_dir is None
               and facts.raw.get("firmware_free", [])[2:] == facts.raw.get("dest_free", [])[2:])
    check_space(facts, need + (firmware if same_fs else 0), 0 if same_fs else firmware)
    say(f"{host}: {facts.board or opt.board_name} ({part}), {facts.machine}, Python "
        f"{'.'.join(map(str, facts.version))}, PYNQ {pynq}; {_mb(facts.dest_free)} free at {dest}")

    # copy
    remote.makedirs(dest)
    for d in sorted({str(PurePosixPath(dest, r).parent) for r in files} | {f"{dest}/dist"}):
        remote.makedirs(d)
    t0 = time.perf_counter()
    remote.put(info.root / "manifest.yaml", f"{dest}/manifest.yaml")
    for rel in sorted(files):
        remote.put(info.root / rel, f"{dest}/{rel}")
    remote.put(board_json, f"{dest}/{BOARD_MANIFEST}")
    rwheel = f"{dest}/dist/{wheel.name}"
    remote.put(wheel, rwheel)
    if opt.cost_input is not None:
        remote.put(opt.cost_input, f"{dest}/{opt.cost_input.name}")
    if opt.keys is not None:
        remote.makedirs(f"{dest}/keys/authorized")
        for rel in agent_key_files(opt.keys):
            remote.put(opt.keys / rel, f"{dest}/keys/{rel}")
            if rel.endswith("_secret"):
                remote.sftp.chmod(f"{dest}/keys/{rel}", 0o600)
    say(f"copied {len(files) + 2} files and {wheel.name} to {host}:{dest} "
        f"({time.perf_counter() - t0:.1f} s)")

    # install hwpart's board side into the board's Python
    sudo = ""
    q = shlex.quote
    if opt.install == "site":
        if facts.euid != 0 and not facts.site_writable:
            sudo = _sudo(remote, opt, facts.raw.get("site") or python)
        pip = f"{q(python)} -m pip install --no-deps --no-index --force-reinstall -q {q(rwheel)}"
        pythonpath = ""
    else:
        pip = (f"{q(python)} -m pip install --no-deps --no-index --upgrade -q --target "
               f"{q(dest + '/lib')} {q(rwheel)}")
        pythonpath = dest + "/lib"
    rc, out, err = remote.run(_with_sudo(sudo, pip), _sudo_stdin(sudo, opt), timeout=600)
    if rc != 0:
        raise DeployError(f"{host}: pip could not install {wheel.name} ({_last(err, out)})")
    launcher = _launcher(python, pythonpath)
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(launcher)
    try:
        remote.put(Path(f.name), f"{dest}/{LAUNCHER}")
    finally:
        os.unlink(f.name)
    remote.sftp.chmod(f"{dest}/{LAUNCHER}", 0o755)
    say(f"installed hwpart's board side: {'into ' + python if opt.install == 'site' else 'under ' + pythonpath}")

    # verify and preload, on the board, by the board's own code
    cmd = f"{q(dest + '/' + LAUNCHER)} install {q(dest)}"
    if not opt.preload:
        cmd += " --no-preload"
    elif opt.firmware_dir:
        cmd += f" --firmware-dir {q(opt.firmware_dir)}"
    isudo = ""
    if opt.preload and opt.firmware_dir is None and facts.euid != 0 and facts.fpga_manager:
        isudo = sudo or _sudo(remote, opt, "/lib/firmware", required=False)
    rc, out, err = remote.run(_with_sudo(isudo, cmd), _sudo_stdin(isudo, opt), timeout=600)
    for ln in out.strip().splitlines():
        say(f"  board: {ln}")
    if rc != 0:
        raise DeployError(f"{host}: hwpart board install refused the bundle: {_last(err, out)}")
    _next_steps(info, remote.target, dest, opt, say)
    return 0


def _login(target: Target) -> str:
    return f"{target.user}@{target.host}" if target.user else target.host


def agent_key_files(keys: Path) -> list[str]:
    """What of ``hwpart board keys DIR`` the board needs: the agent's pair and the public keys
    it lets in (never the host's secret)."""
    need = ["server.key", "server.key_secret"]
    missing = [n for n in need if not (keys / n).is_file()]
    auth = sorted(f"authorized/{p.name}" for p in (keys / "authorized").glob("*.key"))
    if missing or not auth:
        raise DeployError(f"--keys {keys}: missing {missing or ['authorized/*.key']}; make them "
                          f"with `hwpart board keys {keys}`")
    return need + auth


def _find_python(remote: Remote) -> str:
    rc, out, _ = remote.run(f"test -x {PYNQ_VENV_PYTHON} && echo {PYNQ_VENV_PYTHON} || "
                            "command -v python3", timeout=30)
    p = out.strip().splitlines()[-1] if out.strip() else ""
    if rc != 0 or not p:
        raise DeployError(f"{remote.label}: no python3 on the board's PATH and no {PYNQ_VENV_PYTHON}; "
                          "pass --python PATH")
    return p


def _sudo(remote: Remote, opt: Options, what: str, required: bool = True) -> str:
    """``sudo -n`` when it needs no password, ``sudo -S`` with --ask-sudo-password."""
    rc, _, _ = remote.run("sudo -n true", timeout=30)
    if rc == 0:
        return "sudo -n"
    if opt.sudo_password is not None:
        return "sudo -S -p ''"
    if not required:
        return ""
    raise DeployError(f"{remote.label}: {what} belongs to root and sudo asks for a password: pass "
                      "--ask-sudo-password, deploy as root, or use --install target (no root)")


def _with_sudo(sudo: str, cmd: str) -> str:
    return f"{sudo} {cmd}" if sudo else cmd


def _sudo_stdin(sudo: str, opt: Options) -> bytes | None:
    return (opt.sudo_password or "").encode() + b"\n" if sudo.startswith("sudo -S") else None


def _last(err: str, out: str) -> str:
    lines = err.strip().splitlines() or out.strip().splitlines() or ["no output"]
    return lines[-1].strip()


def _launcher(python: str, pythonpath: str) -> str:
    env = (f'PYTHONPATH={shlex.quote(pythonpath)}${{PYTHONPATH:+:$PYTHONPATH}} '
           if pythonpath else "")
    return ("#!/bin/sh\n"
            "# Written by `hwpart deploy`: hwpart's board-side commands with the board's PYNQ\n"
            "# Python (sudo keeps working: nothing here depends on the caller's PATH).\n"
            f"{env}exec {shlex.quote(python)} -m hwpart board \"$@\"\n")


def _next_steps(info: BundleInfo, target: Target, dest: str, opt: Options,
                say: Callable[[str], None]) -> None:
    q = shlex.quote
    run = f"sudo {q(dest + '/' + LAUNCHER)}"
    model = opt.model or (f"MODEL.py:{info.model}" if info.model else "MODEL.py:factory")
    shape = ",".join(map(str, info.input_shape)) if info.input_shape else "SHAPE"
    cost = (f" --cost-input {q(dest + '/' + opt.cost_input.name)}"
            if opt.cost_input is not None else "")
    keys = f"{dest}/keys" if opt.keys is not None else "KEYS_DIR"
    client = (opt.keys / "client.key_secret") if opt.keys is not None else "KEYS_DIR/client.key_secret"
    port = 7970  # hwpart.board.agent.DEFAULT_PORT (not imported: the agent needs pyzmq)
    say("")
    login = f"ssh{f' -p {target.port}' if target.port else ''} {_login(target)}"
    say(f"next, on the board ({login}):")
    say(f"  {run} check {q(dest)}{cost}")
    say("      # measures DMA, PR swaps" + (" and the board CPU's layers" if cost else "")
        + "; writes measured.json (copy it back into the host's bundle)")
    say(f"  scp {f'-P {target.port} ' if target.port else ''}{_login(target)}:{q(dest)}/measured.json "
        f"{q(str(info.root))}/   # on the host: the planner reads the bundle's measured.json")
    say(f"  {run} serve {q(dest)} --keys {q(keys)}")
    say(f"      # the board agent, on 127.0.0.1:{port} of the board")
    say("then, on the host (the agent listens on the board's loopback; an SSH tunnel reaches it):")
    say(f"  ssh -N -L {port}:127.0.0.1:{port}{f' -p {target.port}' if target.port else ''} "
        f"{_login(target)} &")
    say(f"  hwpart board link remote://127.0.0.1:{port} --key {client} --bundle {info.root}"
        "   # the link's figures, which a remote plan needs")
    say(f"  hwpart run {model} --input-shape {shape} --auto --overlay {info.root} "
        f"--fpga remote://127.0.0.1:{port} --key {client}")
    say("(until `board check` has run, DMA, PR and board-CPU figures are estimates: docs/deploy.md)")


# --------------------------------------------------------------------------- CLI


def register_cli(sub: Any) -> None:
    """Add ``hwpart deploy`` (called by ``hwpart.cli`` for its plugins)."""
    p = sub.add_parser("deploy", help="copy an overlay bundle and hwpart's board side to a PYNQ "
                                      "board over SSH, verify it there, preload the partials")
    p.add_argument("bundle", help="overlay bundle folder (with manifest.yaml)")
    p.add_argument("target", help="USER@HOST[:PORT] of the board, e.g. xilinx@192.168.2.99")
    p.add_argument("--dry-run", action="store_true",
                   help="list every action and file; connects to nothing, changes nothing")
    p.add_argument("--dest", help="folder on the board (default ~/hwpart/BUNDLE_NAME)")
    p.add_argument("--python", help=f"the board's Python with pynq (default {PYNQ_VENV_PYTHON} "
                                    "when present, else python3)")
    p.add_argument("--install", choices=("site", "target"), default="site",
                   help="site: pip install into that Python (PYNQ's venv; sudo when root's); "
                        "target: into DEST/lib, no root (a launcher sets PYTHONPATH)")
    p.add_argument("--no-preload", action="store_true", help="verify only; leave partials as copied")
    p.add_argument("--firmware-dir", help="where the board writes the partials' .bin "
                                          "(default /lib/firmware/hwpart/NAME, needs root)")
    p.add_argument("--wheel", help="a hwpart wheel to install (default: build one here)")
    p.add_argument("--model", help="the bundle's model (path/to/file.py:factory): its layers go "
                                   "to the board as cost_input.npz, for `board check "
                                   "--cost-input` to time on the board's CPU")
    p.add_argument("--input-shape", help="per-sample input shape for --model (default: the "
                                         "bundle's)")
    p.add_argument("--batch", default="1,64,256",
                   help="batch sizes of the board-CPU cost input (default 1,64,256)")
    p.add_argument("--keys", help="folder from `hwpart board keys DIR`: copy the agent's key pair "
                                  "and authorized/ to DEST/keys")
    p.add_argument("--board-name", help="the board's PYNQ name when the image does not say it "
                                        "(pynq-z2, kv260, zcu104)")
    p.add_argument("--allow-pynq-mismatch", action="store_true",
                   help="deploy to a PYNQ version the bundle was not built for")
    p.add_argument("-i", "--identity", help="SSH private key (default: agent, ~/.ssh/config, "
                                            "default keys)")
    p.add_argument("--known-hosts", help="known_hosts file (default ~/.ssh/known_hosts)")
    p.add_argument("--accept-new-host-key", action="store_true",
                   help="trust and record a host key seen for the first time (a changed key is "
                        "always refused)")
    p.add_argument("--ask-password", action="store_true", help="prompt for the login password")
    p.add_argument("--ask-sudo-password", action="store_true",
                   help="prompt for the board's sudo password (PYNQ images: xilinx)")
    p.add_argument("--timeout", type=float, default=10.0, help="connect timeout, s (default 10)")
    p.set_defaults(func=cmd_deploy)


def cmd_deploy(args: argparse.Namespace) -> int:
    password = getpass.getpass(f"password for {args.target}: ") if args.ask_password else None
    sudo_pw = getpass.getpass(f"sudo password on {args.target}: ") if args.ask_sudo_password else None
    with tempfile.TemporaryDirectory(prefix="hwpart-cost-") as tmp:
        cost = None
        if args.model:
            cost = _export_cost_input(args, Path(tmp) / "cost_input.npz")
        opt = Options(dest=args.dest, python=args.python, install=args.install,
                      preload=not args.no_preload, firmware_dir=args.firmware_dir,
                      wheel=Path(args.wheel) if args.wheel else None,
                      allow_pynq_mismatch=args.allow_pynq_mismatch, board_name=args.board_name,
                      sudo_password=sudo_pw, cost_input=cost,
                      keys=Path(args.keys) if args.keys else None, model=args.model)

        def dial(t: Target) -> Remote:
            return connect(t, identity=args.identity, known_hosts=args.known_hosts,
                           accept_new=args.accept_new_host_key, password=password,
                           timeout=args.timeout)

        return run_deploy(args.bundle, args.target, opt, dry_run=args.dry_run, connect_fn=dial)


def _export_cost_input(args: argparse.Namespace, out: Path) -> Path:
    from hwpart.boardcpu import export_cost_input
    from hwpart.graph import load_graph

    shape = args.input_shape
    if shape is None:
        info = load_bundle_info(args.bundle)
        if not info.input_shape:
            raise DeployError("--model: pass --input-shape too (this bundle does not record one)")
        shape = ",".join(map(str, info.input_shape))
    try:
        batches = sorted({int(b) for b in str(args.batch).split(",") if b.strip()})
    except ValueError:
        batches = []
    if not batches or batches[0] <= 0:
        raise DeployError(f"--batch {args.batch!r}: expected positive integers, e.g. 1,64,256")
    export_cost_input(load_graph(args.model, shape), out, batches)
    return out


__all__ = ["BoardFacts", "BundleInfo", "DeployError", "Options", "Target", "board_part",
           "build_wheel", "check_part", "check_pynq", "check_python", "check_space", "connect",
           "identify_board", "load_bundle_info", "parse_target", "run_deploy", "steps"]
