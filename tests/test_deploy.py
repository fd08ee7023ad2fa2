"""``hwpart deploy`` over a real SSH server on 127.0.0.1, and ``hwpart board install``.

What is real here: the SSH server (asyncssh, started by the test on a random
loopback port, key login, SFTP, commands run by /bin/sh), the client (paramiko,
with known_hosts checking), the hwpart wheel (built by pip from this checkout
once per module) and its install by pip on the "board", and the board-side
verification, run by the *deployed* copy of hwpart (``PYTHONPATH`` = the
bundle's ``lib/``). What is simulated: the board is a folder on this machine,
its Python is this venv's (which has pynq 4.0.0), and it says it is a ZCU104
through PYNQ's ``BOARD`` variable, as a PYNQ login shell would; the bundle is one
for the simulated board, whose RM library is a placeholder file (deploy copies
and checks bytes; nothing here runs an RM). The unsupported-PYNQ, other-part and
too-little-space refusals are tested on the checks themselves, with facts as a
board's probe reports them.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from hwpart.deploy import (
    BoardFacts,
    DeployError,
    Options,
    Target,
    check_part,
    check_pynq,
    check_space,
    connect,
    identify_board,
    load_bundle_info,
    parse_target,
    run_deploy,
)

asyncssh = pytest.importorskip("asyncssh")
pytest.importorskip("paramiko")
pytest.importorskip("pynq")

BOARD_ENV = "ZCU104"  # what a PYNQ image's BOARD variable says; zcu104.yaml asks PYNQ 4.0


# --------------------------------------------------------------------------- the SSH server


class SSHServer:
    """An SSH server on 127.0.0.1 in a thread of its own: key login, SFTP, exec through sh."""

    def __init__(self, home: Path, authorized: Path, host_key: Any, env: dict[str, str]) -> None:
        self.home, self.authorized, self.host_key, self.env = home, authorized, host_key, env
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.commands: list[str] = []
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def start(self) -> SSHServer:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("test SSH server did not start")
        return self

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._listen())
        self._ready.set()
        self.loop.run_forever()

    async def _listen(self) -> None:
        self.acceptor = await asyncssh.create_server(
            asyncssh.SSHServer, "127.0.0.1", 0, server_host_keys=[self.host_key],
            authorized_client_keys=str(self.authorized), process_factory=self._exec,
            sftp_factory=True, encoding=None, allow_scp=False)
        self.port = self.acceptor.sockets[0].getsockname()[1]

    async def _exec(self, process: Any) -> None:
        cmd = process.command or ""
        self.commands.append(cmd)
        data = await process.stdin.read()  # the client closes its stdin after sending it
        proc = await asyncio.create_subprocess_shell(
            cmd, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.env, cwd=self.home)
        out, err = await proc.communicate(data)
        process.stdout.write(out)
        process.stderr.write(err)
        process.exit(proc.returncode)

    def stop(self) -> None:
        async def close() -> None:
            self.acceptor.close()
            await self.acceptor.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)



@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    client = asyncssh.generate_private_key("ssh-ed25519")
    client.write_private_key(str(d / "id_ed25519"))
    client.write_public_key(str(d / "authorized_keys"))
    stranger = asyncssh.generate_private_key("ssh-ed25519")
    stranger.write_private_key(str(d / "id_stranger"))
    host = asyncssh.generate_private_key("ssh-ed25519")
    return {"dir": d, "client": d / "id_ed25519", "authorized": d / "authorized_keys",
            "stranger": d / "id_stranger", "host": host}


@pytest.fixture(scope="module")
def board_home(tmp_path_factory):
    return tmp_path_factory.mktemp("board") / "home" / "xilinx"


@pytest.fixture(scope="module")
def server(keys, board_home):
    board_home.mkdir(parents=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(board_home),
           "BOARD": BOARD_ENV, "LANG": "C.UTF-8"}
    s = SSHServer(board_home, keys["authorized"], keys["host"], env).start()
    known = keys["dir"] / "known_hosts"
    line = keys["host"].export_public_key("openssh").decode().strip()
    known.write_text(f"[127.0.0.1]:{s.port} {line}\n")
    s.known_hosts = known
    yield s
    s.stop()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    """hwpart's wheel, built once (pip wheel of this checkout), as deploy builds it."""
    from hwpart.deploy import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from hwpart.sim.bundle import write_sim_bundle
    from hwpart.sim.rm import RmSpec

    d = tmp_path_factory.mktemp("bundle")
    lib = d / "placeholder.so"
    lib.write_bytes(b"not run by these tests\n")
    specs = [RmSpec(n, layers, (16,), (16,), "ap_fixed<16,6>", "ap_fixed<16,6>", str(lib))
             for n, layers in (("fc1", ["_0", "_1"]), ("fc2", ["_2", "_3"]))]
    b = write_sim_bundle(d / "jet", "jet_zcu104", specs, board="zcu104")
    return b.root


