"""Benchmark results: one JSON file with every number and one Markdown table for people,
both under ``benchmarks/results/``, written atomically."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

from septet.common.atomic import atomic_write_json, atomic_write_text


def machine_description() -> dict[str, Any]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": _cpu_model(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """A GitHub Markdown table of ``rows``; floats get 4 significant digits."""
    if not rows:
        return "(no rows)\n"
    columns = columns or list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join("---" for _ in columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_benchmark_results(
    name: str,
    results: dict[str, Any],
    tables: dict[str, list[dict[str, Any]]],
    *,
    notes: str = "",
    results_dir: str | os.PathLike[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``<name>.json`` (results + machine) and ``<name>.md`` (a titled table per entry of
    ``tables``, then ``notes``); returns both paths."""
    directory = (
        Path(results_dir)
        if results_dir
        else Path(__file__).resolve().parents[3] / "benchmarks" / "results"
    )
    machine = machine_description()
    json_path = directory / f"{name}.json"
    md_path = directory / f"{name}.md"
    atomic_write_json(json_path, {"benchmark": name, "machine": machine, "results": results})
    parts = [
        f"# Benchmark: {name}\n",
        f"Measured {machine['date']} on {machine['processor']} ({machine['cpus']} CPUs), "
        f"Python {machine['python']}.\n",
    ]
    for title, rows in tables.items():
        parts.append(f"## {title}\n\n{markdown_table(rows)}")
    if notes:
        parts.append(notes.rstrip() + "\n")
    atomic_write_text(md_path, "\n".join(parts))
    json.loads(json_path.read_text())  # fail loudly if what we wrote does not read back
    return json_path, md_path
