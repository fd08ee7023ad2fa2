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
import os
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
from hwpart.partition import (
    Evaluation,
    LinkCost,
    Plan,
    Problem,
    Unit,
    evaluate,
    make_plan,
    single_device,
    solve,
)
from hwpart.stages import direct_forward
from hwpart.timing import (
    FPGA_RESOURCE,
    RmTiming,
    chain_slots,
    pr_s,
    rm_chain,
    rm_s,
    swaps_needed,
    with_measured,
)

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
    # The pipeline's own cost per *batch*, measured on the host (see measure_overhead):
    # "first_stage_s" (source, sink and one stage's worker) and "extra_stage_s" (each
    # further stage with its channel hand-off). Empty in tables made before it existed.
    overhead: dict[str, float] = field(default_factory=dict)
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


def time_call(fn: Callable[[], Any], sync: Callable[[], None] = lambda: None,
              warmup: int = 3, repeats: int = 15, min_total_s: float = 0.01,
              max_repeats: int = 200) -> float:
    """Median wall time of ``fn``: warm-up, then repeats until ``min_total_s`` has elapsed.

    The median, because a shared machine adds a heavy tail (a neighbour's burst,
    a page fault) that says nothing about the code being timed.
    """
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


def _node_fn(module: fx.GraphModule, node: fx.Node) -> Callable[..., Any]:
    if node.op == "call_module":
        return module.get_submodule(str(node.target))
    if node.op == "call_method":
        return lambda self, *a, **k: getattr(self, str(node.target))(*a, **k)
    return node.target  # type: ignore[return-value]


class _NodeTimer(fx.Interpreter):
    """A forward pass that times every call node where it runs, in the model's order.

    Each node sees the caches, allocator state and thread pools a real forward
    pass leaves it (its input was just written by its producer; the other
    layers' weights and activations went through the cache since its own last
    call), which timing it alone on a warm input hides: that made per-layer sums
    miss the measured pipeline by 2-4x on batch-norm and branching models.
    Only the call is timed; the interpreter's own bookkeeping is not.
    """

    def __init__(self, module: fx.GraphModule, sync: Callable[[], None], skip: int) -> None:
        super().__init__(module)
        self.sync = sync
        self.skip = skip  # the first passes are warm-up: not recorded
        self.fns = {n.name: _node_fn(module, n) for n in module.graph.nodes
                    if n.op in ("call_module", "call_function", "call_method")}
        self.samples: dict[str, list[float]] = {n: [] for n in self.fns}

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self.skip -= 1
        return super().run(*args, **kwargs)

    def run_node(self, n: fx.Node) -> Any:
        fn = self.fns.get(n.name)
        if fn is None:
            return super().run_node(n)
        args, kwargs = self.fetch_args_kwargs_from_env(n)
        perf = time.perf_counter
        t0 = perf()
        out = fn(*args, **kwargs)
        self.sync()
        dt = perf() - t0
        if self.skip < 0:
            self.samples[n.name].append(dt)
        return out


def time_in_context(module: fx.GraphModule, x: Any, sync: Callable[[], None] = lambda: None,
                    warmup: int = 3, forward: Callable[..., Any] | None = None,
                    **timing: Any) -> dict[str, float]:
    """Seconds per call node inside real forward passes, summing to the whole forward's time.

    Per node: the median over instrumented passes. The nodes are then scaled
    together so that they add up to the median of the *uninstrumented* forward
    (:func:`time_call`) -- ``forward``, the call a one-stage pipeline makes
    (default: the module itself): the instrumented
    pass adds a little per node (the timer, the interpreter), and the real
    forward adds its own per-node Python that no per-node timer sees; scaling
    keeps the nodes' relative costs and makes the whole exact.
    """
    call = forward or module
    whole = time_call(lambda: call(x), sync, warmup=warmup, **timing)
    timer = _NodeTimer(module, sync, skip=warmup)
    time_call(lambda: timer.run(x), sync, warmup=warmup, **timing)
    med = {n: statistics.median(v) for n, v in timer.samples.items()}
    total = sum(med.values())
    scale = whole / total if total > 0 else 1.0
    return {n: v * scale for n, v in med.items()}


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
    """Seconds per batch of every compute node on ``cpu`` or ``gpu``, per batch size,
    timed in context (:func:`time_in_context`)."""
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    sync = torch.cuda.synchronize if device == "gpu" else (lambda: None)
    nodes = lg.compute_nodes
    out: dict[str, dict[str, float]] = {n: {} for n in nodes}
    module = lg.module.to(dev)
    # a CPU stage calls its layers directly (stages.direct_forward); the GPU device
    # calls its own copy of the module
    forward = direct_forward(module) if device == "cpu" else None
    try:
        for i, b in enumerate(batch_sizes):
            with torch.inference_mode():
                per_node = time_in_context(module, _to(lg.example_input(b), dev), sync,
                                           forward=forward, **timing)
            for n in nodes:
                # a node the graph never calls (a get_attr) costs nothing to run
                out[n][str(b)] = per_node.get(n, 0.0)
            if progress:
                progress(f"{device} batch {b}", (i + 1) * len(nodes),
                         len(batch_sizes) * len(nodes))
    finally:
        lg.module.to("cpu")
    del module
    return out


