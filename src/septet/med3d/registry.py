"""Model names and ``create_model``: one call builds any MedicalNet ResNet with any head and,
optionally, its pretrained weights (the timm face)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septet.errors import NotFoundError

if TYPE_CHECKING:
    from septet.med3d.resnet import ResNet3d
    from septet.med3d.weights import LoadReport

_REGISTRY: dict[str, Callable[..., ResNet3d]] = {}


def register_model(name: str) -> Callable[[Callable[..., ResNet3d]], Callable[..., ResNet3d]]:
    """Decorator: make a model builder available to ``create_model(name)``."""

    def add(builder: Callable[..., ResNet3d]) -> Callable[..., ResNet3d]:
        _REGISTRY[name] = builder
        return builder

    return add


def list_models() -> list[str]:
    """The names ``create_model`` accepts, shallowest first."""
    _register_resnets()
    return sorted(_REGISTRY, key=lambda n: int("".join(c for c in n if c.isdigit()) or 0))


def create_model(
    name: str,
    *,
    task: str = "segmentation",
    num_classes: int = 2,
    in_channels: int = 1,
    pretrained: str | Path | None = None,
    strict_encoder: bool = True,
    **kwargs: Any,
) -> ResNet3d:
    """Build the model called ``name`` (e.g. ``"resnet50"``); ``pretrained`` loads a
    MedicalNet, MONAI or septet checkpoint into it, and the load report is kept on
    ``model.load_report``."""
    _register_resnets()
    key = name.lower().replace("-", "").replace("_", "")
    if key not in _REGISTRY:
        raise NotFoundError(f"no model named {name!r}; the models are: {', '.join(list_models())}")
    model = _REGISTRY[key](task=task, num_classes=num_classes, in_channels=in_channels, **kwargs)
    report: LoadReport | None = None
    if pretrained is not None:
        from septet.med3d.weights import load_pretrained

        report = load_pretrained(model, pretrained, strict_encoder=strict_encoder)
    model.load_report = report
    return model


def _register_resnets() -> None:
    if _REGISTRY:
        return
    from septet.med3d.resnet import DEPTHS, ResNet3d, ResNet3dConfig

    for depth in DEPTHS:

        def build(depth: int = depth, **kwargs: Any) -> ResNet3d:
            return ResNet3d(ResNet3dConfig(depth=depth, **kwargs))

        register_model(f"resnet{depth}")(build)
