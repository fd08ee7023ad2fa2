"""``hwpart overlay build``: from a model to a bundle under ``bitstreams/NAME/``.

Steps: candidate groups -> size check (modeled) -> hls4ml C simulation per RM
with a precision search against the tolerance (in parallel processes) -> the
simulated board's vectorised model of dense RMs, checked bit-exact against the
C simulation (:mod:`hwpart.sim.fastrm`) -> da4ml
RTL for dense RMs, checked bit-exact in Icarus -> per-board hls4ml projects,
AXI-Stream adapters and Vivado scripts -> manifest.yaml with sha256 of every
file. Everything expensive is cached by content hash under ``cache``
(``.hwpart-cache`` by default), so an unchanged model rebuilds in seconds and
the same group at the same precision is compiled once for every board.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.boards import Board
from hwpart.errors import HwpartError
from hwpart.graph import LayerGraph
from hwpart.overlay import hls, rtl, tcl
from hwpart.overlay.adapter import stream_format, write_adapter
from hwpart.overlay.candidates import Group, find_candidates, unsupported_reason
from hwpart.overlay.hlsconfig import INPUT_LAYER, UserHLSConfig, load_hls_config
from hwpart.overlay.manifest import (
    RM,
    AccuracyFigures,
    BoardInfo,
    CSimInfo,
    Cycles,
    FastModelInfo,
    FileEntry,
    LayerHLS,
    Manifest,
    ModelInfo,
    Rejected,
    ResourceFigures,
    RTLInfo,
    Shell,
    Slot,
    StreamInfo,
    file_entries,
    load_manifest,
    sha256_file,
    write_manifest,
)
from hwpart.overlay.resources import estimate_group, kernel_dims

DEFAULT_TOLERANCE = 0.02
YOSYS_MAX_LUT = 50_000  # da4ml estimate above which the Yosys run is skipped
DEFAULT_CACHE = Path(".hwpart-cache")
Progress = Callable[[str, str, float], None]  # (rm, what, fraction done)


@dataclass
class BuildOptions:
    out: Path
    slots: int | None = None
    tolerance: float = DEFAULT_TOLERANCE
    precisions: tuple[str, ...] = hls.DEFAULT_PRECISIONS
    samples: int = 200
    seed: int = 0
    calibration: Path | None = None
    groups: str | None = None
    cache: Path = DEFAULT_CACHE
    jobs: int = 0  # 0: one per CPU
    rtl: bool = True
    rtl_samples: int = 64
    yosys: bool = True  # synth_xilinx estimate of da4ml cores when yosys is installed
    hls_config: Path | None = None  # the user's hls4ml config (--hls-config), merged per RM


@dataclass
class RMReport:
    """One row of the closing table."""

    name: str
    layers: list[str]
    status: str  # ok | rejected
    reason: str = ""
    precision: str = ""
    accuracy: hls.Accuracy | None = None
    trials: list[hls.Trial] = field(default_factory=list)
    resources: dict[str, int] = field(default_factory=dict)
    slot_resources: dict[str, int] = field(default_factory=dict)
    ii_cycles: int = 0
    latency_cycles: int = 0
    rtl: str = ""
    sim_engine: str = ""  # what the simulated board runs: vectorised model or C simulation


@dataclass
class BuildResult:
    bundle: Path
    manifest: Manifest
    reports: list[RMReport]
    off_fpga: dict[str, str]
    seconds: float
    cached_compiles: int
    compiles: int


class OverlayError(HwpartError):
    """Bad build input: calibration data, output folder, slot count."""


def _inputs(lg: LayerGraph, opts: BuildOptions) -> tuple[np.ndarray, str]:
    """Random inputs (seeded, uniform in [-1, 1]) plus the user's calibration samples."""
    rng = np.random.default_rng(opts.seed)
    x = rng.uniform(-1, 1, (opts.samples, *lg.input_shape)).astype(np.float32)
    what = f"{opts.samples} uniform[-1,1] (seed {opts.seed})"
    if opts.calibration is not None:
        try:
            loaded = np.load(opts.calibration)
        except (OSError, ValueError) as exc:
            raise OverlayError(f"--calibration {opts.calibration}: cannot read: {exc}") from None
        if not isinstance(loaded, np.ndarray):  # an .npz archive of several arrays
            raise OverlayError(f"--calibration {opts.calibration}: expected one array (.npy, "
                               f"np.save), got an archive of {list(loaded.keys())}")
        cal = loaded.astype(np.float32)
        if tuple(cal.shape[1:]) != tuple(lg.input_shape):
            raise OverlayError(
                f"--calibration {opts.calibration}: samples have shape {tuple(cal.shape[1:])}, "
                f"the model takes {tuple(lg.input_shape)} (array shape must be (N, "
                f"{', '.join(map(str, lg.input_shape))}))")
        x = np.concatenate([x, cal])
        what += f" + {len(cal)} from {Path(opts.calibration).name}"
    return x, what


