"""One timing model of an FPGA stage, for the planner, the simulated board and the reports.

Why one module: the partitioner predicts, the simulated board paces its DMA
completions, and the run report compares the two. If each priced a stage its
own way, the re-allocator would decide on the difference between two models
instead of on the hardware. Every function here is *modeled* (board figures
from ``boards/*.yaml``, RM cycles from the overlay manifest); callers label
them so.

How the hwpart shell moves a batch through an FPGA stage (``hls/``, ``sim/``):

* one DMA round trip per stage: MM2S sends the batch, the AXI4-Stream switch
  chains the stage's slots (consecutive FPGA slots of a plan are one stage),
  S2MM receives the result;
* the bytes that cross are the RM's packed ``ap_fixed`` stream words
  (:class:`hwpart.sim.fixed.StreamLayout`), not float32;
* each DMA transfer pays the board's per-transfer latency plus bytes over its
  bandwidth (:meth:`hwpart.boards.Link.transfer_s`);
* store-and-forward: a packet moves on when its last beat has arrived, so a
  stage is ``dma_in + sum(RM) + dma_out``, with an RM's batch time
  ``(latency + (n - 1) * II) / f_PL``;
* one DMA engine serves every slot, and the switch routes one chain at a time,
  so all FPGA stages of a plan share one resource: the engine is held from the
  MM2S start to the S2MM end (:data:`FPGA_RESOURCE` in the partitioner);
* a PR swap costs the partial's bytes over the configuration port, at load for
  every RM the plan places, and per batch when a plan needs more RMs than slots.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwpart.boards import Board

#: Name of the shared FPGA resource (DMA engine + switch + slots) in plans and reports.
FPGA_RESOURCE = "fpga"


@dataclass(frozen=True)
class RmTiming:
    """What the timing model needs of one RM: its cycles and its packed stream bytes."""

    name: str
    latency_cycles: float
    ii_cycles: float
    in_bytes: int  # per sample into the RM, packed stream words
    out_bytes: int  # per sample out of it

    def cycles(self, samples: int) -> float:
        return 0.0 if samples <= 0 else self.latency_cycles + (samples - 1) * self.ii_cycles

    @classmethod
    def of_spec(cls, spec: Any, word_bits: int) -> RmTiming:
        """From a :class:`hwpart.sim.rm.RmSpec` (what the board and the device hold)."""
        return cls(spec.name, float(spec.latency_cycles), float(spec.ii_cycles),
                   spec.layout_in(word_bits).sample_bytes, spec.layout_out(word_bits).sample_bytes)

    @classmethod
    def of_manifest(cls, rm: Any, word_bits: int) -> RmTiming:
        """From an overlay manifest's RM (what the planner reads)."""
        return cls(rm.name, float(rm.cycles.latency), float(max(1, rm.cycles.ii)),
                   rm.stream.in_words * word_bits // 8, rm.stream.out_words * word_bits // 8)


@dataclass(frozen=True)
class StageTime:
    """Modeled time of one batch through one FPGA stage (a chain of slots)."""

    samples: int
    dma_in_s: float
    rm_s: tuple[float, ...]
    dma_out_s: float
    pr_s: float = 0.0  # swaps this batch has to wait for

    @property
    def total_s(self) -> float:
        return self.dma_in_s + sum(self.rm_s) + self.dma_out_s + self.pr_s

    @property
    def per_sample_s(self) -> float:
        return self.total_s / self.samples if self.samples else 0.0


def dma_s(board: Board, nbytes: int) -> float:
    """One DMA transfer of ``nbytes``: the per-transfer latency plus bytes over bandwidth."""
    return board.dma.link.transfer_s(int(nbytes))


def rm_s(board: Board, cycles: float) -> float:
    """RM cycles at the board's fabric clock (the RM runs on FCLK0, whatever it was built for)."""
    return cycles / (board.clocks.pl_mhz * 1e6)


def pr_s(board: Board, nbytes: int | None = None) -> float:
    """One partial reconfiguration: ``nbytes`` (default: the board's slot partial) over the
    configuration port."""
    return board.swap_s() if nbytes is None else board.config_port.load_s(int(nbytes))


def stage_time(board: Board, chain: Sequence[RmTiming], samples: int,
               swaps: int = 0) -> StageTime:
    """A batch of ``samples`` through ``chain`` (RMs in stream order), store-and-forward."""
    if not chain:
        raise ValueError("an FPGA stage needs at least one RM")
    return StageTime(samples, dma_s(board, samples * chain[0].in_bytes),
                     tuple(rm_s(board, r.cycles(samples)) for r in chain),
                     dma_s(board, samples * chain[-1].out_bytes), swaps * pr_s(board))


def swaps_needed(slot_rms: dict[int, list[str]]) -> tuple[int, int]:
    """(PR swaps at load, PR swaps per batch) when slot ``k`` must hold the RMs
    ``slot_rms[k]`` (in the order the plan's stages use them).

    At load every RM is swapped in once. A slot that two stages share (a plan that
    needs more RMs than slots) is reconfigured for each stage on every batch: each
    batch visits the stages in order, so the slot always holds the wrong one.
    """
    at_load = sum(len(set(r)) for r in slot_rms.values())
    per_batch = sum(len(r) for r in slot_rms.values() if len(set(r)) > 1)
    return at_load, per_batch


def rm_chain(groups: Sequence[Sequence[str]], nodes: Sequence[str]) -> list[int] | None:
    """Indices of the RM groups that, in order, are exactly ``nodes`` (one RM or a chain
    through the switch), longest match first; None when no chain of them fits."""
    chain: list[int] = []
    pos = 0
    while pos < len(nodes):
        fits = [i for i, g in enumerate(groups) if list(g) == list(nodes[pos:pos + len(g)])]
        if not fits:
            return None
        best = max(fits, key=lambda i: len(groups[i]))
        chain.append(best)
        pos += len(groups[best])
    return chain


def chain_slots(slots: Sequence[int], count: int, total: int) -> list[int]:
    """The slots a chain of ``count`` RMs goes into: ``slots`` when it names one per RM,
    else consecutive slots from the first one given (wrapping round the shell's ``total``)."""
    if len(slots) == count:
        return list(slots)
    return [(slots[0] + i) % total for i in range(count)]


# --------------------------------------------------------------------------- measured figures


@dataclass(frozen=True)
class NetLink:
    """The host <-> board-agent link, as measured (``hwpart board check``/the host).

    A remote FPGA stage is one request and one reply per batch (the board agent,
    :mod:`hwpart.board`), each stored in full before it moves on: the request
    crosses the network, then the DMA; the reply the DMA, then the network. So
    per direction the two are in series: half the round trip plus bytes over
    the network's bandwidth, then the DMA's own latency plus bytes over its.
    """

    rtt_s: float
    bandwidth_Bps: float

    def __post_init__(self) -> None:
        if not (self.rtt_s >= 0 and self.bandwidth_Bps > 0):
            raise ValueError(f"a link needs rtt_s >= 0 and bandwidth_Bps > 0, got {self}")


def remote_board(board: Board, net: NetLink) -> Board:
    """``board`` as a host across ``net`` sees it: the DMA figures of each direction become
    the network and the DMA in series (see :class:`NetLink`), so every function here --
    and the partitioner's host <-> FPGA link -- prices the network crossing with them."""
    dma = board.dma
    bw = 1.0 / (1.0 / (dma.bandwidth_mb_s * 1e6) + 1.0 / net.bandwidth_Bps)
    return replace(board, dma=replace(dma, bandwidth_mb_s=bw / 1e6,
                                      latency_us=dma.latency_us + net.rtt_s / 2 * 1e6))


def with_measured(board: Board, measured: dict[str, Any],
                  remote: bool = False) -> tuple[Board, list[str]]:
    """``board`` with the figures ``hwpart board check`` measured (the sections of
    ``BUNDLE/measured.json``, :func:`hwpart.board.measured.load_measured`) in place of the
    YAML's estimates, and notes saying which figures changed and where they came from (a
    check on the simulated board measures the *model*, and is labelled so).

    ``remote``: the FPGA is driven through the board agent, so the measured host <-> agent
    link is priced too (:func:`remote_board`); a remote plan with no measured link would
    price the network crossing as free, so that raises ``ValueError`` instead.
    """
    notes: list[str] = []

    def section(name: str) -> tuple[dict[str, Any], str]:
        s = measured.get(name) or {}
        data = s.get("data") if isinstance(s.get("data"), dict) else {}
        sim = " on the simulated board (modeled, not a board measurement)" if s.get(
            "simulated") else ""
        return data, f"{s.get('source', 'hwpart board check')}{sim}, {s.get('utc', '')}".rstrip(", ")

    dma, src = section("dma")
    if dma.get("bandwidth_Bps") and dma.get("latency_s") is not None:
        board = replace(board, dma=replace(board.dma,
                                           bandwidth_mb_s=float(dma["bandwidth_Bps"]) / 1e6,
                                           latency_us=float(dma["latency_s"]) * 1e6))
        notes.append(f"DMA {float(dma['bandwidth_Bps']) / 1e6:.0f} MB/s, "
                     f"{float(dma['latency_s']) * 1e6:.1f} us per transfer: {src}")
    pr, src = section("pr")
    if pr.get("config_port_Bps"):
        port = float(pr["config_port_Bps"])
        board = replace(board, config_port=replace(board.config_port,
                                                   throughput_mb_s=port / 1e6))
        notes.append(f"config port {port / 1e6:.0f} MB/s: {src}")
    if remote:
        link, src = section("link")
        if not (link.get("bandwidth_Bps") and link.get("rtt_s") is not None):
            raise ValueError("no measured host <-> board link")
        net = NetLink(float(link["rtt_s"]), float(link["bandwidth_Bps"]))
        board = remote_board(board, net)
        notes.append(f"link {net.bandwidth_Bps / 1e6:.0f} MB/s, round trip "
                     f"{net.rtt_s * 1e6:.0f} us: {src}")
    return board, notes
