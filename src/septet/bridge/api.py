"""The six directions and ``wrap``: a function written for one framework, called from another
with that framework's tensors, gradients included."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from septet.bridge.transfer import FRAMEWORKS
from septet.errors import ConfigError, MissingDependencyError

_ALIASES = {"torch": "torch", "pytorch": "torch", "tensorflow": "tensorflow", "tf": "tensorflow"}
_ALIASES["jax"] = "jax"


def _framework(name: str, role: str) -> str:
    key = str(name).lower()
    if key not in _ALIASES:
        raise ConfigError(f"unknown {role} framework {name!r}; use one of: {', '.join(FRAMEWORKS)}")
    return _ALIASES[key]


def _require(module: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(module, "bridge")


def wrap(
    fn: Callable[..., Any], *, source: str, target: str, vmap_method: str = "sequential"
) -> Callable[..., Any]:
    """``fn``, written for framework ``source``, as a function of ``target`` tensors with
    reverse-mode gradients. Frameworks: 'torch', 'tensorflow' ('tf'), 'jax'. ``vmap_method``
    applies when ``target`` is JAX (how ``jax.vmap`` batches the callback under ``jit``)."""
    if not callable(fn):
        raise ConfigError(f"wrap() needs a callable, got {type(fn).__name__}")
    source, target = _framework(source, "source"), _framework(target, "target")
    if source == target:
        raise ConfigError(f"source and target are both {source!r}; call the function directly")
    _require(source)
    _require(target)
    if target == "torch":
        from septet.bridge.to_torch import torch_from_source

        bridged = torch_from_source(fn, source)
    elif target == "tensorflow":
        from septet.bridge.to_tensorflow import tensorflow_from_source

        bridged = tensorflow_from_source(fn, source)
    else:
        from septet.bridge.to_jax import jax_from_source

        bridged = jax_from_source(fn, source, vmap_method=vmap_method)
    try:
        import functools

        functools.update_wrapper(bridged, fn)
    except (AttributeError, TypeError):  # e.g. a Keras layer: no __name__ to copy
        pass
    bridged.__wrapped_source__ = source  # type: ignore[attr-defined]
    return bridged


def torch_from_tensorflow(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A TensorFlow function (eager or tf.function) callable with torch tensors, with autograd."""
    return wrap(fn, source="tensorflow", target="torch")


def tensorflow_from_torch(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A PyTorch function callable with TensorFlow tensors, differentiable by GradientTape."""
    return wrap(fn, source="torch", target="tensorflow")


def torch_from_jax(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A JAX function (plain or jax.jit) callable with torch tensors, with autograd."""
    return wrap(fn, source="jax", target="torch")


def jax_from_torch(
    fn: Callable[..., Any], *, vmap_method: str = "sequential"
) -> Callable[..., Any]:
    """A PyTorch function callable with JAX arrays: differentiable, and usable under jax.jit."""
    return wrap(fn, source="torch", target="jax", vmap_method=vmap_method)


def tensorflow_from_jax(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A JAX function callable with TensorFlow tensors, differentiable by GradientTape."""
    return wrap(fn, source="jax", target="tensorflow")


def jax_from_tensorflow(
    fn: Callable[..., Any], *, vmap_method: str = "sequential"
) -> Callable[..., Any]:
    """A TensorFlow function callable with JAX arrays: differentiable, usable under jax.jit."""
    return wrap(fn, source="tensorflow", target="jax", vmap_method=vmap_method)
