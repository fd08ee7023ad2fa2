"""Power per device, energy per sample: what the energy objective and the run report price.

Every figure carries where it comes from, because an energy number is only as good
as the watts behind it:

* ``measured``: read from a counter here -- RAPL for the CPU package
  (``/sys/class/powercap``, usually root-only), NVML for the GPU (its energy counter
  over a short idle window and a short busy window);
* ``declared``: ``boards/host.yaml`` ``power:`` when no counter reads the device;
* ``estimated``: the board YAML's ``power:`` and ``cpu:`` sections (PL static, PS/board
  at rest, W per LUT/FF/DSP/BRAM applied to an RM's resource estimate, the Arm cores).

The model (hwpart.partition): energy per sample = each layer's busy time x its power
above the device's idle, plus the idle power of every device the plan uses x the
pipeline's cycle per sample (its bottleneck). When the CPU is the board's own
(``--cpu board``, or hwpart running on the board), the board's at-rest power belongs to
the CPU, which is always in use, and the FPGA adds only its PL static; with a host CPU,
the FPGA device carries the whole board (at rest + PL static). Transfers cost time, not
extra energy: the DMA engine and the host driver are inside those baselines.
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from hwpart.boards import Board, Host, load_host
from hwpart.errors import PlanError
from hwpart.partition import Evaluation, Problem

Kind = Literal["measured", "declared", "estimated"]
ARM_MACHINES = ("armv7l", "armv6l", "aarch64", "arm64")


def on_board() -> bool:
    """Whether hwpart runs on an Arm board itself (then the local CPU *is* the board's)."""
    return platform.machine().lower() in ARM_MACHINES


@dataclass
class PowerFigure:
    """One device's power: idle watts, busy watts above idle (None: per layer, the FPGA)."""

    device: str
    idle_w: float
    active_w: float | None
    kind: Kind
    source: str

    @property
    def label(self) -> str:
        return f"{self.kind}: {self.source}"


# --------------------------------------------------------------------------- per device


def _measure_rapl(window_s: float, powercap: Path | None = None) -> tuple[float, float] | None:
    """(idle W, busy W) of the CPU package from RAPL, or None where it is not readable."""
    import torch

    from hwpart.devices.cpu import Rapl

    rapl = Rapl(powercap) if powercap is not None else Rapl()
    if not rapl.ok:
        return None
    rapl.sample()
    time.sleep(window_s)
    idle, _ = rapl.sample()
    a = torch.randn(512, 512)
    end = time.perf_counter() + window_s
    while time.perf_counter() < end:
        a @ a
    busy, _ = rapl.sample()
    if idle is None or busy is None:
        return None
    return idle, max(busy, idle)


def _measure_nvml(window_s: float) -> tuple[float, float] | None:
    """(idle W, busy W) of GPU 0 from NVML's energy counter, or None without CUDA/NVML."""
    try:
        import pynvml
        import torch

        if not torch.cuda.is_available():
            return None
        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda._get_nvml_device_index(0))

        def joules() -> float:
            return pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0  # mJ

        torch.cuda.synchronize()
        e0, t0 = joules(), time.perf_counter()
        time.sleep(window_s)
        e1, t1 = joules(), time.perf_counter()
        a = torch.randn(4096, 4096, device="cuda")
        while time.perf_counter() - t1 < window_s:
            for _ in range(8):
                a @ a
            torch.cuda.synchronize()
        e2, t2 = joules(), time.perf_counter()
        idle = (e1 - e0) / (t1 - t0)
        busy = (e2 - e1) / (t2 - t1)
        return idle, max(busy, idle)
    except Exception:  # no library, no device, NVMLError_NotSupported: use the declared figure
        return None


