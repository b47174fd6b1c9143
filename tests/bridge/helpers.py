"""The same small functions written once per framework, and how to call and differentiate a
bridged function from each target framework, so tests can loop over all six directions."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow as tf
import torch

from septet.bridge import wrap

FRAMEWORKS = ("torch", "tensorflow", "jax")
DIRECTIONS = [(s, t) for s in FRAMEWORKS for t in FRAMEWORKS if s != t]
DIRECTION_IDS = [f"{s}->{t}" for s, t in DIRECTIONS]


def anchor(a: Any, b: Any) -> Any:
    """tfpyth's example: f(a, b) = 3a + 4b²; f(1, 3) = 39, df/da = 3, df/db = 24."""
    return 3 * a + 4 * b**2


SIN = {"torch": torch.sin, "tensorflow": tf.sin, "jax": jnp.sin}
SUM = {"torch": torch.sum, "tensorflow": tf.reduce_sum, "jax": jnp.sum}


def several_in_several_out(framework: str):
    """f(a, b, c) -> ({'mix': sin(a)·b, 'total': Σa² + c·b}, c³): three inputs, a nest of three
    outputs, each output using a different subset of the inputs."""
    sin, total = SIN[framework], SUM[framework]

    def f(a, b, c):
        return {"mix": sin(a) * b, "total": total(a**2) + c * b}, c**3

    return f


def compiled(fn: Any, framework: str) -> Any:
    """``fn`` as the framework compiles it: tf.function, jax.jit; torch stays eager."""
    if framework == "tensorflow":
        return tf.function(fn)
    if framework == "jax":
        return jax.jit(fn)
    return fn


def tensor(framework: str, value: Any, dtype: str = "float64") -> Any:
    array = np.asarray(value, dtype=dtype)
    if framework == "torch":
        return torch.from_numpy(array.copy())
    if framework == "tensorflow":
        return tf.constant(array)
    return jnp.asarray(array)


def value_and_grads(target: str, fn: Any, args: list[Any], *, compile_target: bool = False):
    """(scalar value of Σ outputs, numpy gradient per argument) computed by ``target``."""
    if target == "torch":
        leaves = [a.clone().requires_grad_(True) for a in args]
        out = fn(*leaves)
        out.sum().backward()
        return out.detach().sum().item(), [leaf.grad.numpy() for leaf in leaves]
    if target == "tensorflow":

        def step(*xs):
            with tf.GradientTape() as tape:
                tape.watch(xs)
                out = tf.reduce_sum(fn(*xs))
            return out, tape.gradient(out, xs)

        step = tf.function(step) if compile_target else step
        out, grads = step(*args)
        return float(out), [g.numpy() for g in grads]
    h = jax.value_and_grad(lambda *xs: jnp.sum(fn(*xs)), argnums=tuple(range(len(args))))
    out, grads = (jax.jit(h) if compile_target else h)(*args)
    return float(out), [np.asarray(g) for g in grads]


def bridged(fn_by_framework: Any, source: str, target: str) -> Any:
    return wrap(fn_by_framework, source=source, target=target)
