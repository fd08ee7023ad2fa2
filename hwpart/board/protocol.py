"""The board agent's messages: a small JSON header frame, then raw array bytes. Never pickle.

One request and one reply per operation, as ZeroMQ multipart messages between
the host's DEALER socket and the agent's ROUTER socket (CURVE-encrypted and
authenticated, :mod:`hwpart.board.agent`)::

    frame 0   JSON object, UTF-8, at most MAX_HEADER_BYTES:
              {"v": 1, "op": "run", "seq": 7, ...the operation's fields...,
               "arrays": [{"dtype": "uint8", "shape": [2048], "nbytes": 2048}]}
    frame 1.. one frame per entry of "arrays": exactly nbytes raw bytes, C order

A reply carries the request's ``seq`` and ``"ok": true``, or ``"ok": false``
with ``error`` (the class name, :data:`hwpart.board.errors.BY_NAME`),
``message``, ``slot`` and ``rm``. Arrays are rebuilt with ``np.frombuffer``
from a whitelist of plain dtypes: nothing received is ever executed or
unpickled, and every size is checked against the header and the agent's limit
before it is used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

PROTOCOL = "hwpart-agent/1"
VERSION = 1
MAX_HEADER_BYTES = 64 * 1024
MAX_ARRAYS = 4
DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # arrays of one message, together
#: the only dtypes an array may have (no object dtype: nothing is unpickled)
DTYPES = ("uint8", "int32", "float32", "float64")
OPS = ("hello", "load", "swap", "run", "metrics", "ping")


class ProtocolError(Exception):
    """A malformed or oversized message; the agent answers it with an error reply."""


def encode(header: dict[str, Any], arrays: Sequence[np.ndarray] = ()) -> list[Any]:
    """Frames of one message: the header (with ``v`` and the arrays' descriptions added),
    then each array's bytes (no copy where the array is contiguous)."""
    arrs = [np.ascontiguousarray(a) for a in arrays]
    for a in arrs:
        if a.dtype.name not in DTYPES:
            raise ProtocolError(f"dtype {a.dtype} cannot be sent; use one of {DTYPES}")
    desc = [{"dtype": a.dtype.name, "shape": list(a.shape), "nbytes": int(a.nbytes)}
            for a in arrs]
    head = json.dumps({**header, "v": VERSION, "arrays": desc}, separators=(",", ":")).encode()
    return [head, *(memoryview(a.reshape(-1).view(np.uint8)) for a in arrs)]


def frame_bytes(frame: Any) -> memoryview:
    """A received frame (``zmq.Frame``, bytes, memoryview) as bytes without a copy."""
    buf = getattr(frame, "buffer", frame)
    return memoryview(buf).cast("B")


def decode(frames: Sequence[Any], max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[dict[str, Any],
                                                                               list[np.ndarray]]:
    """Check and parse one message (see the module docstring); :class:`ProtocolError` with
    the reason when anything is off. Arrays are read-only views of the frames."""
    if not frames:
        raise ProtocolError("empty message")
    head = frame_bytes(frames[0])
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header frame of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(bytes(head).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ProtocolError(f"header frame is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"header must be a JSON object, got {type(header).__name__}")
    if header.get("v") != VERSION:
        raise ProtocolError(f"protocol version {header.get('v')!r}; this agent speaks "
                            f"{PROTOCOL} (v {VERSION})")
    desc = header.get("arrays", [])
    if not isinstance(desc, list) or len(desc) > MAX_ARRAYS:
        raise ProtocolError(f"field 'arrays' must be a list of at most {MAX_ARRAYS}")
    if len(frames) != 1 + len(desc):
        raise ProtocolError(f"header describes {len(desc)} arrays but {len(frames) - 1} "
                            "data frames follow")
    total = sum(len(frame_bytes(f)) for f in frames[1:])
    if total > max_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds the limit of {max_bytes} bytes")
    arrays = []
    for i, (d, f) in enumerate(zip(desc, frames[1:], strict=True)):
        if not isinstance(d, dict):
            raise ProtocolError(f"arrays[{i}] must be an object")
        dtype, shape, nbytes = d.get("dtype"), d.get("shape"), d.get("nbytes")
        if dtype not in DTYPES:
            raise ProtocolError(f"arrays[{i}].dtype {dtype!r} is not one of {DTYPES}")
        if not (isinstance(shape, list) and len(shape) <= 8 and all(
                isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise ProtocolError(f"arrays[{i}].shape must be a list of non-negative integers")
        data = frame_bytes(f)
        want = math.prod(shape) * np.dtype(dtype).itemsize
        if nbytes != want or len(data) != want:
            raise ProtocolError(f"arrays[{i}]: shape {shape} of {dtype} is {want} bytes, the "
                                f"header says {nbytes!r} and the frame holds {len(data)}")
        arrays.append(np.frombuffer(data, dtype=dtype).reshape(shape))
    return header, arrays


def field(header: dict[str, Any], name: str, kind: type, default: Any = ...) -> Any:
    """A request field of type ``kind``, or :class:`ProtocolError` naming it."""
    if name not in header:
        if default is ...:
            raise ProtocolError(f"field {name!r} is missing")
        return default
    v = header[name]
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ProtocolError(f"field {name!r} must be {kind.__name__}, got {v!r}")
    return v


def int_list(header: dict[str, Any], name: str, limit: int = 64) -> list[int]:
    v = field(header, name, list)
    if len(v) > limit or not all(isinstance(x, int) and not isinstance(x, bool) for x in v):
        raise ProtocolError(f"field {name!r} must be a list of at most {limit} integers")
    return v


def str_list(header: dict[str, Any], name: str, limit: int = 64) -> list[str]:
    v = field(header, name, list)
    if len(v) > limit or not all(isinstance(x, str) and len(x) < 256 for x in v):
        raise ProtocolError(f"field {name!r} must be a list of at most {limit} names")
    return v
