"""The board's DDR as one numpy array, with a physical-address allocator.

Why one array: ``pynq.allocate`` buffers are then numpy *views* of the same
memory the DMA model reads and writes, exactly as on a Zynq where the buffer is
CMA memory the PL masters by physical address. The host sees what the DMA
wrote with no copy, and a DMA pointed at a wrong address reads wrong data
instead of failing in some Python-specific way.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

import numpy as np

#: Where the PS DDR window starts on a Zynq-7000 as seen by the PL (HP ports).
DEFAULT_BASE = 0x1000_0000
ALIGN = 64  # cache line; SG descriptors must be 64-byte aligned (PG021)


class DecodeError(Exception):
    """An access outside the DDR window (what raises DMADecErr on a real DMA)."""


@dataclass
class Region:
    addr: int
    size: int


class DDR:
    """``size`` bytes at physical ``base``; first-fit allocation, freed by the buffer's owner."""

    def __init__(self, size: int, base: int = DEFAULT_BASE) -> None:
        self.base = base
        self.size = size
        self.mem = np.zeros(size, dtype=np.uint8)
        self._free: list[Region] = [Region(base, size)]  # sorted by address
        self._used: dict[int, int] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ allocation

    def alloc(self, nbytes: int, align: int = ALIGN) -> int:
        """A physical address of ``nbytes`` (rounded up to ``align``); MemoryError when full."""
        need = max(align, -(-nbytes // align) * align)
        with self._lock:
            for i, r in enumerate(self._free):
                start = -(-r.addr // align) * align
                pad = start - r.addr
                if r.size - pad >= need:
                    rest = []
                    if pad:
                        rest.append(Region(r.addr, pad))
                    if r.size - pad > need:
                        rest.append(Region(start + need, r.size - pad - need))
                    self._free[i:i + 1] = rest
                    self._used[start] = need
                    return start
        raise MemoryError(f"simulated DDR full: {nbytes} bytes requested, "
                          f"{self.free_bytes} free in {len(self._free)} pieces")

    def free(self, addr: int) -> None:
        with self._lock:
            size = self._used.pop(addr, None)
            if size is None:
                return
            keys = [r.addr for r in self._free]
            i = bisect.bisect(keys, addr)
            self._free.insert(i, Region(addr, size))
            # merge with neighbours so the space does not fragment for ever
            merged: list[Region] = []
            for r in self._free:
                if merged and merged[-1].addr + merged[-1].size == r.addr:
                    merged[-1].size += r.size
                else:
                    merged.append(r)
            self._free = merged

    @property
    def used_bytes(self) -> int:
        with self._lock:
            return sum(self._used.values())

    @property
    def free_bytes(self) -> int:
        return self.size - self.used_bytes

    # ------------------------------------------------------------------ access

    def _offset(self, addr: int, nbytes: int) -> int:
        off = addr - self.base
        if off < 0 or off + nbytes > self.size or nbytes < 0:
            raise DecodeError(f"address 0x{addr:x}+{nbytes} is outside DDR "
                              f"0x{self.base:x}..0x{self.base + self.size:x}")
        return off

    def view(self, addr: int, nbytes: int) -> np.ndarray:
        off = self._offset(addr, nbytes)
        return self.mem[off:off + nbytes]

    def read(self, addr: int, nbytes: int) -> np.ndarray:
        return self.view(addr, nbytes).copy()

    def write(self, addr: int, data: np.ndarray | bytes) -> None:
        b = np.frombuffer(bytes(data), np.uint8) if isinstance(data, bytes) else \
            np.asarray(data).view(np.uint8).reshape(-1)
        self.view(addr, b.size)[:] = b

    def words(self, addr: int, count: int) -> np.ndarray:
        """``count`` little-endian u32 words at ``addr`` (a view: writes go to DDR)."""
        return self.view(addr, 4 * count).view("<u4")
