"""Keras models trained by PyTorch optimizers, and PyTorch modules trained by Keras optimizers.

``TorchModuleFromKeras``: each trainable tf.Variable of the Keras layer is exposed as a torch
Parameter that *shares its memory* (DLPack alias of the variable's buffer). A torch optimizer's
in-place update is therefore an update of the tf.Variable: the Keras model itself is trained,
with no copy per step. The forward runs ``layer.stateless_call`` on the parameter values, so
gradients reach them through the ordinary bridge. TensorFlow may move a variable to a new buffer
when it assigns it while a reader holds the old one (copy-on-write), e.g. when Keras code calls
``assign``; the module checks the buffers before each forward and re-aliases a moved one.

``KerasLayerFromTorch``: the Keras layer owns the weights as Keras variables (so Keras
optimizers, ``fit``, checkpoints see them) and runs the torch module as a pure function of them
(``torch.func.functional_call``) with the variables' buffers lent to torch by DLPack for the
call. Keras optimizers update variables in place only while no one else holds their buffer,
so the layer lends, never keeps. ``sync_to_torch()`` copies the trained weights into the module.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

import keras
import tensorflow as tf
import torch

from septet.bridge.api import tensorflow_from_torch, torch_from_tensorflow
from septet.bridge.transfer import convert, torch_to_numpy
from septet.errors import ConfigError, InputError


def _check_tensorflow_backend() -> None:
    if keras.backend.backend() != "tensorflow":
        raise ConfigError(
            f"the Keras bridge needs the TensorFlow backend, but Keras runs on "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras"
        )


def _parameter_name(path: str, taken: set[str]) -> str:
    name = re.sub(r"\W", "_", path) or "weight"
    unique, n = name, 1
    while unique in taken:
        n += 1
        unique = f"{name}_{n}"
    taken.add(unique)
    return unique


def _buffer_of(variable: Any) -> torch.Tensor:
    """A torch view of a Keras/tf variable's current buffer (no copy)."""
    return convert(variable.value.value(), "tensorflow", "torch")


class TorchModuleFromKeras(torch.nn.Module):
    """A built Keras layer or model as a torch.nn.Module whose Parameters are its trainable
    tf.Variables (same memory), so a torch optimizer trains the Keras weights."""

    def __init__(self, layer: keras.layers.Layer, example_inputs: Any = None):
        super().__init__()
        _check_tensorflow_backend()
        if not isinstance(layer, keras.layers.Layer):
            raise InputError(f"expected a Keras layer or model, got {type(layer).__name__}")
        if not layer.built:
            if example_inputs is None:
                raise InputError(
                    f"Keras layer {layer.name!r} is not built, so its variables do not exist "
                    "yet; call it once or pass example_inputs=... to TorchModuleFromKeras"
                )
            layer(example_inputs)
        object.__setattr__(self, "keras_layer", layer)  # not a torch submodule
        self._trainable = list(layer.trainable_variables)
        self._non_trainable = list(layer.non_trainable_variables)
        taken: set[str] = set()
        self._names = []
        for variable in self._trainable:
            name = _parameter_name(variable.path, taken)
            self.register_parameter(name, torch.nn.Parameter(_buffer_of(variable)))
            self._names.append(name)
        self._takes_training = "training" in inspect.signature(layer.call).parameters
        self._bridged = torch_from_tensorflow(self._stateless_forward)

    def _stateless_forward(self, trainable: list[tf.Tensor], args: tuple, kwargs: dict) -> Any:
        layer = self.keras_layer
        non_trainable = [v.value.value() for v in self._non_trainable]
        outputs, new_non_trainable = layer.stateless_call(trainable, non_trainable, *args, **kwargs)
        # State such as BatchNormalization's moving averages stays in the Keras variables.
        for variable, value in zip(self._non_trainable, new_non_trainable, strict=True):
            if value is not variable.value:
                variable.assign(value)
        return outputs

    def _realias_moved_buffers(self) -> None:
        for name, variable in zip(self._names, self._trainable, strict=True):
            parameter = getattr(self, name)
            current = _buffer_of(variable)
            if current.data_ptr() != parameter.data_ptr():
                parameter.data = current

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the Keras layer on torch tensors; gradients reach the Parameters (tf.Variables)."""
        self._realias_moved_buffers()
        if self._takes_training and "training" not in kwargs:
            kwargs["training"] = self.training
        parameters = [getattr(self, name) for name in self._names]
        return self._bridged(parameters, args, kwargs)


class KerasLayerFromTorch(keras.layers.Layer):
    """A torch.nn.Module as a Keras layer: its parameters become Keras weights (copied once,
    here) that Keras optimizers train; the module runs as a function of them."""

    def __init__(self, module: torch.nn.Module, **kwargs: Any):
        _check_tensorflow_backend()
        if not isinstance(module, torch.nn.Module):
            raise InputError(f"expected a torch.nn.Module, got {type(module).__name__}")
        super().__init__(**kwargs)
        object.__setattr__(self, "torch_module", module)  # not tracked by Keras
        self.supports_jit = False  # the call leaves the graph (tf.py_function): no XLA
        named = list(module.named_parameters())
        self._parameter_names = [name for name, _ in named]
        self._torch_weights = []
        taken: set[str] = set()
        for name, parameter in named:
            value = torch_to_numpy(parameter)
            weight = self.add_weight(
                shape=tuple(parameter.shape),
                dtype=str(parameter.dtype).removeprefix("torch."),
                initializer="zeros",
                trainable=parameter.requires_grad,
                name=_parameter_name(name, taken),
            )
            weight.assign(value)
            self._torch_weights.append(weight)
        self._bridged = tensorflow_from_torch(self._functional_forward)
        self.built = True

    def _functional_forward(self, parameters: list[torch.Tensor], args: tuple, kwargs: dict) -> Any:
        named = dict(zip(self._parameter_names, parameters, strict=True))
        return torch.func.functional_call(self.torch_module, named, args, kwargs)

    def call(self, *args: Any, training: bool | None = None, **kwargs: Any) -> Any:
        if training is not None:
            self.torch_module.train(bool(training))
        variables = [w.value for w in self._torch_weights]
        return self._bridged(variables, args, kwargs)

    def sync_to_torch(self) -> torch.nn.Module:
        """Copy the Keras weights into the torch module's parameters; returns the module."""
        with torch.no_grad():
            for name, weight in zip(self._parameter_names, self._torch_weights, strict=True):
                self.torch_module.get_parameter(name).copy_(_buffer_of(weight))
        return self.torch_module
