"""The source side of a crossing: run a function written for one framework on that framework's
tensors, and (when asked) keep what is needed to pull gradients back through it.

One class per framework with the same two methods:

* ``run(call, inputs, grad_mask)`` calls ``call(inputs)`` and returns a ``SourceRun``: the
  flat output tensors, the output nest, which outputs carry gradients, and ``vjp`` (vector-Jacobian
  product: output cotangents in, input gradients out; zeros for inputs the outputs do not use);
* ``output_specs(call, specs)`` says which shapes and dtypes ``call`` returns for inputs of the
  given shapes and dtypes without computing them (needed under ``jax.jit`` and ``tf.function``,
  where a callback must declare its outputs up front).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from septet.bridge.nest import NestSpec, flatten
from septet.bridge.transfer import (
    dtype_name,
    is_float_dtype,
    is_jax_array,
    is_tensorflow_tensor,
    is_torch_tensor,
    tensorflow_value,
)
from septet.errors import InputError

Shape = tuple[int | None, ...]
# (shape, dtype name); None in a shape is a dimension unknown at trace time, None as the
# shape an unknown rank
Spec = tuple[Shape | None, str]
Call = Callable[[list[Any]], Any]


@dataclass
class SourceRun:
    """The result of one forward call on the source side."""

    outputs: list[Any]  # flat output tensors of the source framework
    out_spec: NestSpec  # how to rebuild the function's output nest from them
    differentiable: list[bool]  # per output: does a gradient flow back through it?
    vjp: Callable[[list[Any]], list[Any]] | None  # cotangents (None = zero) -> input gradients


@dataclass
class OutputSpecs:
    """Shapes and dtypes of a function's flat outputs, and its output nest."""

    specs: list[Spec]
    out_spec: NestSpec

    @property
    def differentiable(self) -> list[bool]:
        return [is_float_dtype(dtype) for _, dtype in self.specs]


class TorchSource:
    name = "torch"

    @staticmethod
    def run(call: Call, inputs: list[Any], grad_mask: Sequence[bool] | None) -> SourceRun:
        import torch

        if not grad_mask or not any(grad_mask):
            out = call(inputs)
            flat, spec = flatten(out, is_torch_tensor)
            return SourceRun(flat, spec, [False] * len(flat), None)
        leaves = [
            x.detach().requires_grad_(bool(m)) if m else x
            for x, m in zip(inputs, grad_mask, strict=True)
        ]
        with torch.enable_grad():
            out = call(leaves)
        flat, spec = flatten(out, is_torch_tensor)
        # An output that does not require grad (integer, detached, independent of the inputs)
        # gets no cotangent: torch.autograd.grad would refuse it.
        differentiable = [o.requires_grad and is_float_dtype(dtype_name(o)) for o in flat]
        wrt = [x for x, m in zip(leaves, grad_mask, strict=True) if m]

        def vjp(cotangents: list[Any]) -> list[Any]:
            outs, grads_out = [], []
            for o, d, ct in zip(flat, differentiable, cotangents, strict=True):
                if d:
                    outs.append(o)
                    grads_out.append(torch.zeros_like(o) if ct is None else ct.to(o.dtype))
            grads = (
                torch.autograd.grad(outs, wrt, grads_out, allow_unused=True, retain_graph=True)
                if outs
                else [None] * len(wrt)
            )
            filled = iter(
                torch.zeros_like(x) if g is None else g for x, g in zip(wrt, grads, strict=True)
            )
            return [next(filled) if m else None for m in grad_mask]

        return SourceRun(flat, spec, differentiable, vjp)

    @staticmethod
    def output_specs(call: Call, specs: list[Spec]) -> OutputSpecs:
        import torch

        def empty(shape: Shape, dtype: str) -> Any:
            return torch.empty(tuple(shape), dtype=getattr(torch, dtype))

        from torch._subclasses.fake_tensor import DynamicOutputShapeException, FakeTensorMode

        try:
            # FakeTensorMode runs the function on shape-only tensors: no memory, no compute.
            with FakeTensorMode(allow_non_fake_inputs=True):
                out = call([empty(s, d) for s, d in specs])
        except DynamicOutputShapeException as error:  # e.g. x[x > 0], nonzero, unique
            raise InputError(
                "this torch function's output shapes depend on the input values "
                f"({error}), so they cannot be declared before it runs (under jax.jit or "
                "tf.function); call it eagerly or make its output shapes static"
            ) from error
        except Exception:  # an op without a fake kernel: run it once on zeros instead
            out = call([torch.zeros(tuple(s), dtype=getattr(torch, d)) for s, d in specs])
        flat, spec = flatten(out, is_torch_tensor)
        return OutputSpecs([(tuple(o.shape), dtype_name(o)) for o in flat], spec)


