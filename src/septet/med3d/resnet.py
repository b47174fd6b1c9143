"""MedicalNet's 3D ResNets (Chen, Ma and Zheng, "Med3D", 2019), rebuilt with its exact layout.

The encoder keeps MedicalNet's (and MONAI's) module names, so its published checkpoints load
key for key: ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` with blocks ``conv1/bn1/conv2/bn2
(/conv3/bn3)`` and ``downsample.0/1``. The heads keep their names too: MedicalNet's segmentation
head is ``conv_seg``; MONAI's classification head is ``fc`` after a global average pool.

Shapes for an input of (N, C, D, H, W), D, H and W multiples of 8:

    conv1 7³ stride 2      -> (N, 64, D/2, H/2, W/2)
    maxpool 3³ stride 2    -> (N, 64, D/4, ...)
    layer1                 -> (N, 64·e, D/4, ...)        e = 1 (basic) or 4 (bottleneck)
    layer2 stride 2        -> (N, 128·e, D/8, ...)
    layer3 dilation 2      -> (N, 256·e, D/8, ...)
    layer4 dilation 4      -> (N, 512·e, D/8, ...)
    conv_seg (×2 up)       -> (N, classes, D/4, ...), then (optionally) trilinear to (D, H, W)
    avgpool + fc           -> (N, classes)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import ConfigError

TASKS = ("segmentation", "classification", "features")
SHORTCUTS = ("A", "B")


def conv3x3x3(in_planes: int, out_planes: int, stride: int = 1, dilation: int = 1) -> nn.Conv3d:
    """A 3×3×3 convolution whose padding keeps the size at stride 1 for any dilation."""
    return nn.Conv3d(
        in_planes,
        out_planes,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        dilation=dilation,
        bias=False,
    )


class ZeroPadShortcut(nn.Module):
    """Shortcut type A: subsample by striding and append zero channels; no parameters.

    MedicalNet's version concatenates ``out.data``, which cuts the gradient through the
    shortcut; this one keeps it, as in the ResNet paper.
    """

    def __init__(self, out_channels: int, stride: int):
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride != 1:
            x = x[:, :, :: self.stride, :: self.stride, :: self.stride]
        missing = self.out_channels - x.shape[1]
        if missing > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, 0, 0, missing))
        return x


class BasicBlock(nn.Module):
    """Two 3×3×3 convolutions with a residual connection (ResNet-10/18/34)."""

    expansion: ClassVar[int] = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = conv3x3x3(inplanes, planes, stride=stride, dilation=dilation)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3x3(planes, planes, dilation=dilation)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(nn.Module):
    """1×1×1 reduce, 3×3×3, 1×1×1 expand ×4, with a residual connection (ResNet-50 and up)."""

    expansion: ClassVar[int] = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ):
        super().__init__()
        self.conv1 = nn.Conv3d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3x3x3(planes, planes, stride=stride, dilation=dilation)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class SegmentationHead(nn.Sequential):
    """MedicalNet's ``conv_seg``: 2× transposed conv to 32 channels, 3³ conv, 1³ conv to classes."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__(
            nn.ConvTranspose3d(in_channels, 32, kernel_size=2, stride=2),
            nn.BatchNorm3d(32),
            nn.ReLU(inplace=True),
            nn.Conv3d(32, 32, kernel_size=3, stride=1, padding=1, bias=False),
            nn.BatchNorm3d(32),
            nn.ReLU(inplace=True),
            nn.Conv3d(32, num_classes, kernel_size=1, stride=1, bias=False),
        )


@dataclass
class ResNet3dConfig:
    """Everything needed to rebuild a model; saved as config.json beside its weights."""

    depth: int = 50
    task: str = "segmentation"
    num_classes: int = 2
    in_channels: int = 1
    shortcut: str = ""  # "" picks MedicalNet's choice for the depth: A for 18 and 34, else B
    full_resolution: bool = True  # segmentation logits resized to the input's size

    def __post_init__(self) -> None:
        if self.depth not in DEPTHS:
            raise ConfigError(
                f"depth {self.depth} is not a MedicalNet ResNet; use one of "
                f"{', '.join(map(str, DEPTHS))}"
            )
        if self.task not in TASKS:
            raise ConfigError(f"task {self.task!r} is unknown; use one of {', '.join(TASKS)}")
        if not self.shortcut:
            self.shortcut = "A" if self.depth in (18, 34) else "B"
        if self.shortcut not in SHORTCUTS:
            raise ConfigError(f"shortcut {self.shortcut!r} is unknown; use 'A' or 'B'")
        if self.num_classes < 1 or self.in_channels < 1:
            raise ConfigError(
                f"num_classes ({self.num_classes}) and in_channels ({self.in_channels}) "
                "must be at least 1"
            )

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ResNet3dConfig:
        """A config from a dict; an unknown key is an error naming it."""
        from septet.common.config import dataclass_from_dict

        return dataclass_from_dict(cls, values, "model")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# depth -> (block, blocks per stage), as in MedicalNet's models/resnet.py
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}

