"""Tensors cross by DLPack: the data pointer is the same on both sides for contiguous tensors of
every dtype (bfloat16, float16, ints, bool included); a layout DLPack cannot share costs one
copy, logged at debug level with the reason."""

import logging

import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
import torch

from septet.bridge import convert, wrap

from .helpers import DIRECTION_IDS, DIRECTIONS

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool"]


def make(framework, dtype, n=256):
    """A fresh contiguous tensor of ``framework`` holding 0, 1, 2, ... (or alternating bools)."""
    values = (
        torch.arange(n) % 2 == 1 if dtype == "bool" else torch.arange(n).to(getattr(torch, dtype))
    )
    return convert(values, "torch", framework) if framework != "torch" else values


def pointer(x):
    """The address of a tensor's first element, as each framework reports it."""
    if isinstance(x, torch.Tensor):
        return x.data_ptr()
    if isinstance(x, tf.Tensor):  # TensorFlow has no public pointer: ask DLPack, which shares
        return torch.from_dlpack(tf.experimental.dlpack.to_dlpack(x)).data_ptr()
    return x.unsafe_buffer_pointer()


def as_numpy(x):
    return (
        np.asarray(x.float() if x.dtype == torch.bfloat16 else x)
        if isinstance(x, torch.Tensor)
        else np.asarray(tf.cast(x, tf.float32) if getattr(x, "dtype", None) == tf.bfloat16 else x)
    )


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_contiguous_tensors_share_memory_and_keep_dtype(source, target, dtype):
    x = make(source, dtype)
    y = convert(x, source, target)
    assert pointer(y) == pointer(x)
    assert str(getattr(y.dtype, "name", y.dtype)).removeprefix("torch.") == dtype
    np.testing.assert_array_equal(
        np.asarray(as_numpy(y), dtype=np.float64), np.asarray(as_numpy(x), dtype=np.float64)
    )


@pytest.mark.parametrize(("source", "target"), DIRECTIONS, ids=DIRECTION_IDS)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "bool", "int32"])
def test_bridged_identity_returns_the_same_buffer(source, target, dtype):
    # Given a contiguous target tensor, when it crosses into the source framework and back
    # through an identity function, then the result still points at the caller's memory.
    identity = wrap(lambda x: x, source=source, target=target)
    x = make(target, dtype)
    y = identity(x)
    assert pointer(y) == pointer(x)
    assert y.dtype == x.dtype


def test_strided_torch_view_is_copied_once_with_a_logged_reason(caplog):
    view = torch.arange(12.0).reshape(3, 4).t()  # transposed: not contiguous
    with caplog.at_level(logging.DEBUG, logger="septet.bridge"):
        out = convert(view, "torch", "tensorflow")
    np.testing.assert_array_equal(out.numpy(), view.numpy())
    copies = [r.getMessage() for r in caplog.records if "copied" in r.getMessage()]
    assert len(copies) == 1 and "not contiguous" in copies[0]


def test_offset_view_is_copied_for_tensorflow_which_needs_aligned_buffers(caplog):
    view = torch.arange(17.0)[1:]  # contiguous, but starts 4 bytes into an aligned buffer
    with caplog.at_level(logging.DEBUG, logger="septet.bridge"):
        out = convert(view, "torch", "tensorflow")
    np.testing.assert_array_equal(out.numpy(), view.numpy())
    assert any("aligned" in r.getMessage() for r in caplog.records)
    assert pointer(out) % 64 == 0


def test_tensors_that_require_grad_cross_detached_without_copy():
    x = torch.ones(8, requires_grad=True)
    assert pointer(convert(x, "torch", "jax")) == x.data_ptr()


def test_scalars_and_empty_tensors_cross():
    for framework in ("tensorflow", "jax"):
        assert convert(torch.tensor(2.5), "torch", framework).shape == ()
        assert tuple(convert(torch.zeros(0, 3), "torch", framework).shape) == (0, 3)
    assert float(convert(jnp.asarray(2.5), "jax", "torch")) == 2.5


def test_tensorflow_variables_cross_as_their_current_value():
    v = tf.Variable([1.0, 2.0])
    t = convert(v, "tensorflow", "torch")
    assert t.tolist() == [1.0, 2.0]
    assert t.data_ptr() == pointer(v.value())
