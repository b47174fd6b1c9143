"""Differentiable calls between TensorFlow, PyTorch and JAX, without copies (re-creates tfpyth).

``torch_from_tensorflow(fn)`` and its five siblings return ``fn`` as a function of the target
framework's tensors, with gradients; ``wrap(fn, source=..., target=...)`` names both sides.
Tensors cross by DLPack (shared buffers) when the layout allows, otherwise with one logged copy.
The model wrappers let one framework's optimizer train another framework's weights.
"""

from septet.common import lazy_exports

__all__ = [
    "KerasLayerFromTorch",
    "TorchModuleFromJax",
    "TorchModuleFromKeras",
    "convert",
    "jax_from_tensorflow",
    "jax_from_torch",
    "jax_function_from_torch_module",
    "tensorflow_from_jax",
    "tensorflow_from_torch",
    "torch_from_jax",
    "torch_from_tensorflow",
    "wrap",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "wrap": ".api",
        "torch_from_tensorflow": ".api",
        "tensorflow_from_torch": ".api",
        "torch_from_jax": ".api",
        "jax_from_torch": ".api",
        "tensorflow_from_jax": ".api",
        "jax_from_tensorflow": ".api",
        "convert": ".transfer",
        "TorchModuleFromKeras": ".keras_models",
        "KerasLayerFromTorch": ".keras_models",
        "TorchModuleFromJax": ".jax_models",
        "jax_function_from_torch_module": ".jax_models",
    },
)
