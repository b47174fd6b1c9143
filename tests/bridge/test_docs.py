"""Every Python example in docs/bridge.md runs as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "bridge.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def test_the_page_has_an_example_per_direction():
    names = ["torch_from_tensorflow", "tensorflow_from_torch", "torch_from_jax"]
    names += ["jax_from_torch", "tensorflow_from_jax", "jax_from_tensorflow"]
    for name in names:
        assert any(f"import {name}" in block for block in BLOCKS), name


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_example_runs(number):
    exec(compile(BLOCKS[number], f"{DOC.name} example {number + 1}", "exec"), {})
