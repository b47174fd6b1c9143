"""Time-series encodings for one column block, vectorised with numpy, then a general compressor.

Each logical type has one transform that turns typical sensor data into long runs of small or
zero bytes, which zstd or lz4 then squeeze:

- timestamps: delta-of-delta (a regular 10 s series becomes all zeros), zigzag, narrowest width;
- integers: delta, zigzag, narrowest width (1, 2, 4 or 8 bytes per value);
- floats: XOR with the previous value (Gorilla's idea: close values share sign, exponent and
  high mantissa bits, so the XOR has zero high bytes), then byte-stream-split (Parquet's
  BYTE_STREAM_SPLIT: all first bytes, then all second bytes, ...) so those zero bytes are
  contiguous;
- booleans: bit-packed; strings: lengths (as integers, above) plus the concatenated bytes.

Nulls are a separate bit-packed validity map, present only when the block has nulls; null slots
hold 0 (or the previous value for floats) so they do not break the runs. Every transform is
exact: ``decode(encode(x)) == x`` bit for bit, NaN payloads, -0.0 and infinities included.
"""

from __future__ import annotations

import struct
import threading
from dataclasses import dataclass

import numpy as np

from septet.tsdb.errors import CorruptionError, TsdbError

COMPRESSORS = ("zstd", "lz4", "none")
_COMPRESSOR_ID = {"none": 0, "zstd": 1, "lz4": 2}
_COMPRESSOR_NAME = {v: k for k, v in _COMPRESSOR_ID.items()}

# The block header: compressor, transform, width, has-nulls, value count, payload length.
_HEADER = struct.Struct("<BBBBII")

_KIND_ID = {"ts": 1, "int": 2, "float": 3, "bool": 4, "str": 5}
_KIND_NAME = {v: k for k, v in _KIND_ID.items()}
FLOAT_ID = _KIND_ID["float"]


def _block_array(n: int, dtype: np.dtype) -> np.ndarray:
    """``np.empty(n, dtype)`` for a decoded block. A block (32 KB at 4,096 rows) comes from
    the C heap, which reuses what freed blocks leave and faults fresh 4 KiB pages in
    otherwise. Arrow's pool (mimalloc) was used before: its memory is backed by transparent
    huge pages here, and first touches of it cost more and vary more (in-process, the
    served benchmark's query order, the garbage collector frozen, 4 rounds at 1,000 hosts:
    cpu-max-all-8 median 6.88 -> 6.31 ms, p90 12.8 -> 7.7, maximum 18.2 -> 10.3).
    """
    return np.empty(n, dtype)


def zigzag_encode(values: np.ndarray) -> np.ndarray:
    """Map signed int64 to uint64 so that small magnitudes become small numbers."""
    v = values.astype(np.int64, copy=False)
    return ((v << np.int64(1)) ^ (v >> np.int64(63))).view(np.uint64)


def zigzag_decode(values: np.ndarray) -> np.ndarray:
    """Inverse of :func:`zigzag_encode`."""
    u = values.astype(np.uint64, copy=False)
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _narrowest(u: np.ndarray) -> tuple[int, bytes]:
    """Pack unsigned values in the fewest whole bytes that hold the largest one."""
    top = int(u.max()) if u.size else 0
    for width, dtype in ((1, np.uint8), (2, np.uint16), (4, np.uint32)):
        if top < (1 << (8 * width)):
            return width, u.astype(dtype).tobytes()
    return 8, u.astype(np.uint64).tobytes()


def _widen(buf: bytes | memoryview, width: int, n: int) -> np.ndarray:
    return _packed(buf, width, n).astype(np.uint64)


def _packed(buf: bytes | memoryview, width: int, n: int) -> np.ndarray:
    """The first ``n`` values packed ``width`` bytes each, as they are (no copy)."""
    dtype = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    return np.frombuffer(buf, dtype=dtype, count=n)


