"""Where septet keeps models, datasets and caches: ``SEPTET_HOME``, default ``~/.cache/septet``."""

from __future__ import annotations

import os
from pathlib import Path


def septet_home(*parts: str, create: bool = True) -> Path:
    """A folder under septet's home (``SEPTET_HOME`` or ``~/.cache/septet``), made if missing."""
    root = Path(os.environ.get("SEPTET_HOME") or Path.home() / ".cache" / "septet").expanduser()
    path = root.joinpath(*parts)
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path
