"""`septet demo autocomplete`: the shipped model completes held-out code and types a file."""

from __future__ import annotations

import json
import time
from pathlib import Path

from septet.common.demo import DemoReport

SNIPPET = '''import os
import sys


def read_lines(path):
    """Return the lines of a file."""
    with open(path) as handle:
        return handle.read().splitlines()


def main(argv):
    for name in argv[1:]:
        if not os.path.exists(name):
            print(f"missing: {name}", file=sys.stderr)
            continue
        for line in read_lines(name):
            print(line)
'''


def run_demo(out_dir: Path) -> DemoReport:
    """Complete a few prompts and simulate typing a small script with the shipped model."""
    from septet.autocomplete.completion import load_completer
    from septet.autocomplete.evaluation import simulate_keystrokes
    from septet.common.atomic import atomic_write_text

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    completer = load_completer()
    prompts = ["import o", "def main(ar", "    with open(path) as ha", "        return handle.re"]
    completions = {
        p: [(c.text, round(c.probability, 3)) for c in completer.complete(p, limit=3)]
        for p in prompts
    }

    result = simulate_keystrokes(SNIPPET, completer.suggest)  # the inline suggestion
    summary = {
        "completions": completions,
        "characters": result.characters,
        "keystrokes": result.keystrokes,
        "keystrokes_saved": round(result.saved, 4),
        "seconds": round(time.perf_counter() - start, 2),
    }
    atomic_write_text(out_dir / "autocomplete_demo.json", json.dumps(summary, indent=2))
    return DemoReport(
        f"typed a {result.characters}-character script with {result.keystrokes} keys: "
        f"{result.saved:.1%} keystrokes saved",
        outputs=[out_dir / "autocomplete_demo.json"],
    )
