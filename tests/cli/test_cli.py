"""The septet command: help, version, exit codes, one-line errors, light start-up."""

import importlib.util
import json
import subprocess
import sys

import pytest

from septet import __version__
from septet.parts import PARTS


def run_septet(*args: str, env_extra: dict[str, str] | None = None):
    import os

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-m", "septet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_help_lists_commands_and_installed_parts():
    result = run_septet("--help")
    assert result.returncode == 0, result.stderr
    assert "version" in result.stdout and "demo" in result.stdout
    for part in PARTS:
        if part.is_present() and importlib.util.find_spec(f"septet.{part.name}.cli"):
            assert part.name in result.stdout


def test_no_arguments_shows_help():
    result = run_septet()
    assert "Usage" in result.stdout + result.stderr


def test_version_prints_the_package_version_and_each_part():
    result = run_septet("version")
    assert result.returncode == 0
    assert result.stdout.splitlines()[0] == f"septet {__version__}"
    for part in PARTS:
        assert part.name in result.stdout


def test_user_error_is_one_line_on_stderr_with_exit_2():
    result = run_septet("demo", "no-such-part")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: no part named 'no-such-part'")
    assert "transformers" in lines[0]  # it names the valid choices
    assert "Traceback" not in result.stderr


def test_debug_shows_the_traceback():
    result = run_septet("--debug", "demo", "no-such-part")
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: no part named")


def test_unknown_option_is_a_usage_error_with_exit_2():
    result = run_septet("version", "--no-such-option")
    assert result.returncode == 2
    assert "no-such-option" in result.stderr


HEAVY = ("torch", "tensorflow", "jax", "cv2", "duckdb", "pyarrow", "transformers")


@pytest.mark.parametrize(
    "statement",
    [
        "import septet",
        "import septet.common",
        "import septet.cli",
        "from septet.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    ],
)
def test_start_up_imports_no_heavy_library(statement):
    code = (
        f"{statement}\nimport sys, json\n"
        f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []
