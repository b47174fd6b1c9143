"""Reading labelled documents: NeuralClassifier's JSONL and plain ``{"text", "labels"}`` JSONL.

NeuralClassifier's format: one JSON object a line with ``doc_label`` (a list of labels, each
maybe an ``A--B--C`` path), ``doc_token`` (the tokens) and the optional ``doc_keyword`` and
``doc_topic`` (token lists; absent keys are allowed and mean "none"). The plain format has
``text`` (tokenised here with :func:`tokenize`) and ``labels`` (or a single ``label``).
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from septet.errors import InputError

FORMATS = ("auto", "neuralclassifier", "plain")
_TOKEN = re.compile(r"[^\W_]+(?:['’.+#-][^\W_]+)*(?:\+\+|#)?|[^\w\s]", re.UNICODE)


def tokenize(text: str) -> list[str]:
    """septet's word tokeniser: lower-cased words and single punctuation marks. Words keep
    inner ``'.+#-`` and a final ``++`` or ``#``: ``c++``, ``x86-64``, ``don't``, ``c#``."""
    return _TOKEN.findall(text.lower())


@dataclass
class Document:
    """One labelled (or unlabelled) text with its tokens and optional keyword/topic tokens."""

    tokens: list[str]
    labels: list[str] = field(default_factory=list)
    keywords: list[str] = field(default_factory=list)
    topics: list[str] = field(default_factory=list)
    text: str | None = None  # the raw text, when the source had one (pretrained encoders use it)
    id: str | None = None

    @property
    def raw_text(self) -> str:
        """The original text, or the tokens joined by spaces."""
        return self.text if self.text is not None else " ".join(self.tokens)


def open_text(path: Path):
    """Open a text file, transparently gunzipping ``.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def read_documents(path: str | Path, data_format: str = "auto") -> list[Document]:
    """Read a JSONL file (``.gz`` allowed) in NeuralClassifier or plain format."""
    return list(iter_documents(path, data_format))


def iter_documents(path: str | Path, data_format: str = "auto") -> Iterator[Document]:
    """Yield documents from a JSONL file, checking each line and naming the bad one."""
    path = Path(path)
    if data_format not in FORMATS:
        raise InputError(f"unknown data format {data_format!r}; use one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    with open_text(path) as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise InputError(f"{where}: not valid JSON ({error.msg})") from None
            if not isinstance(record, dict):
                raise InputError(f"{where}: each line must be a JSON object")
            yield document_from_record(record, data_format, where)


def document_from_record(record: dict, data_format: str, where: str) -> Document:
    """One document from a parsed JSON line."""
    kind = data_format
    if kind == "auto":
        kind = "neuralclassifier" if "doc_token" in record else "plain"
    if kind == "neuralclassifier":
        if "doc_token" not in record:
            raise InputError(f"{where}: NeuralClassifier format needs 'doc_token'")
        return Document(
            tokens=_string_list(record["doc_token"], "doc_token", where),
            labels=_string_list(record.get("doc_label", []), "doc_label", where),
            keywords=_string_list(record.get("doc_keyword") or [], "doc_keyword", where),
            topics=_string_list(record.get("doc_topic") or [], "doc_topic", where),
            id=_optional_id(record),
        )
    if "text" not in record or not isinstance(record["text"], str):
        raise InputError(f"{where}: plain format needs a string 'text' (or use doc_token)")
    if "labels" in record:
        labels = _string_list(record["labels"], "labels", where)
    elif "label" in record:
        labels = [str(record["label"])]
    else:
        labels = []
    return Document(
        tokens=tokenize(record["text"]), labels=labels, text=record["text"], id=_optional_id(record)
    )


def _optional_id(record: dict) -> str | None:
    value = record.get("id", record.get("doc_id"))
    return None if value is None else str(value)


def _string_list(value: object, key: str, where: str) -> list[str]:
    if isinstance(value, str):
        # NeuralClassifier's tools sometimes write a space-separated token string.
        return value.split() if key != "doc_label" else [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int) for v in value):
        raise InputError(f"{where}: {key!r} must be a list of strings")
    return [str(v) for v in value]


def documents_from_texts(texts: list[str]) -> list[Document]:
    """Unlabelled documents from raw strings."""
    if isinstance(texts, str):
        raise InputError("texts must be a list of strings, not one string")
    docs = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InputError(f"texts[{i}] is a {type(text).__name__}, not a string")
        docs.append(Document(tokens=tokenize(text), text=text))
    return docs


def write_neuralclassifier_jsonl(path: str | Path, documents: list[Document]) -> None:
    """Write documents in NeuralClassifier's JSONL format (atomically)."""
    from septet.common.atomic import atomic_write_text

    lines = [
        json.dumps(
            {
                "doc_label": d.labels,
                "doc_token": d.tokens,
                "doc_keyword": d.keywords,
                "doc_topic": d.topics,
            },
            ensure_ascii=False,
        )
        for d in documents
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")
