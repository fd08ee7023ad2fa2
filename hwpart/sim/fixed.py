"""The wire format of an RM: Vivado ``ap_fixed`` words, converted in numpy.

Why here and not in the device: the host (``hwpart.devices.fpga``) encodes
floats into the RM's input type and the simulated board decodes them again, so
both sides must share one definition of the format. It is the only place that
knows how ``ap_fixed<W,I,Q,O>`` rounds and overflows.

Bit-exactness rests on one fact: hls4ml's C simulation entry point
(``<top>_float``) converts each float into the input type with the type's own
quantisation (``Q``) and overflow (``O``) modes. If the host applies the same
rule, the value the RM receives over DMA is exactly what the C simulation would
have computed from the float, and the decoded result is exactly the C
simulation's output (every ``ap_fixed`` of up to 24 bits is exact in float32).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_TYPE = re.compile(
    r"ap_(u?)fixed<\s*(\d+)\s*,\s*(-?\d+)\s*(?:,\s*(AP_\w+)\s*)?(?:,\s*(AP_\w+)\s*)?(?:,\s*\d+\s*)?>"
)
_INT = re.compile(r"ap_(u?)int<\s*(\d+)\s*>")


@dataclass(frozen=True)
class FixedType:
    """``ap_fixed<width, integer, quant, overflow>`` (signed unless ``ap_ufixed``)."""

    width: int
    integer: int
    signed: bool = True
    quant: str = "AP_TRN"
    overflow: str = "AP_WRAP"

    @property
    def frac(self) -> int:
        return self.width - self.integer

    @property
    def word_bytes(self) -> int:
        """Container on the stream: the smallest of 1/2/4 bytes that holds a word."""
        for nb in (1, 2, 4):
            if self.width <= 8 * nb:
                return nb
        raise ValueError(f"{self}: words wider than 32 bits are not supported on the stream")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(f"<{'i' if self.signed else 'u'}{self.word_bytes}")

    @property
    def lo(self) -> int:
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1

    def __str__(self) -> str:
        u = "" if self.signed else "u"
        return f"ap_{u}fixed<{self.width},{self.integer},{self.quant},{self.overflow}>"

    # ------------------------------------------------------------------ conversions

    def snap(self, x: np.ndarray, inplace: bool = False) -> np.ndarray:
        """Float -> the float64 value this type holds for it (Q and O modes applied).

        The same rule as :meth:`quantize`, kept in float where that is exact (the
        saturating modes: every result is an integer number of LSBs below 2**53), so
        the vectorised RM model's casts skip two integer conversions per layer.
        ``inplace``: ``x`` is a float64 array of the caller's own, and is overwritten
        (a layer's fresh accumulator: one pass over it fewer, and no allocation).
        """
        if self.overflow in ("AP_SAT", "AP_SAT_SYM") and self.width <= 52:
            r = self._rounded(x, saturate=True, inplace=inplace)
            r += 0.0  # -0.0 (rint of a small negative) is +0 in ap_fixed, bit for bit too
            r *= 2.0 ** -self.frac
            return r
        return self.quantize(x) * (2.0 ** -self.frac)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Float -> integer word (as int64), with this type's Q and O modes."""
        if self.overflow in ("AP_SAT", "AP_SAT_SYM"):
            return self._rounded(x, saturate=True).astype(np.int64)
        return self._wrap_or_zero(self._rounded(x, saturate=False))

    def _rounded(self, x: np.ndarray, saturate: bool, inplace: bool = False) -> np.ndarray:
        """``x`` in LSBs, rounded by the Q mode (float64, integer-valued); saturated by the
        O mode when ``saturate`` (the SAT modes), else clamped to +-2**62 for int64."""
        if inplace:
            v = x
            v *= 2.0 ** self.frac
        else:
            v = np.asarray(x, dtype=np.float64) * (2.0 ** self.frac)  # exact: a power of two
        q = self.quant
        if q == "AP_TRN":
            r = np.floor(v, out=v)
        elif q == "AP_TRN_ZERO":
            r = np.trunc(v, out=v)
        elif q == "AP_RND":  # half towards +inf
            v += 0.5
            r = np.floor(v, out=v)
        elif q == "AP_RND_MIN_INF":
            r = np.ceil(v - 0.5)
        elif q == "AP_RND_ZERO":
            r = np.sign(v) * np.ceil(np.abs(v) - 0.5)
        elif q == "AP_RND_INF":
            r = np.sign(v) * np.floor(np.abs(v) + 0.5)
        elif q == "AP_RND_CONV":  # half to even, what np.rint does
            r = np.rint(v, out=v)
        else:
            raise ValueError(f"unknown quantisation mode {q!r} in {self}")
        if not np.isfinite(r).all():  # rare: the check is 5x cheaper than the fix-up
            r = np.nan_to_num(r, nan=0.0, posinf=2.0**62, neginf=-(2.0**62))
        if saturate:  # in float, in place: np.clip's wrapper costs 2-3x more here
            lo = self.lo if self.overflow == "AP_SAT" or not self.signed else -self.hi
            hi = float(self.hi)
        else:
            lo, hi = -(2.0**62), 2.0**62
        return np.minimum(np.maximum(r, float(lo), out=r), hi, out=r)

    def _wrap_or_zero(self, rounded: np.ndarray) -> np.ndarray:
        r = rounded.astype(np.int64)
        o = self.overflow
        if o == "AP_WRAP":
            span = 1 << self.width
            r = (r - self.lo) % span + self.lo
        elif o == "AP_SAT_ZERO":
            r = np.where((r < self.lo) | (r > self.hi), 0, r)
        else:
            raise ValueError(f"unknown overflow mode {o!r} in {self}")
        return r

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Float -> stream words in their container dtype."""
        return self.quantize(x).astype(self.dtype)

    def decode(self, words: np.ndarray) -> np.ndarray:
        """Integer values -> float32 (exact for widths up to 24 bits)."""
        return (np.asarray(words).astype(np.float64) * (2.0 ** -self.frac)).astype(np.float32)

    def exact(self, y: np.ndarray) -> np.ndarray:
        """Float values that *are* this type (the C simulation's outputs) -> integers.

        Refuses values that are not on this type's grid: that would mean the
        output type was read wrongly and the stream would silently lose bits.
        """
        v = np.asarray(y, dtype=np.float64) * (2.0 ** self.frac)
        r = np.rint(v)
        if not np.array_equal(r, v) or (r.size and (r.min() < self.lo or r.max() > self.hi)):
            raise ValueError(f"values are not exactly representable as {self}")
        return r.astype(np.int64)


def parse_type(text: str) -> FixedType:
    """``ap_fixed<16,6,AP_RND_CONV,AP_SAT>`` / ``ap_ufixed<8,0>`` / ``ap_int<8>``."""
    m = _TYPE.search(text)
    if m:
        u, w, i, q, o = m.groups()
        return FixedType(int(w), int(i), signed=not u, quant=q or "AP_TRN",
                         overflow=o or "AP_WRAP")
    m = _INT.search(text)
    if m:
        u, w = m.groups()
        return FixedType(int(w), int(w), signed=not u)
    raise ValueError(f"not an ap_fixed/ap_int type: {text!r}")


def project_io_types(firmware: Path) -> tuple[FixedType, FixedType]:
    """(input, result) types of a compiled hls4ml project, read from ``defines.h``.

    Read from the generated source, not from the config, because hls4ml may
    infer a result type ('auto') that differs from the default precision.
    """
    text = (firmware / "defines.h").read_text()
    found = {}
    for name in ("input_t", "result_t"):
        m = re.search(rf"typedef\s+(.+?)\s+{name}\s*;", text)
        if not m:
            raise ValueError(f"{firmware / 'defines.h'}: no typedef for {name}")
        found[name] = parse_type(m.group(1))
    return found["input_t"], found["result_t"]


@dataclass(frozen=True)
class StreamLayout:
    """How one sample of ``count`` values travels as DMA words (``hls/rm_axis.cpp``).

    ``lanes`` values of ``type.width`` bits per ``word_bits``-bit word, value *j*
    of a word in bits ``[j*width, (j+1)*width)``; every sample starts on a new
    word (the last word of a sample is zero-padded). The manifest records the
    same figures (``stream``: lane_bits, lanes, in_words, out_words).
    """

    type: FixedType
    count: int
    word_bits: int

    @property
    def lanes(self) -> int:
        lanes = self.word_bits // self.type.width
        if lanes < 1:
            raise ValueError(f"{self.type}: {self.type.width}-bit values do not fit a "
                             f"{self.word_bits}-bit stream word")
        return lanes

    @property
    def words(self) -> int:
        return -(-self.count // self.lanes)

    @property
    def sample_bytes(self) -> int:
        return self.words * self.word_bits // 8

    def pack(self, x: np.ndarray) -> np.ndarray:
        """(N, count) floats -> bytes of N word-aligned samples (uint8, N * sample_bytes)."""
        q = self.type.quantize(np.asarray(x).reshape(-1, self.count))
        return self.pack_words(q)

    @property
    def _aligned(self) -> np.dtype | None:
        """The little-endian integer dtype whose array *is* the stream, when values fill
        whole 8/16/32-bit lanes: then lane j of a word is element j of the array, and
        packing is a cast and a view (5-10x faster than shifting lanes into words)."""
        bits = self.type.width
        if bits in (8, 16, 32) and self.word_bits % bits == 0:
            return np.dtype(f"<i{bits // 8}")
        return None

    def pack_words(self, q: np.ndarray) -> np.ndarray:
        n, w, k, bits = q.shape[0], self.words, self.lanes, self.type.width
        dt = self._aligned
        if dt is not None:
            lanes = np.zeros((n, w * k), dtype=dt)
            lanes[:, : self.count] = q  # two's complement in the lane, as the shifts give
            return lanes.view(np.uint8).reshape(-1)
        lanes = np.zeros((n, w * k), dtype=np.uint64)
        lanes[:, : self.count] = (q.astype(np.int64) & ((1 << bits) - 1)).astype(np.uint64)
        shifts = (np.arange(k, dtype=np.uint64) * np.uint64(bits))
        words = np.bitwise_or.reduce(lanes.reshape(n, w, k) << shifts, axis=2)
        return words.astype(f"<u{self.word_bits // 8}").view(np.uint8).reshape(-1)

    def unpack_words(self, data: np.ndarray, n: int) -> np.ndarray:
        """Bytes of ``n`` samples -> (n, count) integer values (sign-extended)."""
        bits, k = self.type.width, self.lanes
        dt = self._aligned
        if dt is not None:
            v = np.asarray(data[: n * self.sample_bytes]).view(dt).reshape(n, self.words * k)
            v = v[:, : self.count].astype(np.int64)
            return v if self.type.signed else v & ((1 << bits) - 1)
        words = np.asarray(data[: n * self.sample_bytes]).view(f"<u{self.word_bits // 8}")
        words = words.astype(np.uint64).reshape(n, self.words, 1)
        shifts = (np.arange(k, dtype=np.uint64) * np.uint64(bits))
        v = ((words >> shifts) & np.uint64((1 << bits) - 1)).astype(np.int64)
        v = v.reshape(n, self.words * k)[:, : self.count]
        if self.type.signed:
            v = np.where(v >= (1 << (bits - 1)), v - (1 << bits), v)
        return v

    def unpack(self, data: np.ndarray, n: int) -> np.ndarray:
        return self.type.decode(self.unpack_words(data, n))
