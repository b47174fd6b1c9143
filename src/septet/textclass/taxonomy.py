"""The label hierarchy: NeuralClassifier's taxonomy TSV (``parent<TAB>child<TAB>child...``).

A taxonomy is a forest under an implicit ``Root``. Every label knows its parent, its children
and its level (1 for a child of Root). Labels given as NeuralClassifier paths (``A--B--C``)
name the last node of the path; the path's prefixes are its ancestors.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from septet.errors import InputError

ROOT = "Root"
PATH_SEPARATOR = "--"


class Taxonomy:
    """Parent/child relations of a label set, with validation and ancestor closure."""

    def __init__(self, parent_of: dict[str, str]):
        self.parent_of: dict[str, str] = dict(parent_of)  # child -> parent (ROOT for top level)
        self.children_of: dict[str, list[str]] = {}
        for child, parent in self.parent_of.items():
            self.children_of.setdefault(parent, []).append(child)
        self._level: dict[str, int] = {}
        for label in self.parent_of:
            self.level(label)  # detects cycles early

    @classmethod
    def read_tsv(cls, path: str | Path) -> Taxonomy:
        """Read NeuralClassifier's taxonomy file; the first column is a parent (``Root`` for
        the top), the other columns are its children."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"taxonomy file {path} does not exist")
        parent_of: dict[str, str] = {}
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fields = [f.strip() for f in line.rstrip("\n").split("\t")]
            fields = [f for f in fields if f]
            if not fields:
                continue
            parent, children = fields[0], fields[1:]
            for child in children:
                if child == ROOT:
                    raise InputError(f"{path}:{number}: {ROOT!r} cannot be a child")
                if child in parent_of and parent_of[child] != parent:
                    raise InputError(
                        f"{path}:{number}: label {child!r} has two parents, "
                        f"{parent_of[child]!r} and {parent!r}; a taxonomy is a tree"
                    )
                parent_of[child] = parent
        # A parent never listed as anyone's child hangs directly under Root.
        missing = {p for p in parent_of.values() if p != ROOT and p not in parent_of}
        for parent in missing:
            parent_of[parent] = ROOT
        return cls(parent_of)

    @classmethod
    def from_paths(cls, paths: Iterable[str]) -> Taxonomy:
        """Build a taxonomy from NeuralClassifier label paths such as ``A--B--C``."""
        parent_of: dict[str, str] = {}
        for path in paths:
            parts = split_path(path)
            for depth in range(len(parts)):
                label = PATH_SEPARATOR.join(parts[: depth + 1])
                parent = PATH_SEPARATOR.join(parts[:depth]) if depth else ROOT
                parent_of.setdefault(label, parent)
        return cls(parent_of)

    @classmethod
    def flat(cls, labels: Iterable[str]) -> Taxonomy:
        """A one-level taxonomy: every label a child of Root."""
        return cls({label: ROOT for label in labels})

    def write_tsv(self, path: str | Path) -> None:
        """Write the taxonomy in NeuralClassifier's format, parents in breadth-first order."""
        from septet.common.atomic import atomic_write_text

        atomic_write_text(path, self.to_tsv())

    def to_tsv(self) -> str:
        """The taxonomy as TSV text."""
        lines, queue = [], [ROOT]
        while queue:
            parent = queue.pop(0)
            children = self.children_of.get(parent, [])
            if children:
                lines.append("\t".join([parent, *children]))
                queue.extend(children)
        return "\n".join(lines) + "\n"

    @property
    def labels(self) -> list[str]:
        """Every label, parents before children, in file order within a level."""
        order = {label: i for i, label in enumerate(self.parent_of)}
        return sorted(self.parent_of, key=lambda label: (self.level(label), order[label]))

    @property
    def depth(self) -> int:
        """The number of levels below Root."""
        return max((self.level(label) for label in self.parent_of), default=0)

    def level(self, label: str) -> int:
        """1 for a child of Root, 2 for its children, and so on."""
        if label in self._level:
            return self._level[label]
        seen, node, depth = set(), label, 0
        while node != ROOT:
            if node in seen:
                raise InputError(f"the taxonomy has a cycle through {label!r}")
            seen.add(node)
            if node not in self.parent_of:
                raise InputError(self._unknown_message(node))
            node = self.parent_of[node]
            depth += 1
        self._level[label] = depth
        return depth

    def ancestors(self, label: str) -> list[str]:
        """The label's ancestors below Root, nearest first."""
        found, node = [], self.parent_of[label]
        while node != ROOT:
            found.append(node)
            node = self.parent_of[node]
        return found

    def __contains__(self, label: object) -> bool:
        return label in self.parent_of

    def __len__(self) -> int:
        return len(self.parent_of)

    def is_leaf(self, label: str) -> bool:
        """True when the label has no children."""
        return not self.children_of.get(label)

    def edges(self) -> list[tuple[str, str]]:
        """Every (parent, child) pair below Root."""
        return [(parent, child) for child, parent in self.parent_of.items() if parent != ROOT]

    def _unknown_message(self, label: str) -> str:
        return (
            f"label {label!r} is not in the taxonomy ({len(self.parent_of)} labels); "
            "add it to the taxonomy file or fix the data"
        )

    def resolve(self, label: str) -> str:
        """The taxonomy's name for ``label``: itself, or the last part of an ``A--B--C`` path
        whose prefixes match the taxonomy."""
        if label in self.parent_of:
            return label
        parts = split_path(label)
        if len(parts) > 1 and parts[-1] in self.parent_of:
            expected = [*reversed(self.ancestors(parts[-1])), parts[-1]]
            if expected == parts:
                return parts[-1]
            raise InputError(
                f"label path {label!r} does not match the taxonomy, which has "
                f"{PATH_SEPARATOR.join(expected)!r}"
            )
        raise InputError(self._unknown_message(label))

    def close(self, labels: Sequence[str]) -> list[str]:
        """Validate ``labels`` and add every ancestor; order: as given, ancestors after."""
        out: dict[str, None] = {}
        for label in labels:
            name = self.resolve(label)
            out[name] = None
            for ancestor in self.ancestors(name):
                out[ancestor] = None
        return list(out)


def split_path(path: str) -> list[str]:
    """``"A--B--C"`` -> ``["A", "B", "C"]``; empty parts are an error."""
    parts = path.split(PATH_SEPARATOR)
    if any(not part.strip() for part in parts):
        raise InputError(f"label {path!r} has an empty part; use paths like 'A--B--C'")
    return [part.strip() for part in parts]
