"""Moving one tensor between PyTorch, TensorFlow and JAX: by DLPack, sharing the buffer, when
the layout allows; otherwise with exactly one copy, logged at debug level with the reason.

The zero-copy rules (docs/bridge.md repeats them):

* the source tensor is contiguous (row-major, no gaps); a strided torch view is copied once;
* for TensorFlow the buffer starts on a 64-byte boundary (TensorFlow's Eigen kernels assume
  aligned buffers; a torch view with an offset is copied once); JAX copies unaligned buffers
  itself, which we detect and log;
* the target framework can hold the device (a CUDA tensor stays on the GPU only where the target
  framework was built with CUDA; tensorflow-cpu and jax[cpu] get a host copy);
* the dtype exists on both sides: every float (incl. bfloat16, float16), int, uint8 and bool
  crosses; JAX without 64-bit mode turns 64-bit dtypes into 32-bit ones (a copy and a warning).

Nothing here imports a framework at module import; each function imports the two it joins.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

log = logging.getLogger("septet.bridge")

FRAMEWORKS = ("torch", "tensorflow", "jax")
_TF_ALIGNMENT = 64  # bytes; EIGEN_MAX_ALIGN_BYTES on x86-64 builds with AVX-512
_warned_x64: set[str] = set()


# --- what is a tensor of which framework (without importing any of them) -----------------------


def is_torch_tensor(x: Any) -> bool:
    """True for a torch.Tensor (only if torch is already imported)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_tensorflow_tensor(x: Any) -> bool:
    """True for a TensorFlow tensor (eager or symbolic), tf.Variable or Keras variable."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return False
    if isinstance(x, tf.Tensor | tf.Variable):
        return True
    keras_variable = getattr(sys.modules.get("keras"), "Variable", None)
    return keras_variable is not None and isinstance(x, keras_variable)


def is_jax_array(x: Any) -> bool:
    """True for a jax.Array, concrete or a tracer (only if jax is already imported)."""
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(x, jax.Array)


IS_TENSOR = {"torch": is_torch_tensor, "tensorflow": is_tensorflow_tensor, "jax": is_jax_array}


def dtype_name(x: Any) -> str:
    """The numpy-style name of a tensor's dtype: 'float32', 'bfloat16', 'bool', 'int64'..."""
    if is_torch_tensor(x):
        return str(x.dtype).removeprefix("torch.")
    dtype = x.dtype
    return getattr(dtype, "name", None) or str(dtype)


def is_float_dtype(name: str) -> bool:
    """True for dtypes that carry gradients (real or complex floating point)."""
    return name.startswith(("float", "bfloat", "complex"))


def convert(x: Any, source: str, target: str) -> Any:
    """``x``, a tensor of ``source``, as a tensor of ``target`` (shared buffer when possible)."""
    if source == target:
        return x
    return _CONVERTERS[(source, target)](x)


def _copied(x_desc: str, source: str, target: str, why: str) -> None:
    log.debug("copied %s from %s to %s: %s", x_desc, source, target, why)


def _describe(x: Any) -> str:
    return f"{dtype_name(x)}{list(x.shape)}"


# --- torch ---------------------------------------------------------------------------------------


def _torch_plain(t: Any, target: str, *, aligned: bool = False) -> Any:
    """``t`` detached, contiguous and on a device ``target`` can read; copies once if needed."""
    import torch

    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
        _copied(_describe(t), "torch", target, "conjugate/negative view materialised")
    if t.device.type != "cpu" and not _has_accelerator(target, t.device.type):
        _copied(_describe(t), "torch", target, f"{target} has no {t.device.type} device")
        return t.to("cpu")
    if not t.is_contiguous():
        _copied(_describe(t), "torch", target, f"not contiguous (strides {t.stride()})")
        return t.contiguous()
    if aligned and t.numel() and t.data_ptr() % _TF_ALIGNMENT:
        _copied(_describe(t), "torch", target, f"buffer not {_TF_ALIGNMENT}-byte aligned")
        return t.clone(memory_format=torch.contiguous_format)
    return t


def _has_accelerator(framework: str, kind: str) -> bool:
    if framework == "tensorflow":
        import tensorflow as tf

        return kind == "cuda" and bool(tf.config.list_logical_devices("GPU"))
    if framework == "jax":
        import jax

        try:
            return kind == "cuda" and bool(jax.devices("gpu"))
        except RuntimeError:
            return False
    return False


