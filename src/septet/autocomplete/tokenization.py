"""A byte-level BPE for Python source whose merges never cross Python token boundaries.

Before BPE, text is cut into pieces that follow Python's lexical classes: an identifier, a
number, a run of spaces or tabs, a newline, an operator, one other character. BPE merges only
inside a piece, so a token is never half an identifier and half an operator: the completer can
tell "the user is typing this identifier" from "a new token starts here". Strings and comments
are kept (they are cut into words, spaces and punctuation like the rest of the code).

Byte-level with no normaliser makes the round trip exact: ``decode(encode(src)) == src``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

from septet.errors import InputError, NotFoundError

END_OF_FILE = "<|endoffile|>"
TOKENIZER_FILE = "tokenizer.json"

# One alternative per lexical class, tried in order. Oniguruma syntax (tokenizers' Split).
_OPERATORS = r"\*\*=?|//=?|>>=?|<<=?|->|:=|\.\.\.|[-+*/%@&|^=<>!]="
PIECE_PATTERN = (
    r"[\p{L}\p{Nl}_][\p{L}\p{N}_]*"  # identifier or keyword
    r"|\p{Nd}[\p{L}\p{Nd}_]*(?:\.\p{Nd}[\p{Nd}_]*)?"  # number (with its suffixes, 0x.., 1e5j)
    r"|\r?\n"
    r"|[ \t]+"
    rf"|{_OPERATORS}"
    r"|[^\s\p{L}\p{N}_]"  # any other single character
    r"|\s"
)
# The same classes in Python's ``re`` (no \p{..}): used to decide whether text continues a piece.
_PY_PIECE = re.compile(
    r"[^\W\d]\w*"
    r"|\d\w*(?:\.\d\w*)?"
    r"|\r?\n"
    r"|[ \t]+"
    rf"|{_OPERATORS}"
    r"|[^\s\w]"
    r"|\s"
)


def split_pieces(text: str) -> list[str]:
    """Cut ``text`` into the pieces BPE works inside (their concatenation is ``text``)."""
    pieces = []
    pos = 0
    while pos < len(text):
        match = _PY_PIECE.match(text, pos)
        end = match.end() if match and match.end() > pos else pos + 1
        pieces.append(text[pos:end])
        pos = end
    return pieces


def is_one_piece(text: str) -> bool:
    """Whether ``text`` is a single piece (so a token appended to a piece continues it)."""
    match = _PY_PIECE.match(text)
    return match is not None and match.end() == len(text)


class CodeTokenizer:
    """The BPE over Python pieces: encode/decode text, and each token's text for the completer."""

    def __init__(self, backend: object):
        self.backend = backend  # a tokenizers.Tokenizer

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 4096) -> CodeTokenizer:
        """Learn the merges from ``texts`` (Python source files)."""
        from tokenizers import models, pre_tokenizers, trainers

        if vocab_size < 300:
            raise InputError(f"vocab_size must be >= 300 (256 bytes + merges), got {vocab_size}")
        backend = _python_aware_backend(models.BPE())
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[END_OF_FILE],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        backend.train_from_iterator(texts, trainer=trainer)
        return cls(backend)

    @classmethod
    def from_merges(cls, merges: Sequence[tuple[str, str]]) -> CodeTokenizer:
        """A tokenizer built by hand: the 256 bytes, then one token per merge, in order
        (merges are written as plain text, e.g. ("se", "lf"))."""
        from tokenizers import models

        table = {b: ch for ch, b in _byte_level_table().items()}

        def mapped(text: str) -> str:
            return "".join(table[b] for b in text.encode("utf-8"))

        vocab = {END_OF_FILE: 0}
        for b in range(256):
            vocab[table[b]] = len(vocab)
        pairs = []
        for left, right in merges:
            pairs.append((mapped(left), mapped(right)))
            vocab.setdefault(mapped(left + right), len(vocab))
        return cls(_python_aware_backend(models.BPE(vocab=vocab, merges=pairs)))

    @classmethod
    def load(cls, folder: str | Path) -> CodeTokenizer:
        """Read ``tokenizer.json`` from ``folder``."""
        from tokenizers import Tokenizer

        path = Path(folder) / TOKENIZER_FILE
        if not path.is_file():
            raise NotFoundError(f"no {TOKENIZER_FILE} in {folder}; train a model first")
        return cls(Tokenizer.from_file(str(path)))

    def save(self, folder: str | Path) -> Path:
        """Write ``tokenizer.json`` into ``folder`` (atomically)."""
        from septet.common.atomic import atomic_write_text

        path = Path(folder) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, self.backend.to_str())
        return path

    @property
    def vocab_size(self) -> int:
        """Number of token ids."""
        return self.backend.get_vocab_size()

    @property
    def end_of_file_id(self) -> int:
        """The id that separates files in training."""
        return self.backend.token_to_id(END_OF_FILE)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``."""
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text (in parallel)."""
        return [e.ids for e in self.backend.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (the exact inverse of :meth:`encode`)."""
        return self.backend.decode(list(ids), skip_special_tokens=False)

    def decode_batch(self, batch: Sequence[Sequence[int]]) -> list[str]:
        """Text of each id sequence."""
        return self.backend.decode_batch([list(ids) for ids in batch], skip_special_tokens=False)

    @cached_property
    def token_bytes(self) -> list[bytes]:
        """The bytes each id stands for (a token may be part of a UTF-8 character)."""
        # ByteLevel maps each byte to a printable character; invert that table.
        alphabet = _byte_level_table()
        vocab = self.backend.get_vocab()
        out = [b""] * self.vocab_size
        for token, index in vocab.items():
            if token == END_OF_FILE:
                continue
            out[index] = bytes(alphabet[ch] for ch in token)
        return out

    def to_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` text."""
        return json.dumps(json.loads(self.backend.to_str()))


def _python_aware_backend(model: object) -> object:
    """A tokenizers.Tokenizer over ``model`` with the Python piece split and byte-level codes."""
    from tokenizers import Regex, Tokenizer, decoders, pre_tokenizers

    backend = Tokenizer(model)
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PIECE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    return backend


def _byte_level_table() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted: character -> byte."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars, strict=True)}
