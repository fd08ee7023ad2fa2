"""Communication between pipeline stages: bounded channels, micro-batches, ordering, routing.

Every item carries its sequence number from the source to the sink, which is
what lets the sink check completeness and order, and lets the routing table
switch a stage to another device at an exact item (the re-allocator's
"new sequence numbers take the new route while the old route drains").

Channels are bounded so a slow stage slows the source instead of growing a
queue: memory is at most ``capacity`` items per channel plus one item in hand
per thread. Each channel has two ways to end: ``close()`` (no more items; the
reader drains what is queued, then sees :class:`ChannelClosed`) and ``abort()``
(poison: queued items are dropped and every blocked reader *and writer* wakes
with :class:`ChannelClosed`). Aborting every channel therefore stops a pipeline
without a hang whatever each thread was blocked on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from hwpart.errors import HwpartError


class ChannelClosed(Exception):
    """The channel was closed (and drained) or aborted; the thread should stop."""


class SequenceError(HwpartError):
    """Items reached the sink duplicated or with gaps: a pipeline bug or a lost item."""


class RoutingError(HwpartError):
    """A route swap that would re-route items already routed."""


@dataclass(slots=True)
class Item:
    """One micro-batch in flight: its number, the payload, when it entered, how many samples."""

    seq: int
    payload: Any
    t0: float = 0.0  # time.perf_counter() at the source, for end-to-end latency
    samples: int = 1


class Channel:
    """A bounded FIFO between two threads, with close and abort (poison) semantics."""

    def __init__(self, capacity: int, name: str = "") -> None:
        if capacity < 1:
            raise ValueError(f"channel capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.name = name
        self._q: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self.closed = False
        self.aborted = False
        self.high_water = 0  # the most items ever queued at once (the boundedness evidence)
        self.puts = 0
        self.blocked_puts = 0  # puts that had to wait for room: backpressure reached the writer

    def __len__(self) -> int:
        return len(self._q)

    @property
    def depth(self) -> int:
        return len(self._q)

    def put(self, item: Any, timeout: float | None = None) -> None:
        """Append, blocking while full; raises ChannelClosed once closed/aborted, TimeoutError."""
        with self._not_full:
            if len(self._q) >= self.capacity and not self.closed:
                self.blocked_puts += 1
                deadline = None if timeout is None else time.monotonic() + timeout
                while len(self._q) >= self.capacity and not self.closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"channel {self.name!r} full for {timeout}s")
                    self._not_full.wait(left)
            if self.closed:
                raise ChannelClosed(self.name)
            self._q.append(item)
            self.puts += 1
            if len(self._q) > self.high_water:
                self.high_water = len(self._q)
            self._not_empty.notify()

    def get(self, timeout: float | None = None) -> Any:
        """Pop the oldest item, blocking while empty; ChannelClosed at the end, TimeoutError."""
        with self._not_empty:
            if not self._q and not self.closed:
                deadline = None if timeout is None else time.monotonic() + timeout
                while not self._q and not self.closed:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise TimeoutError(f"channel {self.name!r} empty for {timeout}s")
                    self._not_empty.wait(left)
            if not self._q:  # closed and drained, or aborted
                raise ChannelClosed(self.name)
            item = self._q.popleft()
            self._not_full.notify()
            return item

    def close(self) -> None:
        """No more items: the reader drains what is queued and then sees ChannelClosed."""
        with self._lock:
            self.closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def abort(self) -> None:
        """Poison: drop queued items and wake every blocked reader and writer."""
        with self._lock:
            self.closed = self.aborted = True
            self._q.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()


# --------------------------------------------------------------------------- source


def micro_batches(inputs: Sequence[torch.Tensor], batch: int) -> Iterator[Item]:
    """Split tensors along dim 0 into items of ``batch`` samples (the last may be short).

    Slices are views (no copy). Items are numbered 0, 1, 2, ... and stamped when
    they are handed out (lazily, one at a time), so an item's end-to-end latency
    includes its wait for room in the first channel: the queueing a caller sees.
    """
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not inputs:
        raise ValueError("micro_batches needs at least one input tensor")
    n = int(inputs[0].shape[0])
    for t in inputs[1:]:
        if int(t.shape[0]) != n:
            raise ValueError(f"inputs disagree on the sample count: {n} vs {int(t.shape[0])}")
    # views made a chunk at a time by one ``split`` call (one C++ loop, not a Python
    # slice per input per batch), in chunks so a long input holds few views at once
    chunk = batch * 256
    seq = 0
    perf = time.perf_counter
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        for payload in zip(*(t[start:stop].split(batch) for t in inputs), strict=True):
            yield Item(seq, payload, perf(), min(batch, n - seq * batch))
            seq += 1


def number(payloads: Iterable[Any], samples: int = 1) -> Iterator[Item]:
    """Number arbitrary payloads (synthetic sources, tests)."""
    for seq, p in enumerate(payloads):
        yield Item(seq, p, time.perf_counter(), samples)


# --------------------------------------------------------------------------- sink


@dataclass
class OrderedCollector:
    """Reassembles items by sequence number; a duplicate or a gap is an error, never silent.

    Items may arrive out of order (several routes for one stage during a
    migration); they are released strictly in order. ``pending`` holds only the
    items ahead of a missing one, so it is bounded by the pipeline's in-flight count.
    """

    start: int = 0
    next_seq: int = field(init=False)
    pending: dict[int, Item] = field(default_factory=dict, init=False)
    released: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.next_seq = self.start

    def add(self, item: Item) -> Sequence[Item]:
        """Accept one item; returns the items now releasable, in order."""
        seq = item.seq
        if seq == self.next_seq and not self.pending:  # in order: the usual case, cheaply
            self.next_seq = seq + 1
            self.released += 1
            return (item,)
        if seq < self.next_seq or seq in self.pending:
            raise SequenceError(f"item {seq} arrived twice at the sink")
        if seq != self.next_seq:
            self.pending[seq] = item
            return []
        out = [item]
        self.next_seq += 1
        while self.next_seq in self.pending:
            out.append(self.pending.pop(self.next_seq))
            self.next_seq += 1
        self.released += len(out)
        return out

    def finish(self, expected: int | None = None) -> None:
        """At the end of the stream: every item from ``start`` up to ``expected`` arrived."""
        if self.pending:
            missing = [s for s in range(self.next_seq, max(self.pending)) if s not in self.pending]
            raise SequenceError(f"items missing at the sink: {_ranges(missing)} "
                                f"({len(self.pending)} later items held back)")
        if expected is not None and self.next_seq != self.start + expected:
            raise SequenceError(f"sink got {self.next_seq - self.start} items, expected {expected}"
                                f" (missing {_ranges(range(self.next_seq, self.start + expected))})")


def _ranges(seqs: Iterable[int], limit: int = 5) -> str:
    seqs = sorted(seqs)
    runs: list[str] = []
    i = 0
    while i < len(seqs) and len(runs) < limit:
        j = i
        while j + 1 < len(seqs) and seqs[j + 1] == seqs[j] + 1:
            j += 1
        runs.append(str(seqs[i]) if i == j else f"{seqs[i]}-{seqs[j]}")
        i = j + 1
    return ", ".join(runs) + (", ..." if i < len(seqs) else "")


# --------------------------------------------------------------------------- routing


@dataclass(frozen=True)
class RouteVersion:
    boundary: int  # the first sequence number that uses these routes
    version: int
    routes: Mapping[str, Any]


class RoutingTable:
    """Stage -> route (device + loaded handle), versioned by sequence number.

    ``swap_at(b, routes)`` makes every item with ``seq >= b`` use the new routes
    and every earlier item keep the old ones, in every stage. That is only
    possible while no stage has looked up an item ``>= b`` yet, so the table
    remembers the highest sequence number looked up and refuses a boundary at
    or below it; ``swap_next`` picks the first safe boundary for you.
    """

    def __init__(self, routes: Mapping[str, Any]) -> None:
        self._lock = threading.Lock()
        self._versions: list[RouteVersion] = [RouteVersion(0, 1, dict(routes))]
        self.highest_seen = -1

    @property
    def version(self) -> int:
        return self._versions[-1].version

    @property
    def current(self) -> Mapping[str, Any]:
        return self._versions[-1].routes

    @property
    def depth(self) -> int:
        """How many versions are kept (1 when no swap is pending or draining)."""
        return len(self._versions)

    def versions(self) -> list[RouteVersion]:
        with self._lock:
            return list(self._versions)

    def lookup(self, seq: int) -> Mapping[str, Any]:
        """The routes item ``seq`` must use (all its stages get the same version)."""
        with self._lock:
            if seq > self.highest_seen:
                self.highest_seen = seq
            for v in reversed(self._versions):
                if v.boundary <= seq:
                    return v.routes
        raise RoutingError(f"item {seq} predates every routing version kept (pruned too early)")

    def swap_at(self, boundary: int, routes: Mapping[str, Any]) -> int:
        """New routes from ``boundary`` on; returns the new version number."""
        with self._lock:
            return self._swap(boundary, routes)

    def swap_next(self, routes: Mapping[str, Any]) -> tuple[int, int]:
        """Swap at the first item not yet routed anywhere; returns (boundary, version)."""
        with self._lock:
            boundary = max(self.highest_seen + 1, self._versions[-1].boundary)
            return boundary, self._swap(boundary, routes)

    def _swap(self, boundary: int, routes: Mapping[str, Any]) -> int:
        if boundary <= self.highest_seen:
            raise RoutingError(
                f"cannot re-route from item {boundary}: items up to {self.highest_seen} "
                f"are already routed; use a boundary > {self.highest_seen} or swap_next()")
        last = self._versions[-1]
        if boundary < last.boundary:
            raise RoutingError(f"boundary {boundary} precedes the current version's "
                               f"boundary {last.boundary}")
        new = RouteVersion(boundary, last.version + 1, dict(routes))
        if boundary == last.boundary:
            self._versions[-1] = new  # the previous version never took effect
        else:
            self._versions.append(new)
        return new.version

    def prune(self, done_below: int) -> list[Any]:
        """Forget versions only items ``< done_below`` could use (they have all left the
        pipeline); returns the routes no kept version uses any more (to be released)."""
        with self._lock:
            dropped: list[Any] = []
            while len(self._versions) > 1 and self._versions[1].boundary <= done_below:
                dropped.extend(self._versions.pop(0).routes.values())
            if not dropped:
                return []
            live = {id(r) for v in self._versions for r in v.routes.values()}
            out, seen = [], set()
            for r in dropped:
                if id(r) not in live and id(r) not in seen:
                    seen.add(id(r))
                    out.append(r)
            return out

    def replace(self, old: Any, new: Any) -> int:
        """Put ``new`` wherever ``old`` is routed, in every kept version: items already
        routed to a route that failed are retried on its replacement (same place in the
        sequence, so nothing is reordered). Returns how many entries changed."""
        with self._lock:
            n = 0
            for v in self._versions:
                for stage, r in list(v.routes.items()):
                    if r is old:
                        v.routes[stage] = new
                        n += 1
            return n
