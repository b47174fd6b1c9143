"""Tokenizers: text to token ids and back, built on the Rust ``tokenizers`` library.

One class, :class:`Tokenizer`, whatever the files a model ships:
- ``tokenizer.json`` (the full pipeline, serialised by ``tokenizers``);
- ``vocab.txt`` (BERT WordPiece; ``tokenizer_config.json`` says do_lower_case, strip_accents,
  tokenize_chinese_chars and the special tokens);
- ``vocab.json`` + ``merges.txt`` (byte-level BPE: GPT-2 style, or RoBERTa style with
  ``<s> ... </s>`` around each sequence);
- a ``.gguf`` file, whose metadata holds the vocabulary, merges, special token ids and the chat
  template (llama.cpp's ``tokenizer.ggml.*`` keys).

Every source ends as the same thing: a ``tokenizers.Tokenizer`` (the pipeline normaliser ->
pre-tokenizer -> model -> post-processor -> decoder) plus the names of the special tokens, the
chat template and the padding/truncation defaults. The pipelines built here are the ones the
published checkpoints were trained with (and that Hugging Face transformers builds from the
same files), so ids match token for token; tests/transformers/test_tokenizer.py checks that.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from septet.common.atomic import atomic_write_json, atomic_write_text
from septet.errors import ConfigError, InputError, MissingDependencyError, NotFoundError
from septet.transformers.chat_template import render_chat_template

if TYPE_CHECKING:
    import tokenizers
    import torch

SPECIAL_TOKEN_NAMES = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)
# Large enough that "no limit" never truncates; the value HF uses, so saved configs agree.
NO_MAX_LENGTH = int(1e30)

ROBERTA_STYLE_CLASSES = {
    "RobertaTokenizer",
    "RobertaTokenizerFast",
    "BartTokenizer",
    "BartTokenizerFast",
    "LongformerTokenizer",
    "LongformerTokenizerFast",
}
ROBERTA_STYLE_MODEL_TYPES = {"roberta", "bart", "longformer", "xlm-roberta"}
# Tokenizers whose models take segment ids: BERT and its descendants, not DistilBERT.
TOKEN_TYPE_CLASSES = {"BertTokenizer", "BertTokenizerFast", "ElectraTokenizer", "MPNetTokenizer"}

# How llama.cpp's ``tokenizer.ggml.pre`` names split text before byte-level BPE; a name not
# listed here uses GPT-2's split, which is what the converter in HF transformers does too.
_LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
GGUF_PRE_TOKENIZER_SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "smaug-bpe": _LLAMA3_SPLIT,
    "dbrx": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}
GGUF_TOKEN_TYPE_CONTROL = 3
GGUF_TOKEN_TYPE_USER_DEFINED = 4


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as exc:  # pragma: no cover - part of the transformers extra
        raise MissingDependencyError("tokenizers", "transformers") from exc
    return tokenizers


@dataclass(frozen=True)
class SpecialToken:
    """A token the tokenizer must match whole in text, with HF's matching options."""

    content: str
    special: bool = True
    lstrip: bool = False
    rstrip: bool = False
    single_word: bool = False
    normalized: bool = False

    @classmethod
    def parse(cls, value: Any, key: str) -> SpecialToken | None:
        """Read a token as written in tokenizer_config.json: a string or an AddedToken dict."""
        if value is None:
            return None
        if isinstance(value, str):
            return cls(value)
        if isinstance(value, Mapping) and isinstance(value.get("content"), str):
            return cls(
                value["content"],
                special=bool(value.get("special", True)),
                lstrip=bool(value.get("lstrip", False)),
                rstrip=bool(value.get("rstrip", False)),
                single_word=bool(value.get("single_word", False)),
                normalized=bool(value.get("normalized", False)),
            )
        raise ConfigError(
            f"tokenizer setting {key!r} must be a string or a token dict, not {value!r}"
        )

    def to_added_token(self) -> tokenizers.AddedToken:
        tokenizers = _require_tokenizers()
        return tokenizers.AddedToken(
            self.content,
            single_word=self.single_word,
            lstrip=self.lstrip,
            rstrip=self.rstrip,
            normalized=self.normalized,
            special=self.special,
        )


class BatchEncoding(dict):
    """What :meth:`Tokenizer.__call__` returns: ``input_ids``, ``attention_mask`` and, when
    asked for, ``token_type_ids`` and ``offset_mapping``; a dict with a ``to(device)``."""

    def to(self, device: Any) -> BatchEncoding:
        """Move every tensor to ``device`` (returns self, like ``Tensor.to``)."""
        for key, value in self.items():
            if hasattr(value, "to"):
                self[key] = value.to(device)
        return self


