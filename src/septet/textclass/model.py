"""An encoder and its classification head: the network a TextClassifier trains."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from septet.textclass.encoders.base import create_encoder


class TextClassificationModel(nn.Module):
    """``encoder`` (token ids -> features) then ``head`` (features -> label logits)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(ids, mask))

    def loss(self, ids: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor, loss_fn):
        """The head's training loss (HMCN adds its local and violation terms)."""
        return self.head.loss(self.encoder(ids, mask), targets, loss_fn)

    def parameter_groups(self, learning_rate: float) -> list[dict]:
        """Optimizer groups: the encoder's own (pretrained encoders ask for a smaller rate),
        then the head and anything else at ``learning_rate``."""
        if not hasattr(self.encoder, "parameter_groups"):
            return [{"params": list(self.parameters()), "lr": learning_rate}]
        groups = self.encoder.parameter_groups(learning_rate)
        return [*groups, {"params": list(self.head.parameters()), "lr": learning_rate}]

    @property
    def output_weight(self) -> torch.Tensor:
        """[labels, features]: the weights recursive regularisation ties together."""
        return self.head.output_weight


def build_model(
    encoder: str,
    vocab_size: int,
    encoder_params: dict,
    levels: Sequence[int],
    parents: Sequence[int],
) -> TextClassificationModel:
    """The encoder registered as ``encoder`` with the head it asks for, over these labels."""
    body = create_encoder(encoder, vocab_size, **encoder_params)
    head = body.make_head(len(levels), [int(v) for v in levels], [int(p) for p in parents])
    return TextClassificationModel(body, head)
