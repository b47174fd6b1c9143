"""Nests of tensors: flatten any mix of tuples, lists, dicts and namedtuples into a flat list of
tensors, and rebuild the same structure from a new list. Everything that is not a tensor and not
a container is kept as it is (a non-tensor argument passes through the bridge untouched)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# One node of a flattened nest: ("leaf",), ("static", value), ("tuple"|"list", children),
# ("dict", keys, children), ("namedtuple", type, children).
Node = tuple


@dataclass(frozen=True)
class NestSpec:
    """The shape of a nest with its tensors taken out; ``rebuild`` puts new tensors back."""

    root: Node
    num_leaves: int

    def rebuild(self, leaves: list[Any]) -> Any:
        """The nest with its tensors replaced, in order, by ``leaves``."""
        if len(leaves) != self.num_leaves:
            raise ValueError(f"expected {self.num_leaves} tensors to rebuild, got {len(leaves)}")
        return _rebuild(self.root, iter(leaves))


def flatten(tree: Any, is_tensor: Callable[[Any], bool]) -> tuple[list[Any], NestSpec]:
    """The tensors of ``tree`` in depth-first order (dict keys in insertion order) and its spec."""
    leaves: list[Any] = []
    root = _flatten(tree, is_tensor, leaves)
    return leaves, NestSpec(root, len(leaves))


def _flatten(node: Any, is_tensor: Callable[[Any], bool], leaves: list[Any]) -> Node:
    if is_tensor(node):
        leaves.append(node)
        return ("leaf",)
    if isinstance(node, tuple) and hasattr(node, "_fields"):
        return ("namedtuple", type(node), [_flatten(c, is_tensor, leaves) for c in node])
    if isinstance(node, tuple | list):
        kind = "tuple" if isinstance(node, tuple) else "list"
        return (kind, [_flatten(c, is_tensor, leaves) for c in node])
    if isinstance(node, dict):
        keys = list(node)
        return ("dict", type(node), keys, [_flatten(node[k], is_tensor, leaves) for k in keys])
    return ("static", node)


def _rebuild(node: Node, leaves: Any) -> Any:
    kind = node[0]
    if kind == "leaf":
        return next(leaves)
    if kind == "static":
        return node[1]
    if kind == "tuple":
        return tuple(_rebuild(c, leaves) for c in node[1])
    if kind == "list":
        return [_rebuild(c, leaves) for c in node[1]]
    if kind == "namedtuple":
        return node[1](*(_rebuild(c, leaves) for c in node[2]))
    # dict: keep the caller's mapping type (OrderedDict, defaultdict is rebuilt as dict)
    dict_type, keys, children = node[1], node[2], node[3]
    values = {k: _rebuild(c, leaves) for k, c in zip(keys, children, strict=True)}
    return values if dict_type is dict else _as_mapping(dict_type, values)


def _as_mapping(dict_type: type, values: dict) -> Any:
    try:
        return dict_type(values)
    except TypeError:  # e.g. defaultdict needs a factory first
        return dict(values)