def _is_classifier(lg: LayerGraph, g: Group) -> bool:
    """Argmax agreement only means something for the model's own output vector."""
    succ = list(lg.dag.successors(g.nodes[-1]))
    ends = all(lg.dag.nodes[s]["op"] == "output" for s in succ)
    return ends and len(g.out_shape) == 1 and g.out_shape[0] > 1


def _res(d: dict[str, int], source: str) -> ResourceFigures:
    return ResourceFigures(source=source, **{k: int(d.get(k, 0)) for k in
                                             ("lut", "ff", "dsp", "bram_18k", "uram")})


def _run_jobs(jobs: list[dict[str, Any]], workers: int,
              progress: Progress | None) -> dict[str, dict[str, Any]]:
    """Precision searches: cached ones in this process, new ones in a spawn pool.

    New libraries run in child processes because hls4ml's C++ asserts abort
    the whole process (e.g. an unsupported layer option); a crash then rejects
    that RM only. Spawn, not fork: the parent has torch's thread pools running.
    Children send their steps (hls4ml convert, g++, check) through a queue, so
    the user sees where each RM is while g++ runs, not only when it is done.
    """
    out: dict[str, dict[str, Any]] = {}
    cold = []
    step = _steps(progress)
    for job in jobs:
        res = (hls.run_job(job, warm_only=True, progress=step) if hls.job_is_warm(job)
               else None)
        if res is None:  # a library that has not run before: only in a child process
            cold.append(job)
            continue
        out[job["name"]] = res
        if progress:
            progress(job["name"], "C simulation checked (cached)", 0.7)
    if not cold:
        return out
    ctx = multiprocessing.get_context("spawn")
    for job in cold:
        if progress:
            progress(job["name"], "queued for hls4ml + g++", 0.1)
    # SimpleQueue: a worker's put() writes the line before it returns, so a worker that
    # then aborts in C++ cannot die holding the queue's lock (a Queue's feeder thread
    # may still be writing, and the parent would wait for that lock for ever)
    queue = ctx.SimpleQueue()
    stop = threading.Event()
    drain = threading.Thread(target=_drain, args=(queue, step, stop), daemon=True)
    drain.start()
    try:
        with ProcessPoolExecutor(max_workers=max(1, min(workers, len(cold))), mp_context=ctx,
                                 initializer=hls.init_worker, initargs=(queue,)) as ex:
            futs = [ex.submit(hls.run_job, job) for job in cold]
            for fut in as_completed(futs):
                res = fut.result()
                out[res["name"]] = res
    except BrokenProcessPool:
        for job in cold:  # find the one that crashed: one process each
            if job["name"] not in out:
                out[job["name"]] = _isolated(job, ctx)
    finally:
        stop.set()  # the workers have exited: what they sent is in the pipe
        drain.join()
    for job in cold:  # after the drain, so the lines stay in order
        if progress and out[job["name"]]["error"]:
            progress(job["name"], f"hls4ml failed: {out[job['name']]['error']}", 0.7)
    return out


_FRACTION = (("hls4ml convert", 0.2), ("C-sim compile (g++)", 0.3), ("C-sim compiled", 0.55),
             ("checked", 0.6))


