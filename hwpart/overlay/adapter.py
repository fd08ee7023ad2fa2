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


_DRIVER = r"""
// C-simulation driver for rm_axis.cpp: one input packet of N samples (TLAST on
// its last word only), values converted to the RM's type exactly as hls4ml's
// bridge does, then every output word printed with its TLAST.
#include <cstdio>
#include "rm_axis.cpp"

int main() {
    int n;
    if (scanf("%d", &n) != 1) return 2;
    hls::stream<word_t> s_axis("s_axis"), m_axis("m_axis");
    for (int s = 0; s < n; s++) {
        word_t w;
        w.data = 0;
        w.keep = -1;
        for (int i = 0; i < N_IN; i++) {
            float f;
            if (scanf("%f", &f) != 1) return 2;
            typename input_t::value_type v = f;
            w.data.range((i % LANES) * LANE + LANE - 1, (i % LANES) * LANE) = v.range();
            if (i % LANES == LANES - 1 || i == N_IN - 1) {
                w.last = (s == n - 1 && i == N_IN - 1);
                s_axis.write(w);
                w.data = 0;
            }
        }
    }
    for (int s = 0; s < n; s++) @{top}_axis(s_axis, m_axis);
    while (!m_axis.empty()) {
        word_t w = m_axis.read();
        printf("%d", (int)w.last);
        for (int j = 0; j < LANES; j++) {
            typename result_t::value_type v;
            v.range() = w.data.range(j * LANE + LANE - 1, j * LANE);
            printf(" %.9g", v.to_double());
        }
        printf("\n");
    }
    return 0;
}
"""


@dataclass
class AdapterRun:
    outputs: np.ndarray  # (samples, n_out), from the output words
    last_flags: list[int]  # TLAST of every output word, in order


def run_adapter(rm_dir: Path, top: str, x_stream: np.ndarray, n_out: int,
                workdir: Path) -> AdapterRun:
    """Compile ``rm_axis.cpp`` with the RM's hls4ml firmware (g++) and stream ``x`` through it.

    Checks the adapter itself: lane packing, sample alignment and TLAST, against
    the C simulation that has no adapter.
    """
    import shutil
    import subprocess

    gxx = shutil.which("g++")
    if gxx is None:
        raise FileNotFoundError("g++ not on PATH")
    fw = rm_dir / "hls4ml_prj" / "firmware"
    workdir.mkdir(parents=True, exist_ok=True)
    drv = workdir / "driver.cpp"
    drv.write_text(_DRIVER.replace("@{top}", top))
    exe = workdir / "driver"
    subprocess.run([gxx, "-O1", "-std=c++14", f"-I{fw}", f"-I{fw / 'ap_types'}", f"-I{rm_dir}",
                    str(drv), str(fw / f"{top}.cpp"), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    x = np.asarray(x_stream, dtype=np.float32).reshape(len(x_stream), -1)
    text = f"{len(x)}\n" + "\n".join(" ".join(f"{v:.9g}" for v in row) for row in x) + "\n"
    out = subprocess.run([str(exe)], input=text, check=True, capture_output=True, text=True)
    flags, values = [], []
    for line in out.stdout.split("\n"):
        if line.strip():
            first, *vals = line.split()
            flags.append(int(first))
            values.append([float(v) for v in vals])
    words_per_sample = math.ceil(n_out / len(values[0]))
    rows = [sum(values[s * words_per_sample:(s + 1) * words_per_sample], [])[:n_out]
            for s in range(len(x))]
    return AdapterRun(np.array(rows, dtype=np.float32), flags)