def measure_overhead(batch: int, threads: int | None = None, batches: int = 300,
                     rounds: int = 3) -> dict[str, float]:
    """The pipeline's own seconds per batch: ``first_stage_s`` and ``extra_stage_s``.

    Runs the real :class:`hwpart.runtime.Pipeline` (imported here: it sits above
    this module) on a model whose layers cost next to nothing, split into 1, 2
    and 3 CPU stages, and subtracts the same model's plain forward. What is left
    is what a run pays per batch besides its layers: pulling the source, the
    worker loop, the stage call and its value dict, the monitor's record, the
    ordered collector; and per further stage its worker and the channel hand-off
    between threads. Medians over ``rounds``; the slope over 1..3 stages gives
    the per-stage figure.
    """
    from torch import nn

    from hwpart.devices import CpuDevice
    from hwpart.graph import capture
    from hwpart.runtime import Pipeline, chain_plan
    from hwpart.stages import split

    class Cheap(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.neg(torch.neg(torch.neg(x)))

    lg = capture(Cheap(), (1,), "overhead")
    x = torch.zeros(batch * batches, 1)
    xb = x[:batch]
    firsts, extras = [], []
    forward = direct_forward(lg.module) or lg.module  # as the stages call it
    with torch.inference_mode():
        plain = time_call(lambda: forward(xb), repeats=batches)
    for _ in range(rounds):
        per: list[float] = []
        for k in (1, 2, 3):
            staged = split(lg, chain_plan(lg, ["cpu"] * k))
            with Pipeline(staged, {"cpu": CpuDevice(threads=threads)}) as pipe:
                pipe.run(x[: batch * 20], batch)
                res = pipe.run(x, batch)
            per.append(batch / res.throughput_sps - plain)
        firsts.append(per[0])
        extras.append((per[2] - per[0]) / 2)
    return {"first_stage_s": max(0.0, statistics.median(firsts)),
            "extra_stage_s": max(0.0, statistics.median(extras))}


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
            threads: int | None = None, **timing: Any) -> CostTable:
    """Measure CPU/GPU per layer and model the FPGA; ``devices`` from cpu/gpu/fpga.

    ``threads``: the intra-op threads the run will give each CPU stage (None:
    torch's default); layers and the pipeline's overhead are timed with that
    count, since a layer's time depends on it (and on a shared machine, more
    threads than free cores stall on whoever holds the other core).
    """
    times: dict[str, dict[str, dict[str, float]]] = {n: {} for n in lg.compute_nodes}
    source: dict[str, str] = {}
    overhead: dict[str, float] = {}
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        for dev in devices:
            if dev in ("cpu", "gpu"):
                if dev == "gpu" and not torch.cuda.is_available():
                    raise PlanError("gpu requested but torch sees no CUDA device; drop gpu from "
                                    "--devices")
                for n, by_batch in measure(lg, dev, batch_sizes, progress, **timing).items():
                    times[n][dev] = by_batch
                source[dev] = "measured"
        if source:
            overhead = measure_overhead(max(batch_sizes), threads)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(default_threads)
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
    env = {"torch": torch.__version__, "threads": used_threads,
           "machine": platform.machine(), "processor": platform.processor() or "",
           "board": board.name if board else None}
    return CostTable(model=lg.name, input_shape=list(lg.input_shape),
                     batch_sizes=list(batch_sizes), times=times, source=source, fpga=fpga,
                     env=env, overhead=overhead)


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
        if board is None:
            board = overlay_board(overlay)
        table = _with_overlay(lg, table, overlay, batch, board)
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
    nodes = lg.nodes
    for n in nodes:
        d = lg.dag.nodes[n]
        if d["op"] in IO_OPS:  # the host feeds the input and takes the output
            # the input carries the pipeline's cost of a batch with one stage (source,
            # sink, a worker): every plan pays it, on the host (table.overhead)
            first = table.overhead.get("first_stage_s", 0.0) if n == nodes[0] else 0.0
            compute[n] = {"cpu": first / batch}
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
    stream_in: dict[str, float] = {}
    stream_out: dict[str, float] = {}
    if fpga:
        assert board is not None
        # slot to slot through the AXI4-Stream switch: the RMs' II already paces the
        # beats, and the simulated board charges the hop nothing (hwpart.timing)
        links[frozenset(("fpga",))] = LinkCost(math.inf, 0.0, shared=False)
        stream_in, stream_out = _stream_bytes(lg, board, overlay)
    out_bytes = {n: float(lg.dag.nodes[n]["out_bytes"]) for n in lg.nodes}
    slot_runs: dict[str, list[tuple[str, ...]]] = {}
    if fpga and overlay is not None:
        for u in units:
            if u.is_slot:
                slot_runs[u.name] = [tuple(rm.layers) for rm in overlay.rms
                                     if u.slot in rm.compatible_slots]
        resources = {}  # each RM was checked against its slot when the overlay was built
    return Problem(lg.dag, units, compute, out_bytes, links, resources, memory, reasons,
                   slot_runs=slot_runs, stream_in=stream_in, stream_out=stream_out,
                   pr_s=pr_s(board) if fpga and board is not None else 0.0,
                   # host-side hand-offs load the host, not the board's DMA engine, whose
                   # timeline the FPGA's load is (hwpart.timing)
                   stage_s=dict.fromkeys({u.device for u in units} - {"fpga"},
                                         table.overhead.get("extra_stage_s", 0.0) / batch))