def _steps(progress: Progress | None) -> Callable[[str, str], None] | None:
    """(rm, line) from the precision search -> the build's progress callback."""
    if progress is None:
        return None

    def step(rm: str, what: str) -> None:
        frac = next((f for prefix, f in _FRACTION if what.startswith(prefix)), 0.5)
        progress(rm, what, frac)

    return step


def _drain(queue: Any, step: Callable[[str, str], None] | None, stop: threading.Event) -> None:
    """Pass the workers' lines on until told to stop and nothing is left to read."""
    while True:
        if queue.empty():
            if stop.is_set():
                return
            time.sleep(0.05)
            continue
        rm, what = queue.get()
        if step is not None:
            step(rm, what)


def _isolated(job: dict[str, Any], ctx: Any) -> dict[str, Any]:
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx, initializer=hls.init_worker,
                                 initargs=(None,)) as ex:
            return ex.submit(hls.run_job, job).result()
    except BrokenProcessPool:
        return {"name": job["name"], "trials": [],
                "error": "the hls4ml C simulation crashed (a C++ assertion or signal; "
                         "the layer options are probably unsupported in io_stream)"}


def _project(m, g: Group, digest: str, precision: str, reuse: dict[str, int], board: Board,
             cache: Path, user: dict[str, Any] | None = None,
             ) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The per-board hls4ml project (sources for Vitis HLS), cached by content, and what
    hls4ml made of each layer (types, reuse factor, strategy) for the manifest."""
    # csim_key covers the slice, precision, hls4ml version, hls.py's own source and
    # the user's settings of this slice
    text = json.dumps([hls.csim_key(digest, precision, user), reuse,
                       board.part, board.clocks.pl_mhz, g.name])
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    d = cache / "prj" / key
    if not (d / "done").is_file():
        shutil.rmtree(d, ignore_errors=True)
        hm = hls.convert(m, g.in_shape, precision, d / "hls4ml_prj", g.name, reuse=reuse,
                         part=board.part, clock_ns=1e3 / board.clocks.pl_mhz, user=user)
        names = [*g.nodes, INPUT_LAYER]
        (d / "effective.json").write_text(json.dumps(hls.effective_settings(hm, names)))
        (d / "done").write_text("")
    return d / "hls4ml_prj", json.loads((d / "effective.json").read_text())


def _staging(out: Path) -> Path:
    """A fresh sibling folder to build in; the bundle replaces ``out`` only when complete,
    so a failed build never leaves a half-written bundle behind."""
    if out.exists():
        if not out.is_dir():
            raise OverlayError(f"-o {out}: exists and is not a folder")
        if any(out.iterdir()) and not (out / "manifest.yaml").is_file():
            raise OverlayError(f"-o {out}: folder is not empty and holds no overlay bundle; "
                               "pick a new folder")
    stage = out.with_name(f".{out.name}.building")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def _publish(stage: Path, out: Path) -> None:
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    stage.rename(out)


def build_overlay(lg: LayerGraph, board: Board, opts: BuildOptions,
                  progress: Progress | None = None) -> BuildResult:
    t0 = time.perf_counter()
    slots = board.slots.count if opts.slots is None else opts.slots
    if not 1 <= slots <= board.slots.count:
        raise OverlayError(f"--slots {slots}: {board.name}'s shell has "
                           f"{board.slots.count} reconfigurable slot(s)")
    if opts.tolerance <= 0:
        raise OverlayError(f"--tolerance {opts.tolerance}: must be > 0 (max abs error)")
    user = (load_hls_config(opts.hls_config, list(lg.compute_nodes), tuple(lg.input_shape))
            if opts.hls_config is not None else None)
    precisions = tuple(opts.precisions)
    fixed: dict[str, int] = {}
    layer_bits: dict[str, int] = {}
    if user is not None:
        if user.model_precision is not None:
            precisions = (_model_precision(user),)
        fixed, layer_bits = user.sizing(_node_classes(lg), _kernel_dims(lg, list(
            lg.compute_nodes)))
    cand = find_candidates(lg, board, opts.groups, fixed=fixed, layer_bits=layer_bits)
    user_rm = _user_settings(lg, cand.groups, user, precisions) if user else {}
    cache = Path(opts.cache).resolve()
    x, inputs_text = _inputs(lg, opts)
    slot_res = board.slots.resources.as_dict()

    reports: dict[str, RMReport] = {}
    jobs, modules, ios, digests = [], {}, {}, {}
    fits = [g for g in cand.groups if g.estimate is not None and g.estimate.fits(board)]
    group_ios = dict(zip([g.name for g in fits],
                         hls.groups_io(lg, [g.nodes for g in fits], x) if fits else [],
                         strict=True))  # one run of the model for every group
    for g in cand.groups:
        est = g.estimate
        assert est is not None
        rep = RMReport(g.name, g.nodes, "ok", resources=est.resources.as_dict(),
                       slot_resources=slot_res, ii_cycles=est.ii_cycles,
                       latency_cycles=est.latency_cycles)
        reports[g.name] = rep
        if progress:
            progress(g.name, f"start: {g.span} ({len(g.nodes)} layers), reuse "
                     + (", ".join(f"{n}={r}" for n, r in est.reuse.items()) or "-")
                     + f", II {est.ii_cycles} cycles (est.)", 0.0)
        if not est.fits(board):
            rep.status = "rejected"
            rep.reason = f"RM {g.name} ({g.span}): {est.over_text(board)} ({est.source})"
            mine = {n: r for n, r in fixed.items() if n in g.nodes}
            if mine:
                rep.reason += " with the reuse factors of --hls-config " + ", ".join(
                    f"{n}={r}" for n, r in mine.items())
            if progress:
                progress(g.name, "rejected: larger than a slot", 1.0)
            continue
        m = hls.slice_module(lg, g.nodes)
        x_in, ref = group_ios[g.name]
        modules[g.name], ios[g.name] = m, (x_in, ref)
        digests[g.name] = hls.module_digest(m, g.in_shape)  # hashes every weight: once
        jobs.append({"name": g.name, "module": m, "in_shape": g.in_shape,
                     "out_shape": g.out_shape, "x_in": x_in, "ref": ref,
                     "tolerance": opts.tolerance, "classifier": _is_classifier(lg, g),
                     "precisions": list(precisions), "cache": str(cache),
                     "digest": digests[g.name], "user": user_rm.get(g.name)})
    workers = opts.jobs or (os.cpu_count() or 1)
    trials = _run_jobs(jobs, min(workers, len(jobs)), progress)

    bundle = _staging(opts.out)
    try:
        manifest, reports_out = _write_bundle(bundle, lg, board, opts, cand, reports, trials,
                                              modules, ios, digests, cache, slots, inputs_text,
                                              progress, user, user_rm, fixed, layer_bits)
    except BaseException:
        shutil.rmtree(bundle, ignore_errors=True)
        raise
    _publish(bundle, opts.out)
    manifest = load_manifest(opts.out)  # what we wrote must pass our own loader
    compiles = sum(not t.cached for r in reports_out for t in r.trials)
    cached = sum(t.cached for r in reports_out for t in r.trials)
    return BuildResult(opts.out, manifest, reports_out, cand.off_fpga,
                       time.perf_counter() - t0, cached, compiles)


def _model_precision(user: UserHLSConfig) -> str:
    """``Model: Precision`` fixes the RMs' precision (no search): it must be an ap_fixed,
    the type the streams, the adapter and the simulated board carry."""
    p = str(user.model_precision)
    try:
        rtl.FixedType.parse(p)
    except ValueError:
        raise user.err("Model.Precision", f"{p!r}: the RM precision (its stream type) must be "
                                          "ap_fixed<W,I[,Q,O]>") from None
    return p


def _node_classes(lg: LayerGraph) -> dict[str, str]:
    """hls4ml's class of every layer an RM may hold, each parsed as a one-layer slice."""
    out = {}
    for n in lg.compute_nodes:
        if unsupported_reason(lg, n) is None:
            d = lg.dag.nodes[n]
            m = hls.slice_module(lg, [n])
            in_shape = tuple(d["in_shapes"][0][1:])
            out[n] = hls.layer_classes(m, in_shape, {"Model": {"Precision": "ap_fixed<16,6>"}})[n]
    return out


