"""Rotary position embeddings (RoPE) with the scaling schemes HF checkpoints use.

``rope_scaling`` (HF's ``rope_parameters`` minus ``rope_theta``) selects how the inverse
frequencies are stretched for contexts longer than pre-training: "linear" (positions divided
by ``factor``), "dynamic" (NTK: the base grows once a sequence passes
``max_position_embeddings``), "llama3" (low frequencies scaled, high kept, a smooth ramp
between) and "yarn" (NTK-by-parts ramp plus an attention temperature on cos/sin).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from septet.errors import ConfigError

ROPE_TYPES = ("default", "linear", "dynamic", "llama3", "yarn")


def default_inverse_frequencies(base: float, dim: int) -> torch.Tensor:
    """1 / base^(2i/dim) for i < dim/2 (float32)."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64).to(torch.float32) / dim
    return 1.0 / (base**exponents)


def _llama3(inv_freq: torch.Tensor, scaling: dict[str, Any], max_positions: int) -> torch.Tensor:
    factor = float(scaling["factor"])
    low_factor = float(scaling.get("low_freq_factor", 1.0))
    high_factor = float(scaling.get("high_freq_factor", 4.0))
    old_context = float(scaling.get("original_max_position_embeddings", max_positions))
    low_wavelen = old_context / low_factor
    high_wavelen = old_context / high_factor
    wavelen = 2 * math.pi / inv_freq
    # Long wavelengths (low frequencies) are interpolated, short ones kept, a ramp between.
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (old_context / wavelen - low_factor) / (high_factor - low_factor)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn(
    base: float, dim: int, scaling: dict[str, Any], max_positions: int
) -> tuple[torch.Tensor, float]:
    original = int(scaling.get("original_max_position_embeddings") or max_positions)
    factor = scaling.get("factor")
    factor = float(factor) if factor is not None else max_positions / original

    def mscale(scale: float, weight: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * weight * math.log(scale) + 1.0

    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:
        m, m_all = scaling.get("mscale"), scaling.get("mscale_all_dim")
        attention_factor = (
            mscale(factor, m) / mscale(factor, m_all) if m and m_all else mscale(factor)
        )
    beta_fast = float(scaling.get("beta_fast") or 32)
    beta_slow = float(scaling.get("beta_slow") or 1)

    def correction_dim(rotations: float) -> float:
        # The dimension whose wavelength fits ``rotations`` times in the original context.
        return dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    keep = 1 - ramp  # 1: extrapolate (keep frequency), 0: interpolate (divide by factor)
    powers = base ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    inv_freq = (1.0 / (factor * powers)) * (1 - keep) + (1.0 / powers) * keep
    return inv_freq, float(attention_factor)


def check_rope_scaling(scaling: dict[str, Any] | None) -> None:
    """Raise ConfigError for a rope scaling this module does not implement."""
    if scaling is None:
        return
    kind = scaling.get("rope_type", scaling.get("type"))
    if kind not in ROPE_TYPES:
        raise ConfigError(
            f"config key 'rope_scaling' has rope_type {kind!r}, which septet does not "
            f"implement; supported: {', '.join(ROPE_TYPES)}"
        )
    if kind in ("linear", "dynamic", "llama3") and not isinstance(
        scaling.get("factor"), int | float
    ):
        raise ConfigError(f"config key 'rope_scaling' of type {kind!r} needs a numeric 'factor'")
    if float(scaling.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConfigError("config key 'partial_rotary_factor' other than 1.0 is not supported")


class RotaryEmbedding(nn.Module):
    """cos/sin tables (batch, seq, head_dim) for given position ids."""

    def __init__(
        self, head_dim: int, base: float, max_positions: int, scaling: dict[str, Any] | None
    ):
        super().__init__()
        check_rope_scaling(scaling)
        self.head_dim = head_dim
        self.base = base
        self.max_positions = max_positions
        self.scaling = dict(scaling or {})
        self.kind = self.scaling.get("rope_type", self.scaling.get("type", "default"))
        inv_freq = default_inverse_frequencies(base, head_dim)
        self.attention_factor = 1.0
        if self.kind == "linear":
            inv_freq = inv_freq / float(self.scaling["factor"])
        elif self.kind == "llama3":
            inv_freq = _llama3(inv_freq, self.scaling, max_positions)
        elif self.kind == "yarn":
            inv_freq, self.attention_factor = _yarn(base, head_dim, self.scaling, max_positions)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _dynamic_inverse_frequencies(self, seq_len: int) -> torch.Tensor:
        # NTK-aware: beyond the trained length the base grows so low frequencies stretch.
        factor = float(self.scaling["factor"])
        seq_len = max(seq_len, self.max_positions)
        dim = self.head_dim
        base = self.base * ((factor * seq_len / self.max_positions) - (factor - 1)) ** (
            dim / (dim - 2)
        )
        return default_inverse_frequencies(base, dim).to(self.inv_freq.device)

    def forward(self, position_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each (batch, seq, head_dim) float32, for ``position_ids`` (batch, seq)."""
        inv_freq = self.inv_freq
        if self.kind == "dynamic":
            seq_len = int(position_ids.max()) + 1
            if seq_len > self.max_positions:
                inv_freq = self._dynamic_inverse_frequencies(seq_len)
        angles = position_ids[:, :, None].to(torch.float32) * inv_freq.float()[None, None, :]
        angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos(), angles.sin()
        if self.attention_factor != 1.0:
            cos, sin = cos * self.attention_factor, sin * self.attention_factor
        return cos, sin


def signed_sin(sin: torch.Tensor) -> torch.Tensor:
    """sin with its first half negated. HF rotates x as x * cos + rotate_half(x) * sin with
    rotate_half(x1, x2) = (-x2, x1); x.roll(half) * signed_sin(sin) is exactly that second
    term (negation is exact), in 2 ops instead of 5."""
    half = sin.shape[-1] // 2
    return torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin_signed: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` (..., head_dim) by tables broadcastable to it (``sin_signed`` from
    :func:`signed_sin`)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin_signed