def _stream_bytes(lg: LayerGraph, board: Board,
                  overlay: Any = None) -> tuple[dict[str, float], dict[str, float]]:
    """Bytes per sample that cross the DMA: (into the fabric after node n, out of it from n).

    What crosses is the RMs' packed ``ap_fixed`` stream words, not float32
    (:mod:`hwpart.timing`). With an overlay, each RM's own stream figures; without
    one, the overlay builder's first precision, packed into the board's DMA words.
    """
    from hwpart.overlay.hls import DEFAULT_PRECISIONS
    from hwpart.sim.fixed import StreamLayout, parse_type

    word = board.dma.data_width_bits
    into: dict[str, float] = {}
    out: dict[str, float] = {}
    if overlay is not None:
        word = int(overlay.shell.stream_width_bits)
        for rm in overlay.rms:
            t = RmTiming.of_manifest(rm, word)
            out[rm.layers[-1]] = float(t.out_bytes)
            for p in lg.dag.predecessors(rm.layers[0]):
                into[p] = float(t.in_bytes)
        return into, out
    ftype = parse_type(DEFAULT_PRECISIONS[0])
    for n in lg.nodes:
        shape = lg.dag.nodes[n].get("out_shape") or ()
        count = math.prod(shape[1:]) if len(shape) > 1 else math.prod(shape)
        if count:
            into[n] = out[n] = float(StreamLayout(ftype, int(count), word).sample_bytes)
    return into, out


def problem_device(units: list[Unit], unit: str) -> str:
    return next(u.device for u in units if u.name == unit)


