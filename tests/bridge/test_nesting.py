"""Any nest of tensors in and out (tuples, lists, dicts, namedtuples), several inputs and
outputs, non-tensor arguments passed through unchanged."""

from collections import namedtuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import torch
from hypothesis import given
from hypothesis import strategies as st

from septet.bridge import wrap
from septet.bridge.nest import flatten

from .helpers import DIRECTION_IDS, DIRECTIONS, tensor

Pair = namedtuple("Pair", "left right")


def nested_function(inputs, scale, *, mode="sum"):
    """Takes {'x': t, 'ys': [t, t]} and a Python float; returns a nest with a namedtuple."""
    assert isinstance(scale, float) and mode in ("sum", "diff")  # passed through untouched
    x, (y0, y1) = inputs["x"], inputs["ys"]
    combined = y0 + y1 if mode == "sum" else y0 - y1
    return {"scaled": x * scale, "pair": Pair(combined, (x * y0,)), "label": mode}


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
def test_nests_in_and_out_with_static_arguments(source, target):
    f = wrap(nested_function, source=source, target=target)
    x, y0, y1 = (tensor(target, v) for v in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]))
    out = f({"x": x, "ys": [y0, y1]}, 2.0, mode="diff")
    assert out["label"] == "diff"
    assert isinstance(out["pair"], Pair) and isinstance(out["pair"].right, tuple)
    np.testing.assert_allclose(np.asarray(out["scaled"]), [2.0, 4.0])
    np.testing.assert_allclose(np.asarray(out["pair"].left), [-2.0, -2.0])
    np.testing.assert_allclose(np.asarray(out["pair"].right[0]), [3.0, 8.0])
    assert (
        type(out["scaled"]).__module__.split(".")[0]
        in {
            "torch": ("torch",),
            "tensorflow": ("tensorflow",),
            "jax": ("jaxlib", "jax"),
        }[target]
    )


def test_gradients_reach_every_leaf_of_a_nest():
    f = wrap(nested_function, source="tensorflow", target="torch")
    x, y0, y1 = (torch.tensor(v, requires_grad=True) for v in ([1.0, 2.0], [3.0, 4.0], [5.0, 6.0]))
    out = f({"x": x, "ys": [y0, y1]}, 2.0)
    (out["scaled"].sum() + out["pair"].left.sum() + out["pair"].right[0].sum()).backward()
    assert x.grad.tolist() == [2.0 + 3.0, 2.0 + 4.0]
    assert y0.grad.tolist() == [1.0 + 1.0, 1.0 + 2.0]
    assert y1.grad.tolist() == [1.0, 1.0]


def test_jax_gradients_through_a_dict_of_parameters_under_jit():
    def model(params, x):
        return torch.tanh(x @ params["w"] + params["b"])

    f = wrap(model, source="torch", target="jax")
    params = {"w": jnp.ones((3, 2)) * 0.1, "b": jnp.zeros(2)}
    x = jnp.arange(6.0).reshape(2, 3)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(f(p, x))))(params)
    expected = jax.grad(lambda p: jnp.sum(jnp.tanh(x @ p["w"] + p["b"])))(params)
    np.testing.assert_allclose(grads["w"], expected["w"], rtol=1e-12)
    np.testing.assert_allclose(grads["b"], expected["b"], rtol=1e-12)


leaves = st.integers(0, 9).map(lambda i: ("T", i)) | st.one_of(st.none(), st.text(max_size=3))
nests = st.recursive(
    leaves,
    lambda kids: (
        st.lists(kids, max_size=3)
        | st.tuples(kids, kids)
        | st.dictionaries(st.text(max_size=2), kids, max_size=3)
    ),
    max_leaves=12,
)


@given(nests)
def test_flatten_then_rebuild_is_the_identity(tree):
    is_tensor = lambda x: isinstance(x, tuple) and len(x) == 2 and x[0] == "T"  # noqa: E731
    flat, spec = flatten(tree, is_tensor)
    assert spec.rebuild(flat) == tree
    assert all(is_tensor(x) for x in flat)


def test_numpy_arrays_are_tensorflow_and_jax_inputs():
    tf_f = wrap(lambda x: x * 2, source="torch", target="tensorflow")
    jax_f = wrap(lambda x: x * 2, source="torch", target="jax")
    assert isinstance(tf_f(np.ones(2)), tf.Tensor)
    assert isinstance(jax_f(np.ones(2)), jax.Array)
