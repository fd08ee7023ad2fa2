"""The ``hwpart`` command line.

Every input error is a :class:`~hwpart.errors.HwpartError`: it is printed as one
line and the exit code is 2. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

from hwpart.errors import HwpartError
from hwpart.graph import IO_OPS
from hwpart.monitor import fmt_s
from hwpart.partition import OBJECTIVES, floor_violations

# Piped output (logs, CI) gets a wide fixed width instead of rich's 80 columns,
# so tables are never cut.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="path/to/file.py:factory or package.module:factory")
    p.add_argument("--input-shape", required=True,
                   help="per-sample input shape without the batch dim, e.g. 16 or 3,32,32")


def _devices_arg(text: str | None, board: Any) -> list[str]:
    import torch

    if text is None:
        devs = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
        return devs + (["fpga"] if board is not None else [])
    devs = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in devs if d not in ("cpu", "gpu", "fpga")]
    if bad or "cpu" not in devs:
        raise HwpartError(f"--devices {text!r}: use a comma list of cpu, gpu, fpga that "
                          "includes cpu (the host feeds the input)")
    if "fpga" in devs and board is None:
        raise HwpartError("--devices includes fpga: pass --board NAME too")
    return devs


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not (v > 0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _batches(text: str) -> list[int]:
    try:
        vals = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        vals = []
    if not vals or vals[0] <= 0:
        raise HwpartError(f"--batch {text!r}: expected positive integers, e.g. 1,64")
    return vals


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    return Progress(TextColumn("[bold]profiling[/] {task.description}"), BarColumn(),
                    MofNCompleteColumn(), console=err_console, transient=True)


def _profile(lg, batches: list[int], devices: list[str], board, quick: bool):
    from hwpart.costs import profile

    timing = {"repeats": 5, "min_total_s": 0.002} if quick else {}
    with _progress() as prog:
        task = prog.add_task("", total=None)

        def step(what: str, done: int, total: int) -> None:
            prog.update(task, description=what, completed=done, total=total)

        return profile(lg, batches, devices, board, progress=step, **timing)


# --------------------------------------------------------------------------- commands


def cmd_profile(args: argparse.Namespace) -> int:
    from hwpart.boards import load_board
    from hwpart.graph import load_graph

    lg = load_graph(args.model, args.input_shape)
    board = load_board(args.board) if args.board else None
    devices = _devices_arg(args.devices, board)
    table = _profile(lg, _batches(args.batch), devices, board, args.quick)
    table.save(args.output)
    t = Table(title=f"cost table: {lg.name} ({', '.join(f'{d}: {s}' for d, s in table.source.items())})")
    t.add_column("layer")
    t.add_column("op")
    for d in devices:
        for b in table.batch_sizes:
            t.add_column(f"{d} b{b}", justify="right")
    for n in lg.compute_nodes:
        row = [n, lg.dag.nodes[n]["op"]]
        for d in devices:
            for b in table.batch_sizes:
                v = table.times[n].get(d, {}).get(str(b))
                row.append(fmt_s(v) if v is not None else "-")
        t.add_row(*row)
    console.print(t)
    console.print(f"wrote {args.output}")
    return 0


def cmd_partition(args: argparse.Namespace) -> int:
    from hwpart.boards import load_board
    from hwpart.costs import CostTable, build_problem, parse_pins
    from hwpart.graph import load_graph
    from hwpart.partition import make_plan, solve

    lg = load_graph(args.model, args.input_shape)
    overlay = None
    if args.overlay:
        from hwpart.overlay import load_manifest

        overlay = load_manifest(args.overlay)
        if args.board and args.board != overlay.board.name:
            raise HwpartError(f"--board {args.board} but overlay {args.overlay} was built for "
                              f"{overlay.board.name}")
    board = load_board(args.board) if args.board else None
    if overlay is not None:  # measured figures (hwpart board check) replace the estimates
        from hwpart.costs import overlay_board

        board = overlay_board(overlay, board)
    devices = _devices_arg(args.devices, board)
    if args.cpu == "board":  # the board's Arm cores, modeled; a PYNQ board has no GPU
        if board is None:
            raise HwpartError("--cpu board needs --board NAME: the CPU is described in the "
                              "board's YAML (cpu: section)")
        if "gpu" in devices and args.devices:
            raise HwpartError("--cpu board plans for the board itself, which has no GPU; "
                              "drop gpu from --devices")
        devices = [d for d in devices if d != "gpu"]
    if overlay is not None:  # the FPGA's costs come from the overlay's RMs
        devices_measured = [d for d in devices if d != "fpga"]
    else:
        devices_measured = devices
    if args.cpu == "board":  # nothing to measure on this machine's CPU
        devices_measured = [d for d in devices_measured if d != "cpu"]
    if args.costs:
        table = CostTable.load(args.costs)
        table.check_matches(lg, args.costs)
    else:
        table = _profile(lg, sorted({1, args.batch}), devices_measured, board, args.quick)
    if args.cpu == "board":
        from hwpart.boardcpu import with_board_cpu

        measured = None  # the board's own timings (hwpart board check --cost-input)
        if overlay is not None and overlay.path is not None:
            from hwpart.board.measured import load_measured

            measured = load_measured(overlay.path.parent).get("board_cpu")
        table = with_board_cpu(lg, table, board, sorted({1, args.batch, *table.batch_sizes}),
                               measured=measured)
    if args.slots is not None and board is not None and args.slots > board.slots.count:
        raise HwpartError(f"--slots {args.slots}: {board.name} has {board.slots.count} "
                          "reconfigurable slots in its shell")
    problem = build_problem(lg, table, args.batch, devices, board, slots=args.slots,
                            overlay=overlay, pins=parse_pins(lg, args.pin))
    problem.min_throughput_sps, problem.max_latency_s = args.min_throughput, args.max_latency
    figures = _power(args, devices, board, table, overlay, problem)
    sol = solve(problem, args.objective, args.solver, time_limit_s=args.time_limit)
    plan = make_plan(problem, sol, model=lg.name, input_shape=lg.input_shape,
                     objective=args.objective, batch=args.batch,
                     board=board.name if board else None)
    if figures:
        from hwpart.energy import plan_energy

        plan.energy = plan_energy(problem, sol.assign, sol.evaluation, figures)
    plan.save(args.output)

    t = Table(title=f"plan for {lg.name}: objective {args.objective}, batch {args.batch}")
    for col in ("stage", "layer", "op", "device", "cost / sample", "source"):
        t.add_column(col, justify="right" if col == "cost / sample" else "left")
    for st in plan.stages:
        for n in st.nodes:
            u = sol.assign[n]
            dev = problem.unit_by_name[u].device
            src = "-" if lg.dag.nodes[n]["op"] in IO_OPS else table.source.get(dev, "-")
            if dev == "fpga" and overlay is not None:
                src = next((f"{rm.cycles.source} ({rm.name})" for rm in overlay.rms
                            if n in rm.layers), src)
            t.add_row(st.name, n, lg.dag.nodes[n]["op"], u, fmt_s(problem.compute[n][u]),
                      src.split(" ")[0])
    console.print(t)
    if args.cpu == "board":
        console.print(f"cpu layers: {table.source['cpu']}")
    ev = sol.evaluation
    s = Table(title="predicted (per sample; FPGA figures are modeled or estimated, not measured)")
    for col in ("plan", "latency", "throughput", "bottleneck") + (("energy",) if figures else ()):
        s.add_column(col)
    gap = sol.gap(args.objective)
    label = f"hwpart ({sol.solver}{', optimal' if sol.optimal else ''}"
    label += f", gap {gap:.2%})" if gap is not None and not sol.optimal else ")"
    s.add_row(label, fmt_s(ev.latency_s), f"{ev.throughput_sps:,.0f} /s", ev.bottleneck,
              *([_fmt_j(ev.energy_j)] if figures else []))
    singles = _singles(problem)
    for unit, sev in singles.items():
        miss = " (misses the floor)" if floor_violations(problem, sev) else ""
        s.add_row(f"all on {unit}{miss}", fmt_s(sev.latency_s), f"{sev.throughput_sps:,.0f} /s",
                  "", *([_fmt_j(sev.energy_j)] if figures else []))
    console.print(s)
    if figures:
        _print_energy(plan.energy, ev)
    key = args.objective
    if singles:
        best_unit = (max if key == "throughput" else min)(
            singles, key=lambda u: singles[u].throughput_sps if key == "throughput"
            else singles[u].value(key))
        best = singles[best_unit]
        ratio = (ev.throughput_sps / best.throughput_sps if key == "throughput"
                 else best.value(key) / ev.value(key))
        what = {"latency": "lower latency", "throughput": "throughput",
                "energy": "less energy per sample"}[key]
        console.print(f"vs best single device ({best_unit}): {ratio:.2f}x {what}")
    console.print(f"solver {sol.solver} in {sol.solve_time_s * 1e3:.1f} ms; wrote {args.output}")
    if args.plot:
        from hwpart.plot import plot_plan

        plot_plan(lg, plan, args.plot)
        console.print(f"wrote {args.plot}")
    return 0


def _power(args: argparse.Namespace, devices: list[str], board: Any, table: Any, overlay: Any,
           problem: Any) -> dict[str, Any] | None:
    """Power figures for the problem's devices, attached to it; None (with a note) when
    some figure is missing and the objective does not need it."""
    from hwpart.energy import attach_power, device_power, fpga_node_resources

    try:
        figures = device_power(devices, board, cpu=args.cpu)
    except HwpartError as exc:
        if args.objective == "energy":
            raise
        err_console.print(f"[dim]no energy table: {exc}[/]")
        return None
    attach_power(problem, figures, board, fpga_node_resources(table, overlay))
    return figures


def _singles(problem: Any) -> dict[str, Any]:
    """Everything on one unit (first slot only), evaluated: the baselines to beat."""
    from hwpart.partition import evaluate, single_device

    out = {}
    for u in problem.units:
        if u.is_slot and u.slot != 0:
            continue
        assign = single_device(problem, u.name)
        if assign is not None:
            out[u.name] = evaluate(problem, assign)
    return out


def _fmt_j(j: float | None) -> str:
    if j is None:
        return "n/a"
    for scale, unit in ((1.0, "J"), (1e-3, "mJ"), (1e-6, "µJ")):
        if j >= scale:
            return f"{j / scale:.3g} {unit}"
    return f"{j * 1e9:.3g} nJ"


def _print_energy(energy: dict[str, Any], ev: Any) -> None:
    t = Table(title="energy per sample by device (busy x power above idle + cycle x idle power "
                    "of the devices in use)")
    for col in ("device", "power used", "source", "compute busy / sample", "energy / sample"):
        t.add_column(col, justify="right" if col in ("compute busy / sample", "energy / sample")
                     else "left")
    for dev, row in energy.items():
        busy = "+" + (f"{row['active_w']:.3g} W avg over its layers (per-layer resources)"
                      if row["per_layer_power"] else f"{row['active_w']:.3g} W busy")
        power = f"{row['idle_w']:.3g} W idle, {busy}"
        used = row["used"]
        t.add_row(dev, power if used else f"{power} (not used)",
                  f"{row['kind']}: {row['source']}", fmt_s(row["busy_s_per_sample"]),
                  _fmt_j(row["energy_j_per_sample"]) if used else "0")
    t.add_row("total", "", f"cycle {fmt_s(ev.bottleneck_s)} per sample", "",
              _fmt_j(ev.energy_j))
    console.print(t)


def cmd_boards(args: argparse.Namespace) -> int:
    from hwpart.boards import list_boards, load_board

    t = Table(title="boards")
    for col in ("name", "part", "PYNQ", "LUT", "DSP", "BRAM18", "slots", "PL MHz", "DMA MB/s",
                "config MB/s"):
        t.add_column(col)
    for name in list_boards():
        b = load_board(name)
        r = b.resources
        t.add_row(b.name, b.part, b.pynq_version, f"{r.lut:,}", str(r.dsp), str(r.bram_18k),
                  str(b.slots.count), f"{b.clocks.pl_mhz:g}", f"{b.dma.bandwidth_mb_s:g}",
                  f"{b.config_port.throughput_mb_s:g} ({b.config_port.name})")
    console.print(t)
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hwpart",
        description="Partition a PyTorch model across CPU, GPU and FPGA (hls4ml overlays on "
                    "PYNQ or a simulated board) and run it as a monitored pipeline.")
    sub = p.add_subparsers(dest="command", required=True)

    pr = sub.add_parser("profile", help="measure per-layer costs (CPU/GPU) and model the FPGA")
    _model_args(pr)
    pr.add_argument("--batch", default="1,64", help="batch sizes to profile (default 1,64)")
    pr.add_argument("--board", help="board name (boards/NAME.yaml) or path, for the FPGA model")
    pr.add_argument("--devices", help="comma list of cpu,gpu,fpga (default: all present)")
    pr.add_argument("--quick", action="store_true", help="fewer repeats (noisier)")
    pr.add_argument("-o", "--output", default="costs.json")
    pr.set_defaults(func=cmd_profile)

    pa = sub.add_parser("partition", help="compute a plan: layer -> device (+ FPGA slot)")
    _model_args(pa)
    pa.add_argument("--board", help="board name (boards/NAME.yaml) or path")
    pa.add_argument("--objective", choices=OBJECTIVES, default="throughput",
                    help="latency, throughput, or energy per sample (joules; see --cpu)")
    pa.add_argument("--min-throughput", type=_positive, metavar="N",
                    help="floor: the plan must reach N samples/s (any objective)")
    pa.add_argument("--max-latency", type=_positive, metavar="S",
                    help="floor: the plan must take at most S seconds per sample (any objective)")
    pa.add_argument("--cpu", choices=("local", "board"), default="local",
                    help="local: this machine's CPU, measured (on an Arm board, that is the "
                         "board's); board: the board's Arm cores from its YAML, modeled")
    pa.add_argument("--batch", type=int, default=1, help="micro-batch size the plan is for")
    pa.add_argument("--devices", help="comma list of cpu,gpu,fpga (default: all present)")
    pa.add_argument("--slots", type=int, help="use this many of the board's slots")
    pa.add_argument("--costs", help="cost table from `hwpart profile` (else profile now)")
    pa.add_argument("--overlay", help="overlay bundle: the FPGA runs only its RMs' layer groups")
    pa.add_argument("--pin", help="place layers yourself, e.g. _0-_3=fpga,_7=cpu; the solver "
                                  "places the rest")
    pa.add_argument("--solver", choices=("auto", "dp", "milp", "greedy"), default="auto")
    pa.add_argument("--time-limit", type=float, default=60.0, help="MILP time limit, s")
    pa.add_argument("--quick", action="store_true", help="quick profiling (fewer repeats)")
    pa.add_argument("-o", "--output", default="plan.json")
    pa.add_argument("--plot", help="draw the graph coloured by device to this PNG")
    pa.set_defaults(func=cmd_partition)

    pb = sub.add_parser("boards", help="list the known boards")
    pb.set_defaults(func=cmd_boards)

    _add_plugin_commands(sub)
    return p


#: Modules that add their own subcommands through ``register_cli(subparsers)``:
#: ``run``/``devices`` live with the runtime, ``overlay`` with the overlay builder,
#: ``deploy`` (SSH to a PYNQ board) on its own, ``sim`` (hls4ml projects on the
#: simulated board, PYNQ's discovery of it) with the simulated board.
PLUGIN_MODULES = ("hwpart.runcli", "hwpart.overlay", "hwpart.deploy", "hwpart.sim.cli")


def _add_plugin_commands(sub: Any) -> None:
    import importlib

    for name in PLUGIN_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside it: say so
                raise
            continue
        register = getattr(module, "register_cli", None)
        if register is not None:
            register(sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HwpartError as exc:
        err_console.print(f"hwpart: error: {exc}", markup=False, highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        err_console.print("hwpart: interrupted", markup=False)
        return 130


if __name__ == "__main__":
    sys.exit(main())

