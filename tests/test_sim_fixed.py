"""ap_fixed conversions of the stream (hwpart.sim.fixed) against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

from hwpart.sim.fixed import FixedType, parse_type

LSB = 2.0 ** -2  # ap_fixed<6,4,...>: 2 fractional bits


@pytest.mark.parametrize("quant,expect", [
    ("AP_TRN", [0, 0, -1, -1, 1]),        # floor
    ("AP_TRN_ZERO", [0, 0, 0, 0, 1]),     # towards zero
    ("AP_RND", [1, 1, 0, -1, 2]),         # ties towards +inf
    ("AP_RND_ZERO", [0, 1, 0, -1, 1]),    # ties towards zero
    ("AP_RND_INF", [1, 1, -1, -1, 2]),    # ties away from zero
    ("AP_RND_MIN_INF", [0, 1, -1, -1, 1]),  # ties towards -inf
    ("AP_RND_CONV", [0, 1, 0, -1, 2]),    # ties to even
])
def test_quantisation_modes(quant, expect):
    t = FixedType(6, 4, quant=quant, overflow="AP_SAT")
    x = np.array([0.5, 0.7, -0.5, -0.7, 1.5]) * LSB
    assert t.quantize(x).tolist() == expect


def test_overflow_modes():
    x = np.array([7.9, 8.0, -8.0, -9.0, 100.0])
    assert FixedType(6, 4, overflow="AP_SAT").quantize(x).tolist() == [31, 31, -32, -32, 31]
    assert FixedType(6, 4, overflow="AP_WRAP").quantize(x).tolist() == [31, -32, -32, 28, 16]
    assert FixedType(6, 4, overflow="AP_SAT_ZERO").quantize(x).tolist() == [31, 0, -32, 0, 0]
    assert FixedType(6, 4, overflow="AP_SAT_SYM").quantize(x).tolist() == [31, 31, -31, -31, 31]
    assert FixedType(6, 4, signed=False, overflow="AP_SAT").quantize(np.array([-1.0])).tolist() == [0]


def test_parse_and_roundtrip():
    t = parse_type("nnet::array<ap_fixed<16,6,AP_RND_CONV,AP_SAT,0>, 16*1>")
    assert (t.width, t.integer, t.quant, t.overflow, t.word_bytes) == (16, 6, "AP_RND_CONV", "AP_SAT", 2)
    assert parse_type("ap_ufixed<8,0>").signed is False
    assert parse_type("ap_fixed<24,8>").word_bytes == 4
    x = np.random.default_rng(0).uniform(-40, 40, 1000)
    w = t.encode(x)
    assert w.dtype == np.int16
    y = t.decode(w)
    assert np.array_equal(t.exact(y), w.astype(np.int64))
    with pytest.raises(ValueError):
        t.exact(np.array([0.1]))


def test_stream_layout_matches_adapter_format():
    """Lanes of 18 bits in 64-bit words (3 per word), every sample word-aligned."""
    from hwpart.sim.fixed import StreamLayout

    t = parse_type("ap_fixed<18,8,AP_RND_CONV,AP_SAT>")
    lay = StreamLayout(t, 5, 64)
    assert (lay.lanes, lay.words, lay.sample_bytes) == (3, 2, 16)
    q = np.array([[1, -1, 2, -131072, 131071], [0, 0, 0, 0, 1]])
    data = lay.pack_words(q)
    w = data.view("<u8")
    assert int(w[0]) == 1 | ((2**18 - 1) << 18) | (2 << 36)
    assert int(w[1]) == (131072 | (131071 << 18))
    assert int(w[3]) == 1 << 18
    assert np.array_equal(lay.unpack_words(data, 2), q)