ENCODER_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


class ResNet3d(nn.Module):
    """A MedicalNet 3D ResNet with one head: segmentation (``conv_seg``), classification
    (``fc``) or none (``features``). The timm face: ``forward_features``, ``forward_head``,
    ``reset_head``, ``encoder_parameters``, ``head_parameters``."""

    def __init__(self, config: ResNet3dConfig):
        super().__init__()
        self.config = config
        block, layers = DEPTHS[config.depth]
        self._inplanes = 64
        self.conv1 = nn.Conv3d(
            config.in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], dilation=2)
        self.layer4 = self._make_layer(block, 512, layers[3], dilation=4)
        self.feature_channels = 512 * block.expansion
        self._init_weights(self)
        self.reset_head(config.task, config.num_classes)

    def _make_layer(
        self, block: type[nn.Module], planes: int, blocks: int, stride: int = 1, dilation: int = 1
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self._inplanes != out_channels:
            if self.config.shortcut == "A":
                downsample = ZeroPadShortcut(out_channels, stride)
            else:
                downsample = nn.Sequential(
                    nn.Conv3d(
                        self._inplanes, out_channels, kernel_size=1, stride=stride, bias=False
                    ),
                    nn.BatchNorm3d(out_channels),
                )
        stage = [block(self._inplanes, planes, stride, dilation, downsample)]
        self._inplanes = out_channels
        stage += [block(out_channels, planes, dilation=dilation) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        for m in module.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def reset_head(self, task: str | None = None, num_classes: int | None = None) -> None:
        """Replace the head (fresh weights), e.g. for a new task or number of classes."""
        for name in ("conv_seg", "avgpool", "fc"):
            if hasattr(self, name):
                delattr(self, name)
        task = task or self.config.task
        num_classes = num_classes or self.config.num_classes
        self.config = ResNet3dConfig(
            **{**self.config.to_dict(), "task": task, "num_classes": num_classes}
        )
        if task == "segmentation":
            self.conv_seg = SegmentationHead(self.feature_channels, num_classes)
            self._init_weights(self.conv_seg)
        elif task == "classification":
            self.avgpool = nn.AdaptiveAvgPool3d(1)
            self.fc = nn.Linear(self.feature_channels, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder: (N, C, D, H, W) -> (N, 512·e, D/8, H/8, W/8)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward_head(self, features: torch.Tensor, size: tuple[int, ...] | None = None):
        """The head on encoder features; ``size`` resizes segmentation logits."""
        if self.config.task == "segmentation":
            logits = self.conv_seg(features)
            if size is not None and tuple(logits.shape[2:]) != tuple(size):
                logits = F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
            return logits
        if self.config.task == "classification":
            return self.fc(torch.flatten(self.avgpool(features), 1))
        return features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5:
            raise ValueError(f"expected a 5-D input (N, C, D, H, W), got shape {tuple(x.shape)}")
        size = tuple(x.shape[2:]) if self.config.full_resolution else None
        return self.forward_head(self.forward_features(x), size)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The parameters a MedicalNet checkpoint provides (conv1 … layer4)."""
        return [p for n, p in self.named_parameters() if is_encoder_key(n)]

    def head_parameters(self) -> list[nn.Parameter]:
        """The parameters of the new layers (the head)."""
        return [p for n, p in self.named_parameters() if not is_encoder_key(n)]

    def encoder_modules(self) -> list[nn.Module]:
        return [self.conv1, self.bn1, self.layer1, self.layer2, self.layer3, self.layer4]


def is_encoder_key(name: str) -> bool:
    """True for a state-dict key of the shared encoder (what MedicalNet publishes)."""
    return name.startswith(ENCODER_PREFIXES)


class MultiHeadResNet3d(ResNet3d):
    """Med3D's pretraining network: one shared encoder, one segmentation head per dataset
    (``heads.<dataset>``), each with that dataset's number of classes."""

    def __init__(self, config: ResNet3dConfig, heads: dict[str, int]):
        super().__init__(ResNet3dConfig(**{**config.to_dict(), "task": "features"}))
        self.config.full_resolution = config.full_resolution
        if not heads:
            raise ConfigError("a multi-head model needs at least one dataset head")
        self.head_classes = dict(heads)
        self.heads = nn.ModuleDict(
            {name: SegmentationHead(self.feature_channels, n) for name, n in heads.items()}
        )
        self._init_weights(self.heads)

    def forward(self, x: torch.Tensor, dataset: str | None = None) -> torch.Tensor:
        if dataset not in self.heads:
            raise ConfigError(
                f"no head for dataset {dataset!r}; the heads are {', '.join(self.heads)}"
            )
        logits = self.heads[dataset](self.forward_features(x))
        if self.config.full_resolution and tuple(logits.shape[2:]) != tuple(x.shape[2:]):
            logits = F.interpolate(logits, size=x.shape[2:], mode="trilinear", align_corners=False)
        return logits