def _with_overlay(lg: LayerGraph, table: CostTable, overlay: Any, batch: int,
                  board: Board) -> CostTable:
    """A copy of ``table`` whose FPGA entries are the overlay's RMs.

    An RM's time covers its whole group; it is spread evenly over the group's
    layers, which only ever move together (a slot holds exactly one RM's group).
    Its cycles run at the board's fabric clock (:func:`hwpart.timing.rm_s`), as
    the simulated board and the board itself run them.
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
        t = RmTiming.of_manifest(rm, int(overlay.shell.stream_width_bits))
        share = 1.0 / len(rm.layers)
        for n in rm.layers:
            times[n]["fpga"] = {str(b): share * rm_s(board, t.cycles(b))
                                for b in sorted({1, batch, *table.batch_sizes})}
            fpga[n] = {"supported": True, "rm": rm.name, "cycles_source": rm.cycles.source}
        sources.add(rm.cycles.source)
    source = dict(table.source)
    source["fpga"] = f"overlay {overlay.name} ({', '.join(sorted(sources)) or 'no RMs'})"
    return CostTable(model=table.model, input_shape=table.input_shape,
                     batch_sizes=table.batch_sizes, times=times, source=source, fpga=fpga,
                     env=table.env, overhead=table.overhead)


def fpga_is_remote() -> bool:
    """Whether FPGA stages go through a board agent (``--fpga remote://HOST:PORT``, which
    sets ``HWPART_FPGA``): then every host <-> FPGA crossing also crosses the network."""
    return os.environ.get("HWPART_FPGA", "").strip().lower().startswith("remote://")


def board_figures(overlay: Any, board: Board | None = None,
                  remote: bool | None = None) -> tuple[Board, list[str]]:
    """The board an overlay's stages are planned on, and notes on where its figures came from.

    ``boards/NAME.yaml`` gives the estimates; once ``hwpart board check`` has written
    ``BUNDLE/measured.json`` its measured DMA, configuration-port and link figures replace
    them (:func:`hwpart.timing.with_measured`). A remote FPGA with no measured link is
    refused: the network crossing would otherwise be priced as free.
    """
    board = board or load_board(overlay.board.name)
    remote = fpga_is_remote() if remote is None else remote
    root = Path(overlay.path).parent if getattr(overlay, "path", None) else None
    measured: dict[str, Any] = {}
    if root is not None and (root / "measured.json").is_file():
        from hwpart.board.measured import load_measured

        measured = load_measured(root)
    try:
        return with_measured(board, measured, remote)
    except ValueError as exc:
        where = root / "measured.json" if root is not None else "the bundle"
        raise ConfigError(f"{where}: {exc}: the FPGA is remote (--fpga remote://...), so "
                          "every crossing to it goes over the network; measure the link "
                          "with `hwpart board link` (or `hwpart board check`) first") from exc


def overlay_board(overlay: Any, board: Board | None = None) -> Board:
    """:func:`board_figures` without the notes."""
    return board_figures(overlay, board)[0]


def auto_devices(board: Board | None = None, overlay: Any = None) -> list[str]:
    """What ``--auto`` plans over: the CPU, the GPU when torch sees one, the FPGA when a
    board or an overlay is given."""
    devices = ["cpu"] + (["gpu"] if torch.cuda.is_available() else [])
    if board is not None or overlay is not None:
        devices.append("fpga")
    return devices


def auto_table(lg: LayerGraph, batch: int, devices: list[str], board: Board | None = None,
               overlay: Any = None, **timing: Any) -> CostTable:
    """The cost table ``--auto`` plans on: CPU/GPU measured at batch 1 and ``batch``; the
    FPGA modeled, unless an overlay brings its RMs' costs."""
    if overlay is not None and board is None:
        board = overlay_board(overlay)
    measured = [d for d in devices if d != "fpga" or overlay is None]
    return profile(lg, sorted({1, batch}), measured, board, **timing)


def auto_plan(lg: LayerGraph, batch: int = 1, objective: str = "throughput",
              devices: list[str] | None = None, board: Board | None = None,
              table: CostTable | None = None, slots: int | None = None,
              solver: str = "auto", overlay: Any = None, pins: dict[str, str] | None = None,
              min_throughput: float | None = None, max_latency: float | None = None,
              **timing: Any) -> Plan:
    """Profile (unless a table is given), build the problem, solve it: one call for ``--auto``.

    With an overlay the FPGA costs come from its RMs, so only CPU/GPU are measured.
    ``objective="energy"`` attaches each device's power (:mod:`hwpart.energy`: measured,
    declared or estimated, labelled); the floors hold for every objective.
    """
    devices = devices or auto_devices(board, overlay)
    if overlay is not None and board is None:
        board = overlay_board(overlay)
    if table is None:
        table = auto_table(lg, batch, devices, board, overlay, **timing)
    problem = build_problem(lg, table, batch, devices, board, slots=slots, overlay=overlay,
                            pins=pins)
    problem.min_throughput_sps, problem.max_latency_s = min_throughput, max_latency
    if objective == "energy":
        from hwpart.energy import attach_power, device_power, fpga_node_resources

        attach_power(problem, device_power(devices, board), board,
                     fpga_node_resources(table, overlay))
    sol = solve(problem, objective, solver)
    return make_plan(problem, sol, model=lg.name, input_shape=lg.input_shape,
                     objective=objective, batch=batch, board=board.name if board else None)