class TensorFlowSource:
    name = "tensorflow"

    @staticmethod
    def run(call: Call, inputs: list[Any], grad_mask: Sequence[bool] | None) -> SourceRun:
        import tensorflow as tf

        if not grad_mask or not any(grad_mask):
            flat, spec = flatten(call(inputs), is_tensorflow_tensor)
            flat = [tensorflow_value(o) for o in flat]
            return SourceRun(flat, spec, [False] * len(flat), None)
        wrt = [x for x, m in zip(inputs, grad_mask, strict=True) if m]
        # persistent: torch.autograd.gradcheck and retain_graph=True pull gradients more than once
        with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
            tape.watch(wrt)
            out = call(inputs)
            flat, spec = flatten(out, is_tensorflow_tensor)
            flat = [tensorflow_value(o) for o in flat]
        differentiable = [is_float_dtype(o.dtype.name) for o in flat]

        def vjp(cotangents: list[Any]) -> list[Any]:
            targets, grads_out = [], []
            for o, d, ct in zip(flat, differentiable, cotangents, strict=True):
                if d:
                    targets.append(o)
                    grads_out.append(tf.zeros_like(o) if ct is None else ct)
            grads = tape.gradient(
                targets,
                wrt,
                output_gradients=grads_out,
                unconnected_gradients=tf.UnconnectedGradients.ZERO,
            )
            grads = iter(grads)
            return [next(grads) if m else None for m in grad_mask]

        return SourceRun(flat, spec, differentiable, vjp)

    @staticmethod
    def output_specs(call: Call, specs: list[Spec]) -> OutputSpecs:
        import tensorflow as tf

        signature = [tf.TensorSpec(shape, getattr(tf, dtype)) for shape, dtype in specs]
        traced = tf.function(lambda *xs: call(list(xs)), autograph=False)
        out = traced.get_concrete_function(*signature).structured_outputs
        flat, spec = flatten(out, is_tensorflow_tensor)
        return OutputSpecs([(tuple(o.shape.as_list()), o.dtype.name) for o in flat], spec)


class JaxSource:
    name = "jax"

    @staticmethod
    def run(call: Call, inputs: list[Any], grad_mask: Sequence[bool] | None) -> SourceRun:
        import jax
        import numpy as np

        if not grad_mask or not any(grad_mask):
            flat, spec = flatten(call(inputs), is_jax_array)
            return SourceRun(flat, spec, [False] * len(flat), None)
        positions = [i for i, m in enumerate(grad_mask) if m]
        nest: dict[str, NestSpec] = {}

        def flat_call(*wrt: Any) -> list[Any]:
            xs = list(inputs)
            for i, value in zip(positions, wrt, strict=True):
                xs[i] = value
            flat_out, nest["spec"] = flatten(call(xs), is_jax_array)
            return flat_out

        flat, vjp_fn = jax.vjp(flat_call, *[inputs[i] for i in positions])
        differentiable = [is_float_dtype(o.dtype.name) for o in flat]

        def vjp(cotangents: list[Any]) -> list[Any]:
            cts = []
            for o, d, ct in zip(flat, differentiable, cotangents, strict=True):
                if not d:  # integer outputs take a float0 cotangent in JAX
                    cts.append(np.zeros(o.shape, dtype=jax.dtypes.float0))
                else:
                    cts.append(jax.numpy.zeros_like(o) if ct is None else ct.astype(o.dtype))
            grads = iter(vjp_fn(cts))
            return [next(grads) if m else None for m in grad_mask]

        return SourceRun(flat, nest["spec"], differentiable, vjp)

    @staticmethod
    def output_specs(call: Call, specs: list[Spec]) -> OutputSpecs:
        import jax

        structs = [jax.ShapeDtypeStruct(tuple(s), d) for s, d in specs]
        out = jax.eval_shape(lambda *xs: call(list(xs)), *structs)
        flat, spec = flatten(out, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        return OutputSpecs([(tuple(o.shape), o.dtype.name) for o in flat], spec)


SOURCES = {"torch": TorchSource, "tensorflow": TensorFlowSource, "jax": JaxSource}


def output_specs_allowing_unknown_dims(source: Any, call: Call, specs: list[Spec]) -> OutputSpecs:
    """Output specs when some input dimensions are unknown (None, e.g. a Keras batch): trace
    with those dimensions set to 2 and to 3; an output dimension that differs is unknown."""
    if all(d is not None for shape, _ in specs for d in shape):
        return source.output_specs(call, specs)

    def filled(size: int) -> list[Spec]:
        return [(tuple(size if d is None else d for d in shape), dt) for shape, dt in specs]

    first = source.output_specs(call, filled(2))
    second = source.output_specs(call, filled(3))
    merged = []
    for (shape_a, dtype), (shape_b, _) in zip(first.specs, second.specs, strict=True):
        if len(shape_a) != len(shape_b):
            merged.append((None, dtype))  # the rank itself depends on the unknown size
            continue
        merged.append(
            (tuple(a if a == b else None for a, b in zip(shape_a, shape_b, strict=False)), dtype)
        )
    return OutputSpecs(merged, first.out_spec)
