"""The overlay bundle the generated-RM RTL tests run: a small MLP cut into two dense RMs.

Two RMs, so one generated bank holds more than one RM and a stage can chain
two slots; small, so its two hls4ml compiles stay within CI time. Built through
``hwpart overlay build``'s own function with a persistent content cache, so a
rerun reuses every compile.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

GROUPS = "_0-_1,_2-_4"


def mlp() -> nn.Module:
    torch.manual_seed(11)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8), nn.ReLU(),
                         nn.Linear(8, 4)).eval()


def build(out: Path, cache: Path, board: str = "pynq-z2"):
    from hwpart.boards import load_board
    from hwpart.graph import capture
    from hwpart.overlay.build import BuildOptions, build_overlay

    lg = capture(mlp(), (8,), "mlp_rtl")
    return build_overlay(lg, load_board(board), BuildOptions(
        out=out, groups=GROUPS, cache=cache, samples=100, jobs=2, yosys=False))


def for_tests(request, tmp_path_factory):
    """The bundle for a pytest module: hls4ml compiles cached in pytest's cache folder
    (kept across runs; a fresh checkout pays two compiles once)."""
    cache_plugin = getattr(request.config, "cache", None)
    cache = (cache_plugin.mkdir("hwpart-rtl-rms") if cache_plugin is not None
             else tmp_path_factory.mktemp("hwpart-rtl-cache"))
    return build(tmp_path_factory.mktemp("bundle") / "mlp", Path(cache))


def stage_plans():
    """The partitions the host-bridge test runs, in order: (name, [(unit, layers)]).

    The whole MLP on the FPGA (two RMs chained slot 0 -> slot 1 through the
    switch), then CPU | FPGA with the second RM alone in slot 0 (a PR swap of
    slot 0), then the first partition again (a swap back).
    """
    whole = [("fpga0", ["_0", "_1", "_2", "_3", "_4"])]
    split = [("cpu", ["_0", "_1"]), ("fpga0", ["_2", "_3", "_4"])]
    return [("fpga", whole), ("cpu|fpga", split), ("fpga again", whole)]


def _plan(lg, stages):
    from hwpart.partition import manual_plan

    return manual_plan(lg.name, lg.input_shape, stages, batch=8)


def run_partitioned(fpga, x):
    """Each partition of :func:`stage_plans` run stage by stage on its device (as the
    runtime does, without threads); returns {partition: output array}."""
    import torch as _torch

    from hwpart.devices.cpu import CpuDevice
    from hwpart.graph import capture
    from hwpart.stages import split

    lg = capture(mlp(), (8,), "mlp_rtl")
    devices = {"cpu": CpuDevice(), "fpga": fpga}
    out = {}
    for name, stages in stage_plans():
        staged = split(lg, _plan(lg, stages))
        env = staged.initial(_torch.as_tensor(x))
        for st in staged.stages:
            dev = devices[st.device]
            h = dev.load(st)
            env = dev.run(h, env)
            dev.unload(h)
        out[name] = staged.result(env).detach().numpy()
    return out
