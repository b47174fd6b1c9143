"""Compiled code on either side: a tf.function or jax.jit source, a bridged function inside
tf.function or jax.jit (and jax.vmap), shapes known at trace time, gradients intact."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import torch

from septet.bridge import (
    jax_from_tensorflow,
    jax_from_torch,
    tensorflow_from_jax,
    tensorflow_from_torch,
)


def test_jit_of_torch_function_matches_eager_and_keeps_dtype():
    f = jax_from_torch(lambda x, w: (torch.relu(x @ w), (x > 0).sum()))
    x = jnp.linspace(-1.0, 1.0, 12, dtype=jnp.float32).reshape(4, 3)
    w = jnp.ones((3, 2), jnp.bfloat16).astype(jnp.float32)
    eager, count = f(x, w)
    jitted, jit_count = jax.jit(f)(x, w)
    np.testing.assert_allclose(jitted, eager)
    assert jitted.dtype == eager.dtype == jnp.float32
    assert int(jit_count) == int(count) == 6


def test_vmap_over_a_bridged_function_runs_it_per_example():
    f = jax_from_torch(lambda v: torch.cumsum(v, 0))
    batch = jnp.arange(6.0).reshape(2, 3)
    np.testing.assert_allclose(jax.jit(jax.vmap(f))(batch), jnp.cumsum(batch, axis=1))
    grads = jax.grad(lambda b: jnp.sum(jax.vmap(f)(b) ** 2))(batch)
    expected = jax.grad(lambda b: jnp.sum(jnp.cumsum(b, axis=1) ** 2))(batch)
    np.testing.assert_allclose(grads, expected)


def test_tensorflow_source_under_jit_uses_its_traced_shapes():
    @tf.function
    def tf_model(x):
        return tf.reduce_mean(tf.reshape(x, (-1, 2)), axis=1)

    f = jax.jit(jax.value_and_grad(lambda x: jnp.sum(jax_from_tensorflow(tf_model)(x) ** 2)))
    value, grad = f(jnp.arange(4.0))
    assert float(value) == pytest.approx(0.5**2 + 2.5**2)
    np.testing.assert_allclose(grad, [0.5, 0.5, 2.5, 2.5])


def test_torch_function_inside_tf_function_with_unknown_batch():
    f = tensorflow_from_torch(lambda x: torch.nn.functional.softplus(x).sum(dim=1, keepdim=True))

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float64)])
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
            total = tf.reduce_sum(y)
        assert y.shape.as_list() == [None, 1]  # the batch size stays unknown, the rest is known
        return y, tape.gradient(total, x)

    x = tf.constant(np.linspace(-2, 2, 12).reshape(4, 3))
    y, grad = step(x)
    np.testing.assert_allclose(y.numpy(), np.log1p(np.exp(x.numpy())).sum(1, keepdims=True))
    np.testing.assert_allclose(grad.numpy(), 1 / (1 + np.exp(-x.numpy())))


def test_jitted_jax_function_inside_tf_function():
    f = tensorflow_from_jax(jax.jit(lambda x, y: {"p": x * y, "n": jnp.argmax(x)}))

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            tape.watch([x, y])
            out = f(x, y)
            total = tf.reduce_sum(out["p"])
        return out["n"], tape.gradient(total, [x, y])

    n, (gx, gy) = step(tf.constant([1.0, 5.0, 2.0]), tf.constant([2.0, 3.0, 4.0]))
    assert int(n) == 1
    np.testing.assert_allclose(gx.numpy(), [2.0, 3.0, 4.0])
    np.testing.assert_allclose(gy.numpy(), [1.0, 5.0, 2.0])


def test_value_dependent_shapes_under_jit_are_a_clear_error():
    from septet.errors import InputError

    f = jax_from_torch(lambda x: x[x > 0])  # the output's length depends on the values
    with pytest.raises(InputError, match="output shapes depend on the input values"):
        jax.jit(f)(jnp.asarray([1.0, -1.0, 2.0]))
    np.testing.assert_allclose(f(jnp.asarray([1.0, -1.0, 2.0])), [1.0, 2.0])  # eager is fine


@pytest.mark.parametrize("x64", [True, False], ids=["x64", "x32"])
def test_jit_grad_with_an_integer_output_in_both_jax_precisions(x64):
    # An integer output takes a float0 cotangent under jit; without 64-bit mode torch's int64
    # argmax must be declared as JAX's int32.
    f = jax_from_torch(lambda x: (x * 3, torch.argmax(x)))
    with jax.enable_x64(x64):
        x = jnp.asarray([1.0, 4.0, 2.0], jnp.float32)
        grad = jax.jit(jax.grad(lambda v: jnp.sum(f(v)[0])))(x)
        index = jax.jit(f)(x)[1]
    np.testing.assert_allclose(grad, [3.0, 3.0, 3.0])
    assert int(index) == 1 and index.dtype == (jnp.int64 if x64 else jnp.int32)


def test_float64_tensorflow_inputs_through_32_bit_jax_get_float64_gradients():
    f = tensorflow_from_jax(lambda x: jnp.sin(x))
    x = tf.constant([0.0, 1.0], tf.float64)
    with jax.enable_x64(False):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = f(x)
        grad = tape.gradient(y, x)
    assert grad.dtype == tf.float64
    np.testing.assert_allclose(grad.numpy(), np.cos([0.0, 1.0]), rtol=1e-6)
