"""TensorFlow as the target: a function of another framework called with TensorFlow tensors,
with gradients through ``tf.custom_gradient`` (so GradientTape and Keras optimizers see them).

Eagerly, the source runs once and keeps its graph for the backward pass. Inside a
``tf.function`` (Keras ``fit`` compiles one) the crossing becomes two ``tf.py_function`` ops:
the forward, and a backward that runs the source function again to get its gradients, since a
graph cannot hold the other framework's autograd state between the two."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from septet.bridge.nest import flatten
from septet.bridge.sources import SOURCES, output_specs_allowing_unknown_dims
from septet.bridge.transfer import convert, is_float_dtype, is_tensorflow_tensor, tensorflow_value
from septet.errors import InputError


def _tape_is_recording() -> bool:
    try:
        from tensorflow.python.eager import record

        return bool(record.could_possibly_record())
    except (ImportError, AttributeError):  # private API moved: assume a tape may be recording
        return True


def _is_tensorflow_input(x: Any) -> bool:
    return is_tensorflow_tensor(x) or isinstance(x, np.ndarray)


def tensorflow_from_source(fn: Callable[..., Any], source: str) -> Callable[..., Any]:
    """``fn`` (written for ``source``) as a function of TensorFlow tensors with gradients."""
    src = SOURCES[source]

    def bridged(*args: Any, **kwargs: Any) -> Any:
        # numpy arrays are TensorFlow inputs too, as for any TensorFlow op
        leaves, spec = flatten((args, kwargs), _is_tensorflow_input)
        # Read variables here, before the crossing is recorded: the read is then an ordinary op on
        # the tape and gradients reach the variable.
        leaves = [tensorflow_value(x) for x in leaves]

        def call(source_leaves: list[Any]) -> Any:
            a, k = spec.rebuild(source_leaves)
            return fn(*a, **k)

        if tf.executing_eagerly():
            return _eager(src, call, leaves)
        return _in_graph(src, call, leaves)

    # AutoGraph must not rewrite the bridge (or the other framework's code it calls) when the
    # caller's function is a tf.function.
    return tf.autograph.experimental.do_not_convert(bridged)


def _eager(src: Any, call: Callable[[list[Any]], Any], leaves: list[Any]) -> Any:
    name = src.name
    float_mask = [is_float_dtype(x.dtype.name) for x in leaves]
    if not leaves or not _tape_is_recording() or not any(float_mask):
        run = src.run(call, [convert(x, "tensorflow", name) for x in leaves], None)
        return run.out_spec.rebuild([convert(o, name, "tensorflow") for o in run.outputs])
    run = src.run(call, [convert(x, "tensorflow", name) for x in leaves], float_mask)
    outputs = [convert(o, name, "tensorflow") for o in run.outputs]

    def backward(*upstream: Any) -> list[Any]:
        cotangents = [
            convert(g, "tensorflow", name) if d and g is not None else None
            for g, d in zip(upstream, run.differentiable, strict=True)
        ]
        grads = run.vjp(cotangents)
        return [
            None if g is None else _as_dtype_of(convert(g, name, "tensorflow"), x)
            for g, x in zip(grads, leaves, strict=True)
        ]

    _record_on_tapes(outputs, leaves, backward)
    outputs = [
        o if d else tf.stop_gradient(o) for o, d in zip(outputs, run.differentiable, strict=True)
    ]
    return run.out_spec.rebuild(outputs)


def _as_dtype_of(gradient: Any, x: Any) -> Any:
    # JAX without 64-bit mode computes a float64 input's gradient in float32; TensorFlow wants
    # the input's dtype back.
    return gradient if gradient.dtype == x.dtype else tf.cast(gradient, x.dtype)


def _record_on_tapes(outputs: list[Any], inputs: list[Any], backward: Callable) -> None:
    """Tell every recording GradientTape that ``outputs`` came from ``inputs`` by ``backward``.

    This is what tf.custom_gradient does underneath; calling it directly skips that
    decorator's per-call argument inspection, nest walks and identity ops (~0.5 ms a call)."""
    try:
        from tensorflow.python.eager import record
    except ImportError:  # private module moved: go through the public decorator
        record = None
    if record is not None:
        record.record_operation("SeptetBridge", outputs, inputs, backward)
        return

    @tf.custom_gradient
    def identity_with_gradient(*xs: Any) -> Any:
        return [tf.identity(o) for o in outputs], lambda *g: backward(*g)

    outputs[:] = identity_with_gradient(*inputs)


def _in_graph(src: Any, call: Callable[[list[Any]], Any], leaves: list[Any]) -> Any:
    name = src.name
    input_specs = [
        (None if x.shape.rank is None else tuple(x.shape.as_list()), x.dtype.name) for x in leaves
    ]
    if any(shape is None for shape, _ in input_specs):
        raise InputError(
            "inside tf.function a tensor of unknown rank cannot cross the bridge (its output "
            "shapes cannot be worked out); give the tf.function an input_signature with ranks"
        )
    known = output_specs_allowing_unknown_dims(src, call, input_specs)
    out_dtypes = [getattr(tf, dtype) for _, dtype in known.specs]
    float_mask = [is_float_dtype(dtype) for _, dtype in input_specs]
    float_inputs = [i for i, m in enumerate(float_mask) if m]

    def forward_py(*xs: tf.Tensor) -> list[tf.Tensor]:
        run = src.run(call, [convert(x, "tensorflow", name) for x in xs], None)
        return [convert(o, name, "tensorflow") for o in run.outputs]

    def backward_py(*xs_and_upstream: tf.Tensor) -> list[tf.Tensor]:
        xs, upstream = xs_and_upstream[: len(leaves)], xs_and_upstream[len(leaves) :]
        run = src.run(call, [convert(x, "tensorflow", name) for x in xs], float_mask)
        cotangents = [
            convert(g, "tensorflow", name) if d else None
            for g, d in zip(upstream, run.differentiable, strict=True)
        ]
        grads = run.vjp(cotangents)
        return [_as_dtype_of(convert(grads[i], name, "tensorflow"), xs[i]) for i in float_inputs]

    @tf.custom_gradient
    def crossing(*xs: tf.Tensor) -> Any:
        outputs = tf.py_function(forward_py, list(xs), Tout=out_dtypes)
        for o, (shape, _) in zip(outputs, known.specs, strict=True):
            o.set_shape(shape)

        def grad(*upstream: Any) -> list[Any]:
            upstream = [
                tf.zeros_like(o) if g is None else g
                for o, g in zip(outputs, upstream, strict=False)
            ]
            grads = tf.py_function(
                backward_py, [*xs, *upstream], Tout=[xs[i].dtype for i in float_inputs]
            )
            result: list[Any] = [None] * len(xs)
            for i, g in zip(float_inputs, grads, strict=True):
                g.set_shape(xs[i].shape)
                result[i] = g
            return result

        return outputs, grad

    if not out_dtypes:
        return known.out_spec.rebuild([])
    outputs = crossing(*leaves)
    diff = known.differentiable
    outputs = [o if d else tf.stop_gradient(o) for o, d in zip(outputs, diff, strict=True)]
    return known.out_spec.rebuild(outputs)