def _dial(server, keys, identity=None):
    def dial(t: Target):
        return connect(t, identity=str(identity or keys["client"]),
                       known_hosts=str(server.known_hosts), timeout=5,
                       config_path=str(keys["dir"] / "no-config"))
    return dial


def _target(server) -> str:
    return f"xilinx@127.0.0.1:{server.port}"


def _opts(**kw) -> Options:
    return Options(python=sys.executable, install="target", **kw)


# --------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def agent_keys(tmp_path_factory):
    pytest.importorskip("zmq")
    from hwpart.board.keys import generate

    d = tmp_path_factory.mktemp("agentkeys") / "k"
    generate(d)
    return d


@pytest.fixture(scope="module")
def cost_input(tmp_path_factory):
    from hwpart.boardcpu import export_cost_input
    from hwpart.graph import load_graph

    f = tmp_path_factory.mktemp("cost") / "cost_input.npz"
    return export_cost_input(load_graph("host/models.py:jet_tagger", "16"), f, [1, 8])


@pytest.fixture(scope="module")
def deployed(server, keys, bundle, wheel, board_home, agent_keys, cost_input):
    lines: list[str] = []
    rc = run_deploy(bundle, _target(server),
                    _opts(wheel=wheel, keys=agent_keys, cost_input=cost_input),
                    connect_fn=_dial(server, keys), say=lines.append)
    return rc, lines, board_home / "hwpart" / "jet_zcu104"


def test_deploy_copies_installs_and_verifies(deployed, bundle, server):
    rc, lines, dest = deployed
    assert rc == 0
    info = load_bundle_info(bundle)
    for rel, sha in info.files.items():  # every listed file arrived, byte for byte
        from hwpart.board.manifest import sha256_file

        assert sha256_file(dest / rel) == sha, rel
    assert json.loads((dest / "board.json").read_text())["files"] == info.files
    # the board side ran from the deployed wheel, and verified there
    assert any("install" in c and "hwpart-board" in c for c in server.commands)
    rep = json.loads((dest / "preloaded.json").read_text())
    assert rep["verified_files"] == len(info.files) and rep["simulated"] is True
    text = "\n".join(lines)
    assert "all sha256 match" in text
    assert "zcu104" in text and "PYNQ 4.0.0" in text
    assert "hwpart run" in text and "remote://127.0.0.1" in text  # what to run next
    # the launcher runs the deployed hwpart, not this checkout's
    # (cwd=dest: `python -m`/`-c` put the working folder first on sys.path, and this
    # checkout's own hwpart/ is in the test's)
    out = subprocess.run([str(dest / "hwpart-board"), "--help"], capture_output=True, text=True,
                         cwd=dest)
    assert out.returncode == 0 and "install" in out.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import hwpart.board.install as m; print(m.__file__)"],
        env={**os.environ, "PYTHONPATH": str(dest / "lib")}, capture_output=True, text=True,
        cwd=dest)
    assert where.stdout.strip().startswith(str(dest / "lib")), where


