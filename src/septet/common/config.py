"""Configuration dataclasses built from plain dicts (JSON, TOML, CLI), the same way everywhere."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from septet.errors import ConfigError


def dataclass_from_dict(cls: type, values: Mapping[str, Any], what: str) -> Any:
    """Build dataclass ``cls`` from ``values``; unknown keys are a ConfigError that names them
    and lists the known ones (``what`` says which configuration, e.g. "training")."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(
            f"unknown {what} config key(s) {', '.join(map(repr, unknown))}; "
            f"known keys: {', '.join(sorted(known))}"
        )
    return cls(**values)
