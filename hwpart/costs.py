"""Cost tables: how long each layer takes on each device, and what moving data costs.

CPU and GPU times are *measured* per layer on inputs captured from a real
forward pass (warm-up, repeats, median), per batch size. FPGA times and
resources are *modeled* from the layer's shape until an overlay's RMs bring
cycle counts measured in RTL simulation (see docs/cost-model.md); every entry
records whether it was measured or modeled, and the table says so wherever it
is printed. Tables are JSON, so a plan can be recomputed without re-profiling.
"""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import fx

from hwpart.boards import Board, Host, load_board, load_host
from hwpart.errors import ConfigError, PlanError
from hwpart.graph import IO_OPS, LayerGraph, layer_run
from hwpart.partition import LinkCost, Plan, Problem, Unit, make_plan, single_device, solve

#: Layer types the hls4ml PyTorch front end converts (hls4ml 1.3), by our op names.
FPGA_OPS = frozenset({
    "linear", "conv1d", "conv2d", "relu", "leaky_relu", "sigmoid", "tanh", "softmax",
    "batchnorm", "maxpool1d", "maxpool2d", "avgpool1d", "avgpool2d", "flatten", "add",
    "cat", "elu", "hardtanh", "softplus", "prelu", "identity", "dropout", "reshape", "mul",
    "sub", "upsample",
})



# --------------------------------------------------------------------------- the table


@dataclass
class CostTable:
    """Per-layer, per-device time for each batch size (seconds per *batch*)."""

    model: str
    input_shape: list[int]
    batch_sizes: list[int]
    times: dict[str, dict[str, dict[str, float]]]  # node -> device -> str(batch) -> s/batch
    source: dict[str, str]  # device -> "measured" | "modeled"
    fpga: dict[str, dict[str, Any]] = field(default_factory=dict)  # node -> model details
    env: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def per_sample(self, node: str, device: str, batch: int) -> float | None:
        by_batch = self.times.get(node, {}).get(device)
        if not by_batch:
            return None
        key = str(batch)
        if key not in by_batch:
            # nearest profiled batch size, by ratio: per-sample cost changes slowly
            key = min(by_batch, key=lambda b: abs(math.log(int(b) / batch)))
        return by_batch[key] / int(key)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> CostTable:
        p = Path(path)
        try:
            data = json.loads(p.read_text())
            return cls(**data)
        except FileNotFoundError:
            raise ConfigError(f"{p}: cost table not found; create it with `hwpart profile`") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
        except TypeError as exc:
            raise ConfigError(f"{p}: not a hwpart cost table ({exc}); re-run `hwpart profile`") from None

    def check_matches(self, lg: LayerGraph, where: str = "cost table") -> None:
        missing = [n for n in lg.compute_nodes if n not in self.times]
        if missing or list(self.input_shape) != list(lg.input_shape):
            raise ConfigError(
                f"{where} was made for another model or input shape "
                f"(missing layers {missing[:4]}, shape {self.input_shape} vs "
                f"{list(lg.input_shape)}); re-run `hwpart profile`"
            )


# --------------------------------------------------------------------------- measuring


def capture_values(lg: LayerGraph, x: Any, inputs: Any = None,
                   outputs: Any = ()) -> tuple[dict[str, tuple], dict[str, Any]]:
    """Run the graph once on ``x``; keep the (args, kwargs) of the ``inputs`` nodes and
    the values of the ``outputs`` nodes. ``inputs=None`` keeps every call node's."""
    want_in = None if inputs is None else set(inputs)
    want_out = set(outputs)
    ins: dict[str, tuple] = {}
    outs: dict[str, Any] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            if (n.name in want_in if want_in is not None
                    else n.op in ("call_module", "call_function", "call_method")):
                ins[n.name] = self.fetch_args_kwargs_from_env(n)
            out = super().run_node(n)
            if n.name in want_out:
                outs[n.name] = out
            return out

    with torch.inference_mode():
        Recorder(lg.module).run(x)
    return ins, outs


def capture_node_inputs(lg: LayerGraph, batch: int, seed: int = 0) -> dict[str, tuple]:
    """Run the graph once and keep each node's actual (args, kwargs) for timing it alone."""
    return capture_values(lg, lg.example_input(batch, seed))[0]


def _node_fn(lg: LayerGraph, name: str) -> Callable[..., Any]:
    node = next(n for n in lg.module.graph.nodes if n.name == name)
    if node.op == "call_module":
        return lg.module.get_submodule(str(node.target))
    if node.op == "call_method":
        return lambda self, *a, **k: getattr(self, str(node.target))(*a, **k)
    return node.target  # type: ignore[return-value]


