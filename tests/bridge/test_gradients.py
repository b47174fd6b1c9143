"""Reverse-mode gradients against finite differences in float64, each target framework with its
own checker, for a function of three inputs and a nest of three outputs; unused inputs get
zero gradients; outputs that carry no gradient are marked so."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import torch
from jax.test_util import check_grads

from septet.bridge import wrap

from .helpers import (
    DIRECTION_IDS,
    DIRECTIONS,
    FRAMEWORKS,
    several_in_several_out,
    tensor,
)

A, B, C = [0.3, -1.2, 2.0], [1.5, 0.2, -0.7], [0.9, -0.4, 1.1]


def flat_outputs(out):
    mix_and_total, cube = out
    return mix_and_total["mix"], mix_and_total["total"], cube


@pytest.mark.parametrize("source", ["tensorflow", "jax"])
def test_torch_gradcheck(source):
    f = wrap(several_in_several_out(source), source=source, target="torch")
    args = [tensor("torch", v).requires_grad_(True) for v in (A, B, C)]
    assert torch.autograd.gradcheck(lambda *xs: flat_outputs(f(*xs)), args)


@pytest.mark.parametrize("source", ["torch", "jax"])
@pytest.mark.parametrize("output", [0, 1, 2], ids=["mix", "total", "cube"])
def test_tensorflow_compute_gradient(source, output):
    f = wrap(several_in_several_out(source), source=source, target="tensorflow")
    args = [tensor("tensorflow", v) for v in (A, B, C)]
    theoretical, numerical = tf.test.compute_gradient(
        lambda *xs: flat_outputs(f(*xs))[output], args
    )
    for t, n in zip(theoretical, numerical, strict=True):
        np.testing.assert_allclose(t, n, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("source", ["torch", "tensorflow"])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_jax_check_grads(source, jit):
    f = wrap(several_in_several_out(source), source=source, target="jax")
    f = jax.jit(f) if jit else f
    check_grads(f, [tensor("jax", v) for v in (A, B, C)], order=1, modes=["rev"])


def uses_only_first(framework):
    return lambda a, b, c: SQUARE[framework](a)


SQUARE = {name: (lambda x: x * x) for name in FRAMEWORKS}


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
def test_unused_inputs_get_zero_gradients(source, target):
    f = wrap(uses_only_first(source), source=source, target=target)
    args = [tensor(target, v) for v in (A, B, C)]
    if target == "torch":
        leaves = [a.requires_grad_(True) for a in args]
        f(*leaves).sum().backward()
        grads = [leaf.grad.numpy() for leaf in leaves]
    elif target == "tensorflow":
        with tf.GradientTape() as tape:
            tape.watch(args)
            y = tf.reduce_sum(f(*args))
        grads = [g.numpy() for g in tape.gradient(y, args)]
    else:
        grads = jax.grad(lambda *xs: jnp.sum(f(*xs)), argnums=(0, 1, 2))(*args)
    np.testing.assert_allclose(grads[0], 2 * np.asarray(A))
    np.testing.assert_array_equal(grads[1], np.zeros(3))
    np.testing.assert_array_equal(grads[2], np.zeros(3))


def test_integer_and_detached_torch_outputs_need_no_gradient():
    def stats(x):
        return {"y": x * 2, "argmax": torch.argmax(x), "frozen": x.detach() + 1}

    out = wrap(stats, source="torch", target="jax")
    grads = jax.grad(lambda x: jnp.sum(out(x)["y"]) + jnp.sum(out(x)["frozen"]))(tensor("jax", A))
    np.testing.assert_allclose(grads, [2.0, 2.0, 2.0])  # "frozen" contributes nothing
    assert out(tensor("jax", A))["argmax"].dtype == jnp.int64


@pytest.mark.parametrize("source", ["tensorflow", "jax"])
def test_integer_outputs_are_marked_non_differentiable_in_torch(source):
    argmax = {"tensorflow": tf.argmax, "jax": jnp.argmax}[source]
    f = wrap(lambda x: (x * 2, argmax(x)), source=source, target="torch")
    x = tensor("torch", A).requires_grad_(True)
    y, index = f(x)
    assert y.requires_grad and not index.requires_grad
    assert index.item() == 2
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 2.0, 2.0])


def test_stop_gradient_in_torch_source_stops_tensorflow_gradient():
    f = wrap(lambda x: (x * 3, x.detach() * 5), source="torch", target="tensorflow")
    x = tensor("tensorflow", A)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        live, frozen = f(x)
    np.testing.assert_allclose(tape.gradient(live, x).numpy(), [3.0] * 3)
    assert tape.gradient(frozen, x) is None


def test_integer_inputs_pass_through_without_gradient():
    def gather(table, index):
        return table[index] * 2.0

    f = wrap(gather, source="jax", target="torch")
    table = tensor("torch", A).requires_grad_(True)
    index = torch.tensor([2, 0])
    f(table, index).sum().backward()
    np.testing.assert_allclose(table.grad.numpy(), [2.0, 0.0, 2.0])


def test_gradients_can_be_pulled_twice_with_retain_graph():
    f = wrap(lambda a: a**2, source="tensorflow", target="torch")
    x = tensor("torch", A).requires_grad_(True)
    y = f(x).sum()
    (g1,) = torch.autograd.grad(y, x, retain_graph=True)
    (g2,) = torch.autograd.grad(y, x)
    np.testing.assert_allclose(g1.numpy(), g2.numpy())
