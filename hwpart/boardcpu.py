"""CPU layers priced on the board's own Arm cores, from the board YAML's ``cpu:`` section.

A plan for a PYNQ board whose CPU layers were timed on the host's x86 would put far
too much on the CPU: a 650 MHz Cortex-A9 is one to two orders of magnitude slower.
Until ``hwpart profile`` runs on the board and measures it, each layer is modeled as a
fixed call overhead plus its work at the description's effective rate, and the cost
table labels the CPU as modeled, with the board and its source.
"""

from __future__ import annotations

from typing import Any

from hwpart.boards import Board
from hwpart.costs import CostTable
from hwpart.errors import PlanError
from hwpart.graph import LayerGraph

#: Bytes per element of the activations the work estimate counts (float32 on the Arm).
ELEMENT_BYTES = 4


def layer_ops(lg: LayerGraph, node: str) -> float:
    """Work of one layer per sample: its MACs, or its output elements for layers with
    none (activations, pooling, reshapes still touch every element once)."""
    d = lg.dag.nodes[node]
    return float(max(d.get("macs", 0), d.get("out_bytes", 0) / ELEMENT_BYTES))


def board_cpu_seconds(lg: LayerGraph, node: str, board: Board, batch: int) -> float:
    """Seconds per batch of ``batch`` samples for one layer on the board's CPU."""
    cpu = board.cpu
    assert cpu is not None
    return cpu.layer_overhead_us * 1e-6 + batch * layer_ops(lg, node) / cpu.macs_per_s


def with_board_cpu(lg: LayerGraph, table: CostTable, board: Board,
                   batches: list[int] | None = None) -> CostTable:
    """A copy of ``table`` whose CPU times are the board's Arm cores, modeled.

    Other devices' entries are kept; the GPU's are dropped (a PYNQ board has none).
    """
    if board.cpu is None:
        where = board.path.name if board.path else f"{board.name}.yaml"
        raise PlanError(f"{where}: field 'cpu': missing; --cpu board prices CPU layers from "
                        "it (see docs/boards.md)")
    sizes = sorted(set(batches or table.batch_sizes))
    times: dict[str, dict[str, dict[str, float]]] = {}
    for n in lg.compute_nodes:
        by_dev = {d: v for d, v in table.times.get(n, {}).items() if d not in ("cpu", "gpu")}
        by_dev["cpu"] = {str(b): board_cpu_seconds(lg, n, board, b) for b in sizes}
        times[n] = by_dev
    source: dict[str, Any] = {d: s for d, s in table.source.items() if d not in ("cpu", "gpu")}
    c = board.cpu
    source["cpu"] = (f"modeled ({board.name} {c.model} {c.clock_mhz:g} MHz, "
                     f"{c.macs_per_s:.3g} MAC/s + {c.layer_overhead_us:g} us/layer, estimated)")
    env = dict(table.env, cpu="board", cpu_source=c.source)
    return CostTable(model=table.model, input_shape=table.input_shape, batch_sizes=sizes,
                     times=times, source=source, fpga=table.fpga, env=env)
