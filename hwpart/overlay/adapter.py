"""The RM's AXI4-Stream adapter (``rmK/rm_axis.cpp``) from ``hls/rm_axis.cpp``.

hls4ml's io_stream top moves one ``nnet::array`` per beat (a whole vector, or
one pixel's channels) and has no TLAST; the shell's slots carry fixed-width
DMA words with TLAST and count packets (sim/README.md). The adapter packs
values into words lane by lane and mirrors TLAST, so one input packet gives
one output packet. The word format is recorded in the manifest so the driver
packs samples the same way (:func:`pack` / :func:`unpack` here are that format).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwpart.overlay.rtl import FixedType
from hwpart.overlay.tcl import render


@dataclass(frozen=True)
class StreamFormat:
    lane_bits: int
    lanes: int
    in_words: int
    out_words: int


def stream_format(precision: str, n_in: int, n_out: int, stream_bits: int) -> StreamFormat:
    lane = FixedType.parse(precision).width
    lanes = stream_bits // lane
    if lanes < 1:
        raise ValueError(f"{precision}: {lane}-bit values do not fit a {stream_bits}-bit word")
    return StreamFormat(lane, lanes, math.ceil(n_in / lanes), math.ceil(n_out / lanes))


def write_adapter(d: Path, rm: str, precision: str, n_in: int, n_out: int,
                  stream_bits: int) -> Path:
    f = stream_format(precision, n_in, n_out, stream_bits)
    text = render("rm_axis.cpp", rm=rm, top=rm, stream_bits=stream_bits, lane_bits=f.lane_bits,
                  lanes=f.lanes, n_in=n_in, n_out=n_out, in_words=f.in_words,
                  out_words=f.out_words)
    path = d / "rm_axis.cpp"
    path.write_text(text)
    return path


def pack(raw: np.ndarray, fmt: StreamFormat, stream_bits: int) -> list[int]:
    """Rows of raw lane values (ints, two's complement) -> words, each row word-aligned."""
    words = []
    mask = (1 << fmt.lane_bits) - 1
    for row in raw:
        for w in range(0, len(row), fmt.lanes):
            v = 0
            for j, e in enumerate(row[w:w + fmt.lanes]):
                v |= (int(e) & mask) << (j * fmt.lane_bits)
            words.append(v)
    return words