def device_power(devices: list[str], board: Board | None = None, host: Host | None = None,
                 cpu: str = "local", measure: bool = True, window_s: float = 0.3,
                 powercap: Path | None = None) -> dict[str, PowerFigure]:
    """Power figures for the devices a problem offers, each with its kind and source.

    ``cpu``: ``local`` (this machine's CPU; on an Arm board that is the board's, priced
    from its YAML) or ``board`` (the board's Arm cores, from its ``cpu:`` section).
    ``measure=False`` skips the counters (declared/estimated figures only).
    """
    host = host or load_host()
    out: dict[str, PowerFigure] = {}
    board_cpu = cpu == "board" or (board is not None and on_board())
    if board_cpu:
        if board is None:
            raise PlanError("--cpu board needs --board: the CPU is described in the board's YAML")
        bp, bc = _board_sections(board, "cpu")
        out["cpu"] = PowerFigure("cpu", bp.board_idle_w, bc.active_w, "estimated",
                                 f"{board.name} {bc.model}, board at rest + busy cores "
                                 f"({_file(board)} power/cpu)")
    else:
        got = _measure_rapl(window_s, powercap) if measure else None
        if got is not None:
            out["cpu"] = PowerFigure("cpu", got[0], got[1] - got[0], "measured",
                                     f"RAPL package energy, {window_s:g} s idle/busy windows")
        else:
            out["cpu"] = _declared(host, "cpu")
    if "gpu" in devices:
        got = _measure_nvml(window_s) if measure else None
        if got is not None:
            out["gpu"] = PowerFigure("gpu", got[0], got[1] - got[0], "measured",
                                     f"NVML energy counter, {window_s:g} s idle/busy windows")
        else:
            out["gpu"] = _declared(host, "gpu")
    if "fpga" in devices and board is not None:
        bp = _board_sections(board, "power")[0]
        idle = bp.pl_static_w + (0.0 if board_cpu else bp.board_idle_w)
        what = "PL static" if board_cpu else "board at rest + PL static"
        out["fpga"] = PowerFigure("fpga", idle, None, "estimated",
                                  f"{board.name}: {what}, W per LUT/FF/DSP/BRAM x RM resources "
                                  f"({_file(board)} power)")
    return out


def _file(board: Board) -> str:
    return board.path.name if board.path else f"{board.name}.yaml"


def _board_sections(board: Board, need: str) -> tuple[Any, Any]:
    if board.power is None or (need == "cpu" and board.cpu is None):
        missing = "power" if board.power is None else "cpu"
        raise PlanError(f"{_file(board)}: field '{missing}': missing; the energy objective and "
                        "--cpu board need it (see docs/boards.md, Power)")
    return board.power, board.cpu


def _declared(host: Host, dev: str) -> PowerFigure:
    p = getattr(host.power, dev, None) if host.power else None
    if p is None:
        where = host.path.name if host.path else "host.yaml"
        raise PlanError(f"{where}: field 'power.{dev}': missing, and no counter reads the "
                        f"{dev}'s power here; declare idle_w/active_w (docs/boards.md)")
    return PowerFigure(dev, p.idle_w, p.active_w - p.idle_w, "declared", p.source)


# --------------------------------------------------------------------------- the problem


def fpga_node_resources(table: Any, overlay: Any = None) -> dict[str, dict[str, float]]:
    """Resources per layer on the fabric: the overlay's RMs (spread over their layers,
    which move together) or the cost table's per-layer estimate."""
    if overlay is not None:
        out: dict[str, dict[str, float]] = {}
        for rm in overlay.rms:
            r = rm.resources
            share = {k: float(getattr(r, k)) / len(rm.layers)
                     for k in ("lut", "ff", "dsp", "bram_18k", "uram")}
            for n in rm.layers:
                out[n] = share
        return out
    return {n: {k: float(v) for k, v in m["resources"].items()}
            for n, m in (table.fpga or {}).items() if "resources" in m}


def attach_power(problem: Problem, figures: dict[str, PowerFigure], board: Board | None = None,
                 resources: dict[str, dict[str, float]] | None = None) -> Problem:
    """Fill ``problem.idle_w``/``active_w`` from the figures (FPGA: per layer, resources x
    the board's W per primitive). Returns the problem for chaining."""
    problem.idle_w = {d: f.idle_w for d, f in figures.items()}
    dyn = board.power.dynamic_w if board is not None and board.power is not None else None
    active: dict[str, dict[str, float]] = {}
    for n in problem.order:
        active[n] = {}
        for u in problem.compute[n]:
            dev = problem.unit_by_name[u].device
            fig = figures.get(dev)
            if dev == "fpga":
                active[n][u] = dyn.watts((resources or {}).get(n, {})) if dyn else 0.0
            elif fig is not None and fig.active_w is not None:
                active[n][u] = fig.active_w
        # IO nodes take no time; they add nothing whatever the power
    problem.active_w = active
    return problem


