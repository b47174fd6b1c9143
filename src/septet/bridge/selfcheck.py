"""A self-check of every direction on this machine: tfpyth's example f(a, b) = 3a + 4b² at
(1, 3) (value 39, gradients 3 and 24) and whether a float32 tensor crossed without a copy."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

DIRECTIONS = [
    (source, target)
    for source in ("torch", "tensorflow", "jax")
    for target in ("torch", "tensorflow", "jax")
    if source != target
]


@dataclass
class DirectionCheck:
    source: str
    target: str
    value: float  # f(1, 3), expected 39
    grad_a: float  # expected 3
    grad_b: float  # expected 24
    zero_copy: bool  # a contiguous float32 tensor kept its address through the crossing

    @property
    def ok(self) -> bool:
        return (self.value, self.grad_a, self.grad_b) == (39.0, 3.0, 24.0) and self.zero_copy

    def as_row(self) -> dict[str, object]:
        return {**asdict(self), "ok": self.ok}


def _anchor(a, b):
    return 3 * a + 4 * b**2


def _value_and_grads(target: str, f) -> tuple[float, float, float]:
    if target == "torch":
        import torch

        a = torch.tensor(1.0, requires_grad=True)
        b = torch.tensor(3.0, requires_grad=True)
        y = f(a, b)
        y.backward()
        return y.item(), a.grad.item(), b.grad.item()
    if target == "tensorflow":
        import tensorflow as tf

        a, b = tf.constant(1.0), tf.constant(3.0)
        with tf.GradientTape() as tape:
            tape.watch([a, b])
            y = f(a, b)
        ga, gb = tape.gradient(y, [a, b])
        return float(y), float(ga), float(gb)
    import jax
    import jax.numpy as jnp

    y, (ga, gb) = jax.value_and_grad(f, argnums=(0, 1))(jnp.float32(1.0), jnp.float32(3.0))
    return float(y), float(ga), float(gb)


def _address(x) -> int:
    from septet.bridge.transfer import is_tensorflow_tensor, is_torch_tensor, tensorflow_address

    if is_torch_tensor(x):
        return x.data_ptr()
    if is_tensorflow_tensor(x):
        return tensorflow_address(x)
    return x.unsafe_buffer_pointer()


def check_direction(source: str, target: str) -> DirectionCheck:
    """Run the anchor and a zero-copy round trip from ``target`` through ``source``."""
    import torch

    from septet.bridge.api import wrap
    from septet.bridge.transfer import convert

    value, grad_a, grad_b = _value_and_grads(target, wrap(_anchor, source=source, target=target))
    x = convert(torch.arange(1024, dtype=torch.float32), "torch", target)
    y = wrap(lambda t: t, source=source, target=target)(x)
    return DirectionCheck(source, target, value, grad_a, grad_b, _address(x) == _address(y))


def check_directions() -> list[DirectionCheck]:
    """``check_direction`` for all six directions."""
    return [check_direction(s, t) for s, t in DIRECTIONS]
