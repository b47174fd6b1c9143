"""tsdb: an embedded time-series database with TDengine's data model and SQL.

``connect(path)`` opens a directory (or ``":memory:"``) as a PEP 249 connection; super tables
with tags, sub-tables per device, INTERVAL/SLIDING/FILL windows, a WAL-backed storage engine
with time-series encodings; ``septet tsdb serve`` (``create_app``) serves it over TDengine's REST
API and InfluxDB line protocol. See docs/tsdb.md.
"""

from septet.common.lazy import lazy_exports

__all__ = [
    "Connection",
    "Consumer",
    "CorruptionError",
    "Cursor",
    "Engine",
    "EngineOptions",
    "SqlError",
    "TsdbError",
    "connect",
    "create_app",
    "parse",
    "write_line_protocol",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Connection": ".connection",
        "Cursor": ".connection",
        "connect": ".connection",
        "Engine": ".engine",
        "EngineOptions": ".engine",
        "SqlError": ".errors",
        "TsdbError": ".errors",
        "CorruptionError": ".errors",
        "parse": ".parser",
        "create_app": ".server",
        "write_line_protocol": ".line_protocol",
        "Consumer": ".topics",
    },
)