def time_call(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None,
              warmup: int = 3, repeats: int = 15, min_total_s: float = 0.01,
              max_repeats: int = 200) -> float:
    """Median wall time of ``fn``: warm-up, then repeats until ``min_total_s`` has elapsed."""
    for _ in range(warmup):
        fn()
    sync()
    samples: list[float] = []
    total = 0.0
    while len(samples) < repeats or (total < min_total_s and len(samples) < max_repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        samples.append(dt)
        total += dt
    return statistics.median(samples)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def measure(lg: LayerGraph, device: str, batch_sizes: list[int],
            progress: Callable[[str, int, int], None] | None = None,
            **timing: Any) -> dict[str, dict[str, float]]:
    """Seconds per batch of every compute node on ``cpu`` or ``gpu``, per batch size."""
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    nodes = lg.compute_nodes
    out: dict[str, dict[str, float]] = {n: {} for n in nodes}
    total, done = len(nodes) * len(batch_sizes), 0
    module = lg.module.to(dev)
    try:
        for b in batch_sizes:
            inputs = capture_node_inputs(lg, b) if device == "cpu" else {
                k: _to(v, dev) for k, v in _cpu_inputs(lg, b).items()}
            with torch.inference_mode():
                # whole-model warm-up: thread pools and allocator caches start on the
                # first real pass, and would otherwise land on the first layer timed
                x = _to(lg.example_input(b), dev)
                for _ in range(3):
                    module(x)
                sync()
                for n in nodes:
                    fn = _node_fn(lg, n)
                    args, kwargs = inputs.get(n, ((), {}))
                    out[n][str(b)] = time_call(lambda fn=fn, a=args, k=kwargs: fn(*a, **k),
                                               sync, **timing)
                    done += 1
                    if progress:
                        progress(f"{device} batch {b}: {n}", done, total)
    finally:
        lg.module.to("cpu")
    del module
    return out


def _cpu_inputs(lg: LayerGraph, batch: int) -> dict[str, tuple]:
    lg.module.to("cpu")
    try:
        return capture_node_inputs(lg, batch)
    finally:
        lg.module.to(torch.device("cuda"))


# --------------------------------------------------------------------------- FPGA model


def fpga_model(lg: LayerGraph, board: Board) -> dict[str, dict[str, Any]]:
    """Modeled cycles/resources per layer, as if each layer were an RM of its own.

    The same estimate the overlay builder uses for its RMs
    (``hwpart.overlay.resources``, documented in docs/cost-model.md and
    docs/overlays.md), and the same rule for which layers an RM can hold
    (``hwpart.overlay.candidates.unsupported_reason``), so the partitioner never
    offers the FPGA a layer the overlay builder would refuse. All *modeled*.
    """
    from hwpart.overlay.candidates import unsupported_reason
    from hwpart.overlay.resources import estimate_group

    clock_hz = board.clocks.pl_mhz * 1e6
    out: dict[str, dict[str, Any]] = {}
    for n in lg.compute_nodes:
        why = unsupported_reason(lg, n)
        if why is not None:
            out[n] = {"supported": False, "reason": why}
            continue
        est = estimate_group(lg, [n], board)
        out[n] = {
            "supported": True, "reuse": est.layers[0].reuse, "ii_cycles": est.ii_cycles,
            "latency_cycles": est.latency_cycles, "resources": est.resources.as_dict(),
            "seconds": est.latency_cycles / clock_hz, "source": est.source,
        }
        if not est.fits(board):
            out[n].update(supported=False,
                          reason=f"needs more than one slot ({est.over_text(board)})")
    return out


# --------------------------------------------------------------------------- profile


def profile(lg: LayerGraph, batch_sizes: list[int], devices: list[str],
            board: Board | None = None,
            progress: Callable[[str, int, int], None] | None = None,
            **timing: Any) -> CostTable:
    """Measure CPU/GPU per layer and model the FPGA; ``devices`` from cpu/gpu/fpga."""
    times: dict[str, dict[str, dict[str, float]]] = {n: {} for n in lg.compute_nodes}
    source: dict[str, str] = {}
    for dev in devices:
        if dev in ("cpu", "gpu"):
            if dev == "gpu" and not torch.cuda.is_available():
                raise PlanError("gpu requested but torch sees no CUDA device; drop gpu from "
                                "--devices")
            for n, by_batch in measure(lg, dev, batch_sizes, progress, **timing).items():
                times[n][dev] = by_batch
            source[dev] = "measured"
    fpga: dict[str, dict[str, Any]] = {}
    if "fpga" in devices:
        if board is None:
            raise PlanError("fpga requested without a board; pass --board")
        fpga = fpga_model(lg, board)
        for n, m in fpga.items():
            if m["supported"]:
                # the model is per sample and streams samples back to back
                times[n]["fpga"] = {str(b): m["seconds"] + (b - 1) * m["ii_cycles"] / (
                    board.clocks.pl_mhz * 1e6) for b in batch_sizes}
        source["fpga"] = f"modeled ({board.name}, {board.clocks.pl_mhz:g} MHz)"
    env = {"torch": torch.__version__, "threads": torch.get_num_threads(),
           "machine": platform.machine(), "processor": platform.processor() or "",
           "board": board.name if board else None}
    return CostTable(model=lg.name, input_shape=list(lg.input_shape),
                     batch_sizes=list(batch_sizes), times=times, source=source, fpga=fpga,
                     env=env)


# --------------------------------------------------------------------------- problem


def parse_pins(lg: LayerGraph, spec: str | None) -> dict[str, str]:
    """``"_0-_3=fpga,_7=cpu"`` -> layer -> device: layers the user places themselves."""
    pins: dict[str, str] = {}
    for part in (p.strip() for p in (spec or "").split(",")):
        if not part:
            continue
        layers, eq, device = part.rpartition("=")
        if not eq or device not in ("cpu", "gpu", "fpga") or not layers:
            raise PlanError(f"--pin {spec!r}: '{part}' should be LAYERS=DEVICE with DEVICE one "
                            "of cpu, gpu, fpga, e.g. --pin _0-_3=fpga")
        for n in layer_run(lg, layers, f"--pin {spec!r}"):
            pins[n] = device
    return pins


def build_problem(lg: LayerGraph, table: CostTable, batch: int, devices: list[str],
                  board: Board | None = None, host: Host | None = None,
                  slots: int | None = None, overlay: Any = None,
                  pins: dict[str, str] | None = None) -> Problem:
    """Turn a cost table into a partitioning :class:`Problem` at one batch size.

    A batch pays a link's fixed latency once, so per sample it costs
    ``latency / batch``; compute is per sample the same way. With an overlay
    (a loaded bundle manifest), the FPGA can run only its RMs' layer groups, at
    the RMs' cycle counts, instead of the per-layer model.
    """
    table.check_matches(lg)
    host = host or load_host()
    if overlay is not None:
        table = _with_overlay(lg, table, overlay, batch)
        if slots is None:
            slots = len(overlay.slots)
    units = [Unit("cpu", "cpu", memory_bytes=host.cpu_memory_mb * 2**20)]
    if "gpu" in devices and "gpu" in table.source:
        units.append(Unit("gpu", "gpu", memory_bytes=host.gpu_memory_mb * 2**20))
    fpga = "fpga" in devices and board is not None and "fpga" in table.source
    if fpga:
        assert board is not None
        count = board.slots.count if slots is None else slots
        cap = {k: float(v) for k, v in board.slots.resources.as_dict().items()}
        units += [Unit(f"fpga{k}", "fpga", k, capacity=dict(cap)) for k in range(count)]
    compute: dict[str, dict[str, float]] = {}
    reasons: dict[str, dict[str, str]] = {}
    resources: dict[str, dict[str, float]] = {}
    memory: dict[str, float] = {}
    for n in lg.nodes:
        d = lg.dag.nodes[n]
        if d["op"] in IO_OPS:  # the host feeds the input and takes the output
            compute[n] = {"cpu": 0.0}
            continue
        compute[n] = {}
        reasons[n] = {}
        memory[n] = float(d["param_bytes"])
        for u in units:
            t = table.per_sample(n, u.device, batch)
            if t is None:
                reasons[n][u.name] = table.fpga.get(n, {}).get("reason", "not profiled")
                continue
            compute[n][u.name] = t
        if pins and n in pins:  # the user's placement: only that device's units stay
            kept = {u: t for u, t in compute[n].items()
                    if problem_device(units, u) == pins[n]}
            if not kept:
                why = reasons[n].get(f"{pins[n]}0", reasons[n].get(pins[n], "not offered"))
                raise PlanError(f"--pin: layer {n!r} is pinned to {pins[n]}, which cannot run "
                                f"it here ({why})")
            compute[n] = kept
        if n in table.fpga and "resources" in table.fpga[n]:
            resources[n] = {k: float(v) for k, v in table.fpga[n]["resources"].items()}
    links: dict[frozenset[str], LinkCost] = {}
    ports = {u.device for u in units}
    for a in ports:
        for b in ports:
            if a >= b:
                continue
            link = host.link(a, b, board)
            links[frozenset((a, b))] = LinkCost(link.bandwidth_mb_s * 1e6,
                                                link.latency_us * 1e-6 / batch)
    if fpga:
        assert board is not None
        # slot to slot through the AXI4-Stream switch: one beat per PL clock, not shared
        beat = board.dma.data_width_bits / 8 * board.clocks.pl_mhz * 1e6
        links[frozenset(("fpga",))] = LinkCost(beat, 0.0, shared=False)
    out_bytes = {n: float(lg.dag.nodes[n]["out_bytes"]) for n in lg.nodes}
    slot_runs: dict[str, list[tuple[str, ...]]] = {}
    if fpga and overlay is not None:
        for u in units:
            if u.is_slot:
                slot_runs[u.name] = [tuple(rm.layers) for rm in overlay.rms
                                     if u.slot in rm.compatible_slots]
        resources = {}  # each RM was checked against its slot when the overlay was built
    return Problem(lg.dag, units, compute, out_bytes, links, resources, memory, reasons,
                   slot_runs=slot_runs)


def problem_device(units: list[Unit], unit: str) -> str:
    return next(u.device for u in units if u.name == unit)


def _with_overlay(lg: LayerGraph, table: CostTable, overlay: Any, batch: int) -> CostTable:
    """A copy of ``table`` whose FPGA entries are the overlay's RMs.

    An RM's time covers its whole group; it is spread evenly over the group's
    layers, which only ever move together (a slot holds exactly one RM's group).
    """
    unknown = [n for rm in overlay.rms for n in rm.layers if n not in lg.dag]
    if unknown:
        raise ConfigError(
            f"overlay {overlay.name!r} was built for model {overlay.model.name!r}: layers "
            f"{unknown[:4]} are not in {lg.name!r}; build an overlay for this model"
        )
    times = {n: {d: v for d, v in by.items() if d != "fpga"} for n, by in table.times.items()}
    fpga: dict[str, dict[str, Any]] = {
        n: {"supported": False, "reason": overlay.off_fpga.get(n, "no RM of the overlay covers it")}
        for n in lg.compute_nodes}
    sources = set()
    for rm in overlay.rms:
        hz = rm.cycles.clock_mhz * 1e6
        share = 1.0 / len(rm.layers)
        for n in rm.layers:
            times[n]["fpga"] = {str(b): share * (rm.cycles.latency + (b - 1) * rm.cycles.ii) / hz
                                for b in sorted({1, batch, *table.batch_sizes})}
            fpga[n] = {"supported": True, "rm": rm.name, "cycles_source": rm.cycles.source}
        sources.add(rm.cycles.source)
    source = dict(table.source)
    source["fpga"] = f"overlay {overlay.name} ({', '.join(sorted(sources)) or 'no RMs'})"
    return CostTable(model=table.model, input_shape=table.input_shape,
                     batch_sizes=table.batch_sizes, times=times, source=source, fpga=fpga,
                     env=table.env)


def auto_plan(lg: LayerGraph, batch: int = 1, objective: str = "throughput",
              devices: list[str] | None = None, board: Board | None = None,
              table: CostTable | None = None, slots: int | None = None,
              solver: str = "auto", overlay: Any = None, pins: dict[str, str] | None = None,
              **timing: Any) -> Plan:
    """Profile (unless a table is given), build the problem, solve it: one call for ``--auto``.

    With an overlay the FPGA costs come from its RMs, so only CPU/GPU are measured.
    """
    if devices is None:
        devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
        if board is not None or overlay is not None:
            devices.append("fpga")
    if overlay is not None and board is None:
        board = load_board(overlay.board.name)
    if table is None:
        measured = [d for d in devices if d != "fpga" or overlay is None]
        table = profile(lg, sorted({1, batch}), measured, board, **timing)
    problem = build_problem(lg, table, batch, devices, board, slots=slots, overlay=overlay,
                            pins=pins)
    sol = solve(problem, objective, solver)
    return make_plan(problem, sol, model=lg.name, input_shape=lg.input_shape,
                     objective=objective, batch=batch, board=board.name if board else None)


def single_device_plans(problem: Problem) -> dict[str, dict[str, float]]:
    """Predicted figures with everything on one device: the baseline to beat."""
    from hwpart.partition import evaluate

    out = {}
    for u in problem.units:
        if u.is_slot and u.slot != 0:
            continue
        assign = single_device(problem, u.name)
        if assign is None:
            continue
        ev = evaluate(problem, assign)
        out[u.name] = {"latency_s": ev.latency_s, "throughput_sps": ev.throughput_sps}
    return out
