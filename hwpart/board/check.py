"""``hwpart board check BUNDLE``: measure the board, and write the figures into the bundle.

Run on the board (or on the host against a running agent, ``--remote``), it
reports, in order:

1. the PYNQ version, and whether the shell loads (sha256-checked, then
   ``Overlay``), with its time;
2. the DMA alone: loopbacks (MM2S routed by the switch straight into S2MM) of
   several sizes, fitted to the shell's model of a round trip -- per direction
   a fixed latency plus bytes over bandwidth, store-and-forward, so a loopback
   of ``B`` bytes takes ``2 * (latency + B / bandwidth)``;
3. each slot: an RM swapped in and batches of several sizes streamed through
   it (latency per batch and samples per second);
4. each partial's PR swap (decouple, ``pr_download``, reset, identity check),
   with its time, and the configuration port's throughput (partial bytes over
   swap time);
5. with ``--remote``: the host <-> agent link (round trip and bandwidth).

It writes the sections ``dma``, ``slots``, ``pr`` (and ``link``) of
``BUNDLE/measured.json`` (:mod:`hwpart.board.measured`), each with its source;
from then on the planner prices with them instead of the board file's
estimates. On the simulated board (``--sim``) every figure is the board's
*modeled* timeline, and is labelled so (``simulated: true``): a check there
tests the method, it measures no hardware.

Each figure is the median of ``--repeats`` runs of the board's own service
time (the driver's: measured with ``perf_counter`` on a board, modeled on the
simulated one), so lock waits and the network stay out of it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path
from typing import Any

import numpy as np

from hwpart.board.measured import update_measured
from hwpart.errors import HwpartError

#: loopback sizes (bytes), from one word up; capped at a remote agent's message limit
LOOPBACK_BYTES = (64, 4096, 65536, 262144, 1048576)
BATCHES = (1, 64, 256)


def fit_round_trip(points: list[tuple[int, float]]) -> tuple[float, float]:
    """(latency_s, bandwidth_Bps) per direction from loopback (bytes, round trip s) points:
    least squares of ``t = 2 * latency + 2 * bytes / bandwidth``."""
    xs = np.array([p[0] for p in points], dtype=float)
    ys = np.array([p[1] for p in points], dtype=float)
    if len(set(xs)) < 2:
        raise HwpartError("a DMA fit needs loopbacks of at least two sizes")
    slope, icept = np.polyfit(xs, ys, 1)
    if not slope > 0:
        raise HwpartError(f"loopback times did not grow with size ({points}); the DMA's "
                          "bandwidth cannot be fitted (is the board busy?)")
    return max(0.0, float(icept) / 2), 2.0 / float(slope)


def _median_run(driver: Any, rms: list[str], slots: list[int], words: np.ndarray,
                repeats: int) -> float:
    driver.run(rms, slots, words)  # warm: buffers, route, RM in place
    return statistics.median(driver.run(rms, slots, words)[1].service_s for _ in range(repeats))


def measure(driver: Any, repeats: int = 5, batches: tuple[int, ...] = BATCHES,
            loopback_bytes: tuple[int, ...] = LOOPBACK_BYTES,
            limit_bytes: int | None = None, log: Any = print) -> dict[str, Any]:
    """Every figure of the module docstring, on an open ``driver`` (a
    :class:`~hwpart.board.shell.ShellDriver` or a
    :class:`~hwpart.board.client.AgentClient`)."""
    m = driver.manifest
    rng = np.random.default_rng(0)
    word = driver.word_bits // 8
    cap = limit_bytes or max(loopback_bytes)
    sizes = sorted({max(word, (min(b, cap) // word) * word) for b in loopback_bytes})
    points = []
    for b in sizes:
        words = rng.integers(0, 256, b, dtype=np.uint8)
        out, _ = driver.run([], [], words)
        if not np.array_equal(out, words):
            raise HwpartError(f"DMA loopback of {b} bytes came back changed: the switch or the "
                              "DMA is not working")
        points.append((b, _median_run(driver, [], [], words, repeats)))
    latency, bw = fit_round_trip(points)
    log(f"DMA loopback: {latency * 1e6:.1f} us per transfer, {bw / 1e6:.0f} MB/s per direction "
        f"(fit of {len(points)} sizes, {sizes[0]}..{sizes[-1]} B)")
    dma = {"latency_s": latency, "bandwidth_Bps": bw,
           "points": [{"bytes": b, "round_trip_s": t} for b, t in points]}

    runs = []
    for k in range(m.slots):
        rm = next((r for r in m.rms if k in r.partials), None)
        if rm is None:
            log(f"slot {k}: no RM of the bundle has a partial for it; skipped")
            continue
        driver.ensure(k, rm.name)
        for n in batches:
            if limit_bytes and n * max(rm.in_bytes, rm.out_bytes) > limit_bytes:
                continue
            words = rng.integers(0, 256, n * rm.in_bytes, dtype=np.uint8)
            t = _median_run(driver, [rm.name], [k], words, repeats)
            runs.append({"slot": k, "rm": rm.name, "batch": n, "latency_s": t,
                         "throughput_sps": n / t if t > 0 else None})
            log(f"slot {k} ({rm.name}), batch {n}: {t * 1e6:.1f} us, {n / t:.0f} samples/s")

    swap_s: dict[str, float] = {}
    rates = []
    for rm in m.rms:
        for k in sorted(rm.partials):
            t = driver.swap(k, rm.name)
            swap_s[f"{rm.name}@{k}"] = t
            nbytes = int(getattr(driver, "last_pr_bytes", 0) or 0)
            if t > 0 and nbytes:
                rates.append(nbytes / t)
            log(f"PR swap {rm.name} -> slot {k}: {t * 1e3:.2f} ms ({nbytes} B)")
    pr: dict[str, Any] = {"swap_s": swap_s}
    if rates:
        pr["config_port_Bps"] = statistics.median(rates)
        log(f"configuration port: {pr['config_port_Bps'] / 1e6:.0f} MB/s")
    return {"dma": dma, "slots": runs, "pr": pr}


def record(bundle: Path | str, figures: dict[str, Any], source: str, simulated: bool) -> Path:
    """Write the sections ``measure`` returned into ``bundle``'s measured.json."""
    out = Path(bundle)
    for section in ("dma", "slots", "pr"):
        out = update_measured(bundle, section, figures[section], source, simulated)
    return out


