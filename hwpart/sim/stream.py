"""Whole packets moving between the queues of a simulated fabric, on the modeled timeline.

One routine for every simulated design -- the hwpart shell
(:mod:`hwpart.sim.board`) and an hls4ml accelerator's static path
(:mod:`hwpart.sim.accel`) -- so back-pressure means the same in both: a packet
that its next hop refuses waits at the head of its queue, and so does every
packet behind it; they move at the host time of the change that frees them
(``held``), otherwise at their own modeled time, so host scheduling never
leaks into the modeled timeline.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence

from hwpart.sim.dma import Packet


def propagate(queues: Sequence[deque[Packet]], take: Callable[[int, Packet, float], bool],
              now: float) -> None:
    """Move every packet that can move. ``take(q, pkt, t)`` offers the head of queue ``q``
    to its next hop at modeled time ``t`` and says whether it was taken; taken packets
    are popped and their ``on_accept`` called. Repeats until nothing moves."""
    moved = True
    while moved:
        moved = False
        for i, q in enumerate(queues):
            while q:
                pkt = q[0]
                t_acc = max(pkt.ready_s, now) if pkt.held else pkt.ready_s
                if not take(i, pkt, t_acc):
                    for p in q:
                        p.held = True
                    break
                q.popleft()
                if pkt.on_accept is not None:
                    pkt.on_accept(t_acc)
                moved = True
