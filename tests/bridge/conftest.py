"""Bridge tests run TensorFlow, PyTorch and JAX in one process: quiet their logs, keep JAX on
the CPU with 64-bit dtypes (the float64 gradient checks need them), import each once."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no oneDNN / CUDA banners from TensorFlow
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # exact float64 results, same on every CPU
os.environ.setdefault("JAX_PLATFORMS", "cpu")  # no probing for GPUs/TPUs (and its warnings)
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Two cores: XLA's own thread pool gains nothing here on tiny test tensors.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import jax
import pytest

jax.config.update("jax_enable_x64", True)


@pytest.fixture(scope="session")
def frameworks():
    """torch, tensorflow and jax.numpy, imported once for the whole bridge suite."""
    import jax.numpy as jnp
    import tensorflow as tf
    import torch

    tf.get_logger().setLevel("ERROR")
    return torch, tf, jnp