def price_plan(lg: LayerGraph, plan: Plan, table: CostTable, batch: int | None = None,
               board: Board | None = None, overlay: Any = None,
               host: Host | None = None) -> Plan:
    """A copy of ``plan`` with the predictions the solvers would give it
    (:func:`predict_plan`), for plans they did not make (written by hand, made from
    another table), plus the PR swaps of :func:`hwpart.timing.swaps_needed`: at load,
    and on every batch for a slot that two stages share -- a plan that needs more RMs
    than the shell has slots. Those swaps load the FPGA's one engine and their stages.
    """
    import copy

    from hwpart.partition import _fpga_group, pipeline_overheads, predict_stages, unit_slots

    batch = batch or plan.batch or 1
    if overlay is not None and board is None:
        board = overlay_board(overlay)
    devices = sorted({p.device for p in plan.assignment.values()} | {"cpu"})
    problem = build_problem(lg, table, batch, devices, board, host, overlay=overlay)
    assign = plan_assignment(problem, plan)
    bad = [f"{n} on {u}" for n, u in assign.items() if u not in problem.compute[n]]
    if bad:
        raise PlanError(f"plan for {plan.model!r} places layers where the cost table and the "
                        f"board cannot price them: {', '.join(bad[:4])}; re-run `hwpart "
                        "profile` with those devices (and --overlay for FPGA layers)")
    out = copy.deepcopy(plan)
    predict_stages(problem, assign, out.stages)
    slot_rms: dict[int, list[str]] = {}
    if overlay is not None:
        groups = [list(r.layers) for r in overlay.rms]
        for st in out.stages:
            slots = list(unit_slots(st.unit))
            chain = rm_chain(groups, st.nodes) if slots else None
            if not chain:
                continue
            slots = chain_slots(slots, len(chain), len(overlay.slots))  # as the device does
            for i, k in zip(chain, slots, strict=True):
                slot_rms.setdefault(k, []).append(overlay.rms[i].name)
    at_load, per_batch = swaps_needed(slot_rms)
    shared = {k for k, rms in slot_rms.items() if len(set(rms)) > 1}
    for st in out.stages:  # a swap a batch waits for is service time of its stage
        n_shared = sum(1 for k in unit_slots(st.unit) if k in shared)
        if n_shared and st.predicted_s is not None:
            st.predicted_s += n_shared * problem.pr_s / batch
    ev = predict_plan(problem, plan)
    group = sum(v for _, v in _fpga_group(problem, ev.unit_load_s, ev.link_load_s))
    group += per_batch * problem.pr_s / batch
    bottleneck = max(ev.bottleneck_s, group)
    out.predicted = {"latency_s": ev.latency_s + per_batch * problem.pr_s / batch,
                     "bottleneck_s": bottleneck,
                     "throughput_sps": 1.0 / bottleneck if bottleneck > 0 else float("inf"),
                     "pr_setup_s": at_load * problem.pr_s,
                     "pr_per_batch_s": per_batch * problem.pr_s, **pipeline_overheads(problem)}
    out.unit_load_s, out.link_load_s = ev.unit_load_s, ev.link_load_s
    out.bottleneck = ev.bottleneck if bottleneck == ev.bottleneck_s else FPGA_RESOURCE
    out.batch = batch
    return out


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


def plan_assignment(problem: Problem, plan: Plan) -> dict[str, str]:
    """Layer -> unit of ``plan`` in ``problem``; the host's I/O nodes, which plans do not
    list, stay on the CPU."""
    return {n: plan.unit_of(n) if n in plan.assignment else "cpu" for n in problem.order}


def predict_plan(problem: Problem, plan: Plan) -> Evaluation:
    """What the cost model predicts for a given plan (one from the solver, a chain plan,
    a hand-written one), its pipeline overhead charged per stage."""
    return evaluate(problem, plan_assignment(problem, plan), plan.stages)
