"""CURVE keys for the board agent, as ZeroMQ's standard certificate files (``zmq.auth``).

``hwpart board keys DIR`` writes::

    DIR/server.key          the agent's public key   (the host needs it)
    DIR/server.key_secret   the agent's key pair     (stays on the board)
    DIR/client.key          the host's public key
    DIR/client.key_secret   the host's key pair      (stays on the host: --key)
    DIR/authorized/client.key   the public keys the agent lets in

The agent (``--keys DIR``) reads ``server.key_secret`` and lets in only the
clients whose public keys are in ``DIR/authorized/``; the host (``--key
DIR/client.key_secret``) reads its pair and the agent's public key from
``server.key`` beside it. Secret files are made readable by their owner only.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from hwpart.errors import ConfigError

SERVER, CLIENT, AUTHORIZED = "server", "client", "authorized"


def _zmq_auth() -> Any:
    try:
        import zmq
        import zmq.auth
    except ImportError as exc:
        raise ConfigError("pyzmq is not installed (pip install pyzmq; PYNQ images have it)") \
            from exc
    if not zmq.has("curve"):
        raise ConfigError(f"this libzmq ({zmq.zmq_version()}) was built without CURVE; "
                          "install a pyzmq wheel (they bundle libzmq with CURVE)")
    return zmq.auth


def generate(directory: Path | str, force: bool = False) -> dict[str, Path]:
    """Write a server and a client key pair (see the module docstring); refuses to overwrite
    existing keys unless ``force``."""
    auth = _zmq_auth()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    existing = [d / f"{n}.key_secret" for n in (SERVER, CLIENT) if (d / f"{n}.key_secret").exists()]
    if existing and not force:
        raise ConfigError(f"{existing[0]} exists; pass --force to replace the keys (every "
                          "host and board holding the old ones must then get the new ones)")
    out = {}
    for name in (SERVER, CLIENT):
        pub, sec = auth.create_certificates(str(d), name)
        os.chmod(sec, 0o600)
        out[f"{name}_public"], out[f"{name}_secret"] = Path(pub), Path(sec)
    (d / AUTHORIZED).mkdir(exist_ok=True)
    shutil.copyfile(out["client_public"], d / AUTHORIZED / f"{CLIENT}.key")
    out["authorized"] = d / AUTHORIZED
    return out


def load_pair(path: Path | str, what: str) -> tuple[bytes, bytes]:
    """(public, secret) from a ``.key_secret`` file, or :class:`ConfigError` naming it."""
    auth = _zmq_auth()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no {what} key file (make keys with `hwpart board keys DIR`)")
    try:
        pub, sec = auth.load_certificate(str(p))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a ZeroMQ certificate ({exc})") from exc
    if not sec:
        raise ConfigError(f"{p}: holds no secret key; give the .key_secret file")
    if os.name == "posix" and p.stat().st_mode & 0o077:
        print(f"hwpart: warning: {p} is readable by others; chmod 600 it", file=sys.stderr,
              flush=True)
    return pub, sec


def load_public(path: Path | str, what: str) -> bytes:
    auth = _zmq_auth()
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no {what} public key file (it is written beside the client "
                          "key by `hwpart board keys DIR`; or pass --server-key)")
    try:
        pub, _ = auth.load_certificate(str(p))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: not a ZeroMQ certificate ({exc})") from exc
    return pub


def client_keys(key_file: Path | str, server_key: Path | str | None = None) -> tuple[bytes, bytes,
                                                                                     bytes]:
    """(client public, client secret, server public) for the host: ``key_file`` is the
    client's ``.key_secret`` (or the folder holding it); the agent's public key is
    ``server_key``, else ``server.key`` beside it."""
    p = Path(key_file)
    if p.is_dir():
        p = p / f"{CLIENT}.key_secret"
    pub, sec = load_pair(p, "client")
    srv = load_public(Path(server_key) if server_key else p.parent / f"{SERVER}.key", "agent")
    return pub, sec, srv


# --------------------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", help="folder for the key files (created)")
    p.add_argument("--force", action="store_true", help="replace existing keys")


def run(args: argparse.Namespace) -> int:
    out = generate(args.dir, args.force)
    d = Path(args.dir)
    print(f"agent key pair  {out['server_secret']}  (copy to the board with "
          f"{d / AUTHORIZED}/; hwpart board serve --keys DIR)")
    print(f"host key pair   {out['client_secret']}  (hwpart run --fpga remote://HOST:PORT "
          f"--key {out['client_secret']}; needs {out['server_public'].name} beside it)")
    return 0
