"""The write-ahead log: checksummed records, torn tails truncated, fsync policies checked."""

import zlib

import pytest

from septet.tsdb.errors import TsdbError
from septet.tsdb.wal import MAGIC, WriteAheadLog, read_records


def write(path, n, fsync="always"):
    wal = WriteAheadLog(path, 1, fsync=fsync)
    for i in range(n):
        wal.append(i + 1, 1, f"record {i}".encode() * (i + 1))
    wal.close()
    return wal.path


def test_records_read_back_in_order(tmp_path):
    path = write(tmp_path, 5)
    records = list(read_records(path))
    assert [seq for seq, _, _ in records] == [1, 2, 3, 4, 5]
    assert bytes(records[2][2]) == b"record 2" * 3


@pytest.mark.parametrize("cut", [1, 5, 9, 20])
def test_a_torn_tail_is_truncated_and_never_loaded(tmp_path, cut):
    path = write(tmp_path, 3)
    full = path.read_bytes()
    path.write_bytes(full[:-cut])  # the last append was cut short by a crash
    assert [seq for seq, _, _ in read_records(path)] == [1, 2]
    intact = path.stat().st_size
    assert intact < len(full) - cut + 1
    # New records go after the truncation point and are all readable.
    wal = WriteAheadLog(tmp_path, 1)
    wal.append(9, 1, b"after the crash")
    wal.close()
    assert [seq for seq, _, _ in read_records(path)] == [1, 2, 9]


def test_a_corrupted_record_stops_replay_there(tmp_path):
    path = write(tmp_path, 4)
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 8 + 30] ^= 0xFF  # flip a byte inside record 2's payload
    path.write_bytes(bytes(data))
    assert [seq for seq, _, _ in read_records(path)] == [1]


def test_garbage_after_the_last_record_is_dropped(tmp_path):
    path = write(tmp_path, 2)
    with open(path, "ab") as f:
        f.write(b"\x10\x00\x00\x00" + zlib.crc32(b"x").to_bytes(4, "little") + b"zz")
    assert len(list(read_records(path))) == 2
    assert len(list(read_records(path))) == 2


def test_an_unknown_fsync_policy_is_an_error_naming_the_choices(tmp_path):
    with pytest.raises(TsdbError, match="always, periodic, off"):
        WriteAheadLog(tmp_path, 1, fsync="sometimes")


@pytest.mark.parametrize("policy", ["always", "periodic", "off"])
def test_every_policy_writes_readable_records(tmp_path, policy):
    path = write(tmp_path, 3, fsync=policy)
    assert len(list(read_records(path))) == 3