def delta_of_delta_encode(ts: np.ndarray) -> np.ndarray:
    """First value, first delta, then the change of each delta (int64, wrapping)."""
    t = ts.astype(np.int64, copy=False)
    if t.size < 2:
        return t.copy()
    with np.errstate(over="ignore"):
        delta = np.diff(t)
        out = np.empty_like(t)
        out[0] = t[0]
        out[1] = delta[0]
        out[2:] = np.diff(delta)
    return out


def delta_of_delta_decode(dod: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`delta_of_delta_encode`: two running sums (integer sums wrap, and
    numpy warns about no integer overflow, so no error state is needed); into ``out`` (int64,
    as long) when given."""
    if dod.size < 2:
        return dod.astype(np.int64).copy()
    if out is None:
        out = _block_array(dod.size, np.dtype(np.int64))
    out[0] = 0
    np.cumsum(dod[1:], dtype=np.int64, out=out[1:])
    np.cumsum(out[1:], dtype=np.int64, out=out[1:])
    out += dod[0]
    return out


def delta_encode(values: np.ndarray) -> np.ndarray:
    """First value, then differences (int64, wrapping)."""
    v = values.astype(np.int64, copy=False)
    out = v.copy()
    with np.errstate(over="ignore"):
        out[1:] = np.diff(v)
    return out


def delta_decode(deltas: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Inverse of :func:`delta_encode` (into ``out``, int64 as long, when given)."""
    with np.errstate(over="ignore"):
        return np.cumsum(deltas.astype(np.int64, copy=False), dtype=np.int64, out=out)


def xor_split_encode(values: np.ndarray) -> bytes:
    """Gorilla-style XOR with the previous value, then byte-stream-split."""
    width = values.dtype.itemsize
    utype = np.uint64 if width == 8 else np.uint32
    u = np.ascontiguousarray(values).view(utype)
    x = u.copy()
    x[1:] ^= u[:-1]
    return np.ascontiguousarray(x.view(np.uint8).reshape(-1, width).T).tobytes()


def xor_split_decode(
    buf: bytes | memoryview,
    dtype: np.dtype,
    n: int,
    stop: int | None = None,
    out=None,
    start: int = 0,
) -> np.ndarray:
    """Inverse of :func:`xor_split_encode`: values ``start`` to ``stop`` (all ``n`` by
    default), written into ``out`` (bytes to reuse, see :func:`decode_values`) when given."""
    width = np.dtype(dtype).itemsize
    utype = np.dtype(np.uint64 if width == 8 else np.uint32)
    m = (n if stop is None else stop) - start
    planes = np.frombuffer(buf, dtype=np.uint8, count=n * width).reshape(width, n)
    x = _block_array(m, utype) if out is None else _into(out, m, utype)
    as_bytes = x.view(np.uint8).reshape(m, width)
    src = planes[:, start : start + m]
    if m <= 1024:  # a short run: one call (the per-call cost dominates)
        as_bytes.T[...] = src
    else:
        # One strided copy per byte plane: numpy copies a transposed (n, width) byte array
        # element by element, ~1.5x slower.
        for k in range(width):
            as_bytes[:, k] = src[k]
    np.bitwise_xor.accumulate(x, out=x)
    if start:
        # Value ``start - 1`` is the XOR of every word before ``start``: byte plane by byte
        # plane, a reduction of contiguous bytes (no interleaving of the rows skipped).
        x ^= np.bitwise_xor.reduce(planes[:, :start], axis=1).view(utype)[0]
    return x.view(dtype)


def _into(out: np.ndarray, n: int, dtype: np.dtype) -> np.ndarray:
    """The first ``n`` values of ``dtype`` in the bytes ``out``."""
    return out[: n * dtype.itemsize].view(dtype)


def compress(raw: bytes, compressor: str, level: int = 3) -> bytes:
    """zstd, lz4 (frame) or nothing."""
    if compressor == "zstd":
        return _zstd_compressor(level).compress(raw)
    if compressor == "lz4":
        import lz4.frame

        return lz4.frame.compress(raw)
    if compressor == "none":
        return raw
    raise TsdbError(f"unknown compressor {compressor!r}; use one of {', '.join(COMPRESSORS)}")


_local = threading.local()


def _zstd_compressor(level: int):
    """This thread's zstd compressor of a level (as for the decompressor, below)."""
    made = getattr(_local, "zstd_c", None)
    if made is None:
        made = _local.zstd_c = {}
    c = made.get(level)
    if c is None:
        import zstandard

        c = made[level] = zstandard.ZstdCompressor(level=level)
    return c


def _zstd_decompressor():
    """This thread's zstd decompressor: making one costs more than decoding a block, and one
    must not be used by two threads at once."""
    d = getattr(_local, "zstd", None)
    if d is None:
        import zstandard

        d = _local.zstd = zstandard.ZstdDecompressor()
    return d


def decompress(data: bytes | memoryview, compressor: str) -> bytes:
    """Inverse of :func:`compress`."""
    if compressor == "zstd":
        return _zstd_decompressor().decompress(data)
    if compressor == "lz4":
        import lz4.frame

        return lz4.frame.decompress(data)
    return bytes(data)


@dataclass(frozen=True)
class Encoded:
    """An encoded block and the statistics kept beside it in the file index."""

    data: bytes
    count: int  # non-null values
    min: float | int | None
    max: float | int | None
    sum: float | int | None
    step: int | None = None  # timestamps that are first + step * i, step > 0 (3 or more)


def _kind_of(dtype: np.dtype) -> str:
    if dtype.kind in "iu":
        return "int"
    if dtype.kind == "f":
        return "float"
    if dtype.kind == "b":
        return "bool"
    raise TsdbError(f"no block codec for numpy dtype {dtype}")


def encode_values(
    values: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    timestamps: bool = False,
    compressor: str = "zstd",
    level: int = 3,
) -> Encoded:
    """Encode one numeric/bool column block; ``valid`` is False where the value is NULL."""
    n = int(values.size)
    has_nulls = valid is not None and not bool(valid.all())
    kind = "ts" if timestamps else _kind_of(values.dtype)
    v = values
    if has_nulls and kind == "float":
        # Carry the previous valid value into null slots: keeps the XOR stream near zero.
        idx = np.where(valid, np.arange(n), 0)
        np.maximum.accumulate(idx, out=idx)
        v = values[idx]
    elif has_nulls:
        v = np.where(valid, values, values.dtype.type(0))
    width = 0
    step = None
    if kind == "ts":
        dod = delta_of_delta_encode(v)
        width, body = _narrowest(zigzag_encode(dod))
        if n >= 3 and not has_nulls and dod[1] > 0 and not dod[2:].any():
            step = int(dod[1])
    elif kind == "int":
        if v.dtype == np.uint64:
            v = v.view(np.int64)
        width, body = _narrowest(zigzag_encode(delta_encode(v)))
    elif kind == "float":
        width = v.dtype.itemsize
        body = xor_split_encode(v)
    else:
        body = np.packbits(v.astype(bool)).tobytes()
    parts = [body]
    if has_nulls:
        parts.insert(0, np.packbits(valid).tobytes())
    payload = compress(b"".join(parts), compressor, level)
    header = _HEADER.pack(
        _COMPRESSOR_ID[compressor], _KIND_ID[kind], width, int(has_nulls), n, len(payload)
    )
    count, lo, hi, total = _stats(values, valid if has_nulls else None, kind)
    return Encoded(header + payload, count, lo, hi, total, step)


def _stats(values: np.ndarray, valid: np.ndarray | None, kind: str) -> tuple:
    live = values if valid is None else values[valid]
    count = int(live.size)
    if count == 0 or kind == "bool":
        return count, None, None, None
    if kind == "float":
        with np.errstate(invalid="ignore", over="ignore"):
            return count, float(live.min()), float(live.max()), float(live.sum(dtype=np.float64))
    total = int(live.sum(dtype=np.int64)) if live.dtype != np.uint64 else int(live.sum())
    return count, int(live.min()), int(live.max()), total


def decode_values(
    data: bytes | memoryview,
    dtype: np.dtype,
    stop: int | None = None,
    out=None,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Inverse of :func:`encode_values`: (values, validity or None when the block has no nulls).

    ``start``, ``stop``: only values ``start`` to ``stop`` (a query that needs part of a
    block decodes no further than its last row, and float blocks skip the interleaving of
    the rows before its first). ``out``: a uint8 array to decode into instead of fresh
    memory (a new page costs as much as decoding it): the values returned may then be a
    view of it, valid until ``out`` is written again."""
    header, compressed = frame(data)
    raw = decompress(compressed, _COMPRESSOR_NAME[header[0]])
    return decode_raw(header, raw, dtype, stop, out, start)


def block_header(data: bytes | memoryview) -> tuple[int, int, int, int, int, int]:
    """A column block's header: (compressor id, kind id, width, has nulls, values, length of
    the compressed payload that follows it)."""
    if len(data) < _HEADER.size:
        raise CorruptionError("column block shorter than its header")
    header = _HEADER.unpack_from(data)
    if header[0] not in _COMPRESSOR_NAME or header[1] not in _KIND_NAME:
        raise CorruptionError("column block header names an unknown codec")
    return header


def compressor_name(comp_id: int) -> str:
    """The compressor a block header's first field names."""
    return _COMPRESSOR_NAME[comp_id]


def frame(data: bytes | memoryview) -> tuple[tuple, memoryview]:
    """(header, compressed payload) of a column block (see :func:`decode_raw`)."""
    header = block_header(data)
    return header, memoryview(data)[_HEADER.size : _HEADER.size + header[5]]


def decode_raw(
    header: tuple,
    raw: bytes | memoryview,
    dtype: np.dtype,
    stop: int | None = None,
    out=None,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`decode_values` of a block whose payload is decompressed already (``raw``)."""
    _, kind_id, width, has_nulls, n, _ = header
    if len(raw) < n * width:
        raise CorruptionError("column block decompressed shorter than its header says")
    kind = _KIND_NAME[kind_id]
    end = n if stop is None else min(max(stop, 0), n)
    first = min(max(start, 0), end)
    m = end  # values 0 to m are decoded (from ``skip`` on)
    if has_nulls or kind == "bool" or (out is not None and out.size < 8 * m):
        out = None  # the general path (then cut): rare in time series
        m = n
    offset = 0
    valid = None
    if has_nulls:
        nbytes = (n + 7) // 8
        valid = np.unpackbits(np.frombuffer(raw, np.uint8, count=nbytes), count=n).astype(bool)
        offset = nbytes
    body = memoryview(raw)[offset:]
    dtype = np.dtype(dtype)
    i64 = np.dtype(np.int64)
    skip = 0
    if kind == "ts":
        u = _widen(body, width, m)
        if m > 2 and not _packed(body, width, n)[2:].any():  # a regular series: one step
            first_ts, step = zigzag_decode(u[:2]).tolist()
            values = np.arange(m, dtype=np.int64) if out is None else _iota(out, m)
            values *= step  # wraps, as the running sums would
            values += first_ts
            values = values.astype(dtype, copy=False)
        else:
            values = delta_of_delta_decode(
                zigzag_decode(u), None if out is None else _into(out, m, i64)
            ).astype(dtype, copy=False)
    elif kind == "int":
        zz = zigzag_decode(_widen(body, width, m))
        values = delta_decode(zz, None if out is None else _into(out, m, i64))
        values = values.view(np.uint64) if dtype == np.uint64 else values.astype(dtype, copy=False)
    elif kind == "float":
        skip = first if valid is None else 0
        values = xor_split_decode(body, np.dtype(f"f{width}"), n, m, out, skip)
        values = values.astype(dtype, copy=False)
    else:
        values = np.unpackbits(np.frombuffer(body, np.uint8), count=n).astype(bool)
    if valid is not None and kind != "float":
        values = np.where(valid, values, values.dtype.type(0))
    if (first, end) != (skip, m):  # values hold rows skip to m: cut to first to end
        values = values[first - skip : end - skip]
        valid = None if valid is None else valid[first:end]
    return values, valid


def regular_timestamps(data: bytes | memoryview) -> tuple[int, int, int] | None:
    """(first, step, count) of a timestamp block that is one regular series with a positive
    step (its values are first + step * i), else None; nothing is decoded."""
    if len(data) < _HEADER.size:
        raise CorruptionError("column block shorter than its header")
    comp_id, kind_id, width, has_nulls, n, length = _HEADER.unpack_from(data)
    if kind_id != _KIND_ID["ts"] or has_nulls or n < 3 or comp_id not in _COMPRESSOR_NAME:
        return None
    raw = decompress(
        memoryview(data)[_HEADER.size : _HEADER.size + length], _COMPRESSOR_NAME[comp_id]
    )
    if len(raw) < n * width or width not in (1, 2, 4, 8):
        raise CorruptionError("timestamp block shorter than its header says")
    if raw[2 * width : n * width] != _zeros((n - 2) * width):  # (two copies and a memcmp)
        return None
    first, step = (
        _unzigzag(int.from_bytes(raw[k * width : (k + 1) * width], "little")) for k in (0, 1)
    )
    # A series that wraps past int64 is not one a table can hold (timestamps rise).
    if step <= 0 or first + step * (n - 1) >= 1 << 63:
        return None
    return first, step, n


def _unzigzag(u: int) -> int:
    """:func:`zigzag_decode` of one number."""
    return (u >> 1) ^ -(u & 1)


_ZEROS = b""


def _zeros(n: int) -> bytes:
    """``n`` zero bytes (from one buffer kept and grown as needed)."""
    global _ZEROS
    zeros = _ZEROS  # (one read: another thread may grow it meanwhile)
    if len(zeros) < n:
        zeros = _ZEROS = bytes(n)
    return zeros if len(zeros) == n else zeros[:n]


def _iota(out: np.ndarray, n: int) -> np.ndarray:
    """0, 1, ..., n - 1 as int64 in the bytes ``out``."""
    values = _into(out, n, np.dtype(np.int64))
    values[:] = _arange(n)
    return values


_ARANGE = np.arange(0, dtype=np.int64)


def _arange(n: int) -> np.ndarray:
    """``np.arange(n)``, read-only, from one array kept and grown as needed."""
    global _ARANGE
    got = _ARANGE
    if got.size < n:
        got = np.arange(max(n, 2 * got.size), dtype=np.int64)
        got.flags.writeable = False
        _ARANGE = got
    return got[:n]


def encode_strings(
    offsets: np.ndarray, data: bytes, valid: np.ndarray | None, *, compressor: str = "zstd"
) -> bytes:
    """Variable-length strings: lengths (delta+zigzag ints) then the concatenated UTF-8 bytes."""
    lengths = np.diff(offsets.astype(np.int64))
    head = encode_values(lengths, valid, compressor=compressor).data
    body = compress(data, compressor)
    return struct.pack("<I", len(head)) + head + body


def decode_strings(
    data: bytes | memoryview, compressor: str
) -> tuple[np.ndarray, bytes, np.ndarray | None]:
    """Inverse of :func:`encode_strings`: (int32 offsets, bytes, validity or None)."""
    (head_len,) = struct.unpack_from("<I", data)
    lengths, valid = decode_values(memoryview(data)[4 : 4 + head_len], np.dtype(np.int64))
    body = decompress(memoryview(data)[4 + head_len :], compressor)
    offsets = np.zeros(lengths.size + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets, body, valid
