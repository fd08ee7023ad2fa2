"""A bundle's generated RMs (da4ml Verilog + AXI-Stream adapter) in the shell's slot wrapper.

What "against quantized torch" checks, precisely: torch (float64) runs the
RM's layers with the RM's own quantization applied explicitly -- the input
wrapped to the RM's ap_fixed<W,I>, weights and biases rounded/saturated to
it, every Linear output rounded/saturated to it, ReLU exact -- on the same
raw inputs. That is an independent statement of the arithmetic the RM
promises, so the RTL must equal it bit for bit (and it does, like da4ml's
emulation). Separately, the plain float torch layers on the dequantized
inputs (inputs in [-1, 1), the builder's range) must be within the RM's
manifest accuracy tolerance: that is the error the quantization itself costs.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

from hwpart.rtlbridge import sim_tb, write_rm_bank, write_vectors

pytest.importorskip("da4ml")
pytest.importorskip("hls4ml")
pytestmark = pytest.mark.slow
sys.path.insert(0, str(sim_tb()))
import rtl_bundles  # noqa: E402


def _q(x: torch.Tensor, width: int, integer: int, rounding: str, overflow: str) -> torch.Tensor:
    f = width - integer
    s = x * 2.0 ** f
    s = torch.floor(s + 0.5) if rounding == "RND" else torch.floor(s)
    lo, span = -(2.0 ** (width - 1)), 2.0 ** width
    s = s.clamp(lo, -lo - 1) if overflow == "SAT" else torch.remainder(s - lo, span) + lo
    return s / 2.0 ** f


def quantized_torch(mod: torch.nn.Sequential, precision: str, x: np.ndarray) -> np.ndarray:
    """The RM's layers in float64 torch with the RM's quantization written out."""
    from hwpart.overlay.rtl import FixedType

    t = FixedType.parse(precision)
    q = lambda v, ov=t.overflow: _q(v, t.width, t.integer, t.rounding, ov)  # noqa: E731
    h = q(torch.as_tensor(x, dtype=torch.float64), "WRAP")
    for layer in mod:
        if isinstance(layer, torch.nn.Linear):
            w = q(layer.weight.detach().double())
            b = q(layer.bias.detach().double()) if layer.bias is not None else 0.0
            h = q(h @ w.T + b)
        elif isinstance(layer, torch.nn.ReLU):
            h = torch.relu(h)
    return h.numpy()


def references(built, bank, vec) -> None:
    """Add the quantized-torch and float-torch expectations to the vectors (in place)."""
    from hwpart.graph import capture
    from hwpart.overlay.hls import slice_module

    lg = capture(rtl_bundles.mlp(), (8,), "mlp_rtl")
    m = built.manifest
    for rv in vec["rms"]:
        r = m.rm(rv["name"])
        mod = slice_module(lg, r.layers).double()
        scale = 2.0 ** rv["lane_frac"]
        x = np.asarray(rv["inputs"], dtype=np.float64) / scale
        rv["expect_qtorch"] = np.rint(quantized_torch(mod, r.precision, x) * scale) \
            .astype(np.int64).tolist()
        unit = x[len(x) - len(x) // 2:]  # the [-1, 1) half of the inputs
        with torch.no_grad():
            rv["torch_float"] = mod.float()(torch.as_tensor(unit, dtype=torch.float32)) \
                .double().numpy().tolist()
        rv["tolerance"] = float(r.accuracy.tolerance)


def test_bank_holds_every_dense_rm(built, tmp_path):
    bank = write_rm_bank(built.bundle, tmp_path / "bank")
    assert [r.name for r in bank.rms] == [r.name for r in built.manifest.rms if r.rtl]
    assert len(bank.rms) == 2
    text = (tmp_path / "bank" / "rm_bank_generated.v").read_text()
    assert "module rm_bank" in text and text.count("rm_da4ml_axis #(") == 2


def _run(built, tmp_path, mutate=None, defines=None, testcase=None):
    from hwpart.rtlbridge import run_cocotb

    bank = write_rm_bank(built.bundle, tmp_path / "bank")
    if mutate:
        f = tmp_path / "bank" / "rm_bank_generated.v"
        f.write_text(mutate(f.read_text()))
    vec = write_vectors(bank, tmp_path / "vectors.json", n=48, seed=1)
    references(built, bank, vec)
    (tmp_path / "vectors.json").write_text(json.dumps(vec))
    report = tmp_path / "report.json"
    res = run_cocotb("rm_slot", bank.slot_sources(), "cocotb_generated_rms", tmp_path,
                     parameters={"DATA_WIDTH": bank.data_width, "NUM_RMS": len(bank.rms)},
                     env={"HWPART_RTL_VECTORS": str(tmp_path / "vectors.json"),
                          "HWPART_RTL_REPORT": str(report)},
                     testcase=testcase or ["test_bit_exact_every_rm",
                                           "test_swap_midstream_keeps_packets_whole"],
                     defines=defines)
    return res, report


def test_generated_rms_bit_exact_in_slot(built, tmp_path):
    """cocotb, Icarus: every RM in rm_slot, RTL == da4ml emulation == quantized torch."""
    res, report = _run(built, tmp_path)
    assert res.ok and len(res.passed) == 2, f"{res.failed}\n{res.log_tail()}"
    print(f"generated RMs in rm_slot: {res.seconds:.1f} s (icarus), {json.loads(report.read_text())}")


@pytest.mark.parametrize("mutant", ["core_latency_off_by_one", "no_credit"])
def test_bit_exact_test_catches_adapter_mutants(built, tmp_path, mutant):
    """The same testbench fails on a wrong pipeline depth (the adapter samples the core
    a cycle early) and on an adapter that ignores its FIFO's room under back-pressure."""
    import re

    if mutant == "no_credit":
        res, _ = _run(built, tmp_path, defines={"MUTANT_ADAPTER_NO_CREDIT": 1},
                      testcase="test_bit_exact_every_rm")
    else:
        res, _ = _run(built, tmp_path, testcase="test_bit_exact_every_rm",
                      mutate=lambda t: re.sub(r"\.CORE_LAT\((\d+)\)",
                                              lambda m: f".CORE_LAT({int(m[1]) - 1})", t))
    assert res.failed == ["test_bit_exact_every_rm"], res.log_tail()


def test_quantized_torch_equals_emulation_outside_rtl(built, tmp_path):
    """The two references agree with each other too (so a shared mistake would need both)."""
    bank = write_rm_bank(built.bundle, tmp_path / "bank")
    vec = write_vectors(bank, tmp_path / "v.json", n=200, seed=7)
    references(built, bank, vec)
    for rv in vec["rms"]:
        assert rv["expect_qtorch"] == rv["expect_emulation"], rv["name"]
