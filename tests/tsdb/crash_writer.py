"""Writes batches forever and prints the id of each batch once its INSERT returned.

Run by test_crash.py, which kills it with SIGKILL at a random moment. Batch b holds rows
ts = BASE + b*ROWS + i, v = b*1000 + i, spread over 3 sub-tables; every 7th batch also
flushes, so the kill can land in a WAL append, a segment write or a manifest swap.
"""

import sys
import time

import pyarrow as pa

import septet.tsdb as tsdb

ROWS = 50
BASE = (int(time.time()) - 3600) * 1000


def main(path: str, fsync: str, base: int) -> None:
    con = tsdb.connect(path, fsync=fsync)
    con.execute("CREATE DATABASE IF NOT EXISTS db")
    con.execute("USE db")
    con.execute("CREATE STABLE IF NOT EXISTS m (ts TIMESTAMP, v BIGINT) TAGS (k INT)")
    batch = 0
    while True:
        ts = [base + batch * ROWS + i for i in range(ROWS)]
        table = pa.table(
            {
                "tbname": [f"d{i % 3}" for i in range(ROWS)],
                "k": [i % 3 for i in range(ROWS)],
                "ts": pa.array(ts, pa.int64()),
                "v": [batch * 1000 + i for i in range(ROWS)],
            }
        )
        con.insert_arrow("m", table)
        print(batch, flush=True)
        if batch % 7 == 6:
            con.flush()
        batch += 1


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