def test_deploy_carries_agent_keys_but_not_the_hosts_secret(deployed):
    rc, lines, dest = deployed
    assert (dest / "keys/server.key_secret").stat().st_mode & 0o777 == 0o600
    assert (dest / "keys/server.key").is_file() and (dest / "keys/authorized/client.key").is_file()
    assert not (dest / "keys/client.key_secret").exists()
    text = "\n".join(lines)
    assert f"serve {dest} --keys {dest}/keys" in text and "ssh -N -L 7970:127.0.0.1:7970" in text


def test_board_cpu_measured_by_the_deployed_copy(deployed):
    """The cost input went with the bundle; the board's own hwpart times it with numpy."""
    from hwpart.board.measured import load_measured

    rc, lines, dest = deployed
    assert f"--cost-input {dest}/cost_input.npz" in "\n".join(lines)
    r = subprocess.run([sys.executable, "-m", "hwpart.board.cpucost", str(dest), "--cost-input",
                        str(dest / "cost_input.npz"), "--repeats", "3"],
                       env={**os.environ, "PYTHONPATH": str(dest / "lib")}, cwd=dest,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sec = load_measured(dest)["board_cpu"]
    assert set(sec["data"]["times"]) == {f"_{i}" for i in range(8)}
    assert sec["data"]["batch_sizes"] == [1, 8]
    # board.json says zcu104 (aarch64); this machine says what it is, and that it is not one
    import platform

    if platform.machine() != "aarch64":
        assert "NOT on the zcu104" in sec["source"] and platform.machine() in sec["source"]


def test_tampered_file_is_refused_on_the_board(deployed, server, keys):
    """A partial changed on the board after the copy: the board's own check refuses it."""
    rc, _, dest = deployed
    bit = dest / "partials" / "slot0_fc1.bit"
    good = bit.read_bytes()
    bit.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    try:
        r = subprocess.run([str(dest / "hwpart-board"), "install", str(dest)],
                           capture_output=True, text=True, cwd=dest)
        assert r.returncode == 2
        err = r.stderr.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert "slot0_fc1.bit" in err and "sha256" in err and "refusing" in err
    finally:
        bit.write_bytes(good)


def test_tampered_in_transit_is_refused_through_deploy(server, keys, bundle, wheel, tmp_path,
                                                       monkeypatch):
    """A file altered between the host's check and the board's (in transit): deploy fails
    with the board's one line, naming the file."""
    import hwpart.deploy as dep

    real_put = dep.Remote.put

    def corrupting_put(self, local, remote):
        real_put(self, local, remote)
        if remote.endswith("partials/slot1_fc2.hwh"):
            self.sftp.open(remote, "ab").write(b"<!-- changed in transit -->")

    monkeypatch.setattr(dep.Remote, "put", corrupting_put)
    with pytest.raises(DeployError) as ei:
        run_deploy(bundle, _target(server), _opts(wheel=wheel, dest=str(tmp_path / "t")),
                   connect_fn=_dial(server, keys), say=lambda s: None)
    msg = str(ei.value)
    assert "slot1_fc2.hwh" in msg and "sha256" in msg and "\n" not in msg


def test_dry_run_lists_and_changes_nothing(bundle, tmp_path, monkeypatch):
    import hwpart.deploy as dep

    def no_connect(t):
        raise AssertionError("dry run connected")

    monkeypatch.setattr(dep, "build_wheel", lambda d: (_ for _ in ()).throw(AssertionError))
    lines: list[str] = []
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = run_deploy(bundle, "xilinx@192.0.2.1", _opts(dest=str(tmp_path / "x")), dry_run=True,
                    connect_fn=no_connect, say=lines.append)
    assert rc == 0
    text = "\n".join(lines)
    assert "nothing is connected to or changed" in text
    for word in ("sha256", "PYNQ 4.0.x", "xczu7ev", "pip install", "hwpart board install",
                 "partials/slot0_fc1.bit", "board.json"):
        assert word in text, word
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- one-line errors


def test_unreachable_host(keys, tmp_path):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(DeployError) as ei:
        connect(parse_target(f"xilinx@127.0.0.1:{port}"), identity=str(keys["client"]),
                known_hosts=str(tmp_path / "kh"), timeout=3,
                config_path=str(tmp_path / "none"))
    msg = str(ei.value)
    assert "unreachable" in msg and f"127.0.0.1:{port}" in msg and "\n" not in msg


def test_failed_login(server, keys):
    with pytest.raises(DeployError) as ei:
        _dial(server, keys, identity=keys["stranger"])(parse_target(_target(server)))
    msg = str(ei.value)
    assert "login failed" in msg and "ssh-copy-id" in msg and "\n" not in msg


def test_unknown_host_key_is_refused(server, keys, tmp_path):
    with pytest.raises(DeployError) as ei:
        connect(parse_target(_target(server)), identity=str(keys["client"]),
                known_hosts=str(tmp_path / "empty_known_hosts"), timeout=5,
                config_path=str(tmp_path / "none"))
    assert "unknown host key" in str(ei.value) and "--accept-new-host-key" in str(ei.value)
    kh = tmp_path / "kh2"
    r = connect(parse_target(_target(server)), identity=str(keys["client"]),
                known_hosts=str(kh), accept_new=True, timeout=5,
                config_path=str(tmp_path / "none"))
    r.close()
    assert f"[127.0.0.1]:{server.port}" in kh.read_text()  # recorded for next time


def _facts(**kw) -> BoardFacts:
    raw = {"python": "/usr/local/share/pynq-venv/bin/python3", "version": [3, 10, 12],
           "machine": "armv7l", "euid": 1000, "home": "/home/xilinx", "board_env": None,
           "pynq": "3.0.1", "pynq_board": ["Pynq-Z2"], "xocl": [], "compatible": [],
           "fpga_manager": True, "dest": "/home/xilinx/hwpart/b",
           "dest_free": ["/home/xilinx", 5_000_000_000], "firmware_free": ["/", 5_000_000_000],
           "firmware_writable": False, "site_writable": False}
    raw.update(kw)
    return BoardFacts.parse("xilinx@pynq", "noise\nHWPART-PROBE " + json.dumps(raw) + "\n")


@pytest.fixture(scope="module")
def z2_bundle(bundle):
    info = load_bundle_info(bundle)
    info.board, info.part, info.pynq_version = "pynq-z2", "xc7z020clg400-1", "3.0.1"
    return info


def test_unsupported_pynq_version(z2_bundle):
    assert check_pynq(_facts(), z2_bundle) == "3.0.1"
    assert check_pynq(_facts(pynq="3.0.0"), z2_bundle) == "3.0.0"  # patch may differ
    for v in ("3.1.0", "2.7.0"):
        with pytest.raises(DeployError) as ei:
            check_pynq(_facts(pynq=v), z2_bundle)
        assert f"PYNQ {v}" in str(ei.value) and "xilinx@pynq" in str(ei.value)
    assert check_pynq(_facts(pynq="3.1.0"), z2_bundle, allow_other=True) == "3.1.0"
    with pytest.raises(DeployError, match="PYNQ is not importable"):
        check_pynq(_facts(pynq=None), z2_bundle)


def test_bundle_for_another_part(z2_bundle):
    assert check_part(_facts(), z2_bundle) == "xc7z020clg400-1"
    kv = _facts(pynq_board=[], compatible=["xlnx,zynqmp-sk-kv260-revB", "xlnx,zynqmp"])
    with pytest.raises(DeployError) as ei:
        check_part(kv, z2_bundle)
    msg = str(ei.value)
    assert "kv260" in msg and "xck26" in msg and "pynq-z2" in msg and "xc7z020" in msg
    with pytest.raises(DeployError, match="cannot tell which board"):
        check_part(_facts(pynq_board=[]), z2_bundle)
    assert check_part(_facts(pynq_board=[]), z2_bundle, assume="pynq-z2")


def test_too_little_space(z2_bundle):
    check_space(_facts(), 10_000_000, 2_000_000)
    small = _facts(dest_free=["/home/xilinx", 20_000_000])
    with pytest.raises(DeployError) as ei:
        check_space(small, 10_000_000, 0)
    assert "20.0 MB free" in str(ei.value) and "xilinx@pynq:/home/xilinx/hwpart/b" in str(ei.value)
    with pytest.raises(DeployError, match="/lib/firmware"):
        check_space(_facts(firmware_free=["/", 1_000]), 1, 2_000_000)


def test_board_identity_sources():
    assert identify_board({"board_env": "Pynq-Z2"}) == ("pynq-z2", "BOARD")
    assert identify_board({"board_env": "Unknown", "xocl": ["KV260"]})[0] == "kv260"
    assert identify_board({"compatible": ["xlnx,zynqmp-zcu104-revC", "xlnx,zynqmp"]})[0] == "zcu104"
    assert identify_board({"compatible": ["xlnx,zynq-7000"]}) == (None, "")


def test_targets():
    assert parse_target("xilinx@192.168.2.99") == Target("xilinx", "192.168.2.99", None)
    assert parse_target("root@board:2222") == Target("root", "board", 2222)
    assert parse_target("[::1]:22").host == "::1"
    with pytest.raises(DeployError):
        parse_target("xilinx@")


def test_not_a_bundle(tmp_path):
    with pytest.raises(DeployError, match="no manifest.yaml"):
        load_bundle_info(tmp_path)


# --------------------------------------------------------------------------- board install


def _bit(part: str, data: bytes, design: str = "shell") -> bytes:
    """A .bit file as Vivado writes it: preamble, tagged a-d text fields, e + data."""
    import struct

    def field(tag: bytes, text: str) -> bytes:
        raw = text.encode() + b"\0"
        return tag + struct.pack(">H", len(raw)) + raw

    head = struct.pack(">H", 9) + bytes([0x0F, 0xF0] * 4 + [0]) + struct.pack(">H", 1)
    head += field(b"a", f"{design};UserID=0XFFFFFFFF;Version=2022.1") + field(b"b", part)
    head += field(b"c", "2026/01/01") + field(b"d", "12:00:00")
    return head + b"e" + struct.pack(">I", len(data)) + data


def _real_format_bundle(root: Path, partial_part: str = "7z020clg400") -> Path:
    """A deployed folder whose bitstreams have Vivado's .bit format (content made up)."""
    from hwpart.board.manifest import FILENAME, BoardManifest, BoardRM, sha256_file

    root.mkdir(parents=True)
    rng = __import__("numpy").random.default_rng(0)
    (root / "shell.bit").write_bytes(_bit("7z020clg400", rng.bytes(4096)))
    (root / "partials").mkdir()
    for k in (0, 1):
        (root / f"partials/slot{k}_fc1.bit").write_bytes(
            _bit(partial_part, rng.bytes(1024), f"slot{k}_fc1"))
    for p in ["shell.hwh", "partials/slot0_fc1.hwh", "partials/slot1_fc1.hwh"]:
        (root / p).write_text("<hwh/>")
    files = {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}
    m = BoardManifest("jet_z2", "pynq-z2", "shell.bit", 2,
                      64, [BoardRM("fc1", 1, 32, 32, {0: "partials/slot0_fc1.bit",
                                                       1: "partials/slot1_fc1.bit"})], files)
    (root / FILENAME).write_text(json.dumps(m.to_json()))
    return root


def test_install_preloads_partials_as_pynq_would_convert_them(tmp_path):
    """The .bin written for the FPGA manager is byte-for-byte what PYNQ's own bit2bin makes."""
    from pynq.pl_server.embedded_device import bit2bin

    from hwpart.board.install import install

    d = _real_format_bundle(tmp_path / "b")
    rep = install(d, firmware_dir=tmp_path / "fw")
    assert rep["simulated"] is False and "2 partials converted" in rep["preload"]
    for k in (0, 1):
        rel = f"partials/slot{k}_fc1.bit"
        out = tmp_path / "fw" / f"slot{k}_fc1.bin"
        assert out.read_bytes() == bit2bin((d / rel).read_bytes())
        assert rep["partials"][rel]["bin"] == str(out)
        assert rep["partials"][rel]["part"] == "7z020clg400"
    assert json.loads((d / "preloaded.json").read_text())["partials"] == rep["partials"]


def test_install_refuses_a_partial_for_another_part(tmp_path):
    from hwpart.board.install import InstallError, install

    d = _real_format_bundle(tmp_path / "b", partial_part="xczu7ev-ffvc1156-2-e")
    with pytest.raises(InstallError) as ei:
        install(d, firmware_dir=tmp_path / "fw")
    assert "slot0_fc1.bit" in str(ei.value) and "xczu7ev" in str(ei.value)


def test_install_without_root_verifies_and_says_it_did_not_preload(tmp_path, monkeypatch):
    import hwpart.board.install as inst

    d = _real_format_bundle(tmp_path / "b")
    monkeypatch.setattr(inst, "_writable", lambda p: False)
    rep = inst.install(d)
    assert rep["verified_files"] == 6 and rep["preload"].startswith("not done")


def test_install_of_a_folder_without_board_json(tmp_path):
    from hwpart.board.cli import main

    assert main(["install", str(tmp_path)]) == 2


def test_device_of_parts():
    from hwpart.board.install import device_of

    assert device_of("xc7z020clg400-1") == device_of("7z020clg400") == "7z020"
    assert device_of("xczu7ev-ffvc1156-2-e") == "zu7ev"
    assert device_of("xck26-sfvc784-2LV-c") == "k26"


def test_cli_errors_are_one_line(bundle, tmp_path, capsys):
    """Through the console entry: exit 2, one line on stderr, no traceback."""
    import socket

    from hwpart.entry import main

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    assert main(["deploy", str(bundle), f"xilinx@127.0.0.1:{port}", "--timeout", "3",
                 "--known-hosts", str(tmp_path / "kh"), "-i", str(tmp_path / "nokey")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hwpart: error:") and "unreachable" in err and len(err.splitlines()) == 1
    assert main(["deploy", str(tmp_path), "xilinx@127.0.0.1"]) == 2
    assert "no manifest.yaml" in capsys.readouterr().err


def test_deploy_installs_into_the_boards_python(server, keys, bundle, wheel, tmp_path):
    """--install site (the default): pip installs into the board Python's own environment.

    The "board Python" is a fresh venv here whose only extra path is this venv's
    site-packages (for numpy, pynq and pip), as PYNQ's venv sees the system's.
    """
    import sysconfig
    import venv

    env = tmp_path / "pynq-venv"
    venv.create(env, with_pip=False)
    py = env / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_host_site.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    dest = tmp_path / "b"
    run_deploy(bundle, _target(server), Options(python=str(py), wheel=wheel, dest=str(dest)),
               connect_fn=_dial(server, keys), say=lambda s: None)
    where = subprocess.run([str(py), "-c", "import hwpart; print(hwpart.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path)
    assert where.stdout.strip().startswith(purelib), where
    assert json.loads((dest / "preloaded.json").read_text())["bundle"] == "jet_zcu104"
    assert "PYTHONPATH" not in (dest / "hwpart-board").read_text()
