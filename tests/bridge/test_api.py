"""The public surface: lazy imports, framework names, clear errors, the demo and the CLI."""

import json
import subprocess
import sys

import pytest

from septet.bridge import wrap
from septet.errors import ConfigError


def test_importing_the_part_imports_no_framework():
    code = (
        "import sys, septet.bridge, septet.bridge.cli;"
        "print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_framework_names_the_choices():
    with pytest.raises(ConfigError, match=r"'mxnet'.*torch, tensorflow, jax"):
        wrap(lambda x: x, source="mxnet", target="torch")


def test_same_source_and_target_is_refused():
    with pytest.raises(ConfigError, match="both 'torch'"):
        wrap(lambda x: x, source="pytorch", target="torch")


def test_wrap_needs_a_callable():
    with pytest.raises(ConfigError, match="callable"):
        wrap(3, source="tf", target="jax")


def test_wrapped_function_keeps_its_name_and_doc():
    def loss(x):
        """A documented loss."""
        return x

    bridged = wrap(loss, source="jax", target="torch")
    assert bridged.__name__ == "loss" and bridged.__doc__ == "A documented loss."


def test_demo_checks_every_direction_and_trains_both_ways(tmp_path):
    from septet.bridge.demo import run_demo

    report = run_demo(tmp_path)
    assert report.summary.startswith("6/6 directions")
    result = json.loads(report.outputs[0].read_text())
    keras_run, fit_run = result["keras_trained_by_torch"], result["torch_trained_by_keras_fit"]
    assert keras_run["loss_last"] < keras_run["loss_first"]
    assert fit_run["loss_last"] < fit_run["loss_first"]


def test_cli_check_prints_all_directions_as_json():
    from typer.testing import CliRunner

    from septet.bridge.cli import app

    result = CliRunner().invoke(app, ["check", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output[result.output.index("[") :])
    assert len(rows) == 6 and all(r["ok"] for r in rows)
