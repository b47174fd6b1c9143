"""Column codecs round-trip bit for bit, whatever the data: NaN, ±inf, -0.0, constants,
huge jumps, unsorted timestamps, nulls, every width."""

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from septet.tsdb import codecs
from septet.tsdb.segment import decode_array, encode_array

COMPRESSORS = st.sampled_from(["zstd", "lz4", "none"])
INT64 = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(hnp.arrays(np.int64, st.integers(0, 300), elements=INT64), COMPRESSORS)
def test_timestamps_round_trip_even_unsorted_and_with_huge_jumps(ts, compressor):
    enc = codecs.encode_values(ts, timestamps=True, compressor=compressor)
    values, valid = codecs.decode_values(enc.data, np.dtype(np.int64))
    assert valid is None
    np.testing.assert_array_equal(values, ts)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([np.float64, np.float32]).flatmap(
        lambda dt: hnp.arrays(
            dt,
            st.integers(0, 300),
            elements=st.floats(
                allow_nan=True, allow_infinity=True, width=64 if dt == np.float64 else 32
            ),
        )
    ),
    COMPRESSORS,
)
def test_floats_round_trip_bit_exactly_with_nan_inf_and_negative_zero(x, compressor):
    enc = codecs.encode_values(x, compressor=compressor)
    values, _ = codecs.decode_values(enc.data, x.dtype)
    assert values.dtype == x.dtype
    np.testing.assert_array_equal(values.view(np.uint8), x.view(np.uint8))


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(
        [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
    ).flatmap(lambda dt: hnp.arrays(dt, st.integers(0, 300))),
    COMPRESSORS,
)
def test_integers_of_every_width_round_trip(x, compressor):
    enc = codecs.encode_values(x, compressor=compressor)
    values, _ = codecs.decode_values(enc.data, x.dtype)
    np.testing.assert_array_equal(values, x)
    if x.size:
        assert enc.min == int(x.min()) and enc.max == int(x.max()) and enc.count == x.size


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.floats(allow_nan=True)), max_size=200), COMPRESSORS)
def test_nullable_floats_keep_their_nulls(values, compressor):
    arr = pa.array(values, pa.float64())
    back = decode_array(memoryview(encode_array(arr, compressor, 3).data), pa.float64(), compressor)
    assert back.is_null().to_pylist() == arr.is_null().to_pylist()
    got = np.array([np.nan if v is None else v for v in back.to_pylist()])
    want = np.array([np.nan if v is None else v for v in values])
    np.testing.assert_array_equal(got, want)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=20)), max_size=100), COMPRESSORS)
def test_strings_and_nulls_round_trip(values, compressor):
    arr = pa.array(values, pa.string())
    back = decode_array(memoryview(encode_array(arr, compressor, 3).data), pa.string(), compressor)
    assert back.to_pylist() == values


@settings(max_examples=50, deadline=None)
@given(st.lists(st.one_of(st.none(), st.booleans()), max_size=100))
def test_booleans_round_trip(values):
    arr = pa.array(values, pa.bool_())
    back = decode_array(memoryview(encode_array(arr, "zstd", 3).data), pa.bool_(), "zstd")
    assert back.to_pylist() == values


def test_constant_and_regular_series_compress_to_almost_nothing():
    ts = np.arange(1_700_000_000_000, 1_700_000_000_000 + 10_000 * 10_000, 10_000, dtype=np.int64)
    enc = codecs.encode_values(ts, timestamps=True)
    assert len(enc.data) < 100  # 80 KB of timestamps -> a few dozen bytes
    const = np.full(10_000, 42.5)
    assert len(codecs.encode_values(const).data) < 100


def test_a_slice_of_an_arrow_string_array_encodes_only_its_values():
    arr = pa.array(["aa", "bbb", None, "c"]).slice(1, 2)
    back = decode_array(memoryview(encode_array(arr, "zstd", 3).data), pa.string(), "zstd")
    assert back.to_pylist() == ["bbb", None]


def test_zigzag_maps_small_magnitudes_to_small_numbers():
    z = codecs.zigzag_encode(np.array([0, -1, 1, -2, 2], dtype=np.int64))
    assert z.tolist() == [0, 1, 2, 3, 4]
    extremes = np.array([-(2**63), 2**63 - 1], dtype=np.int64)
    np.testing.assert_array_equal(codecs.zigzag_decode(codecs.zigzag_encode(extremes)), extremes)


@given(INT64, INT64, st.integers(0, 300), COMPRESSORS)
def test_regular_timestamp_series_decode_exactly_even_when_they_wrap(first, step, n, compressor):
    # A regular series (every delta the same) is decoded as first + step * k, which must
    # wrap at 64 bits exactly as the running sums of the general path do.
    with np.errstate(over="ignore"):
        ts = np.int64(first) + np.int64(step) * np.arange(n, dtype=np.int64)
    enc = codecs.encode_values(ts, timestamps=True, compressor=compressor)
    back, valid = codecs.decode_values(enc.data, np.dtype(np.int64))
    assert valid is None and back.tobytes() == ts.tobytes()
