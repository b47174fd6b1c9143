"""Weight-only quantisation for fast CPU decoding.

Decoding one token at a time reads every weight once per token and does little arithmetic
with it, so its speed is set by memory bandwidth: fewer bytes per weight, more tokens per
second. ``quantize_for_decoding`` replaces a decoder's linear layers by
:class:`PackedLinear` layers that keep their weights in one of:

- ``"int4"``: 4-bit integers in groups of 32 along the input dimension, each group with its
  own scale and zero point (asymmetric, as GGUF's Q4_1: a Q4_1 checkpoint is represented with
  the same integers; only its scales are rounded to bfloat16). 1/8 of the fp32 bytes.
- ``"int8"``: 8-bit integers with one scale per output row. 1/4 of the bytes.
- ``"bf16"``: bfloat16. 1/2 of the bytes.

Activations are cast to bfloat16 for the matmul and back (or, with ``exact_activations``,
split into two bf16 halves for decoding steps); the residual stream, norms and attention stay
in float32. On SmolLM2 Q4_1, int4 layers + bf16 head decode ~4x faster than fp32 with the
same greedy tokens (benchmarks/results/transformers.md). The kernels are PyTorch's own CPU
weight-only kernels (``_weight_int4pack_mm_for_cpu``, ``_weight_int8pack_mm``). Llama-family
models also get their q/k/v and gate/up projections fused into one matmul each. A quantised
model is for inference: it cannot be saved or trained.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import ConfigError

SCHEMES = ("int4", "int8", "bf16")
GROUP_SIZE = 32
# Up to this many rows (decoding steps of small batches) activations are split into two
# bf16 parts so the bf16 kernels lose almost no activation precision.
SPLIT_MAX_ROWS = 4


def _int4_pack(weight: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(packed weight, scales_and_zeros (in/group, out, 2) bf16) such that
    w = (q - 8) * scale + zero, q in 0..15, per group of ``group_size`` inputs."""
    out_features, in_features = weight.shape
    groups = weight.float().reshape(out_features, in_features // group_size, group_size)
    low = groups.amin(dim=-1, keepdim=True)
    high = groups.amax(dim=-1, keepdim=True)
    scale = ((high - low) / 15).clamp_min(1e-10)
    zero = low + 8 * scale
    # The kernel reads bf16 scales/zeros: quantise against the rounded values it will use.
    scale_bf16, zero_bf16 = scale.bfloat16(), zero.bfloat16()
    q = torch.round((groups - zero_bf16.float()) / scale_bf16.float() + 8).clamp_(0, 15)
    q = q.to(torch.int32).reshape(out_features, in_features)
    packed = torch._convert_weight_to_int4pack_for_cpu(q, 1)
    scales_and_zeros = torch.stack([scale_bf16[..., 0], zero_bf16[..., 0]], dim=-1)
    return packed, scales_and_zeros.transpose(0, 1).contiguous()  # (groups, out, 2)


class PackedLinear(nn.Module):
    """A bias-optional linear layer whose weight is stored quantised (see module doc)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scheme: str):
        super().__init__()
        if scheme not in SCHEMES:
            raise ConfigError(f"unknown weight scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
        out_features, in_features = weight.shape
        if scheme == "int4" and in_features % GROUP_SIZE:
            scheme = "int8"  # int4 groups must tile the input dimension
        self.scheme = scheme
        self.exact_activations = False
        self.in_features, self.out_features = in_features, out_features
        weight = weight.detach()
        if scheme == "int4":
            packed, scales_and_zeros = _int4_pack(weight, GROUP_SIZE)
            self.register_buffer("packed", packed)
            self.register_buffer("scales_and_zeros", scales_and_zeros)
        elif scheme == "int8":
            scale = (weight.float().abs().amax(dim=1) / 127).clamp_min(1e-10)
            q = torch.round(weight.float() / scale[:, None]).clamp_(-127, 127).to(torch.int8)
            self.register_buffer("packed", q)
            self.register_buffer("scales", scale.bfloat16())
        else:
            self.register_buffer("packed", weight.bfloat16().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features)
        rows = x2.shape[0]
        if self.exact_activations and rows <= SPLIT_MAX_ROWS and x2.dtype == torch.float32:
            # x = hi + lo, both bf16, keeps ~16 bits of x instead of 8. Decoding is
            # bandwidth-bound and the second call finds the weights in cache, so it is cheap;
            # two calls, not one of twice the rows: the int4 kernel is fastest for one row.
            hi = x2.to(torch.bfloat16)
            lo = (x2 - hi.float()).to(torch.bfloat16)
            y = self._matmul(hi).float() + self._matmul(lo).float()
        else:
            y = self._matmul(x2.to(torch.bfloat16)).float()
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features)

    def _matmul(self, x: torch.Tensor) -> torch.Tensor:
        if self.scheme == "int4":
            return torch._weight_int4pack_mm_for_cpu(
                x, self.packed, GROUP_SIZE, self.scales_and_zeros
            )
        if self.scheme == "int8":
            return torch._weight_int8pack_mm(x, self.packed, self.scales)
        return F.linear(x, self.packed)

    def weight_bytes(self) -> int:
        """Bytes read per use: the packed weight plus its scales."""
        return sum(b.numel() * b.element_size() for b in self.buffers())

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, scheme={self.scheme}"


def _fused(layers: list[nn.Linear], scheme: str) -> PackedLinear:
    weight = torch.cat([layer.weight for layer in layers], dim=0)
    biases = [layer.bias for layer in layers]
    bias = (
        None
        if all(b is None for b in biases)
        else torch.cat(
            [
                b if b is not None else torch.zeros(layer.out_features)
                for b, layer in zip(biases, layers, strict=True)
            ]
        )
    )
    return PackedLinear(weight, bias, scheme)


def quantize_for_decoding(
    model: Any, weights: str = "int4", *, lm_head: str = "bf16", exact_activations: bool = False
) -> Any:
    """Replace ``model``'s linear layers by PackedLinear (in place; returns the model).
    ``weights`` is the scheme of the transformer layers, ``lm_head`` that of the output
    projection ("fp32" leaves it as is; tied models share it with the embeddings, which stay
    float). ``exact_activations``: decoding steps feed activations as two bf16 halves (a
    smaller logit error, but two kernel calls per layer: about 1.5x slower decoding)."""
    for scheme in (weights, lm_head):
        if scheme not in SCHEMES and scheme != "fp32":
            raise ConfigError(f"unknown weight scheme {scheme!r}; use one of {', '.join(SCHEMES)}")
    if not torch.backends.cpu.get_cpu_capability() or model.device.type != "cpu":
        raise ConfigError("quantize_for_decoding targets CPU inference; move the model to the CPU")
    with torch.no_grad():
        for module in list(model.modules()):
            # Llama family: one matmul for q/k/v and one for gate/up.
            if hasattr(module, "qkv_proj") and getattr(module, "q_proj", None) is not None:
                module.qkv_proj = _fused([module.q_proj, module.k_proj, module.v_proj], weights)
                del module.q_proj, module.k_proj, module.v_proj
            if hasattr(module, "gate_up_proj") and getattr(module, "gate_proj", None) is not None:
                module.gate_up_proj = _fused([module.gate_proj, module.up_proj], weights)
                del module.gate_proj, module.up_proj
        for name, module in list(model.named_modules()):
            for child_name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    full = f"{name}.{child_name}" if name else child_name
                    scheme = lm_head if full == "lm_head" else weights
                    if scheme == "fp32":
                        continue
                    setattr(module, child_name, PackedLinear(child.weight, child.bias, scheme))
        for module in model.modules():
            if isinstance(module, PackedLinear):
                module.exact_activations = exact_activations
    model.quantized = weights
    return model.eval()


def refuse_if_quantized(model: nn.Module) -> None:
    """Raise ConfigError if ``model`` holds PackedLinear layers (saving would write packed
    integers under names no loader knows)."""
    if any(isinstance(m, PackedLinear) for m in model.modules()):
        raise ConfigError(
            "this model was quantised for decoding and cannot be saved; save the model "
            "before calling quantize_for_decoding"
        )


def weight_bytes_per_token(model: nn.Module) -> int:
    """Bytes of weights a single decoding step reads: every linear layer's weights (packed or
    float), the norms, and one embedding row."""
    total = 0
    for module in model.modules():
        if isinstance(module, PackedLinear):
            total += module.weight_bytes()
        elif isinstance(module, nn.Linear):
            total += module.weight.numel() * module.weight.element_size()
            if module.bias is not None:
                total += module.bias.numel() * module.bias.element_size()
        elif isinstance(module, nn.Embedding):
            total += module.weight.shape[1] * module.weight.element_size()
        elif not list(module.children()):
            total += sum(p.numel() * p.element_size() for p in module.parameters(recurse=False))
    return total