class Tokenizer:
    """Text <-> token ids for one model, with padding, truncation, offsets, special tokens and
    chat templates. Build one with :meth:`from_pretrained`."""

    def __init__(
        self,
        backend: tokenizers.Tokenizer,
        *,
        special_tokens: Mapping[str, str | SpecialToken | None] | None = None,
        chat_template: str | None = None,
        model_max_length: int | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        returns_token_type_ids: bool = False,
        clean_up_tokenization_spaces: bool = False,
        tokenizer_class: str | None = None,
        name_or_path: str = "",
    ):
        self.backend = backend
        # Truncation is state of the Rust tokenizer, set per call; the lock keeps one call's
        # setting from leaking into another thread's encode.
        self._lock = threading.Lock()
        self._special: dict[str, str | None] = {name: None for name in SPECIAL_TOKEN_NAMES}
        for name, value in (special_tokens or {}).items():
            if name not in self._special:
                raise ConfigError(
                    f"unknown special token name {name!r}; "
                    f"use one of {', '.join(SPECIAL_TOKEN_NAMES)}"
                )
            token = (
                value if isinstance(value, SpecialToken) or value is None else SpecialToken(value)
            )
            self._special[name] = token.content if token is not None else None
        self.chat_template = chat_template
        self.model_max_length = model_max_length or NO_MAX_LENGTH
        self.padding_side = _check_side(padding_side, "padding_side")
        self.truncation_side = _check_side(truncation_side, "truncation_side")
        self.returns_token_type_ids = returns_token_type_ids
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.tokenizer_class = tokenizer_class
        self.name_or_path = name_or_path

    # ----------------------------------------------------------------------------------------
    # Loading
    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls, path_or_name: str | os.PathLike[str], *, gguf_file: str | None = None
    ) -> Tokenizer:
        """Load the tokenizer in a model folder (tokenizer.json, vocab.txt or vocab.json +
        merges.txt, read in that order), a ``.gguf`` file, or a Hub name in the local cache."""
        path = _resolve(path_or_name)
        if gguf_file is not None:
            path = path / gguf_file
        if path.is_file():
            if path.suffix == ".gguf":
                return cls.from_gguf(path)
            if path.name == "tokenizer.json":
                return cls._from_folder(path.parent)
            raise InputError(
                f"{path} is not a tokenizer: give a model folder, a tokenizer.json or a .gguf file"
            )
        if not path.is_dir():
            raise NotFoundError(f"no tokenizer at {path}: the path does not exist")
        return cls._from_folder(path)

    @classmethod
    def _from_folder(cls, folder: Path) -> Tokenizer:
        config = _read_tokenizer_config(folder)
        model_type = _read_json(folder / "config.json").get("model_type")
        if (folder / "tokenizer.json").is_file():
            return cls._from_tokenizer_json(folder, config, model_type)
        if (folder / "vocab.txt").is_file():
            return cls._from_wordpiece_vocab(folder, config, model_type)
        if (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file():
            return cls._from_byte_level_bpe(folder, config, model_type)
        ggufs = sorted(folder.glob("*.gguf"))
        if len(ggufs) == 1:
            return cls.from_gguf(ggufs[0])
        found = ", ".join(sorted(p.name for p in folder.iterdir())[:20]) or "nothing"
        raise NotFoundError(
            f"no tokenizer files in {folder} (looked for tokenizer.json, vocab.txt, "
            f"vocab.json + merges.txt, or one .gguf file; found: {found})"
        )

    @classmethod
    def _from_tokenizer_json(
        cls, folder: Path, config: dict[str, Any], model_type: str | None
    ) -> Tokenizer:
        tokenizers = _require_tokenizers()
        try:
            backend = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as exc:
            raise InputError(
                f"{folder / 'tokenizer.json'} is not a readable tokenizer: {exc}"
            ) from exc
        tokenizer_class = _class_name(config)
        is_wordpiece = type(backend.model).__name__ == "WordPiece"
        return cls._finish(
            backend,
            config,
            folder,
            tokenizer_class=tokenizer_class,
            token_type_ids=_uses_token_type_ids(tokenizer_class, model_type, is_wordpiece),
            keep_post_processor=True,
        )

    @classmethod
    def _from_wordpiece_vocab(
        cls, folder: Path, config: dict[str, Any], model_type: str | None
    ) -> Tokenizer:
        tokenizers = _require_tokenizers()
        from tokenizers import decoders, normalizers, pre_tokenizers, processors

        # One token per line; only the newline is stripped (a token may be a space-like char).
        lines = (folder / "vocab.txt").read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        vocab: dict[str, int] = {}
        for index, token in enumerate(lines):
            vocab.setdefault(token.rstrip("\r"), index)
        defaults = {
            "unk_token": "[UNK]",
            "sep_token": "[SEP]",
            "pad_token": "[PAD]",
            "cls_token": "[CLS]",
            "mask_token": "[MASK]",
        }
        config = {**{k: v for k, v in defaults.items() if k not in config}, **config}
        unk = SpecialToken.parse(config["unk_token"], "unk_token")
        backend = tokenizers.Tokenizer(
            tokenizers.models.WordPiece(vocab, unk_token=unk.content if unk else "[UNK]")
        )
        backend.normalizer = normalizers.BertNormalizer(
            clean_text=True,
            handle_chinese_chars=_config_bool(config, "tokenize_chinese_chars", True),
            strip_accents=_config_optional_bool(config, "strip_accents"),
            lowercase=_config_bool(config, "do_lower_case", True),
        )
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        backend.decoder = decoders.WordPiece(prefix="##")
        tokenizer = cls._finish(
            backend,
            config,
            folder,
            tokenizer_class=_class_name(config) or "BertTokenizer",
            token_type_ids=_uses_token_type_ids(_class_name(config), model_type, True),
            keep_post_processor=False,
        )
        cls_token, sep_token = tokenizer.cls_token, tokenizer.sep_token
        if cls_token is None or sep_token is None:
            raise ConfigError(f"{folder}: a WordPiece tokenizer needs cls_token and sep_token")
        backend.post_processor = processors.TemplateProcessing(
            single=f"{cls_token}:0 $A:0 {sep_token}:0",
            pair=f"{cls_token}:0 $A:0 {sep_token}:0 $B:1 {sep_token}:1",
            special_tokens=[
                (cls_token, tokenizer._required_id(cls_token)),
                (sep_token, tokenizer._required_id(sep_token)),
            ],
        )
        return tokenizer

    @classmethod
    def _from_byte_level_bpe(
        cls, folder: Path, config: dict[str, Any], model_type: str | None
    ) -> Tokenizer:
        tokenizers = _require_tokenizers()
        from tokenizers import decoders, pre_tokenizers, processors

        vocab = _read_json(folder / "vocab.json")
        merges = _read_merges(folder / "merges.txt")
        tokenizer_class = _class_name(config)
        roberta_style = tokenizer_class in ROBERTA_STYLE_CLASSES or (
            tokenizer_class is None and model_type in ROBERTA_STYLE_MODEL_TYPES
        )
        if roberta_style:
            defaults = {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "sep_token": "</s>",
                "cls_token": "<s>",
                "unk_token": "<unk>",
                "pad_token": "<pad>",
                "mask_token": "<mask>",
            }
        else:
            defaults = {
                "bos_token": "<|endoftext|>",
                "eos_token": "<|endoftext|>",
                "unk_token": "<|endoftext|>",
            }
        config = {**{k: v for k, v in defaults.items() if k not in config}, **config}
        add_prefix_space = _config_bool(config, "add_prefix_space", False)
        backend = tokenizers.Tokenizer(
            tokenizers.models.BPE(
                vocab=vocab,
                merges=merges,
                continuing_subword_prefix="",
                end_of_word_suffix="",
                fuse_unk=False,
            )
        )
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
        backend.decoder = decoders.ByteLevel()
        tokenizer = cls._finish(
            backend,
            config,
            folder,
            tokenizer_class=tokenizer_class or ("RobertaTokenizer" if roberta_style else None),
            token_type_ids=False,
            keep_post_processor=False,
        )
        if roberta_style:
            sep, cls_token = tokenizer.sep_token, tokenizer.cls_token
            if sep is None or cls_token is None:
                raise ConfigError(
                    f"{folder}: a RoBERTa-style tokenizer needs cls_token and sep_token"
                )
            backend.post_processor = processors.RobertaProcessing(
                (sep, tokenizer._required_id(sep)),
                (cls_token, tokenizer._required_id(cls_token)),
                trim_offsets=_config_bool(config, "trim_offsets", True),
                add_prefix_space=add_prefix_space,
            )
        return tokenizer

    @classmethod
    def from_gguf(cls, path: str | os.PathLike[str]) -> Tokenizer:
        """Build the tokenizer a GGUF file describes in its ``tokenizer.*`` metadata."""
        path = Path(path)
        if not path.is_file():
            raise NotFoundError(f"no GGUF file at {path}")
        metadata = _gguf_tokenizer_metadata(path)
        kind = metadata.get("model")
        tokens = metadata.get("tokens")
        if not tokens:
            raise InputError(f"{path} holds no tokenizer (no tokenizer.ggml.tokens metadata)")
        if kind == "gpt2":
            backend = _gguf_byte_level_bpe(metadata)
        elif kind == "llama":
            backend = _gguf_sentencepiece_bpe(metadata)
        else:
            raise InputError(
                f"{path}: GGUF tokenizer model {kind!r} is not supported; supported: gpt2 "
                "(byte-level BPE), llama (SentencePiece BPE)"
            )
        _add_gguf_added_tokens(backend, metadata)

        def token_at(key: str) -> str | None:
            index = metadata.get(key)
            return tokens[index] if isinstance(index, int) and 0 <= index < len(tokens) else None

        config: dict[str, Any] = {
            "bos_token": token_at("bos_token_id"),
            "eos_token": token_at("eos_token_id"),
            "unk_token": token_at("unknown_token_id"),
            "pad_token": token_at("padding_token_id"),
            "chat_template": metadata.get("chat_template"),
            # llama.cpp adds BOS to SentencePiece vocabularies unless the file says otherwise.
            "add_bos_token": metadata.get("add_bos_token", kind == "llama"),
            "add_eos_token": metadata.get("add_eos_token", False),
        }
        if kind == "gpt2" and config["unk_token"] is None:
            config["unk_token"] = "<|endoftext|>"
        return cls._finish(
            backend,
            config,
            path.parent,
            tokenizer_class=None,
            token_type_ids=False,
            keep_post_processor=False,
            name_or_path=str(path),
        )

    @classmethod
    def _finish(
        cls,
        backend: tokenizers.Tokenizer,
        config: dict[str, Any],
        folder: Path,
        *,
        tokenizer_class: str | None,
        token_type_ids: bool,
        keep_post_processor: bool,
        name_or_path: str | None = None,
    ) -> Tokenizer:
        """Register the special tokens with the backend, fix the post-processor, read defaults."""
        # Padding and truncation are per call here; a tokenizer.json may carry its trainer's
        # settings (MiniLM's pads everything to 128), which would otherwise apply silently.
        backend.no_padding()
        backend.no_truncation()
        special: dict[str, SpecialToken | None] = {
            name: SpecialToken.parse(config.get(name), name) for name in SPECIAL_TOKEN_NAMES
        }
        # Tokens the config declares whole (added_tokens_decoder keeps lstrip/rstrip details).
        declared: list[SpecialToken] = []
        decoder = config.get("added_tokens_decoder") or {}
        if not isinstance(decoder, Mapping):
            raise ConfigError(
                "tokenizer setting 'added_tokens_decoder' must be a dict of id -> token"
            )
        vocab = backend.get_vocab(with_added_tokens=True)
        for index, value in sorted(decoder.items(), key=lambda item: int(item[0])):
            token = SpecialToken.parse(value, f"added_tokens_decoder[{index}]")
            if token is not None and token.content not in vocab:
                declared.append(token)
        extra = config.get("additional_special_tokens") or config.get("extra_special_tokens") or []
        if isinstance(extra, Mapping):  # HF 5 may save named extras as a dict
            extra = list(extra.values())
        for value in extra:
            token = SpecialToken.parse(value, "additional_special_tokens")
            if token is not None:
                declared.append(token)
        for token in special.values():
            if token is not None:
                declared.append(token)
        added = backend.get_added_tokens_decoder()
        already = {t.content for t in added.values()}
        new = [t.to_added_token() for t in declared if t.content not in already]
        if new:
            backend.add_tokens(new)
        chat_template = _chat_template_of(config, folder)
        tokenizer = cls(
            backend,
            special_tokens=special,
            chat_template=chat_template,
            model_max_length=_config_int(config, "model_max_length"),
            padding_side=config.get("padding_side", "right"),
            truncation_side=config.get("truncation_side", "right"),
            returns_token_type_ids=token_type_ids,
            clean_up_tokenization_spaces=_config_bool(
                config, "clean_up_tokenization_spaces", False
            ),
            tokenizer_class=tokenizer_class,
            name_or_path=name_or_path or str(folder),
        )
        explicit_flags = "add_bos_token" in config or "add_eos_token" in config
        if not keep_post_processor or explicit_flags or backend.post_processor is None:
            tokenizer._set_bos_eos_post_processor(
                add_bos=_config_bool(config, "add_bos_token", False),
                add_eos=_config_bool(config, "add_eos_token", False),
            )
        return tokenizer

    def _set_bos_eos_post_processor(self, *, add_bos: bool, add_eos: bool) -> None:
        from tokenizers import processors

        bos, eos = self.bos_token, self.eos_token
        add_bos = add_bos and bos is not None
        add_eos = add_eos and eos is not None
        prefix = f"{bos}:0 " if add_bos else ""
        suffix = f" {eos}:0" if add_eos else ""
        single = f"{prefix}$A:0{suffix}"
        pair_b = (f"{bos}:1 " if add_bos else "") + "$B:1" + (f" {eos}:1" if add_eos else "")
        specials = []
        if add_bos:
            specials.append((bos, self._required_id(bos)))
        if add_eos and eos != bos:
            specials.append((eos, self._required_id(eos)))
        self.backend.post_processor = processors.TemplateProcessing(
            single=single, pair=f"{single} {pair_b}", special_tokens=specials
        )

    # ----------------------------------------------------------------------------------------
    # Special tokens and vocabulary
    # ----------------------------------------------------------------------------------------
    def _token_id(self, token: str | None) -> int | None:
        return None if token is None else self.backend.token_to_id(token)

    def _required_id(self, token: str) -> int:
        index = self.backend.token_to_id(token)
        if index is None:
            raise ConfigError(f"special token {token!r} is not in the vocabulary")
        return index

    bos_token = property(lambda self: self._special["bos_token"])
    eos_token = property(lambda self: self._special["eos_token"])
    unk_token = property(lambda self: self._special["unk_token"])
    sep_token = property(lambda self: self._special["sep_token"])
    cls_token = property(lambda self: self._special["cls_token"])
    mask_token = property(lambda self: self._special["mask_token"])
    bos_token_id = property(lambda self: self._token_id(self.bos_token))
    eos_token_id = property(lambda self: self._token_id(self.eos_token))
    unk_token_id = property(lambda self: self._token_id(self.unk_token))
    sep_token_id = property(lambda self: self._token_id(self.sep_token))
    cls_token_id = property(lambda self: self._token_id(self.cls_token))
    mask_token_id = property(lambda self: self._token_id(self.mask_token))

    @property
    def pad_token(self) -> str | None:
        """The padding token (None for models trained without one, like GPT-2)."""
        return self._special["pad_token"]

    @pad_token.setter
    def pad_token(self, token: str | None) -> None:
        if token is not None and self.backend.token_to_id(token) is None:
            raise ConfigError(f"pad token {token!r} is not in the vocabulary")
        self._special["pad_token"] = token

    @property
    def pad_token_id(self) -> int | None:
        return self._token_id(self.pad_token)

    @property
    def special_tokens_map(self) -> dict[str, str]:
        """The named special tokens that are set, e.g. ``{"eos_token": "</s>", ...}``."""
        return {name: value for name, value in self._special.items() if value is not None}

    @property
    def all_special_ids(self) -> list[int]:
        """Ids of every special token (named or added as special)."""
        return sorted(
            index
            for index, token in self.backend.get_added_tokens_decoder().items()
            if token.special
        )

    @property
    def vocab_size(self) -> int:
        """How many ids the tokenizer can produce (the base vocabulary plus added tokens): the
        smallest embedding matrix a model for it needs."""
        return self.backend.get_vocab_size(with_added_tokens=True)

    def __len__(self) -> int:
        return self.vocab_size

    def get_vocab(self) -> dict[str, int]:
        """Token string -> id, added tokens included."""
        return self.backend.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> int | list[int | None] | None:
        """Id of a token (or of each token); None for a token not in the vocabulary."""
        if isinstance(tokens, str):
            return self.backend.token_to_id(tokens)
        return [self.backend.token_to_id(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Sequence[int]) -> str | list[str | None] | None:
        """Token string of an id (or of each id)."""
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    def tokenize(self, text: str) -> list[str]:
        """The token strings of ``text``, without special tokens."""
        return self.backend.encode(text, add_special_tokens=False).tokens

    # ----------------------------------------------------------------------------------------
    # Encoding
    # ----------------------------------------------------------------------------------------
    def encode(
        self, text: str, text_pair: str | None = None, add_special_tokens: bool = True
    ) -> list[int]:
        """Token ids of one text (or a pair of texts, e.g. question and context)."""
        _check_text(text, "text")
        if text_pair is not None:
            _check_text(text_pair, "text_pair")
        try:
            with self._lock:
                encoding = self.backend.encode(
                    text, text_pair, add_special_tokens=add_special_tokens
                )
            return encoding.ids
        except TypeError as exc:  # the Rust side rejects strings that are not valid Unicode
            raise InputError(f"cannot tokenize the text: {exc} (a lone surrogate?)") from exc

    def __call__(
        self,
        texts: str | Sequence[str],
        text_pairs: str | Sequence[str] | None = None,
        *,
        padding: bool | str = True,
        truncation: bool = False,
        max_length: int | None = None,
        padding_side: str | None = None,
        truncation_side: str | None = None,
        pad_to_multiple_of: int | None = None,
        add_special_tokens: bool = True,
        return_offsets: bool = False,
        return_token_type_ids: bool | None = None,
        return_tensors: str | None = "pt",
    ) -> BatchEncoding:
        """Encode one text or a batch: ``input_ids`` and ``attention_mask`` (plus
        ``token_type_ids`` for BERT-style models and ``offset_mapping`` (start, end) character
        spans when ``return_offsets``). ``padding``: True/"longest" pads to the longest in the
        batch, "max_length" to ``max_length``, False not at all. ``truncation`` cuts to
        ``max_length`` (default: the model's maximum), special tokens included.
        ``return_tensors``: "pt" for torch tensors, None for Python lists."""
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        for index, text in enumerate(batch):
            _check_text(text, f"texts[{index}]")
        pairs: list[str] | None = None
        if text_pairs is not None:
            pairs = [text_pairs] if isinstance(text_pairs, str) else list(text_pairs)
            if len(pairs) != len(batch):
                raise InputError(
                    f"got {len(batch)} texts but {len(pairs)} text_pairs; give one pair per text"
                )
            for index, text in enumerate(pairs):
                _check_text(text, f"text_pairs[{index}]")
        if padding not in (True, False, "longest", "max_length", "do_not_pad"):
            raise InputError(
                f"padding={padding!r} is not one of True, False, 'longest', 'max_length'"
            )
        if return_tensors not in ("pt", None):
            raise InputError(f"return_tensors={return_tensors!r}; use 'pt' or None")
        if max_length is not None and max_length <= 0:
            raise InputError(f"max_length must be positive, got {max_length}")
        padding_side = _check_side(padding_side or self.padding_side, "padding_side")
        truncation_side = _check_side(truncation_side or self.truncation_side, "truncation_side")

        limit = max_length if max_length is not None else self.model_max_length
        encodings = self._encode_batch(
            batch,
            pairs,
            add_special_tokens=add_special_tokens,
            truncate_to=limit if truncation and limit < NO_MAX_LENGTH else None,
            truncation_side=truncation_side,
        )
        with_types = (
            self.returns_token_type_ids if return_token_type_ids is None else return_token_type_ids
        )
        rows_ids = [e.ids for e in encodings]
        rows_types = [e.type_ids for e in encodings]
        rows_mask = [e.attention_mask for e in encodings]
        rows_offsets = [[tuple(o) for o in e.offsets] for e in encodings]

        if padding in (True, "longest", "max_length"):
            if padding == "max_length":
                if max_length is None:
                    raise InputError("padding='max_length' needs max_length")
                target = max(max_length, max(map(len, rows_ids), default=0))
            else:
                target = max(map(len, rows_ids), default=0)
            if pad_to_multiple_of:
                target = -(-target // pad_to_multiple_of) * pad_to_multiple_of
            if any(len(row) != target for row in rows_ids):
                pad_id = self.pad_token_id
                if pad_id is None:
                    raise InputError(
                        "this tokenizer has no pad token, so texts of different lengths cannot "
                        "be padded; set tokenizer.pad_token (e.g. to tokenizer.eos_token) or "
                        "padding=False"
                    )
                for i in range(len(rows_ids)):
                    missing = target - len(rows_ids[i])
                    rows_ids[i] = _pad(rows_ids[i], pad_id, missing, padding_side)
                    rows_types[i] = _pad(rows_types[i], 0, missing, padding_side)
                    rows_mask[i] = _pad(rows_mask[i], 0, missing, padding_side)
                    rows_offsets[i] = _pad(rows_offsets[i], (0, 0), missing, padding_side)

        result = BatchEncoding()
        result["input_ids"] = rows_ids
        if with_types:
            result["token_type_ids"] = rows_types
        result["attention_mask"] = rows_mask
        if return_offsets:
            result["offset_mapping"] = rows_offsets
        if return_tensors == "pt":
            lengths = {len(row) for row in rows_ids}
            if len(lengths) > 1:
                raise InputError(
                    "texts of different lengths cannot form one tensor without padding; "
                    "use padding=True or return_tensors=None"
                )
            import torch

            for key, rows in result.items():
                result[key] = torch.tensor(rows, dtype=torch.long)
                if key == "offset_mapping" and not rows_ids[0]:
                    result[key] = result[key].reshape(len(rows), 0, 2)
        elif single:
            for key in list(result):
                result[key] = result[key][0]
        return result

    def _encode_batch(
        self,
        batch: list[str],
        pairs: list[str] | None,
        *,
        add_special_tokens: bool,
        truncate_to: int | None,
        truncation_side: str,
    ) -> list[tokenizers.Encoding]:
        # The backend knows how many special tokens it will add, so it truncates best; its
        # truncation setting is per-tokenizer state, so set it for this call and clear it.
        with self._lock:
            return self._encode_batch_locked(
                batch,
                pairs,
                add_special_tokens=add_special_tokens,
                truncate_to=truncate_to,
                truncation_side=truncation_side,
            )

    def _encode_batch_locked(
        self,
        batch: list[str],
        pairs: list[str] | None,
        *,
        add_special_tokens: bool,
        truncate_to: int | None,
        truncation_side: str,
    ) -> list[tokenizers.Encoding]:
        backend = self.backend
        if truncate_to is not None:
            added = (
                backend.num_special_tokens_to_add(pairs is not None) if add_special_tokens else 0
            )
            if truncate_to <= added:
                raise InputError(
                    f"max_length={truncate_to} leaves no room for text after the {added} special "
                    "tokens this tokenizer adds"
                )
            backend.enable_truncation(
                truncate_to, strategy="longest_first", direction=truncation_side
            )
        try:
            inputs: list[Any] = batch if pairs is None else list(zip(batch, pairs, strict=True))
            return backend.encode_batch(inputs, add_special_tokens=add_special_tokens)
        except TypeError as exc:  # the Rust side rejects strings that are not valid Unicode
            raise InputError(f"cannot tokenize the texts: {exc} (a lone surrogate?)") from exc
        finally:
            if truncate_to is not None:
                backend.no_truncation()

    # ----------------------------------------------------------------------------------------
    # Decoding
    # ----------------------------------------------------------------------------------------
    def decode(
        self,
        ids: Iterable[int] | torch.Tensor,
        skip_special_tokens: bool = False,
        clean_up_tokenization_spaces: bool | None = None,
    ) -> str:
        """The text of a sequence of ids (a list or a 1-D tensor)."""
        ids = _as_id_list(ids)
        text = self.backend.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces
            if clean_up_tokenization_spaces is None
            else clean_up_tokenization_spaces
        )
        # The cleanup undoes WordPiece's spaces around punctuation; on BPE it would damage text.
        if clean and type(self.backend.model).__name__ != "BPE":
            text = _clean_up_tokenization(text)
        return text

    def batch_decode(
        self, sequences: Iterable[Iterable[int]] | torch.Tensor, skip_special_tokens: bool = False
    ) -> list[str]:
        """:meth:`decode` for each sequence of a batch."""
        return [self.decode(ids, skip_special_tokens=skip_special_tokens) for ids in sequences]

    # ----------------------------------------------------------------------------------------
    # Chat
    # ----------------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tokenize: bool = False,
        chat_template: str | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        documents: Sequence[Mapping[str, Any]] | None = None,
        **variables: Any,
    ) -> str | list[int]:
        """The prompt text for a conversation (``[{"role": "user", "content": "..."}]``) in the
        model's own chat format, ending with the assistant's turn header when
        ``add_generation_prompt``; token ids instead when ``tokenize``."""
        template = chat_template or self.chat_template
        if template is None:
            raise ConfigError(
                f"the tokenizer from {self.name_or_path or 'this source'} has no chat template "
                "(not an instruct model?); pass chat_template=..."
            )
        text = render_chat_template(
            template,
            messages,
            add_generation_prompt=add_generation_prompt,
            tools=tools,
            documents=documents,
            **{**self.special_tokens_map, **variables},
        )
        if tokenize:
            # The template already wrote every special token the model expects.
            return self.encode(text, add_special_tokens=False)
        return text

    # ----------------------------------------------------------------------------------------
    # Saving
    # ----------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | os.PathLike[str]) -> list[Path]:
        """Write tokenizer.json, tokenizer_config.json and special_tokens_map.json (and
        chat_template.jinja when there is a template), each atomically; HF loads the folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = [
            folder / "tokenizer.json",
            folder / "tokenizer_config.json",
            folder / "special_tokens_map.json",
        ]
        atomic_write_text(written[0], self.backend.to_str(pretty=True))
        added = {
            str(index): {
                "content": token.content,
                "lstrip": token.lstrip,
                "normalized": token.normalized,
                "rstrip": token.rstrip,
                "single_word": token.single_word,
                "special": token.special,
            }
            for index, token in sorted(self.backend.get_added_tokens_decoder().items())
        }
        config: dict[str, Any] = {
            # The pipeline is entirely in tokenizer.json, so the generic class loads it as is.
            "tokenizer_class": self.tokenizer_class
            if self.tokenizer_class and self.tokenizer_class.startswith("Bert")
            else "PreTrainedTokenizerFast",
            **self.special_tokens_map,
            "added_tokens_decoder": added,
            "model_max_length": self.model_max_length,
            "padding_side": self.padding_side,
            "truncation_side": self.truncation_side,
            "clean_up_tokenization_spaces": self.clean_up_tokenization_spaces,
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]
            if self.returns_token_type_ids
            else ["input_ids", "attention_mask"],
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
        atomic_write_json(written[1], config)
        atomic_write_json(written[2], self.special_tokens_map)
        return written

    def __getstate__(self) -> dict[str, Any]:
        # Picklable (for DataLoader workers): everything but the lock, which is per process.
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        model = type(self.backend.model).__name__
        return (
            f"Tokenizer({model}, vocab_size={self.vocab_size}, source={self.name_or_path!r}, "
            f"special={self.special_tokens_map})"
        )


# --------------------------------------------------------------------------------------------
# Helpers: files and settings
# --------------------------------------------------------------------------------------------
def _resolve(path_or_name: str | os.PathLike[str]) -> Path:
    path = Path(path_or_name).expanduser()
    if path.exists():
        return path
    try:
        from septet.transformers.checkpoint import resolve_model_path
    except ImportError:
        raise NotFoundError(f"no tokenizer at {path}: the path does not exist") from None
    return resolve_model_path(str(path_or_name))


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise InputError(f"{path} must hold a JSON object")
    return value


def _read_tokenizer_config(folder: Path) -> dict[str, Any]:
    """tokenizer_config.json, with special_tokens_map.json filling the tokens it leaves out."""
    config = _read_json(folder / "tokenizer_config.json")
    for name, value in _read_json(folder / "special_tokens_map.json").items():
        config.setdefault(name, value)
    return config


def _read_merges(path: Path) -> list[tuple[str, str]]:
    merges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if number == 1 and line.startswith("#version"):
            continue
        if not line.strip():
            continue
        parts = line.split(" ")
        if len(parts) != 2:
            raise InputError(
                f"{path}:{number}: a merge is two tokens separated by a space: {line!r}"
            )
        merges.append((parts[0], parts[1]))
    return merges


def _chat_template_of(config: Mapping[str, Any], folder: Path) -> str | None:
    template = config.get("chat_template")
    if template is None and (folder / "chat_template.jinja").is_file():
        template = (folder / "chat_template.jinja").read_text(encoding="utf-8")
    if isinstance(template, list):  # several named templates: use the default one
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, Mapping)}
        template = named.get("default") or next(iter(named.values()), None)
    if template is not None and not isinstance(template, str):
        raise ConfigError("tokenizer setting 'chat_template' must be a string")
    return template


def _class_name(config: Mapping[str, Any]) -> str | None:
    value = config.get("tokenizer_class")
    return value if isinstance(value, str) else None


def _uses_token_type_ids(
    tokenizer_class: str | None, model_type: str | None, wordpiece: bool
) -> bool:
    if tokenizer_class is not None:
        return tokenizer_class in TOKEN_TYPE_CLASSES
    if model_type is not None:
        return model_type == "bert"
    return wordpiece


def _config_bool(config: Mapping[str, Any], key: str, default: bool) -> bool:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ConfigError(f"tokenizer setting {key!r} must be true or false, not {value!r}")
    return value


def _config_optional_bool(config: Mapping[str, Any], key: str) -> bool | None:
    value = config.get(key)
    if value is not None and not isinstance(value, bool):
        raise ConfigError(f"tokenizer setting {key!r} must be true, false or null, not {value!r}")
    return value


def _config_int(config: Mapping[str, Any], key: str) -> int | None:
    value = config.get(key)
    if value is None:
        return None
    if isinstance(value, float) and value >= NO_MAX_LENGTH:
        return NO_MAX_LENGTH
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"tokenizer setting {key!r} must be a positive integer, not {value!r}")
    return value


def _check_side(side: str, name: str) -> str:
    if side not in ("left", "right"):
        raise ConfigError(f"{name} must be 'left' or 'right', not {side!r}")
    return side


def _check_text(text: Any, name: str) -> None:
    if not isinstance(text, str):
        raise InputError(f"{name} must be a string, not {type(text).__name__}")


def _pad(row: list, value: Any, count: int, side: str) -> list:
    if count <= 0:
        return row
    return [*row, *([value] * count)] if side == "right" else [*([value] * count), *row]


def _as_id_list(ids: Any) -> list[int]:
    if hasattr(ids, "tolist"):
        ids = ids.tolist()
    if isinstance(ids, int):
        return [ids]
    ids = list(ids)
    if ids and isinstance(ids[0], list):
        raise InputError("decode takes one sequence of ids; use batch_decode for a batch")
    return [int(i) for i in ids]


def _clean_up_tokenization(text: str) -> str:
    for spaced, joined in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(spaced, joined)
    return text


# --------------------------------------------------------------------------------------------
# GGUF
# --------------------------------------------------------------------------------------------
def _gguf_tokenizer_metadata(path: Path) -> dict[str, Any]:
    """The tokenizer metadata of a GGUF file, keyed by the names after ``tokenizer.ggml.``."""
    from septet.transformers.gguf import read_gguf_tokenizer_metadata

    return dict(read_gguf_tokenizer_metadata(path))


def _byte_alphabet() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters: printable
    Latin-1 bytes stand for themselves, the others are shifted to U+0100 and beyond."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    mapping = {byte: chr(byte) for byte in keep}
    shift = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + shift)
            shift += 1
    return mapping


def _gguf_byte_level_bpe(metadata: Mapping[str, Any]) -> tokenizers.Tokenizer:
    tokenizers = _require_tokenizers()
    from tokenizers import decoders, pre_tokenizers

    alphabet = _byte_alphabet()
    letters = set(alphabet.values())
    vocab: dict[str, int] = {}
    for index, token in enumerate(metadata["tokens"]):
        # Ordinary tokens are stored in the byte alphabet; a few files store some raw.
        spelled = (
            token if set(token) <= letters else "".join(alphabet[b] for b in token.encode("utf-8"))
        )
        vocab.setdefault(spelled, index)
    merges = [tuple(m.split(" ", 1)) for m in metadata.get("merges") or []]
    if not merges:
        raise InputError("the GGUF byte-level BPE tokenizer has no tokenizer.ggml.merges")
    backend = tokenizers.Tokenizer(
        tokenizers.models.BPE(
            vocab=vocab,
            merges=merges,
            continuing_subword_prefix="",
            end_of_word_suffix="",
            fuse_unk=False,
        )
    )
    add_prefix_space = bool(metadata.get("add_space_prefix", False))
    split = GGUF_PRE_TOKENIZER_SPLITS.get(metadata.get("pre"))
    if split is None:
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=add_prefix_space)
    else:
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(tokenizers.Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    backend.decoder = decoders.ByteLevel()
    return backend


def _gguf_sentencepiece_bpe(metadata: Mapping[str, Any]) -> tokenizers.Tokenizer:
    """A SentencePiece BPE vocabulary (Llama 1/2, Mistral): '▁' marks a word start, unknown
    characters fall back to <0xNN> byte tokens."""
    tokenizers = _require_tokenizers()
    from tokenizers import decoders, normalizers, pre_tokenizers

    tokens = list(metadata["tokens"])
    vocab = {token: index for index, token in enumerate(tokens)}
    if metadata.get("merges"):
        merges = [tuple(m.split(" ", 1)) for m in metadata["merges"]]
    else:
        scores = metadata.get("scores")
        if scores is None or len(scores) != len(tokens):
            raise InputError("the GGUF SentencePiece tokenizer has neither merges nor scores")
        merges = merges_from_scores(tokens, [float(s) for s in scores])
    unk_index = metadata.get("unknown_token_id", 0)
    backend = tokenizers.Tokenizer(
        tokenizers.models.BPE(
            vocab=vocab,
            merges=merges,
            unk_token=tokens[unk_index] if 0 <= unk_index < len(tokens) else None,
            fuse_unk=True,
            byte_fallback=True,
        )
    )
    backend.normalizer = None
    add_prefix = bool(metadata.get("add_space_prefix", True))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(
        replacement="▁", prepend_scheme="first" if add_prefix else "never", split=False
    )
    steps = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if add_prefix:
        steps.append(decoders.Strip(" ", 1, 0))
    backend.decoder = decoders.Sequence(steps)
    del normalizers
    return backend


def merges_from_scores(tokens: Sequence[str], scores: Sequence[float]) -> list[tuple[str, str]]:
    """Rebuild BPE merges from a SentencePiece vocabulary: every way to split a token into two
    tokens of the vocabulary is a merge, ranked by the merged token's score (higher first)."""
    vocab = {token: index for index, token in enumerate(tokens)}
    # One entry per distinct token (the last score wins), in first-appearance order.
    ranked = []
    for token, score in dict(zip(tokens, scores, strict=True)).items():
        candidates = []
        for cut in range(1, len(token)):
            left, right = token[:cut], token[cut:]
            if left in vocab and right in vocab:
                candidates.append((vocab[left], vocab[right], left, right))
        candidates.sort()
        ranked.extend(
            (score, len(left), len(right), left, right) for _, _, left, right in candidates
        )
    # Stable sort: ties keep vocabulary order.
    ranked.sort(key=lambda item: (item[0], item[1], item[2]), reverse=True)
    return [(left, right) for _, _, _, left, right in ranked]


def _add_gguf_added_tokens(backend: tokenizers.Tokenizer, metadata: Mapping[str, Any]) -> None:
    """Control tokens (``<|im_start|>``) become special added tokens and user-defined ones
    plain added tokens, so text containing them is matched whole rather than split."""
    tokenizers = _require_tokenizers()
    tokens = metadata["tokens"]
    types = metadata.get("token_type") or []
    byte_level = metadata.get("model") == "gpt2"
    letters = set(_byte_alphabet().values()) if byte_level else None
    vocab = backend.get_vocab()
    control, user = [], []
    for token, kind in zip(tokens, types, strict=False):
        if kind == GGUF_TOKEN_TYPE_CONTROL and (letters is None or set(token) <= letters):
            control.append(tokenizers.AddedToken(token, normalized=False, special=True))
        elif kind == GGUF_TOKEN_TYPE_USER_DEFINED and token in vocab:
            user.append(tokenizers.AddedToken(token, normalized=False, special=False))
    if control:
        backend.add_special_tokens(control)
    if user:
        backend.add_tokens(user)
