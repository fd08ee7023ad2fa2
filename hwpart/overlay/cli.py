"""``hwpart overlay build|show|seal|calibrate``: the command-line face of the overlay builder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from hwpart.errors import HwpartError


def register_cli(sub: Any) -> None:
    p = sub.add_parser("overlay", help="build and inspect FPGA overlay bundles (hls4ml RMs)")
    osub = p.add_subparsers(dest="overlay_command", required=True)

    b = osub.add_parser("build", help="model -> RMs (hls4ml), Vivado DFX scripts, manifest")
    b.add_argument("model", help="path/to/file.py:factory or package.module:factory")
    b.add_argument("--input-shape", required=True,
                   help="per-sample input shape without the batch dim, e.g. 16 or 3,32,32")
    b.add_argument("--board", default="pynq-z2", help="board name or YAML path")
    b.add_argument("--slots", type=int, help="slots in the shell (default: the board's)")
    b.add_argument("--tolerance", type=float, default=None,
                   help="max abs error of an RM vs float torch (default 0.02)")
    b.add_argument("--precisions",
                   help="semicolon list of ap_fixed types to try in order "
                        "(default: <16,6> <18,8> <24,8>, rounding + saturation)")
    b.add_argument("--groups", help="explicit RM groups, e.g. _0-_3,_4-_7 (default: automatic)")
    b.add_argument("--hls-config", metavar="FILE.yaml",
                   help="hls4ml's own config (Model / LayerName / LayerType: Precision, "
                        "ReuseFactor, Strategy), merged over hwpart's per RM")
    b.add_argument("--calibration", help=".npy of real input samples, shape (N, *input_shape)")
    b.add_argument("--samples", type=int, default=200, help="random test inputs (default 200)")
    b.add_argument("--cache", default=".hwpart-cache", help="content cache folder")
    b.add_argument("--jobs", type=int, default=0, help="parallel hls4ml compiles (default: CPUs)")
    b.add_argument("--no-rtl", action="store_true", help="skip da4ml Verilog for dense RMs")
    b.add_argument("--no-yosys", action="store_true",
                   help="skip the Yosys synth_xilinx estimate of da4ml cores (slow for big RMs)")
    b.add_argument("--vivado", action="store_true",
                   help="also run Vivado (when on PATH) to make the bitstreams")
    b.add_argument("-o", "--output", help="bundle folder (default bitstreams/MODEL-BOARD)")
    b.set_defaults(func=cmd_build)

    s = osub.add_parser("show", help="print a bundle's manifest (checks every sha256)")
    s.add_argument("bundle")
    s.add_argument("--no-verify", action="store_true", help="skip the sha256 checks")
    s.set_defaults(func=cmd_show)

    z = osub.add_parser("seal", help="record Vivado's bitstreams in the manifest")
    z.add_argument("bundle")
    z.set_defaults(func=cmd_seal)

    c = osub.add_parser("calibrate", help="measure each RM's latency/II in RTL (Icarus) and "
                                          "write them into the manifest")
    c.add_argument("bundle")
    c.add_argument("--samples", type=int, default=32, help="back-to-back samples per RM")
    c.set_defaults(func=cmd_calibrate)


def _console():
    from hwpart.cli import console, err_console

    return console, err_console


class ProgressLines:
    """Progress as plain lines, for a log or a pipe (a bar there prints nothing until the end).

    One line per step of each RM: start, hls4ml convert, g++ compile, check, done;
    each with the seconds since the build began, and "done" with the RM's own time.
    """

    def __init__(self, stream: Any) -> None:
        import time

        self._clock = time.perf_counter
        self._t0 = self._clock()
        self._start: dict[str, float] = {}
        self._stream = stream

    def __call__(self, rm: str, what: str, frac: float) -> None:
        now = self._clock()
        start = self._start.setdefault(rm, now)
        if frac >= 1.0 and what == "done":
            what = f"done in {now - start:.1f} s"
        print(f"[{now - self._t0:7.1f} s] {rm}: {what}", file=self._stream, flush=True)


def cmd_build(args: argparse.Namespace) -> int:
    import contextlib
    import sys

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from hwpart.boards import load_board
    from hwpart.graph import load_graph
    from hwpart.overlay.build import DEFAULT_TOLERANCE, BuildOptions, build_overlay, run_vivado

    console, err_console = _console()
    board = load_board(args.board)
    lg = load_graph(args.model, args.input_shape)
    out = Path(args.output) if args.output else Path("bitstreams") / f"{lg.name}-{board.name}"
    opts = BuildOptions(
        out=out, slots=args.slots,
        tolerance=DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance,
        groups=args.groups, samples=args.samples, cache=Path(args.cache), jobs=args.jobs,
        calibration=Path(args.calibration) if args.calibration else None, rtl=not args.no_rtl,
        yosys=not args.no_yosys, hls_config=Path(args.hls_config) if args.hls_config else None)
    if args.precisions:
        opts.precisions = tuple(p.strip() for p in args.precisions.split(";") if p.strip())
        _check_precisions(opts.precisions)
        if args.hls_config:
            from hwpart.overlay.hlsconfig import load_hls_config

            user = load_hls_config(args.hls_config, list(lg.compute_nodes), lg.input_shape)
            if user.model_precision is not None:
                raise HwpartError(f"--precisions and {args.hls_config}: Model.Precision both "
                                  "set the RM precision; keep one")
    if args.samples <= 0:
        raise HwpartError(f"--samples {args.samples}: must be > 0")
    if err_console.is_terminal:
        prog = Progress(TextColumn("[bold]{task.fields[rm]}[/]"), BarColumn(),
                        TextColumn("{task.description}"), TimeElapsedColumn(),
                        console=err_console, transient=False)
        tasks: dict[str, Any] = {}

        def bar(rm: str, what: str, frac: float) -> None:
            if rm not in tasks:
                tasks[rm] = prog.add_task(what, total=1.0, rm=rm)
            prog.update(tasks[rm], description=what, completed=frac)

        step: Any = bar
        live: Any = prog
    else:
        step, live = ProgressLines(sys.stderr), contextlib.nullcontext()
    with live:
        result = build_overlay(lg, board, opts, progress=step)
    _print_result(console, result, board)
    if args.vivado:
        console.print(run_vivado(result.bundle))
    else:
        console.print("bitstreams need Vivado: rerun with --vivado where `vivado` is on PATH "
                      f"(or run {result.bundle}/vivado/build_all.tcl yourself)")
    return 0


def _check_precisions(precs: tuple[str, ...]) -> None:
    from hwpart.overlay.rtl import FixedType

    for p in precs:
        try:
            FixedType.parse(p)
        except ValueError:
            raise HwpartError(f"--precisions: {p!r} is not an ap_fixed<W,I[,Q,O]> type") from None


def _fmt_res(r: dict[str, int], cap: dict[str, int]) -> str:
    keys = ("lut", "ff", "dsp", "bram_18k")
    return " ".join(f"{k.replace('_18k', '')} {r.get(k, 0)}/{cap.get(k, 0)}" for k in keys)


def _print_result(console: Any, result: Any, board: Any) -> None:
    from rich.table import Table

    t = Table(title=f"overlay {result.bundle} for {board.name} "
                    "(resources/cycles estimated; accuracy = hls4ml C sim vs torch)")
    for col in ("RM", "layers", "precision", "max err", "mean err", "argmax",
                "resources vs slot (est.)", "II / latency cyc (est.)", "RTL", "sim engine",
                "status"):
        t.add_column(col)
    for r in result.reports:
        acc = r.accuracy
        t.add_row(
            r.name, f"{r.layers[0]}..{r.layers[-1]}" if len(r.layers) > 1 else r.layers[0],
            r.precision.replace("ap_fixed", "") or "-",
            f"{acc.max_abs_err:.2e}" if acc else "-", f"{acc.mean_abs_err:.2e}" if acc else "-",
            f"{acc.argmax_agreement:.1%}" if acc and acc.argmax_agreement is not None else "-",
            _fmt_res(r.resources, r.slot_resources), f"{r.ii_cycles} / {r.latency_cycles}",
            r.rtl or "-", r.sim_engine or "-", "ok" if r.status == "ok" else "rejected")
    console.print(t)
    for r in result.reports:
        if r.status != "ok":
            console.print(f"rejected: {r.reason}", markup=False)
    for n, why in result.off_fpga.items():
        console.print(f"off the FPGA: {n}: {why}", markup=False)
    console.print(f"wrote {result.bundle}/manifest.yaml in {result.seconds:.1f} s "
                  f"({result.compiles} hls4ml compile(s), {result.cached_compiles} from cache)")


def cmd_show(args: argparse.Namespace) -> int:
    from rich.table import Table

    from hwpart.overlay.manifest import load_manifest

    console, _ = _console()
    m = load_manifest(args.bundle, verify=not args.no_verify)
    console.print(f"bundle {args.bundle}: {m.name}, board {m.board.name} ({m.board.part}), "
                  f"status {m.status}, {len(m.all_files())} files"
                  + ("" if args.no_verify else ", every sha256 checked"))
    console.print(f"shell base 0x{m.shell.base_address:08X}: switch 0x{m.shell.switch_address:08X}"
                  f" ({m.shell.switch_slaves}x{m.shell.switch_masters}), DMA "
                  f"0x{m.shell.dma_address:08X}, {m.shell.stream_width_bits}-bit streams")
    st = Table(title="slots")
    for col in ("slot", "switch M/S", "decoupler", "slot_ctrl", "rm_info", "pblock"):
        st.add_column(col)
    for s in m.slots:
        st.add_row(str(s.index), f"M{s.switch_master:02d} / S{s.switch_slave:02d}",
                   f"0x{s.decoupler_address:08X}", f"0x{s.slot_ctrl_address:08X}",
                   f"0x{s.rm_info_address:08X}", s.pblock)
    console.print(st)
    rt = Table(title="RMs (resources and cycles estimated)")
    for col in ("RM", "layers", "precision", "max err", "argmax", "LUT", "DSP", "BRAM18",
                "II cyc", "RTL", "slots"):
        rt.add_column(col)
    for r in m.rms:
        a = r.accuracy
        rt.add_row(r.name, ",".join(r.layers), r.precision.replace("ap_fixed", ""),
                   f"{a.max_abs_err:.2e}",
                   "-" if a.argmax_agreement is None else f"{a.argmax_agreement:.1%}",
                   str(r.resources.lut), str(r.resources.dsp), str(r.resources.bram_18k),
                   str(r.cycles.ii),
                   "-" if r.rtl is None else ("bit-exact" if r.rtl.bit_exact else "unchecked"),
                   ",".join(map(str, r.compatible_slots)))
    console.print(rt)
    for r in m.rejected:
        console.print(f"rejected: {r.reason}", markup=False)
    for n, why in m.off_fpga.items():
        console.print(f"off the FPGA: {n}: {why}", markup=False)
    return 0


def cmd_seal(args: argparse.Namespace) -> int:
    from hwpart.overlay.build import seal

    console, _ = _console()
    m = seal(Path(args.bundle))
    console.print(f"{args.bundle}: status {m.status}, {len(m.all_files())} files recorded")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from hwpart.overlay.calibrate import calibrate, table

    console, _ = _console()
    rows = calibrate(args.bundle, samples=args.samples)
    console.print(table(rows), markup=False, highlight=False)
    console.print(f"wrote RTL-measured cycles into {args.bundle}/manifest.yaml")
    return 0
