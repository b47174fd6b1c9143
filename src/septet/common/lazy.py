"""Lazy public APIs: a part's ``__init__`` lists its public names, and the module that defines
each is imported only when the name is first used. So ``import septet.tsdb.cli`` (and
``septet --help``) never pays for torch or TensorFlow.

Usage, in a part's ``__init__.py``::

    __all__ = ["AutoModel", "load_tokenizer"]
    __getattr__, __dir__ = lazy_exports(
        __name__, {"AutoModel": ".auto", "load_tokenizer": ".tokenizer"}
    )
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module ``__getattr__`` and ``__dir__`` that import ``names[attr]`` (relative to
    ``package``) on first access and return its attribute of the same name."""

    def __getattr__(attr: str) -> Any:
        module_name = names.get(attr)
        if module_name is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        module = importlib.import_module(module_name, package)
        value = getattr(module, attr)
        # Cache on the package so later lookups are plain attribute reads.
        setattr(importlib.import_module(package), attr, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(globals_of(package)))

    return __getattr__, __dir__


def globals_of(package: str) -> list[str]:
    return list(vars(importlib.import_module(package)))
