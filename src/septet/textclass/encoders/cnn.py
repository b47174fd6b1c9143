"""Convolutional encoders: TextCNN, DPCNN, TextVDCNN and RegionEmbedding."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from septet.textclass.encoders.base import (
    EncoderParams,
    TextEncoder,
    pad_to_length,
    register_encoder,
)


@dataclasses.dataclass
class TextCNNParams(EncoderParams):
    kernel_sizes: tuple = (2, 3, 4)  # one convolution per width
    num_filters: int = 128  # filters per width
    top_k: int = 1  # k-max pooling over time (1 = max pooling)


@register_encoder("TextCNN")
class TextCNN(TextEncoder):
    """Kim (2014): parallel convolutions of several widths, k-max pooled over time."""

    Params = TextCNNParams

    def __init__(self, vocab_size: int, params: TextCNNParams):
        super().__init__(vocab_size, params)
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.convs = nn.ModuleList(
            nn.Conv1d(params.embedding_dim, params.num_filters, k, padding=k - 1)
            for k in params.kernel_sizes
        )
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = params.num_filters * len(params.kernel_sizes) * params.top_k

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ids, mask = pad_to_length(ids, mask, self.params.top_k)
        x = self.dropout(self.embedding(ids)).transpose(1, 2)  # [B, E, T]
        lengths = mask.sum(1, keepdim=True)  # [B, 1]
        pooled = []
        for conv, k in zip(self.convs, self.params.kernel_sizes, strict=True):
            h = torch.relu(conv(x))  # [B, F, T + k - 1]
            # Windows lying wholly on padding would add relu(bias) features that a shorter
            # batch would not have; zero them (ReLU outputs are >= 0, so max is unaffected).
            valid = torch.arange(h.shape[2], device=h.device).unsqueeze(0) < lengths + k - 1
            h = h * valid.unsqueeze(1)
            pooled.append(h.topk(min(self.params.top_k, h.shape[2]), dim=2).values.flatten(1))
        return self.dropout(torch.cat(pooled, dim=1))


@dataclasses.dataclass
class DPCNNParams(EncoderParams):
    num_filters: int = 128  # channels of every convolution
    kernel_size: int = 3  # region size of the first (region embedding) convolution
    max_blocks: int = 8  # at most this many down-sampling blocks (each halves the length)


@register_encoder("DPCNN")
class DPCNN(TextEncoder):
    """Johnson & Zhang (2017): region embedding, then a pyramid of pre-activation conv blocks
    with shortcut connections, each block halving the sequence length."""

    Params = DPCNNParams

    def __init__(self, vocab_size: int, params: DPCNNParams):
        super().__init__(vocab_size, params)
        f = params.num_filters
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        self.region = nn.Conv1d(params.embedding_dim, f, params.kernel_size, padding=1)
        self.conv_a = nn.Conv1d(f, f, 3, padding=1)
        self.conv_b = nn.Conv1d(f, f, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.ModuleList([nn.Conv1d(f, f, 3, padding=1), nn.Conv1d(f, f, 3, padding=1)])
            for _ in range(params.max_blocks)
        )
        self.pool = nn.MaxPool1d(3, stride=2, padding=1)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = f

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.embedding(ids) * mask.unsqueeze(-1)).transpose(1, 2)
        x = self.region(x)
        x = x + self.conv_b(torch.relu(self.conv_a(torch.relu(x))))
        for first, second in self.blocks:
            if x.shape[2] <= 1:
                break
            x = self.pool(x)
            x = x + second(torch.relu(first(torch.relu(x))))
        return self.dropout(x.amax(dim=2))


@dataclasses.dataclass
class TextVDCNNParams(EncoderParams):
    stage_filters: tuple = (64, 128, 256, 256)  # channels of each stage; pooling halves between
    blocks_per_stage: int = 1  # conv blocks per stage (2 per block): 1 -> depth 9, 2 -> 17
    top_k: int = 4  # k-max pooling at the end


@register_encoder("TextVDCNN")
class TextVDCNN(TextEncoder):
    """Conneau et al. (2017): a very deep stack of small convolutions with batch norm, max
    pooling between stages and k-max pooling at the end."""

    Params = TextVDCNNParams

    def __init__(self, vocab_size: int, params: TextVDCNNParams):
        super().__init__(vocab_size, params)
        self.embedding = nn.Embedding(vocab_size, params.embedding_dim, padding_idx=0)
        filters = list(params.stage_filters)
        self.first = nn.Conv1d(params.embedding_dim, filters[0], 3, padding=1)
        stages, channels = [], filters[0]
        for stage, out in enumerate(filters):
            layers: list[nn.Module] = []
            if stage:
                layers.append(nn.MaxPool1d(3, stride=2, padding=1))
            for _ in range(params.blocks_per_stage):
                for _ in range(2):
                    layers += [nn.Conv1d(channels, out, 3, padding=1), nn.BatchNorm1d(out)]
                    layers.append(nn.ReLU())
                    channels = out
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = channels * params.top_k

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.embedding(ids).transpose(1, 2)
        x = self.first(x)
        for stage in self.stages:
            too_short = x.shape[2] < 3 and isinstance(stage[0], nn.MaxPool1d)
            # A sequence too short to pool further goes through the convolutions only.
            x = stage[1:](x) if too_short else stage(x)
        k = self.params.top_k
        if x.shape[2] < k:
            x = nn.functional.pad(x, (0, k - x.shape[2]))
        return self.dropout(x.topk(k, dim=2).values.flatten(1))


@dataclasses.dataclass
class RegionEmbeddingParams(EncoderParams):
    region_size: int = 5  # odd window width: each word's context unit covers this many words
    embedding_dim: int = 64


@register_encoder("RegionEmbedding")
class RegionEmbedding(TextEncoder):
    """Qiao et al. (2018), word-context variant: each word has a context unit (one matrix row
    per relative position) that re-weights its neighbours' embeddings elementwise; the region
    vector is the max over the window. The paper sums the regions; we average them, so the
    feature scale does not grow with document length."""

    Params = RegionEmbeddingParams

    def __init__(self, vocab_size: int, params: RegionEmbeddingParams):
        super().__init__(vocab_size, params)
        if params.region_size < 1 or params.region_size % 2 == 0:
            from septet.errors import ConfigError

            raise ConfigError(f"region_size must be odd and positive, not {params.region_size}")
        d, r = params.embedding_dim, params.region_size
        self.embedding = nn.Embedding(vocab_size, d, padding_idx=0)
        self.context_units = nn.Embedding(vocab_size, r * d, padding_idx=0)
        self.dropout = nn.Dropout(params.dropout)
        self.output_dim = d

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        r, d = self.params.region_size, self.params.embedding_dim
        half = r // 2
        b, t = ids.shape
        padded = nn.functional.pad(ids, (half, half))  # id 0 embeds to zeros
        windows = padded.unfold(1, r, 1)  # [B, T, r]: the neighbours of each word
        neighbours = self.embedding(windows)  # [B, T, r, d]
        units = self.context_units(ids).view(b, t, r, d)  # [B, T, r, d]
        regions = (units * neighbours).amax(dim=2)  # [B, T, d]
        regions = regions * mask.unsqueeze(-1)
        return self.dropout(regions.sum(1) / mask.sum(1, keepdim=True).clamp_min(1))
