"""JAX functions with parameters trained by PyTorch, and PyTorch modules trained in JAX.

JAX arrays are immutable and torch optimizers update in place, so the parameters are copied
once, when the wrapper is made, into the framework that trains them; every call after that
lends them to the other side by DLPack without a copy.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import jax
import torch

from septet.bridge.api import jax_from_torch, torch_from_jax
from septet.bridge.transfer import convert
from septet.errors import InputError


class TorchModuleFromJax(torch.nn.Module):
    """``fn(params, *inputs)`` of JAX as a torch.nn.Module whose Parameters are the leaves of
    the ``params`` pytree (any pytree: dicts, lists, Flax FrozenDicts)."""

    def __init__(self, fn: Callable[..., Any], params: Any):
        super().__init__()
        if not callable(fn):
            raise InputError(f"expected a JAX function fn(params, *inputs), got {type(fn)}")
        with_paths, self._treedef = jax.tree_util.tree_flatten_with_path(params)
        if not with_paths:
            raise InputError("params holds no arrays; pass the pytree of JAX parameters")
        self._names = []
        for path, leaf in with_paths:
            name = re.sub(r"\W", "_", jax.tree_util.keystr(path)).strip("_") or "param"
            name = f"{name}_{len(self._names)}" if hasattr(self, name) else name
            # One copy: torch owns the trained values (it writes them in place).
            tensor = convert(jax.numpy.asarray(leaf), "jax", "torch").clone()
            self.register_parameter(name, torch.nn.Parameter(tensor))
            self._names.append(name)
        self._fn = fn
        self._bridged = torch_from_jax(self._apply)

    def _apply(self, leaves: list[Any], args: tuple, kwargs: dict) -> Any:
        return self._fn(jax.tree_util.tree_unflatten(self._treedef, leaves), *args, **kwargs)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Call ``fn(params, *args)`` with torch tensors; gradients reach the Parameters."""
        return self._bridged([getattr(self, n) for n in self._names], args, kwargs)

    def jax_params(self) -> Any:
        """The current parameters as the original JAX pytree (views of the torch memory)."""
        leaves = [convert(getattr(self, n), "torch", "jax") for n in self._names]
        return jax.tree_util.tree_unflatten(self._treedef, leaves)


def jax_function_from_torch_module(
    module: torch.nn.Module,
) -> tuple[Callable[..., Any], dict[str, Any]]:
    """``(apply, params)`` for a torch module: ``apply(params, *inputs)`` is a differentiable,
    jittable JAX function, ``params`` a dict of JAX arrays (a copy of the module's parameters)
    for JAX code (optax, your own SGD) to train."""
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
    params = {
        name: jax.numpy.array(convert(p.detach(), "torch", "jax"), copy=True)
        for name, p in module.named_parameters()
    }

    def functional(named: dict[str, torch.Tensor], args: tuple, kwargs: dict) -> Any:
        return torch.func.functional_call(module, named, args, kwargs)

    bridged = jax_from_torch(functional)

    def apply(params: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        return bridged(params, args, kwargs)

    return apply, params