def _kernel_dims(lg: LayerGraph, nodes: list[str]) -> dict[str, tuple[int, int]]:
    return {n: dims for n in nodes if (dims := kernel_dims(lg, n)) is not None}


def _user_settings(lg: LayerGraph, groups: list[Group], user: UserHLSConfig,
                   precisions: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Each RM's ``--hls-config`` settings, resolved per layer name, in hls4ml's shape.

    Checked against each slice as hls4ml sees it (which precisions a layer has,
    which classes exist) before anything compiles, at every precision the
    search may try (an RM's boundary types must follow it).
    """
    out, classes_seen = {}, set()
    for g in groups:
        m = hls.slice_module(lg, g.nodes)
        for prec in precisions:
            cfg = hls.hls_config(m, g.in_shape, prec)
            classes = hls.layer_classes(m, g.in_shape, cfg)
            classes_seen.update(classes.values())
            choices = user.choices(classes, cfg["LayerName"], (INPUT_LAYER, g.nodes[-1]), prec,
                                   _kernel_dims(lg, g.nodes))
        out[g.name] = user.to_hls4ml(choices)
    user.check_types(classes_seen)
    return out


def _write_bundle(bundle: Path, lg: LayerGraph, board: Board, opts: BuildOptions, cand,
                  reports: dict[str, RMReport], trials: dict[str, dict[str, Any]],
                  modules: dict[str, Any], ios: dict[str, Any], digests: dict[str, str],
                  cache: Path, slots: int,
                  inputs_text: str, progress: Progress | None,
                  user: UserHLSConfig | None = None,
                  user_rm: dict[str, dict[str, Any]] | None = None,
                  fixed: dict[str, int] | None = None,
                  layer_bits: dict[str, int] | None = None) -> tuple[Manifest, list[RMReport]]:
    amap = tcl.address_map(board, slots)
    slot_res = board.slots.resources.as_dict()
    rms: list[RM] = []
    for g in cand.groups:
        rep = reports[g.name]
        if rep.status != "ok":
            continue
        job = trials[g.name]
        if job["error"]:
            rep.status = "rejected"
            rep.reason = f"RM {g.name} ({g.span}): hls4ml could not build it: {job['error']}"
            continue
        tr = job["trials"]
        rep.trials = tr
        best = tr[-1] if tr[-1].passed else min(tr, key=lambda t: t.accuracy.max_abs_err)
        rep.precision, rep.accuracy = best.precision, best.accuracy
        if not tr[-1].passed:
            rep.status = "rejected"
            rep.reason = (f"RM {g.name} ({g.span}): max abs error {best.accuracy.max_abs_err:.3g} "
                          f"> tolerance {opts.tolerance:g} at every precision tried "
                          f"({', '.join(t.precision for t in tr)})")
            continue
        width = rtl.FixedType.parse(best.precision).width
        if g.estimate is not None and width != g.estimate.bits:
            # wider words than the grouping assumed: choose reuse factors again (the C
            # simulation does not depend on them; the per-board project uses these)
            g.estimate = estimate_group(lg, g.nodes, board, bits=width, fixed=fixed,
                                        layer_bits=layer_bits)
            rep.resources = g.estimate.resources.as_dict()
            rep.ii_cycles, rep.latency_cycles = g.estimate.ii_cycles, g.estimate.latency_cycles
            if not g.estimate.fits(board):
                rep.status = "rejected"
                rep.reason = (f"RM {g.name} ({g.span}) at {best.precision}: "
                              f"{g.estimate.over_text(board)} ({g.estimate.source})")
                continue
        if progress:
            progress(g.name, "writing project and scripts", 0.8)
        rms.append(_bundle_rm(bundle, g, lg, board, opts, best, modules[g.name],
                              digests[g.name], ios[g.name][0], cache, rep, inputs_text, slots,
                              (user_rm or {}).get(g.name), user))
        if progress:
            progress(g.name, "done", 1.0)

    # scripts (only for RMs that made it) and the manifest
    rm_specs = [{"name": r.name, "layers": ",".join(r.layers), "top": r.top,
                 "n_in": math.prod(r.in_shape), "n_out": math.prod(r.out_shape)} for r in rms]
    stream_bits = board.dma.data_width_bits
    for rel, text in tcl.render_bundle(board, amap, rm_specs, opts.out.name,
                                       stream_bits).items():
        p = bundle / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    for r in rms:
        r.files += file_entries(bundle, [bundle / r.name / "hls.tcl"], "tcl")
    shell_files = file_entries(bundle, [bundle / "vivado"], "tcl")
    (bundle / ".gitignore").write_text(
        "# generated: large or rebuildable (hwpart overlay build)\n*.so\nhls4ml_prj/\n"
        "vivado/shell_prj/\n*.bit\n*.bin\n")
    manifest = Manifest(
        format=1, name=opts.out.name, status="scripts",
        board=BoardInfo(board.name, board.part, board.ps, board.pynq_version,
                        float(board.clocks.pl_mhz)),
        model=ModelInfo(lg.name, list(lg.input_shape), list(lg.compute_nodes)),
        shell=Shell(base_address=amap.base, switch_address=amap.switch, dma_address=amap.dma,
                    switch_slaves=amap.switch_ports, switch_masters=amap.switch_ports,
                    stream_width_bits=stream_bits, files=shell_files,
                    bitstream="shell/shell.bit", hwh="shell/shell.hwh"),
        slots=[Slot(s.index, s.switch_master, s.switch_slave, s.decoupler_address,
                    s.slot_ctrl_address, s.rm_info_address, s.pblock,
                    _res(slot_res, f"boards/{board.name}.yaml (est.)")) for s in amap.slots],
        rms=rms,
        rejected=[Rejected(r.name, r.layers, r.reason) for r in reports.values()
                  if r.status == "rejected"],
        off_fpga=dict(cand.off_fpga),
        tool_versions=_versions(),
    )
    write_manifest(bundle, manifest)
    return manifest, list(reports.values())


def _bundle_rm(bundle: Path, g: Group, lg: LayerGraph, board: Board, opts: BuildOptions,
               best: hls.Trial, m, digest: str, x_in: np.ndarray, cache: Path, rep: RMReport,
               inputs_text: str, slots: int, user_rm: dict[str, Any] | None = None,
               user: UserHLSConfig | None = None) -> RM:
    est = g.estimate
    assert est is not None
    d = bundle / g.name
    d.mkdir(parents=True)
    prj, effective = _project(m, g, digest, best.precision, est.reuse, board, cache, user_rm)
    shutil.copytree(prj, d / "hls4ml_prj")
    art = hls.compile_csim(m, g.in_shape, g.out_shape, best.precision, cache, digest=digest,
                           user=user_rm)
    (d / "csim").mkdir()
    lib = d / "csim" / f"{hls.CSIM_PROJECT}.so"
    shutil.copy2(art.library, lib)
    n_in, n_out = int(np.prod(g.in_shape)), int(np.prod(g.out_shape))
    adapter = write_adapter(d, g.name, best.precision, n_in, n_out, board.dma.data_width_bits)
    sf = stream_format(best.precision, n_in, n_out, board.dma.data_width_bits)
    files = (file_entries(bundle, [d / "hls4ml_prj"], "hls-project")
             + file_entries(bundle, [lib], "csim-library")
             + file_entries(bundle, [adapter], "axis-adapter"))
    fast = _fast_model(bundle, d, g, art, best.precision, x_in, opts.seed)
    if fast.file is not None:
        files += file_entries(bundle, [bundle / fast.file], "fast-model")
    rep.sim_engine = (f"vectorised ({fast.checked} exact)" if fast.exact else "C sim (" + (
        "not modeled" if fast.checked == 0 else f"{fast.mismatches} mismatches") + ")")
    rtl_info = None
    reason = rtl.dense_reason(m)
    own_types = any("Precision" in v for v in ((user_rm or {}).get("LayerName") or {}).values())
    if own_types:  # da4ml's twin quantizes every layer to the RM type
        reason = "per-layer precisions from --hls-config"
    if opts.rtl and reason is None:
        try:
            rtl_info = _rtl(bundle, d, m, g, digest, best.precision, x_in, cache,
                            opts.rtl_samples,
                            _yosys_family(board) if opts.yosys else None)
        except (subprocess.CalledProcessError, OSError, ValueError, AssertionError) as exc:
            # the RM itself (hls4ml) is fine; only its optional Verilog twin failed
            shutil.rmtree(d / "rtl", ignore_errors=True)
            rep.rtl = f"failed: {type(exc).__name__}"
        else:
            rep.rtl = "bit-exact" if rtl_info.bit_exact else (
                "not checked" if rtl_info.bit_exact is None else "MISMATCH")
            lut = rtl_info.yosys.lut if rtl_info.yosys else rtl_info.lut_estimate
            rep.rtl += f", {lut} LUT ({'yosys' if rtl_info.yosys else 'da4ml'}, est.)"
    else:
        rep.rtl = "-" if not opts.rtl else ("no (--hls-config types)" if own_types
                                            else "no (not dense)")
    acc = best.accuracy
    return RM(
        name=g.name, top=g.name, layers=list(g.nodes), ops=list(g.ops),
        in_shape=list(g.in_shape), out_shape=list(g.out_shape), layout="channels_last",
        compatible_slots=list(range(slots)), precision=best.precision,
        reuse={k: int(effective[k]["reuse_factor"]) if k in effective else int(v)
               for k, v in est.reuse.items()},
        accuracy=AccuracyFigures(acc.samples, acc.max_abs_err, acc.mean_abs_err,
                                 acc.argmax_agreement, float(opts.tolerance),
                                 inputs_text + "; hls4ml C simulation vs float torch"),
        cycles=Cycles(est.ii_cycles, est.latency_cycles, float(board.clocks.pl_mhz),
                      est.source),
        resources=_res(est.resources.as_dict(), est.source),
        files=files, partials={str(k): tcl.partial_path(k, g.name) for k in range(slots)},
        stream=StreamInfo(sf.lane_bits, sf.lanes, sf.in_words, sf.out_words),
        csim=CSimInfo(str(lib.relative_to(bundle)), f"{hls.CSIM_PROJECT}_float"),
        rtl=rtl_info, fast_model=fast,
        hls_layers={k: LayerHLS(v["precision"], v["reuse_factor"], v["strategy"])
                    for k, v in effective.items()},
        hls_config="" if user is None else f"{user.path.name} (sha256 {user.sha256[:16]})")


def _fast_model(bundle: Path, d: Path, g: Group, art: hls.CSimArtifact, precision: str,
                x_in: np.ndarray, seed: int) -> FastModelInfo:
    """The vectorised model of the RM's C simulation, checked bit-exact against it.

    Built from the C-simulation project's own ``firmware/`` (the one the
    library was compiled from) and cached next to that library, keyed by its
    bytes, fastrm's source and the check inputs, so a rebuild does not check again.
    The library has run already (the precision search), so it runs here too.
    """
    from hwpart.sim.rm import RmSpec, fast_model_for

    n_in, n_out = int(np.prod(g.in_shape)), int(np.prod(g.out_shape))
    spec = RmSpec(g.name, list(g.nodes), (n_in,), (n_out,), precision, precision,
                  str(art.library), top=art.top)
    fm = fast_model_for(spec, art.directory / "prj" / "firmware", art.directory / "fastrm",
                        ref=hls.to_stream(x_in), seed=seed)
    info = FastModelInfo(fm["exact"], fm["checked"], fm["mismatches"], fm["reason"],
                         fm["inputs"])
    if fm.get("file"):
        dst = d / "fastrm.json"
        shutil.copyfile(fm["file"], dst)
        info.file = str(dst.relative_to(bundle))
    return info


def _yosys_family(board: Board) -> str:
    return "xc7" if board.ps == "ps7" else "xcup"


def _rtl(bundle: Path, d: Path, m, g: Group, digest: str, precision: str, x_in: np.ndarray,
         cache: Path, samples: int, yosys_family: str | None) -> RTLInfo:
    n_in = int(np.prod(g.in_shape))
    res = rtl.generate(m, n_in, precision, digest, cache)
    xs = x_in.reshape(len(x_in), -1)[:samples]
    check = res.directory / f"check-{hashlib.sha256(xs.tobytes()).hexdigest()[:16]}.json"
    if check.is_file():
        info = json.loads(check.read_text())
        res.bit_exact, res.checked_samples = info["bit_exact"], info["samples"]
    elif shutil.which("iverilog"):
        rtl.check_bit_exact(res, xs)
        check.write_text(json.dumps({"bit_exact": res.bit_exact, "samples": len(xs),
                                     "mismatches": res.mismatches}))
    dst = d / "rtl"
    for src in rtl.verilog_sources(res):
        target = dst / src.relative_to(res.directory / "src")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    shutil.copy2(res.directory / "model" / "comb.json", dst / "comb.json")
    # Yosys needs minutes on big fully parallel cores (the jet tagger's 16-64-32-32
    # core, ~110k LUTs, ran past 3 min); da4ml's own figure stands for those.
    small = res.lut_estimate <= YOSYS_MAX_LUT
    ys = rtl.yosys_estimate(res, yosys_family) if yosys_family and small else None
    return RTLInfo(top=f"{res.top}_wrapper", stages=res.stages,
                   lut_estimate=int(round(res.lut_estimate)), ff_estimate=res.ff_estimate,
                   source="estimated (da4ml cost model; fully parallel core, II=1)",
                   bit_exact=res.bit_exact, checked_samples=res.checked_samples,
                   files=file_entries(bundle, [dst], "verilog"),
                   yosys=None if ys is None else _res(
                       ys, f"estimated (Yosys synth_xilinx -family {yosys_family}, no place "
                           f"and route; {ys['carry']} carry cells)"))


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for pkg in ("hls4ml", "da4ml", "torch"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run_vivado(bundle: Path) -> str:
    """Run the bundle's scripts when Vivado is installed; otherwise say what is needed."""
    exe = shutil.which("vivado")
    if exe is None:
        return ("bitstreams need Vivado (with DFX) on PATH: run `vivado -mode batch -source "
                f"{bundle}/vivado/build_all.tcl`, then `hwpart overlay seal {bundle}`")
    subprocess.run([exe, "-mode", "batch", "-source", str(bundle / "vivado" / "build_all.tcl")],
                   check=True, cwd=bundle)
    seal(bundle)
    return "Vivado finished; bitstreams recorded in the manifest"


def seal(bundle: Path) -> Manifest:
    """Record Vivado's outputs (full + partial bitstreams, .hwh) with their sha256.

    Sealing again (after Vivado rebuilt the bitstreams) replaces the earlier entries, so
    the manifest is read without checking them and each file is listed once.
    """
    m = load_manifest(bundle, verify=False)
    wanted = [m.shell.bitstream, m.shell.hwh]
    missing = [w for w in wanted if not (bundle / w).is_file()]
    for r in m.rms:
        sealed = [q for p in r.partials.values() for q in (p, p[:-4] + ".hwh")]
        r.files = [f for f in r.files if f.path not in sealed]
        for q in sealed:
            if (bundle / q).is_file():
                r.files.append(FileEntry(q, sha256_file(bundle / q), "bitstream"
                                         if q.endswith(".bit") else "hwh"))
            else:
                missing.append(q)
    if missing:
        raise OverlayError(f"{bundle}: Vivado outputs missing: {', '.join(missing[:4])}; "
                           "run vivado/build_all.tcl first")
    m.shell.files = [f for f in m.shell.files if f.path not in wanted]
    for w in wanted:
        m.shell.files.append(FileEntry(w, sha256_file(bundle / w),
                                       "bitstream" if w.endswith(".bit") else "hwh"))
    m.status = "built"
    write_manifest(bundle, m)
    return load_manifest(bundle)
