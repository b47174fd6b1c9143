"""One face for every text encoder, and the name registry (timm's ``create_model`` idea).

An encoder maps token ids ``[batch, time]`` and a padding mask ``[batch, time]`` (True on real
tokens) to one feature vector per document ``[batch, output_dim]``. A classification head on
top turns features into label logits. Each encoder declares its hyper-parameters as a dataclass
(``Params``), so configuration keys are checked by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from septet.errors import ConfigError, NotFoundError


@dataclasses.dataclass
class EncoderParams:
    """Hyper-parameters every vocabulary-based encoder shares."""

    embedding_dim: int = 128  # size of the token embeddings
    dropout: float = 0.2  # dropout on embeddings and on the output features


class TextEncoder(nn.Module):
    """Base class: subclasses set ``output_dim`` and implement ``forward(ids, mask)``."""

    Params: ClassVar[type] = EncoderParams
    uses_pretrained_tokenizer: ClassVar[bool] = False
    output_dim: int

    def __init__(self, vocab_size: int, params: Any):
        super().__init__()
        self.params = params
        self.vocab_size = vocab_size

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def make_head(self, num_labels: int, levels: list[int], parents: list[int]) -> nn.Module:
        """The classification head over this encoder's features (HMCN brings its own)."""
        return LinearHead(self.output_dim, num_labels)


class LinearHead(nn.Module):
    """Features -> one logit per label; its weight rows are what recursive regularisation ties
    between parent and child labels."""

    def __init__(self, input_dim: int, num_labels: int):
        super().__init__()
        self.linear = nn.Linear(input_dim, num_labels)

    @property
    def output_weight(self) -> torch.Tensor:
        """[labels, features]: one weight row per label."""
        return self.linear.weight

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features)

    def loss(self, features: torch.Tensor, targets: torch.Tensor, loss_fn) -> torch.Tensor:
        """The training loss of this head."""
        return loss_fn(self.linear(features), targets)

    @torch.no_grad()
    def init_bias(self, bias: torch.Tensor) -> None:
        """Start each label's output bias at ``bias [labels]`` (see :func:`prior_bias`)."""
        self.linear.bias.copy_(bias)


def prior_bias(targets, *, softmax: bool = False) -> torch.Tensor:
    """Output biases that make an untrained head predict each label's training frequency:
    the log-odds ``log(p / (1 - p))`` for sigmoid outputs, ``log p`` for a softmax. With
    hundreds of labels, most of them rare, a zero bias predicts 0.5 everywhere and the first
    epochs go into pushing every bias down; rare labels, whose own gradient is small, never
    recover from the shared features learnt meanwhile. Frequencies are smoothed (add 0.5), so
    a label without training documents gets a finite, very negative bias."""
    import numpy as np

    targets = np.asarray(targets, dtype=np.float64)
    p = (targets.sum(0) + 0.5) / (targets.shape[0] + 1.0)
    if softmax:
        p = p / p.sum()
        return torch.from_numpy(np.log(p)).float()
    return torch.from_numpy(np.log(p) - np.log1p(-p)).float()


_REGISTRY: dict[str, type[TextEncoder]] = {}


def register_encoder(name: str) -> Callable[[type[TextEncoder]], type[TextEncoder]]:
    """Class decorator: make the encoder available as ``create_encoder(name, ...)``."""

    def decorate(cls: type[TextEncoder]) -> type[TextEncoder]:
        if name in _REGISTRY:
            raise ValueError(f"encoder {name!r} is registered twice")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def _load_families() -> None:
    # Importing the family modules runs their @register_encoder decorators.
    from septet.textclass.encoders import (  # noqa: F401
        attention,
        cnn,
        fasttext,
        hmcn,
        linear,
        pretrained,
        rnn,
    )


def list_encoders() -> list[str]:
    """Every registered encoder name."""
    _load_families()
    return sorted(_REGISTRY)


def encoder_class(name: str) -> type[TextEncoder]:
    """The class registered as ``name``; case-insensitive; NotFoundError lists the names."""
    _load_families()
    if name in _REGISTRY:
        return _REGISTRY[name]
    folded = {key.lower(): cls for key, cls in _REGISTRY.items()}
    if name.lower() in folded:
        return folded[name.lower()]
    raise NotFoundError(
        f"no encoder named {name!r}; the encoders are: {', '.join(list_encoders())}"
    )


def make_params(cls: type[TextEncoder], values: dict[str, Any], where: str = "params") -> Any:
    """The encoder's Params dataclass from a dict; unknown keys and wrong types name the key."""
    from septet.textclass.config import check_value

    values = dict(values)
    fields = {f.name: f for f in dataclasses.fields(cls.Params)}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(
                f"unknown key {where}.{key} for encoder {cls.registry_name}; "
                f"its keys are: {', '.join(sorted(fields))}"
            )
        default = fields[key].default
        # Tuple defaults (kernel sizes) take lists from JSON/TOML.
        values[key] = check_value(
            f"{where}.{key}", value, list(default) if isinstance(default, tuple) else default
        )
    return cls.Params(**values)


def create_encoder(name: str, vocab_size: int, **params: Any) -> TextEncoder:
    """Build the encoder registered as ``name`` with its hyper-parameters."""
    cls = encoder_class(name)
    return cls(vocab_size, make_params(cls, params))


def masked_max(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over time of ``x [B, T, D]`` ignoring padded steps."""
    return x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over time of ``x [B, T, D]`` over real steps only."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class AdditiveAttentionPool(nn.Module):
    """Attention pooling with a learned context vector (Yang et al., 2016): [B,T,D] -> [B,D]."""

    def __init__(self, dim: int, attention_dim: int):
        super().__init__()
        self.project = nn.Linear(dim, attention_dim)
        self.context = nn.Linear(attention_dim, 1, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        scores = self.context(torch.tanh(self.project(x))).squeeze(-1)  # [B, T]
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.einsum("bt,btd->bd", scores.softmax(dim=1), x)


def pad_to_length(ids: torch.Tensor, mask: torch.Tensor, length: int):
    """Right-pad ids and mask to at least ``length`` steps (convolutions need a minimum)."""
    if ids.shape[1] >= length:
        return ids, mask
    extra = length - ids.shape[1]
    ids = nn.functional.pad(ids, (0, extra), value=0)
    mask = nn.functional.pad(mask, (0, extra), value=False)
    return ids, mask