def plan_energy(problem: Problem, assign: dict[str, str], ev: Evaluation,
                figures: dict[str, PowerFigure]) -> dict[str, dict[str, Any]]:
    """Per device of the problem: the power used, its kind and source, busy and energy per
    sample (as predicted by the plan's evaluation). Stored in ``Plan.energy``."""
    # compute time only, as the energy objective counts it (per-stage overheads and
    # transfers are inside the idle baselines, see the module docstring)
    busy: dict[str, float] = {}
    dynamic: dict[str, float] = {}
    for n in problem.order:
        u = assign[n]
        d = problem.unit_by_name[u].device
        busy[d] = busy.get(d, 0.0) + problem.compute[n][u]
    out: dict[str, dict[str, Any]] = {}
    for dev, fig in figures.items():
        e = ev.device_energy_j.get(dev)
        used = e is not None
        dynamic[dev] = (e - fig.idle_w * ev.bottleneck_s) if used else 0.0
        b = busy.get(dev, 0.0)
        active = fig.active_w if fig.active_w is not None else (dynamic[dev] / b if b > 0 else 0.0)
        out[dev] = {"used": used, "idle_w": fig.idle_w, "active_w": active, "kind": fig.kind,
                    "source": fig.source, "busy_s_per_sample": b,
                    "energy_j_per_sample": e if used else 0.0,
                    "per_layer_power": fig.active_w is None}
    return out


# --------------------------------------------------------------------------- the run


def run_energy(plan: Any, stages: list[dict[str, Any]], devices: dict[str, dict[str, Any]],
               wall_s: float, samples: int) -> dict[str, dict[str, Any]]:
    """Energy per sample per device over a run: measured where a counter read the device
    (the monitor's integrated RAPL/NVML energy), modeled otherwise (the plan's power
    figures x the run's busy time, plus idle power x the run's wall time), labelled.

    A counter measures the whole package/board, other processes and idle included, so a
    measured figure is comparable with a modeled one only roughly.
    """
    from hwpart.devices import unit_kind

    if samples <= 0:
        return {}
    figures = dict(getattr(plan, "energy", None) or {})
    by_kind: dict[str, dict[str, Any]] = {}
    for st in stages:
        kind = unit_kind(st["unit"])
        row = by_kind.setdefault(kind, {"names": set(), "busy_s": 0.0, "modeled": False})
        row["names"].add(st["device"])
        service = st.get("service_per_sample_s")  # the device's own time (the sim: modeled)
        if service is not None and st.get("samples"):
            row["busy_s"] += service * st["samples"]
            row["modeled"] |= str(st.get("service_source", "")).startswith("modeled")
        else:
            row["busy_s"] += st.get("busy_s") or 0.0
    out: dict[str, dict[str, Any]] = {}
    for kind, row in sorted(by_kind.items()):
        names = sorted(row["names"])
        summaries = [devices.get(n, {}) for n in names]
        simulated = row["modeled"] or any(s.get("modeled_busy_s") for s in summaries)
        counted = [s.get("energy_j") for s in summaries]
        if not simulated and counted and all(e is not None for e in counted):
            out[kind] = {"energy_j_per_sample": sum(counted) / samples, "label": "measured",
                         "source": f"{'/'.join(names)} energy counter over the run "
                                   "(whole device, idle included)"}
            continue
        fig = figures.get(kind) or _fallback_figure(plan, kind)
        if fig is None:
            out[kind] = {"energy_j_per_sample": None, "label": "n/a",
                         "source": "no counter and no power figure"}
            continue
        joules = row["busy_s"] * fig["active_w"] + fig["idle_w"] * wall_s
        what = "modeled busy" if simulated else "measured busy"
        out[kind] = {"energy_j_per_sample": joules / samples, "label": "modeled",
                     "source": f"{fig['kind']} power ({fig['source']}) x {what} + idle x wall"}
    return out


def _fallback_figure(plan: Any, kind: str) -> dict[str, Any] | None:
    """Declared/estimated figures when the plan carries none (a manual or --auto plan)."""
    from hwpart.boards import load_board

    try:
        board = load_board(plan.board) if getattr(plan, "board", None) else None
        fig = device_power([kind], board, measure=False).get(kind)
    except Exception:  # a board or host without power sections: say n/a, not crash the run
        return None
    if fig is None:
        return None
    active = fig.active_w if fig.active_w is not None else 0.0
    return {**asdict(fig), "active_w": active}


def print_run_energy(energy: dict[str, dict[str, Any]] | None, console: Any) -> None:
    """The run summary's energy table (one line per device kind)."""
    from rich.table import Table

    from hwpart.monitor import fmt_num

    if not energy:
        return
    t = Table(title="energy per sample (measured where a counter exists, else modeled)")
    for col in ("device", "energy / sample", "label", "from"):
        t.add_column(col, justify="right" if col == "energy / sample" else "left")
    for kind, row in energy.items():
        e = row["energy_j_per_sample"]
        t.add_row(kind, "n/a" if e is None else fmt_num(e, "J", 3) if e >= 1 else
                  f"{e * 1e3:.4g} mJ", row["label"], row["source"])
    console.print(t)