def torch_to_numpy(t: Any) -> np.ndarray:
    """A host numpy copy/view of a torch tensor; bfloat16 comes out as ml_dtypes.bfloat16."""
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.resolve_conj().resolve_neg().numpy()


def numpy_to_torch(a: np.ndarray) -> Any:
    """A torch tensor over a numpy array (shared); ml_dtypes.bfloat16 becomes torch.bfloat16."""
    import torch

    if a.dtype.name == "bfloat16":
        return torch.from_numpy(np.ascontiguousarray(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(a))


def _torch_to_tensorflow(t: Any) -> Any:
    import tensorflow as tf

    t = _torch_plain(t, "tensorflow", aligned=True)
    try:
        capsule = _torch_cpu_capsule(t) if t.device.type == "cpu" else t.__dlpack__()
        return tf.experimental.dlpack.from_dlpack(capsule)
    except Exception as error:  # a dtype or device DLPack cannot carry here
        _copied(_describe(t), "torch", "tensorflow", f"DLPack refused: {error}")
        return tf.convert_to_tensor(torch_to_numpy(t))


def _torch_to_jax(t: Any) -> Any:
    import jax.numpy as jnp

    t = _torch_plain(t, "jax")
    _warn_if_x64_off(dtype_name(t))
    try:
        out = None
        if t.device.type == "cpu":
            out = _jax_from_cpu_capsule(_torch_cpu_capsule(t))
        if out is None:
            out = jnp.from_dlpack(t)
    except Exception as error:
        _copied(_describe(t), "torch", "jax", f"DLPack refused: {error}")
        return jnp.asarray(torch_to_numpy(t))
    if (
        log.isEnabledFor(logging.DEBUG)
        and t.numel()
        and out.unsafe_buffer_pointer() != (t.data_ptr())
    ):
        _copied(_describe(t), "torch", "jax", "JAX copied the buffer (alignment or dtype)")
    return out


# --- TensorFlow ----------------------------------------------------------------------------------


def tensorflow_value(x: Any) -> Any:
    """A tf.Tensor for a tensor, tf.Variable or Keras variable (a variable's read shares its
    buffer on the same device)."""
    import tensorflow as tf

    if isinstance(x, tf.Tensor):
        return x
    if isinstance(x, tf.Variable):
        return x.value()
    return tf.convert_to_tensor(x)


def _tensorflow_to_torch(x: Any) -> Any:
    import torch

    x = tensorflow_value(x)
    try:
        return torch.from_dlpack(tf_dlpack_capsule(x))
    except Exception as error:
        _copied(_describe(x), "tensorflow", "torch", f"DLPack refused: {error}")
        return numpy_to_torch(x.numpy()).clone()


def tensorflow_address(x: Any) -> int:
    """The address of a TensorFlow tensor's buffer (TensorFlow has no public accessor; DLPack
    exports the pointer itself)."""
    import torch

    return torch.from_dlpack(tf_dlpack_capsule(tensorflow_value(x))).data_ptr()


def tf_dlpack_capsule(x: Any) -> Any:
    """A DLPack capsule sharing the buffer of TensorFlow eager tensor ``x``."""
    import tensorflow as tf

    return tf.experimental.dlpack.to_dlpack(x)


class _Capsule:
    """Gives a bare DLPack capsule the ``__dlpack__`` protocol that jnp.from_dlpack expects."""

    __slots__ = ("capsule", "device")

    def __init__(self, capsule: Any, device: tuple[int, int]):
        self.capsule = capsule
        self.device = device

    def __dlpack__(self, **_: Any) -> Any:
        return self.capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return self.device


def _tf_dlpack_device(x: Any) -> tuple[int, int]:
    # "/job:localhost/replica:0/task:0/device:GPU:1" -> (kDLCUDA=2, 1); CPU is (kDLCPU=1, 0)
    kind, _, index = x.device.rpartition("device:")[2].partition(":")
    return (2, int(index or 0)) if kind == "GPU" else (1, 0)


def _torch_cpu_capsule(t: Any) -> Any:
    # torch.utils.dlpack.to_dlpack is the C++ export itself; Tensor.__dlpack__ adds Python-level
    # stream handling that only CUDA tensors need (a few µs per call).
    import torch.utils.dlpack

    return torch.utils.dlpack.to_dlpack(t)


@functools.cache
def _jaxlib_cpu_importer() -> Callable[[Any], Any] | None:
    """jaxlib's own DLPack import for CPU buffers, or None where this jaxlib lacks it.

    jnp.from_dlpack spends ~80 µs per call in Python (device lookup, stream negotiation, a
    dtype-canonicalising jnp.asarray); the import underneath takes ~10. For CPU buffers there is
    no stream to negotiate, so the bridge calls it directly, with the public API as fallback."""
    try:
        import jax
        from jax._src.lib import _jax, jaxlib_extension_version

        if jaxlib_extension_version < 467:
            return None
        cpu = jax.devices("cpu")[0]
        to_buffer = _jax.dlpack_managed_tensor_to_buffer
        return lambda capsule: to_buffer(capsule, cpu, None, None, 1)
    except Exception:  # a jaxlib whose internals moved: use the public path
        return None


def _jax_from_cpu_capsule(capsule: Any) -> Any:
    """A JAX array sharing a CPU DLPack capsule's buffer, or None to use jnp.from_dlpack."""
    importer = _jaxlib_cpu_importer()
    if importer is None:
        return None
    try:
        out = importer(capsule)
    except Exception:  # e.g. an unaligned buffer: jnp.from_dlpack copies it
        return None
    import jax

    if out.dtype != jax.dtypes.canonicalize_dtype(out.dtype):  # 64-bit dtype, x64 off
        out = jax.numpy.asarray(out, dtype=jax.dtypes.canonicalize_dtype(out.dtype))
    return out


def _tensorflow_to_jax(x: Any) -> Any:
    import jax.numpy as jnp

    x = tensorflow_value(x)
    _warn_if_x64_off(dtype_name(x))
    try:
        device = _tf_dlpack_device(x)
        out = _jax_from_cpu_capsule(tf_dlpack_capsule(x)) if device == (1, 0) else None
        return out if out is not None else jnp.from_dlpack(_Capsule(tf_dlpack_capsule(x), device))
    except Exception as error:
        _copied(_describe(x), "tensorflow", "jax", f"DLPack refused: {error}")
        return jnp.asarray(x.numpy())


# --- JAX -----------------------------------------------------------------------------------------


def _jax_to_torch(a: Any) -> Any:
    import torch

    try:
        return torch.from_dlpack(a)
    except Exception as error:  # sharded over several devices, or a device torch lacks
        _copied(_describe(a), "jax", "torch", f"DLPack refused: {error}")
        return numpy_to_torch(np.array(a))


def _jax_to_tensorflow(a: Any) -> Any:
    import tensorflow as tf

    if _unaligned_jax_buffer(a):
        # JAX may alias a numpy array's memory, aligned only to 16 bytes; TensorFlow aborts the
        # process (not an exception) on such a buffer, so copy into a buffer TensorFlow owns.
        _copied(_describe(a), "jax", "tensorflow", f"buffer not {_TF_ALIGNMENT}-byte aligned")
        return tf.convert_to_tensor(np.array(a))
    try:
        return tf.experimental.dlpack.from_dlpack(a.__dlpack__())
    except Exception as error:
        _copied(_describe(a), "jax", "tensorflow", f"DLPack refused: {error}")
        return tf.convert_to_tensor(np.array(a))


def _unaligned_jax_buffer(a: Any) -> bool:
    if not a.size:
        return False
    try:
        pointer = a.unsafe_buffer_pointer()
    except AttributeError:  # numpy-backed JAX literals (e.g. jnp.asarray of a numpy array)
        pointer = np.asarray(a).ctypes.data
    except Exception:  # sharded or deleted: no single pointer to check, so copy to be safe
        return True
    return pointer % _TF_ALIGNMENT != 0


def _warn_if_x64_off(name: str) -> None:
    if name not in ("float64", "int64", "uint64", "complex128") or name in _warned_x64:
        return
    import jax

    if not jax.config.jax_enable_x64:
        _warned_x64.add(name)
        log.warning(
            "JAX's 64-bit mode is off, so %s becomes a 32-bit dtype in JAX (a copy); call "
            "jax.config.update('jax_enable_x64', True) to keep it",
            name,
        )


_CONVERTERS = {
    ("torch", "tensorflow"): _torch_to_tensorflow,
    ("torch", "jax"): _torch_to_jax,
    ("tensorflow", "torch"): _tensorflow_to_torch,
    ("tensorflow", "jax"): _tensorflow_to_jax,
    ("jax", "torch"): _jax_to_torch,
    ("jax", "tensorflow"): _jax_to_tensorflow,
}