# --------------------------------------------------------------------------- command


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bundle", help="the overlay bundle (with board.json); measured.json is "
                                  "written into it")
    p.add_argument("--sim", action="store_true",
                   help="check the simulated board (host only): modeled figures, labelled so")
    p.add_argument("--remote", metavar="remote://HOST:PORT",
                   help="check the board behind a running agent, from the host (also measures "
                        "the link)")
    p.add_argument("--key", help="with --remote: the host's client.key_secret")
    p.add_argument("--server-key", help="with --remote: the agent's public key")
    p.add_argument("--repeats", type=int, default=5, help="runs per figure (median)")
    p.add_argument("--batches", default=",".join(map(str, BATCHES)),
                   help="batch sizes through each slot (default %(default)s)")
    p.add_argument("--no-write", action="store_true", help="report only")
    p.add_argument("--cost-input", help="the model's layers (cost_input.npz from `hwpart deploy "
                                        "--model`): time each on this CPU with numpy and write "
                                        "the board_cpu section (hwpart.board.cpucost)")


def run(args: argparse.Namespace) -> int:
    from hwpart.board.agent import open_bundle, pynq_version

    batches = tuple(int(b) for b in str(args.batches).split(",") if b.strip())
    if getattr(args, "cost_input", None) and args.remote:
        raise HwpartError("--cost-input times the CPU it runs on: run board check on the board "
                          "for it, not with --remote from the host")
    if args.remote:
        from hwpart.board.client import AgentClient

        if not args.key:
            raise HwpartError("--remote needs --key (the host's client.key_secret)")
        driver: Any = AgentClient(args.remote, args.key, args.server_key, timeout_s=60)
        info = driver.hello()
        simulated = driver.simulated
        where = f"PYNQ {info.get('pynq')} behind agent {driver.endpoint}"
        limit = driver.max_bytes
    else:
        m = open_bundle(Path(args.bundle), args.sim)
        board = None
        if args.sim:  # paced: unpaced, the next batch would queue behind the last's modeled
            from hwpart.sim.board import install  # completion, and time that queueing

            board = install(m.board, pace=True)
        from hwpart.board.shell import ShellDriver

        driver = ShellDriver(m, device=board, model=board)
        simulated, limit = args.sim, None
        where = f"PYNQ {pynq_version()}" + (" (simulated board)" if args.sim else "")
    print(f"hwpart board check: {where}, Python {platform.python_version()}")
    try:
        took = driver.open()
    except HwpartError as exc:
        print(f"shell: does NOT load: {exc}")
        return 2
    m = driver.manifest
    print(f"shell: loads ({m.name}, {m.slots} slots, {driver.word_bits}-bit DMA"
          f"{', scatter-gather' if driver.sg else ''}) in {took:.2f} s")
    label = " -- MODELED by the simulated board, not measured on hardware" if simulated else ""
    if label:
        print(f"figures below{label}")
    figures = measure(driver, args.repeats, batches, limit_bytes=limit)
    source = (f"hwpart board check on {m.board} ({where})"
              f"{' via the host' if args.remote else ''}")
    if not args.no_write:
        out = record(args.bundle, figures, source, simulated)
        print(f"written: {out} (sections dma, slots, pr{'; modeled' if simulated else ''})")
    if args.remote:
        from hwpart.board.link import measure_and_record

        fig = measure_and_record(driver, None if args.no_write else args.bundle)
        print(f"link to {driver.endpoint}: round trip {fig['rtt_s'] * 1e6:.0f} us, "
              f"{fig['bandwidth_Bps'] / 1e6:.0f} MB/s (measured)")
        driver.close()
    if getattr(args, "cost_input", None):
        from hwpart.board import cpucost

        cpu = cpucost.measure(args.bundle, args.cost_input, board=None if not args.sim else
                              f"the host of a simulated {m.board}", write=not args.no_write)
        print(cpucost.report(cpu))
    return 0
