"""The server's helper processes (flush, parsing) are ``python -m <module>`` with pipes.

Not multiprocessing: its "spawn" re-runs the parent's main module in the child (a script
without an ``if __name__ == "__main__"`` guard would start over), and "fork" is unsafe in a
process with threads (a lock another thread held at fork time stays held in the child).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def start_module(module: str) -> subprocess.Popen:
    """``python -m module`` with its stdin and stdout piped to this process; it imports
    septet from where this process did, installed or not."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )


__all__ = ["start_module"]
