"""The Debian package-tags corpus: each binary package's English description labelled with its
debtags (``facet::tag``), a two-level hierarchy (facet, then tag).

Built from two Debian archive indices: ``Packages`` (fields ``Package``, ``Source``, ``Tag``,
``Description-md5``) and ``Translation-en`` (``Package``, ``Description-md5``,
``Description-en``), joined on package name and description checksum. The split is by source
package, so binaries of one source never straddle splits: ``sha256(source) % 10`` is 0-7 for
train, 8 for dev, 9 for test (the rule that reproduces the frozen split in shared/data/debtags).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
import lzma
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from septet.common.atomic import atomic_write_bytes
from septet.errors import InputError
from septet.textclass.taxonomy import ROOT, Taxonomy


def _open(path: Path):
    openers = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
    opener = openers.get(path.suffix)
    if opener is not None:
        return opener(path, "rt", encoding="utf-8", errors="replace")
    return path.open(encoding="utf-8", errors="replace")


def read_deb822(path: str | Path) -> Iterator[dict[str, str]]:
    """Paragraphs of a Debian control-format file (``.gz``, ``.xz``, ``.bz2`` or plain): field
    names as given, continuation lines joined with newlines (leading space removed)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"Debian index file {path} does not exist")
    paragraph: dict[str, str] = {}
    field = None
    with _open(path) as handle:
        for number, raw in enumerate(handle, 1):
            line = raw.rstrip("\n")
            if not line.strip():
                if paragraph:
                    yield paragraph
                paragraph, field = {}, None
                continue
            if line[0] in " \t":
                if field is None:
                    raise InputError(f"{path}:{number}: continuation line before any field")
                paragraph[field] += "\n" + line[1:]
                continue
            if ":" not in line:
                raise InputError(f"{path}:{number}: expected 'Field: value', got {line[:60]!r}")
            field, value = line.split(":", 1)
            paragraph[field] = value.strip()
    if paragraph:
        yield paragraph


def description_text(value: str) -> str:
    """A Debian description field as plain text: the summary line, then the long description
    with ``.`` lines as blank lines."""
    lines = value.split("\n")
    body = ["" if line.strip() == "." else line for line in lines[1:]]
    return "\n".join([lines[0].strip(), *body]).strip()


def parse_tags(value: str) -> list[str]:
    """The ``Tag`` field's tags, sorted: ``a::b, c::{d,e}`` expands braces too."""
    tags: set[str] = set()
    # Commas inside braces belong to the brace group: split only on the outer ones.
    for item in re.findall(r"[^,{]+(?:\{[^}]*\})?", value.replace("\n", " ")):
        item = item.strip()
        if not item:
            continue
        if "{" in item and item.endswith("}"):
            facet, rest = item.split("{", 1)
            tags.update(f"{facet}{tag.strip()}" for tag in rest[:-1].split(",") if tag.strip())
        else:
            tags.add(item)
    return sorted(tags)


def split_of(source: str) -> str:
    """train, dev or test, from the source package name."""
    bucket = int(hashlib.sha256(source.encode("utf-8")).hexdigest(), 16) % 10
    return "train" if bucket < 8 else ("dev" if bucket == 8 else "test")


def debtags_records(
    packages: Sequence[str | Path], translations: Sequence[str | Path]
) -> list[dict]:
    """Tagged packages with their English descriptions, one record per binary package."""
    descriptions: dict[tuple[str, str], str] = {}
    by_package: dict[str, str] = {}
    for path in translations:
        for paragraph in read_deb822(path):
            if "Package" in paragraph and "Description-en" in paragraph:
                text = description_text(paragraph["Description-en"])
                descriptions[(paragraph["Package"], paragraph.get("Description-md5", ""))] = text
                by_package.setdefault(paragraph["Package"], text)
    records: dict[str, dict] = {}
    for path in packages:
        for paragraph in read_deb822(path):
            name = paragraph.get("Package")
            if not name or name in records or not paragraph.get("Tag"):
                continue
            md5 = paragraph.get("Description-md5", "")
            text = descriptions.get((name, md5))
            if text is None and "Description" in paragraph and "\n" in paragraph["Description"]:
                text = description_text(paragraph["Description"])  # untranslated archives
            if text is None and not md5:
                text = by_package.get(name)
            if text is None:
                continue
            source = paragraph.get("Source", name).split(" ", 1)[0]
            records[name] = {
                "id": name,
                "source": source,
                "text": text,
                "labels": parse_tags(paragraph["Tag"]),
            }
    return [records[name] for name in sorted(records)]


def debtags_taxonomy(records: Sequence[dict]) -> Taxonomy:
    """Root -> facets -> ``facet::tag`` labels, both sorted."""
    parent_of: dict[str, str] = {}
    tags = sorted({label for record in records for label in record["labels"]})
    for facet in sorted({tag.split("::", 1)[0] for tag in tags}):
        parent_of[facet] = ROOT
    for tag in tags:
        if "::" not in tag:
            raise InputError(f"debtag {tag!r} is not of the form facet::tag")
        parent_of[tag] = tag.split("::", 1)[0]
    return Taxonomy(parent_of)


def build_debtags(
    packages: Sequence[str | Path], translations: Sequence[str | Path], out_dir: str | Path
) -> dict[str, int]:
    """Write ``train/dev/test.jsonl.gz`` and ``taxonomy.tsv`` under ``out_dir``; returns the
    number of documents in each split."""
    records = debtags_records(packages, translations)
    if not records:
        raise InputError("no tagged package with a description was found in the given indices")
    out = Path(out_dir)
    splits: dict[str, list[str]] = {"train": [], "dev": [], "test": []}
    for record in records:
        splits[split_of(record["source"])].append(json.dumps(record, ensure_ascii=False))
    for name, lines in splits.items():
        payload = ("\n".join(lines) + "\n" if lines else "").encode("utf-8")
        atomic_write_bytes(out / f"{name}.jsonl.gz", gzip.compress(payload, mtime=0))
    debtags_taxonomy(records).write_tsv(out / "taxonomy.tsv")
    return {name: len(lines) for name, lines in splits.items()}
