"""What two or more parts of septet share: progress, device choice, seeding, atomic writes,
the data and model home, lazy public APIs, the demo report and the training loop.

Importing this package imports no heavy library.
"""

from septet.common.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)
from septet.common.demo import DemoReport
from septet.common.device import choose_device
from septet.common.lazy import lazy_exports
from septet.common.paths import septet_home
from septet.common.progress import progress_bar, progress_enabled, set_quiet, track
from septet.common.seeding import seed_everything

__all__ = [
    "DemoReport",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "choose_device",
    "lazy_exports",
    "progress_bar",
    "progress_enabled",
    "seed_everything",
    "septet_home",
    "set_quiet",
    "track",
]
