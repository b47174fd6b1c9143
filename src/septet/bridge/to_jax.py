"""JAX as the target: a function of another framework called with JAX arrays, with gradients
through ``jax.custom_vjp``.

On concrete arrays (plain calls, ``jax.grad`` outside ``jit``) the source runs directly on
shared buffers and keeps its autograd state for the backward pass. Under ``jax.jit`` (or
``vmap``) the arrays are tracers, so the crossing is a ``jax.pure_callback`` that declares its
output shapes up front; its backward is a second callback that runs the source again for the
gradients, since a compiled program cannot carry the other framework's state between the two."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import jax
import numpy as np

from septet.bridge.nest import NestSpec, flatten
from septet.bridge.sources import SOURCES, SourceRun
from septet.bridge.transfer import convert, dtype_name, is_float_dtype, is_jax_array
from septet.errors import InputError


class _Opaque:
    """A Python object riding along in JAX residuals (a pytree node with no array leaves)."""

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value


jax.tree_util.register_pytree_node(_Opaque, lambda o: ((), o.value), lambda v, _: _Opaque(v))


def _is_jax_input(x: Any) -> bool:
    return is_jax_array(x) or isinstance(x, np.ndarray)


def _is_concrete(xs: Any) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in xs)


def jax_from_source(
    fn: Callable[..., Any], source: str, *, vmap_method: str = "sequential"
) -> Callable[..., Any]:
    """``fn`` (written for ``source``) as a function of JAX arrays, differentiable and jittable.
    ``vmap_method`` is passed to ``jax.pure_callback`` (how ``vmap`` batches the callback)."""
    src = SOURCES[source]

    def bridged(*args: Any, **kwargs: Any) -> Any:
        # numpy arrays are JAX inputs too (jax.test_util and jnp functions pass them)
        leaves, spec = flatten((args, kwargs), _is_jax_input)
        leaves = [x if is_jax_array(x) else jax.numpy.asarray(x) for x in leaves]

        def call(source_leaves: list[Any]) -> Any:
            a, k = spec.rebuild(source_leaves)
            return fn(*a, **k)

        if _is_concrete(leaves):
            # No transformation sees these arrays (grad and jit hand us tracers): call
            # directly, with no custom_vjp machinery on the way.
            run = src.run(call, [convert(x, "jax", source) for x in leaves], None)
            return run.out_spec.rebuild([convert(o, source, "jax") for o in run.outputs])
        crossing = _Crossing(src, call, leaves, vmap_method)
        outputs = _crossing_op(crossing, *leaves)
        return crossing.out_spec.rebuild(list(outputs))

    return bridged


# One custom_vjp for every bridged call; the call's own state rides in the non-differentiable
# first argument, so JAX does not rebuild (and re-inspect) a custom_vjp per call.
@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _crossing_op(crossing: _Crossing, *xs: Any) -> tuple[Any, ...]:
    return crossing.primal(*xs)


def _crossing_forward(crossing: _Crossing, *xs: Any) -> tuple[tuple[Any, ...], Any]:
    return crossing.forward(*xs)


def _crossing_backward(crossing: _Crossing, residual: Any, cotangents: Any) -> tuple[Any, ...]:
    return crossing.backward(residual, cotangents)


_crossing_op.defvjp(_crossing_forward, _crossing_backward)


class _Crossing:
    """One call's custom_vjp: forward, backward and the output nest they share."""

    def __init__(self, src: Any, call: Callable, leaves: list[Any], vmap_method: str):
        self.src = src
        self.call = call
        self.vmap_method = vmap_method
        self.input_dtypes = [dtype_name(x) for x in leaves]
        self.float_mask = [is_float_dtype(d) for d in self.input_dtypes]
        self.input_structs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
        self.out_spec: NestSpec | None = None
        self.out_structs: list[jax.ShapeDtypeStruct] | None = None

    # --- direct, on concrete arrays ------------------------------------------------------------

    def _run(self, xs: tuple[Any, ...], grad_mask: list[bool] | None) -> SourceRun:
        name = self.src.name
        run = self.src.run(self.call, [convert(x, "jax", name) for x in xs], grad_mask)
        self.out_spec = run.out_spec
        return run

    def _outputs(self, run: SourceRun) -> tuple[Any, ...]:
        return tuple(convert(o, self.src.name, "jax") for o in run.outputs)

    # --- through callbacks, under jit/vmap -----------------------------------------------------

    def _structs(self, xs: tuple[Any, ...]) -> list[jax.ShapeDtypeStruct]:
        if self.out_structs is None:
            specs = [(tuple(x.shape), d) for x, d in zip(xs, self.input_dtypes, strict=True)]
            known = self.src.output_specs(self.call, specs)
            if any(shape is None or None in shape for shape, _ in known.specs):
                raise InputError(
                    "under jax.jit the bridged function must declare its output shapes before "
                    f"it runs, but this {self.src.name} function's output shapes depend on the "
                    "input values; call it outside jax.jit or make its output shapes static"
                )
            self.out_spec = known.out_spec
            # Without 64-bit mode JAX holds int64/float64 results as 32-bit (as convert does)
            canonical = jax.dtypes.canonicalize_dtype
            self.out_structs = [jax.ShapeDtypeStruct(s, canonical(d)) for s, d in known.specs]
        return self.out_structs

    def _forward_callback(self, xs: tuple[Any, ...]) -> tuple[Any, ...]:
        structs = self._structs(xs)
        return tuple(
            jax.pure_callback(
                lambda *cxs: self._checked(self._outputs(self._run(cxs, None)), structs),
                tuple(structs),
                *xs,
                vmap_method=self.vmap_method,
            )
        )

    def _checked(self, outputs: tuple[Any, ...], structs: list[Any]) -> tuple[Any, ...]:
        for o, struct in zip(outputs, structs, strict=True):
            if tuple(o.shape) != tuple(struct.shape) or o.dtype != struct.dtype:
                raise InputError(
                    f"under jax.jit this {self.src.name} function returned {o.dtype}"
                    f"{list(o.shape)} where its traced shapes said {struct.dtype}"
                    f"{list(struct.shape)}: its output shapes depend on the input values; "
                    "call it outside jax.jit"
                )
        return outputs

    # --- custom_vjp --------------------------------------------------------------------------

    def primal(self, *xs: Any) -> tuple[Any, ...]:
        if _is_concrete(xs):
            return self._outputs(self._run(xs, None))
        return self._forward_callback(xs)

    def forward(self, *xs: Any) -> tuple[tuple[Any, ...], Any]:
        if _is_concrete(xs):
            run = self._run(xs, self.float_mask)
            return self._outputs(run), (_Opaque(run), ())
        return self._forward_callback(xs), (_Opaque(None), xs)

    def backward(self, residual: Any, cotangents: tuple[Any, ...]) -> tuple[Any, ...]:
        opaque, xs = residual
        run: SourceRun | None = opaque.value
        if run is not None and _is_concrete(cotangents):
            return self._grads(run, cotangents)
        grad_structs = tuple(
            s for s, m in zip(self.input_structs, self.float_mask, strict=False) if m
        )

        def backward_callback(*flat: Any) -> tuple[Any, ...]:
            cxs, cts = flat[: len(xs)], flat[len(xs) :]
            # Under jit the forward kept nothing but its inputs: run the source again.
            kept = run if run is not None else self._run(cxs, self.float_mask)
            grads = self._grads(kept, cts)
            return tuple(g for g, m in zip(grads, self.float_mask, strict=True) if m)

        grads = iter(
            jax.pure_callback(
                backward_callback, grad_structs, *xs, *cotangents, vmap_method=self.vmap_method
            )
        )
        return tuple(next(grads) if m else None for m in self.float_mask)

    def _grads(self, run: SourceRun, cotangents: tuple[Any, ...]) -> tuple[Any, ...]:
        name = self.src.name
        cts = [
            convert(ct, "jax", name) if d and ct.dtype != jax.dtypes.float0 else None
            for ct, d in zip(cotangents, run.differentiable, strict=True)
        ]
        grads = run.vjp(cts) if run.vjp is not None else [None] * len(self.float_mask)
        return tuple(None if g is None else convert(g, name, "jax") for g in grads)
