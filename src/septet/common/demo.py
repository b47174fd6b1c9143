"""What a part's demo returns to ``septet demo``.

Each part has a ``demo.py`` with ``run_demo(out_dir: Path) -> DemoReport``; the CLI times it
and prints one table row per part.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DemoReport:
    summary: str  # one line: what the demo did and the number that shows it worked
    outputs: list[Path] = field(default_factory=list)  # files it wrote, for people to look at
