"""PyTorch as the target: a function of another framework called with torch tensors, with
gradients through ``torch.autograd.Function``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from septet.bridge.nest import NestSpec, flatten
from septet.bridge.sources import SOURCES, SourceRun
from septet.bridge.transfer import convert, dtype_name, is_float_dtype, is_torch_tensor


class _Crossing:
    """What one call carries into and out of the autograd.Function (it takes no other objects)."""

    __slots__ = ("call", "out_spec", "source")

    def __init__(self, source: Any, call: Callable[[list[Any]], Any]):
        self.source = source
        self.call = call
        self.out_spec: NestSpec | None = None


class _BridgeFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, crossing: _Crossing, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        name = crossing.source.name
        grad_mask = list(ctx.needs_input_grad[1:])
        run: SourceRun = crossing.source.run(
            crossing.call, [convert(x, "torch", name) for x in inputs], grad_mask
        )
        crossing.out_spec = run.out_spec
        outputs = tuple(convert(o, name, "torch") for o in run.outputs)
        ctx.mark_non_differentiable(
            *(o for o, d in zip(outputs, run.differentiable, strict=True) if not d)
        )
        ctx.run = run
        ctx.source_name = name
        ctx.input_devices = [x.device for x in inputs]
        return outputs

    @staticmethod
    def backward(ctx: Any, *grad_outputs: torch.Tensor) -> tuple[Any, ...]:
        run: SourceRun = ctx.run
        name = ctx.source_name
        cotangents = [
            convert(g.contiguous(), "torch", name) if d and g is not None else None
            for g, d in zip(grad_outputs, run.differentiable, strict=True)
        ]
        grads = run.vjp(cotangents) if run.vjp is not None else [None] * len(ctx.input_devices)
        result: list[Any] = [None]
        for g, device in zip(grads, ctx.input_devices, strict=True):
            if g is None:
                result.append(None)
                continue
            g = convert(g, name, "torch")
            result.append(g if g.device == device else g.to(device))
        return tuple(result)


def torch_from_source(fn: Callable[..., Any], source: str) -> Callable[..., Any]:
    """``fn`` (written for ``source``) as a function of torch tensors with autograd."""
    src = SOURCES[source]

    def bridged(*args: Any, **kwargs: Any) -> Any:
        leaves, spec = flatten((args, kwargs), is_torch_tensor)

        def call(source_leaves: list[Any]) -> Any:
            a, k = spec.rebuild(source_leaves)
            return fn(*a, **k)

        needs_grad = torch.is_grad_enabled() and any(
            x.requires_grad and is_float_dtype(dtype_name(x)) for x in leaves
        )
        if not needs_grad:  # forward only: no autograd node, no tape on the source side
            run = src.run(call, [convert(x, "torch", source) for x in leaves], None)
            return run.out_spec.rebuild([convert(o, source, "torch") for o in run.outputs])
        crossing = _Crossing(src, call)
        outputs = _BridgeFunction.apply(crossing, *leaves)
        return crossing.out_spec.rebuild(list(outputs))

    return bridged
