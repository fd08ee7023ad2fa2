"""Channels, micro-batching, the ordered collector and the routing table, in isolation."""

from __future__ import annotations

import random
import threading
import time

import pytest
import torch

from hwpart.streams import (
    Channel,
    ChannelClosed,
    Item,
    OrderedCollector,
    RoutingError,
    RoutingTable,
    SequenceError,
    micro_batches,
    number,
)


def wait_until(cond, timeout: float = 5.0) -> bool:
    """Poll for a state another thread reaches (not a stand-in for work)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.001)
    return cond()


# --------------------------------------------------------------------------- Channel


def test_channel_is_fifo_and_bounded():
    ch = Channel(3, "c")
    for i in range(3):
        ch.put(i)
    with pytest.raises(TimeoutError):
        ch.put(3, timeout=0.05)
    assert ch.depth == 3 and ch.high_water == 3 and ch.blocked_puts == 1
    assert [ch.get() for _ in range(3)] == [0, 1, 2]
    with pytest.raises(TimeoutError):
        ch.get(timeout=0.02)


def test_close_drains_then_ends_and_refuses_puts():
    ch = Channel(4)
    ch.put("a")
    ch.put("b")
    ch.close()
    with pytest.raises(ChannelClosed):
        ch.put("c")
    assert ch.get() == "a" and ch.get() == "b"
    with pytest.raises(ChannelClosed):
        ch.get()


def test_abort_wakes_blocked_reader_and_writer():
    empty, full = Channel(1), Channel(1)
    full.put("x")
    outcome: dict[str, str] = {}

    def reader():
        try:
            empty.get()
            outcome["reader"] = "got item"
        except ChannelClosed:
            outcome["reader"] = "closed"

    def writer():
        try:
            full.put("y")
            outcome["writer"] = "put"
        except ChannelClosed:
            outcome["writer"] = "closed"

    threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
    for t in threads:
        t.start()
    assert wait_until(lambda: full.blocked_puts == 1)
    assert outcome == {}  # both really blocked
    empty.abort()
    full.abort()
    for t in threads:
        t.join(timeout=2)
        assert not t.is_alive()
    assert outcome == {"reader": "closed", "writer": "closed"}
    assert full.depth == 0  # poison drops queued items


def test_stalled_reader_blocks_writer_at_the_bound():
    """Backpressure: with nobody reading, a writer stops after `capacity` items."""
    ch = Channel(5)
    produced = []

    def producer():
        try:
            for i in range(1000):
                ch.put(i)
                produced.append(i)
        except ChannelClosed:
            pass

    t = threading.Thread(target=producer)
    t.start()
    assert wait_until(lambda: ch.blocked_puts >= 1)
    assert len(produced) == 5 and ch.depth == 5 and t.is_alive()
    assert ch.get() == 0  # one slot frees: exactly one more item goes in
    assert wait_until(lambda: len(produced) == 6 and ch.blocked_puts >= 2)
    assert ch.high_water == 5
    ch.abort()
    t.join(timeout=2)
    assert not t.is_alive()


def test_threaded_transfer_keeps_everything_in_order():
    ch = Channel(8)
    n = 20000
    got = []

    def consumer():
        while True:
            try:
                got.append(ch.get())
            except ChannelClosed:
                return

    t = threading.Thread(target=consumer)
    t.start()
    for i in range(n):
        ch.put(i)
    ch.close()
    t.join(timeout=10)
    assert got == list(range(n))
    assert ch.high_water <= 8


# --------------------------------------------------------------------------- source


def test_micro_batches_are_numbered_views():
    x = torch.arange(10 * 3).reshape(10, 3)
    y = torch.arange(10)
    items = list(micro_batches((x, y), 4))
    assert [it.seq for it in items] == [0, 1, 2]
    assert [it.samples for it in items] == [4, 4, 2]
    assert torch.equal(torch.cat([it.payload[0] for it in items]), x)
    assert torch.equal(torch.cat([it.payload[1] for it in items]), y)
    assert items[1].payload[0].data_ptr() == x[4].data_ptr()  # no copy
    assert all(a.t0 <= b.t0 for a, b in zip(items, items[1:], strict=False))


def test_micro_batches_across_many_chunks_and_a_short_tail():
    n, batch = 3 * 256 * 5 + 3, 5  # three full chunks of views, then one short batch
    x = torch.arange(n)
    items = list(micro_batches((x,), batch))
    assert [it.seq for it in items] == list(range(len(items)))
    assert [it.samples for it in items] == [5] * (3 * 256) + [3]
    assert torch.equal(torch.cat([it.payload[0] for it in items]), x)
    assert items[-1].payload[0].data_ptr() == x[n - 3:].data_ptr()  # still views


def test_micro_batches_reject_bad_input():
    with pytest.raises(ValueError, match="batch"):
        list(micro_batches((torch.zeros(4),), 0))
    with pytest.raises(ValueError, match="disagree"):
        list(micro_batches((torch.zeros(4), torch.zeros(5)), 2))


# --------------------------------------------------------------------------- sink


def test_collector_reorders():
    rng = random.Random(0)
    items = list(number(range(200)))
    rng.shuffle(items)
    col = OrderedCollector()
    out = []
    for it in items:
        out.extend(col.add(it))
    col.finish(expected=200)
    assert [it.payload for it in out] == list(range(200))
    assert not col.pending


def test_collector_rejects_duplicates_after_release_and_while_pending():
    col = OrderedCollector()
    col.add(Item(0, "a"))
    with pytest.raises(SequenceError, match="item 0 arrived twice"):
        col.add(Item(0, "a"))
    col.add(Item(5, "f"))
    with pytest.raises(SequenceError, match="item 5 arrived twice"):
        col.add(Item(5, "f"))


def test_collector_reports_gaps():
    col = OrderedCollector()
    for s in (0, 1, 3, 4, 7):
        col.add(Item(s, None))
    with pytest.raises(SequenceError, match="missing at the sink: 2, 5-6"):
        col.finish()
    col2 = OrderedCollector(start=10)
    for s in range(10, 13):
        col2.add(Item(s, None))
    with pytest.raises(SequenceError, match=r"got 3 items, expected 5 \(missing 13-14\)"):
        col2.finish(expected=5)


# --------------------------------------------------------------------------- routing


def test_swap_at_splits_exactly_at_the_boundary():
    rt = RoutingTable({"s": "old"})
    assert rt.version == 1
    assert rt.swap_at(10, {"s": "new"}) == 2
    seen = {seq: rt.lookup(seq)["s"] for seq in range(20)}
    assert all(seen[s] == "old" for s in range(10))
    assert all(seen[s] == "new" for s in range(10, 20))


def test_swap_cannot_rewrite_routed_items():
    rt = RoutingTable({"s": "old"})
    rt.lookup(0)
    rt.lookup(7)
    with pytest.raises(RoutingError, match="items up to 7"):
        rt.swap_at(7, {"s": "new"})
    boundary, version = rt.swap_next({"s": "new"})
    assert (boundary, version) == (8, 2)
    assert rt.lookup(7)["s"] == "old" and rt.lookup(8)["s"] == "new"
    with pytest.raises(RoutingError):
        rt.swap_at(5, {"s": "newer"})


def test_prune_keeps_versions_still_reachable():
    rt = RoutingTable({"s": 1})
    rt.swap_at(10, {"s": 2})
    rt.swap_at(20, {"s": 3})
    rt.prune(15)  # items < 15 are done: version 1 (seq < 10) is unreachable
    assert [v.version for v in rt.versions()] == [2, 3]
    assert rt.lookup(15)["s"] == 2 and rt.lookup(25)["s"] == 3
    with pytest.raises(RoutingError, match="pruned"):
        rt.lookup(3)


def test_concurrent_swaps_give_each_item_one_version_across_stages():
    """Three 'stage' threads look items up in order while the main thread keeps swapping."""
    rt = RoutingTable({"v": 0})
    n, stages = 3000, 3
    seen: list[list[int]] = [[] for _ in range(stages)]
    feeds = [Channel(16) for _ in range(stages + 1)]

    def stage(k: int):
        while True:
            try:
                seq = feeds[k].get()
            except ChannelClosed:
                feeds[k + 1].close()
                return
            seen[k].append(rt.lookup(seq)["v"])
            feeds[k + 1].put(seq)

    def sink():
        while True:
            try:
                feeds[-1].get()
            except ChannelClosed:
                return

    threads = [threading.Thread(target=stage, args=(k,)) for k in range(stages)]
    threads.append(threading.Thread(target=sink))
    for t in threads:
        t.start()
    boundaries = []
    for seq in range(n):
        feeds[0].put(seq)
        if seq % 97 == 0:
            boundaries.append(rt.swap_next({"v": len(boundaries) + 1})[0])
    feeds[0].close()
    for t in threads:
        t.join(timeout=10)
        assert not t.is_alive()
    assert seen[0] == seen[1] == seen[2]  # every stage used the same version per item
    assert seen[0] == sorted(seen[0])  # versions never go back
    # each swap took effect exactly at its boundary
    for v, b in enumerate(boundaries, start=1):
        if b < n:
            assert seen[0][b] >= v and (b == 0 or seen[0][b - 1] < v)
