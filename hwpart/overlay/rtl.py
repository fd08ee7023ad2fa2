"""Verilog for dense RMs through da4ml, checked bit-exact against da4ml's emulation.

Why da4ml and not hls4ml's own RTL: hls4ml needs Vivado/Vitis HLS to produce
RTL, and its ``distributed_arithmetic`` strategy takes 15-20 min of g++ per
MLP. da4ml traces the quantized network in pure Python (the same function runs
on symbolic arrays and on numpy) and writes Verilog that RTL simulation can run
here, so a dense RM can be simulated as RTL in CI.

Arithmetic: inputs, weights and every dense result are quantized to the RM's
``ap_fixed<W,I>`` (k=1, i=I-1, f=W-I) with round-half-up and saturation where
the precision asks for rounding/saturation. hls4ml rounds convergently
(AP_RND_CONV) and keeps a wider accumulator, which da4ml does not offer, so
the RTL is bit-exact to *da4ml's* emulation and only close to the hls4ml C
simulation; both are compared with torch and reported separately.

The da4ml core is a fixed-latency pipeline with flat ports (``model_inp``,
``model_out``); the AXI4-Stream RM interface of sim/README.md wraps it. The
check here simulates the core with Icarus Verilog.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

#: Ops a da4ml dense core implements here (softmax and convolutions stay in hls4ml).
DENSE_OPS = frozenset({"linear", "relu", "flatten", "identity", "dropout"})
_RTL_FORMAT = 1


@dataclass
class FixedType:
    width: int
    integer: int
    rounding: str  # "RND" or "TRN"
    overflow: str  # "SAT" or "WRAP"

    @property
    def kif(self) -> tuple[int, int, int]:
        return 1, self.integer - 1, self.width - self.integer

    @classmethod
    def parse(cls, text: str) -> FixedType:
        m = re.fullmatch(r"\s*ap_fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,([^>]*))?>\s*", text)
        if not m:
            raise ValueError(f"not an ap_fixed type: {text!r}")
        modes = [s.strip().upper() for s in (m.group(3) or "").split(",") if s.strip()]
        rnd = "RND" if any(s.startswith("AP_RND") for s in modes) else "TRN"
        sat = "SAT" if any(s.startswith("AP_SAT") for s in modes) else "WRAP"
        return cls(int(m.group(1)), int(m.group(2)), rnd, sat)


def dense_reason(m: nn.Sequential) -> str | None:
    """Why this slice gets no da4ml RTL, or None when it does."""
    for name, mod in m.named_children():
        kind = type(mod).__name__
        if kind not in ("Linear", "ReLU", "Flatten", "Identity", "Dropout"):
            return f"layer '{name}' ({kind}) is not dense/ReLU; da4ml RTL covers dense groups"
    if not any(isinstance(mod, nn.Linear) for mod in m.children()):
        return "no dense layer (an element-wise group stays in hls4ml)"
    return None


def make_forward(m: nn.Sequential, t: FixedType):
    """The quantized network as one function for symbolic (da4ml) and numpy arrays."""
    from da4ml.trace.ops import quantize, relu

    k, i, f = t.kif
    steps: list[tuple[str, Any]] = []
    for mod in m.children():
        if isinstance(mod, nn.Linear):
            w = mod.weight.detach().numpy().astype(np.float64).T
            b = (mod.bias.detach().numpy().astype(np.float64) if mod.bias is not None
                 else np.zeros(w.shape[1]))
            wq = quantize(w, k, i, f, t.overflow, t.rounding)
            bq = quantize(b, k, i, f, t.overflow, t.rounding)
            steps.append(("linear", (wq, bq)))
        elif isinstance(mod, nn.ReLU):
            steps.append(("relu", None))

    def forward(x):
        # the input port carries the type itself: da4ml inputs wrap (the host saturates)
        x = quantize(x, k, i, f, "WRAP", t.rounding)
        for kind, p in steps:
            if kind == "linear":
                x = quantize(x @ p[0] + p[1], k, i, f, t.overflow, t.rounding)
            else:
                x = relu(x)
        return x

    return forward


@dataclass
class RTLResult:
    directory: Path
    top: str
    n_in: int
    n_out: int
    stages: int
    lut_estimate: float  # da4ml's cost, *estimated*
    ff_estimate: int
    trace_s: float
    cached: bool
    bit_exact: bool | None = None
    mismatches: int | None = None
    checked_samples: int = 0
    sim: str = ""


def rtl_key(digest: str, precision: str, latency_cutoff: float) -> str:
    import da4ml

    # this file's own hash: a change to make_forward must not reuse old Verilog or verdicts
    own = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]
    text = (f"{digest}|{precision}|{latency_cutoff}|da4ml {da4ml.__version__}|{own}"
            f"|fmt {_RTL_FORMAT}")
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def generate(m: nn.Sequential, n_in: int, precision: str, digest: str, cache: Path,
             top: str = "rm_core", latency_cutoff: float = 5.0) -> RTLResult:
    """Trace and write the Verilog (or reuse it from ``cache``)."""
    d = cache / "rtl" / rtl_key(digest, precision, latency_cutoff)
    meta = d / "hwpart_rtl.json"
    if meta.is_file():
        info = json.loads(meta.read_text())
        return RTLResult(d, info["top"], info["n_in"], info["n_out"], info["stages"],
                         info["lut"], info["ff"], info["trace_s"], cached=True)
    from da4ml.codegen import VerilogModel
    from da4ml.trace import FixedVariableArrayInput, comb_trace

    t0 = time.perf_counter()
    fwd = make_forward(m, FixedType.parse(precision))
    inp = FixedVariableArrayInput(n_in)
    comb = comb_trace(inp, fwd(inp))
    tmp = d.with_name(d.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    vm = VerilogModel(comb, top, tmp, latency_cutoff=latency_cutoff, print_latency=False)
    vm.write()
    elapsed = time.perf_counter() - t0
    md = json.loads((tmp / "metadata.json").read_text())
    info = {"top": top, "n_in": n_in, "n_out": int(comb.shape[1]),
            "stages": int(md.get("latency", 0)), "lut": float(md["cost"]),
            "ff": int(md.get("reg_bits", 0)), "trace_s": elapsed, "precision": precision}
    (tmp / "hwpart_rtl.json").write_text(json.dumps(info))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    return RTLResult(d, top, n_in, info["n_out"], info["stages"], info["lut"], info["ff"],
                     elapsed, cached=False)


def load_comb(res: RTLResult):
    from da4ml.cmvm.types import CombLogic

    return CombLogic.load(res.directory / "model" / "comb.json")


def _io_format(comb) -> tuple[tuple[int, int], tuple[int, int, int, int]]:
    """(input bits, input f), (output bits, k, i, f) of the uniform-width wrapper ports."""
    from da4ml.codegen.rtl.rtl_model import get_io_kifs

    kin, kout = get_io_kifs(comb)
    bw_in = int(kin[0].max() + kin[1].max() + kin[2].max())
    ko, io_, fo = int(kout[0].max()), int(kout[1].max()), int(kout[2].max())
    return (bw_in, int(kin[2].max())), (ko + io_ + fo, ko, io_, fo)


def verilog_sources(res: RTLResult) -> list[Path]:
    """The core's Verilog files; da4ml's lookup-table module only when tables exist.

    Icarus rejects that module's parameter expression and Yosys stops on its
    ``$readmemh`` of a missing file, so an unused copy must stay out.
    """
    src = res.directory / "src"
    tables = any((src / "memfiles").glob("*")) if (src / "memfiles").is_dir() else False
    return sorted(p for p in src.rglob("*.v") if tables or p.name != "lookup_table.v")


def simulate(res: RTLResult, x: np.ndarray, workdir: Path | None = None) -> np.ndarray:
    """Run the Verilog on rows of ``x`` with Icarus; returns the decoded outputs."""
    iverilog = shutil.which("iverilog")
    vvp = shutil.which("vvp")
    if not iverilog or not vvp:
        raise FileNotFoundError("iverilog/vvp not on PATH (apt-get install iverilog)")
    comb = load_comb(res)
    (bw_in, f_in), (bw_out, k, i, f) = _io_format(comb)
    n = x.shape[0]
    raw = np.floor(x.reshape(n, -1).astype(np.float64) * 2.0**f_in).astype(np.int64)
    raw &= (1 << bw_in) - 1
    words = []
    for row in raw:
        v = 0
        for j, e in enumerate(row):
            v |= int(e) << (j * bw_in)
        words.append(f"{v:x}")
    tmp = Path(workdir or tempfile.mkdtemp(prefix="hwpart_rtl_"))
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "in.hex").write_text("\n".join(words) + "\n")
    w_in, w_out = bw_in * res.n_in, bw_out * res.n_out
    lat = res.stages + 1  # one register per stage plus the output register
    # one sample per clock, as the pipeline runs in hardware (II = 1)
    tb = f"""`timescale 1ns/1ps
module tb;
  reg clk = 0;
  reg [{w_in - 1}:0] mem [0:{n - 1}];
  reg [{w_in - 1}:0] inp;
  wire [{w_out - 1}:0] out;
  integer c, fd;
  {res.top}_wrapper dut(.clk(clk), .model_inp(inp), .model_out(out));
  initial begin
    $readmemh("{tmp / 'in.hex'}", mem);
    fd = $fopen("{tmp / 'out.hex'}", "w");
    inp = 0;
    for (c = 0; c < {n + lat - 1}; c = c + 1) begin
      if (c < {n}) inp = mem[c];
      #5 clk = 1; #5 clk = 0;
      if (c + 1 >= {lat}) $fwrite(fd, "%h\\n", out);
    end
    $fclose(fd);
    $finish;
  end
endmodule
"""
    (tmp / "tb.v").write_text(tb)
    srcs = [str(p) for p in verilog_sources(res)]
    subprocess.run([iverilog, "-g2012", "-o", str(tmp / "sim.vvp"), str(tmp / "tb.v"), *srcs],
                   check=True, capture_output=True, text=True)
    subprocess.run([vvp, "-n", str(tmp / "sim.vvp")], check=True, capture_output=True,
                   text=True, cwd=res.directory / "src" / "memfiles")
    lines = (tmp / "out.hex").read_text().split()
    out = np.zeros((n, res.n_out), dtype=np.float64)
    mask = (1 << bw_out) - 1
    for s, line in enumerate(lines):
        v = int(line, 16)
        for j in range(res.n_out):
            e = (v >> (j * bw_out)) & mask
            if k and e >> (bw_out - 1):
                e -= 1 << bw_out
            out[s, j] = e * 2.0**-f
    return out


def check_bit_exact(res: RTLResult, x: np.ndarray) -> RTLResult:
    """Compare the Icarus run of the Verilog with da4ml's emulation (comb.predict)."""
    emu = load_comb(res).predict(x.reshape(len(x), -1).astype(np.float64))
    sim = simulate(res, x)
    bad = int(np.sum(np.any(sim != emu, axis=1)))
    res.bit_exact, res.mismatches, res.checked_samples = bad == 0, bad, len(x)
    res.sim = "icarus"
    return res


def yosys_estimate(res: RTLResult, family: str, timeout_s: float = 180.0
                   ) -> dict[str, int] | None:
    """LUT/FF/DSP/BRAM of the core after Yosys ``synth_xilinx`` (no place and route).

    *Estimated*: Yosys maps to Xilinx primitives but does not optimise like
    Vivado. ``family`` is Yosys's name: ``xc7`` (Zynq-7000) or ``xcup``
    (UltraScale+). Cached next to the Verilog; None when yosys is not installed
    or takes longer than ``timeout_s`` (big fully parallel cores take minutes; a
    time-out is cached too, and retried only with a longer ``timeout_s``).
    """
    exe = shutil.which("yosys")
    if exe is None:
        return None
    cache = res.directory / f"yosys-{family}.json"
    if cache.is_file():
        info = json.loads(cache.read_text())
        if "timed_out_s" not in info:
            return info
        if info["timed_out_s"] >= timeout_s:  # ran out of this much time before: skip
            return None
    srcs = " ".join(str(p) for p in verilog_sources(res))
    with tempfile.TemporaryDirectory(prefix="hwpart_yosys_") as tmp:
        stat = Path(tmp) / "stat.txt"
        script = (f"read_verilog {srcs}; synth_xilinx -top {res.top}_wrapper -family {family} "
                  f"-flatten -noiopad; tee -q -o {stat} stat")
        try:
            subprocess.run([exe, "-q", "-p", script], check=True, capture_output=True,
                           text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:  # cached: a rebuild must not wait again
            cache.write_text(json.dumps({"timed_out_s": timeout_s}))
            return None
        except subprocess.CalledProcessError:
            return None
        cells: dict[str, int] = {}
        for line in stat.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                cells[parts[0]] = cells.get(parts[0], 0) + int(parts[1])
    out = {
        "lut": sum(v for k, v in cells.items() if re.fullmatch(r"LUT\d|INV", k)),
        "ff": sum(v for k, v in cells.items() if re.fullmatch(r"FD[A-Z]*", k)),
        "dsp": sum(v for k, v in cells.items() if k.startswith("DSP48")),
        "bram_18k": sum(v * (2 if "36" in k else 1) for k, v in cells.items()
                        if k.startswith("RAMB")),
        "uram": sum(v for k, v in cells.items() if k.startswith("URAM")),
        "carry": sum(v for k, v in cells.items() if k.startswith("CARRY")),
    }
    cache.write_text(json.dumps(out))
    return out
