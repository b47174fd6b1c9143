"""HMCN-F (Wehrmann et al., 2018): hierarchical multi-label classification networks.

A global flow of layers, one per hierarchy level, each fed the previous level's activations and
the document features, ends in a global output over all labels; at each level a local branch
predicts that level's labels. The final probability mixes them: ``beta * local + (1 - beta) *
global``. Training minimises the global and local losses plus a penalty on hierarchy
violations (a child more probable than its parent).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from septet.errors import ConfigError
from septet.textclass.encoders.base import register_encoder
from septet.textclass.encoders.rnn import RNNParams, TextRNN


@dataclasses.dataclass
class HMCNParams(RNNParams):
    global_dim: int = 384  # width of each global-flow layer
    local_dim: int = 384  # width of each local branch
    beta: float = 0.5  # weight of the local outputs in the final probability
    violation_penalty: float = 0.1  # weight of max(0, p_child - p_parent)^2


class HMCNHead(nn.Module):
    """Global + local heads over document features; labels grouped by their level."""

    def __init__(self, input_dim: int, levels: list[int], params: HMCNParams, parents: list[int]):
        super().__init__()
        if not 0.0 <= params.beta <= 1.0:
            raise ConfigError(f"beta must lie in [0, 1], not {params.beta}")
        self.params = params
        depth = max(levels)
        self.global_layers = nn.ModuleList(
            nn.Linear(input_dim + (params.global_dim if h else 0), params.global_dim)
            for h in range(depth)
        )
        self.transitions = nn.ModuleList(
            nn.Linear(params.global_dim, params.local_dim) for _ in range(depth)
        )
        level_tensor = torch.tensor(levels)
        # Label ids at each level, as buffers so that they follow the model to its device.
        for h in range(depth):
            self.register_buffer(
                f"members_{h}", torch.nonzero(level_tensor == h + 1).flatten(), persistent=False
            )
        self.local_outputs = nn.ModuleList(
            nn.Linear(params.local_dim, len(members)) for members in self.level_members
        )
        self.global_output = nn.Linear(params.global_dim, len(levels))
        self.dropout = nn.Dropout(params.dropout)
        self.register_buffer("parents", torch.tensor(parents), persistent=False)  # -1 for top

    @property
    def level_members(self) -> list[torch.Tensor]:
        """The label ids at each level (level 1 first)."""
        return [getattr(self, f"members_{h}") for h in range(len(self.global_layers))]

    @property
    def output_weight(self) -> torch.Tensor:
        """The global output's weight rows, one per label."""
        return self.global_output.weight

    @torch.no_grad()
    def init_bias(self, bias: torch.Tensor) -> None:
        """Start the global output and each level's local output at these label biases."""
        self.global_output.bias.copy_(bias)
        for members, output in zip(self.level_members, self.local_outputs, strict=True):
            output.bias.copy_(bias.to(members.device)[members])

    def _logits(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activation = None
        local = features.new_zeros(features.shape[0], len(self.parents))
        for h, layer in enumerate(self.global_layers):
            inputs = features if activation is None else torch.cat([activation, features], 1)
            activation = self.dropout(torch.relu(layer(inputs)))
            branch = self.dropout(torch.relu(self.transitions[h](activation)))
            local = local.index_copy(1, self.level_members[h], self.local_outputs[h](branch))
        return self.global_output(activation), local

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        global_logits, local_logits = self._logits(features)
        beta = self.params.beta
        probability = beta * local_logits.sigmoid() + (1 - beta) * global_logits.sigmoid()
        return torch.logit(probability.clamp(1e-7, 1 - 1e-7))

    def loss(self, features: torch.Tensor, targets: torch.Tensor, loss_fn) -> torch.Tensor:
        """Global loss + local loss + the hierarchy-violation penalty."""
        global_logits, local_logits = self._logits(features)
        total = loss_fn(global_logits, targets) + loss_fn(local_logits, targets)
        if self.params.violation_penalty:
            beta = self.params.beta
            p = beta * local_logits.sigmoid() + (1 - beta) * global_logits.sigmoid()
            has_parent = self.parents >= 0
            child = p[:, has_parent]
            parent = p[:, self.parents[has_parent]]
            if child.numel():
                violation = (child - parent).clamp_min(0).pow(2).mean()
                total = total + self.params.violation_penalty * violation
        return total


@register_encoder("HMCN")
class HMCN(TextRNN):
    """A TextRNN document encoder under an HMCN-F head."""

    Params = HMCNParams
    needs_sigmoid_loss = True

    def make_head(self, num_labels: int, levels: list[int], parents: list[int]) -> HMCNHead:
        """The HMCN global + local head for labels at ``levels``."""
        return HMCNHead(self.output_dim, levels, self.params, parents)
