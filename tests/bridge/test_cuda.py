"""The CUDA paths of the bridge, where a GPU is seen by both PyTorch and JAX: a CUDA tensor
crosses to a JAX GPU array and back by DLPack without a copy, and gradients flow through
both wrappers on the GPU (eager and, for a torch function inside JAX, under jit). CI has no
GPU, so these run where one is present:
`JAX_PLATFORMS=cuda,cpu pytest tests/bridge/test_cuda.py`."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from septet.bridge import convert, jax_from_torch, torch_from_jax


def _jax_gpu():
    try:
        return jax.devices("gpu")[0]
    except RuntimeError:  # no GPU backend (JAX_PLATFORMS=cpu, or a CPU-only jaxlib)
        return None


pytestmark = pytest.mark.skipif(
    not torch.cuda.is_available() or _jax_gpu() is None,
    reason="needs a CUDA GPU that PyTorch and JAX both see",
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int32])
def test_a_cuda_tensor_crosses_to_a_jax_gpu_array_and_back_without_a_copy(dtype):
    x = torch.arange(1 << 20, device="cuda").to(dtype)
    y = convert(x, "torch", "jax")
    assert y.devices() == {_jax_gpu()}
    assert y.unsafe_buffer_pointer() == x.data_ptr()
    back = convert(y, "jax", "torch")
    assert back.device.type == "cuda" and back.data_ptr() == x.data_ptr()
    assert torch.equal(back, x)


def test_a_jax_function_called_with_cuda_tensors_gives_torch_gradients_on_the_gpu():
    f = torch_from_jax(lambda a, b: jnp.sum(3 * a + 4 * b**2))
    a = torch.ones(64, device="cuda", requires_grad=True)
    b = torch.full((64,), 3.0, device="cuda", requires_grad=True)
    y = f(a, b)
    assert y.device.type == "cuda"
    y.backward()
    assert a.grad.device.type == "cuda" and b.grad.device.type == "cuda"
    assert torch.allclose(a.grad, torch.full_like(a, 3.0))
    assert torch.allclose(b.grad, torch.full_like(b, 24.0))
    assert float(y.detach()) == pytest.approx(64 * (3 + 36))


def test_a_torch_function_inside_jax_on_the_gpu_is_differentiable_eagerly_and_under_jit():
    g = jax_from_torch(lambda a: (a.sin() * a).sum())
    x = jax.device_put(jnp.linspace(0.0, 1.0, 256, dtype=jnp.float32), _jax_gpu())
    expected = np.sin(np.asarray(x)) + np.asarray(x) * np.cos(np.asarray(x))
    for fn in (jax.value_and_grad(g), jax.jit(jax.value_and_grad(g))):
        value, grad = fn(x)
        assert grad.devices() == {_jax_gpu()}
        np.testing.assert_allclose(np.asarray(grad), expected, rtol=1e-5, atol=1e-6)
        assert float(value) == pytest.approx(
            float(np.sum(np.sin(np.asarray(x)) * np.asarray(x))), rel=1e-5
        )
