"""Text generation with decoder models: greedy and sampled decoding over a KV cache.

``generate`` returns token ids, ``stream_generate`` yields them step by step, and
``generate_text`` / ``stream_text`` go from prompt strings to text through a Tokenizer,
stopping at stop strings. Batches are left-padded so every sequence's next token sits in the
same column; finished sequences keep emitting the pad token until all are done.

Each step's logits go through the same processors as HF's, in HF's order: repetition penalty,
then (sampling only) temperature, top-k and top-p. A seed makes sampling reproducible.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from septet.errors import ConfigError, InputError


@dataclasses.dataclass
class GenerationConfig:
    """How to choose tokens. The defaults are greedy decoding of up to 32 tokens."""

    max_new_tokens: int = 32
    min_new_tokens: int = 0
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 50  # 0: no top-k filter (HF's default is 50 as well)
    top_p: float = 1.0
    repetition_penalty: float = 1.0
    stop_strings: list[str] | tuple[str, ...] = ()
    # None: the model config's eos_token_id (one id or several).
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        checks = [
            ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
            ("min_new_tokens", 0 <= self.min_new_tokens <= self.max_new_tokens,
             "between 0 and max_new_tokens"),
            ("temperature", self.temperature > 0, "greater than 0 (greedy: do_sample=False)"),
            ("top_k", self.top_k >= 0, "0 (off) or a positive count"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]"),
            ("repetition_penalty", self.repetition_penalty > 0, "greater than 0 (1.0 is off)"),
        ]  # fmt: skip
        for key, ok, what in checks:
            if not ok:
                raise ConfigError(
                    f"generation setting {key!r} is {getattr(self, key)!r}; it must be {what}"
                )
        if isinstance(self.stop_strings, str):
            self.stop_strings = (self.stop_strings,)
        if any(not isinstance(s, str) or not s for s in self.stop_strings):
            raise ConfigError("generation setting 'stop_strings' must hold non-empty strings")

    def updated(self, **overrides: Any) -> GenerationConfig:
        """A copy with ``overrides`` applied; unknown names are ConfigErrors naming them."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown generation setting(s) {', '.join(map(repr, unknown))}; known: "
                f"{', '.join(sorted(known))}"
            )
        return dataclasses.replace(self, **overrides)


# ------------------------------------------------------------------------------------------
# Logits processors (HF's semantics)
# ------------------------------------------------------------------------------------------


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: float
) -> torch.Tensor:
    """CTRL's penalty: the logit of every already-seen token is divided by ``penalty`` when
    positive and multiplied by it when negative (``seen``: (B, V) bool)."""
    penalised = torch.where(logits < 0, logits * penalty, logits / penalty)
    return torch.where(seen, penalised, logits)


def filter_top_k(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th kept), -inf the rest."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def filter_top_p(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability sums to
    at least ``p`` (always at least one), -inf the rest."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs
    drop_sorted = mass_before >= p  # the mass before this token already reached p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def next_tokens(
    logits: torch.Tensor,
    seen: torch.Tensor,
    config: GenerationConfig,
    generator: torch.Generator | None,
) -> torch.Tensor:
    """The next token of every row (B,) from the last position's logits (B, V)."""
    logits = logits.float()
    if config.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if not config.do_sample:
        return logits.argmax(dim=-1)
    if config.temperature != 1.0:
        logits = logits / config.temperature
    logits = filter_top_p(filter_top_k(logits, config.top_k), config.top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ------------------------------------------------------------------------------------------
# The decoding loop
# ------------------------------------------------------------------------------------------


def _eos_ids(model: Any, config: GenerationConfig) -> list[int]:
    eos = config.eos_token_id
    if eos is None:
        eos = getattr(model.config, "eos_token_id", None)
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)


class Decoder:
    """One batch being decoded: ``step()`` picks every row's next token; ``finish(row)``
    stops a row early (a stop string seen by the caller)."""

    def __init__(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        config: GenerationConfig,
    ):
        if input_ids.dim() == 1:
            input_ids = input_ids[None]
        if input_ids.dim() != 2 or input_ids.shape[1] == 0:
            raise InputError(
                f"input_ids must be a non-empty (batch, seq) tensor, got shape "
                f"{tuple(input_ids.shape)}"
            )
        if not hasattr(model, "new_cache"):
            raise InputError(f"{type(model).__name__} is not a decoder model; it cannot generate")
        self.model = model
        self.config = config
        device = model.device
        self.input_ids = input_ids.to(device)
        b, s = self.input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(self.input_ids)
        elif attention_mask.shape != self.input_ids.shape:
            raise InputError(
                f"attention_mask has shape {tuple(attention_mask.shape)}, input_ids "
                f"{tuple(self.input_ids.shape)}; they must match"
            )
        self.mask = attention_mask.to(device=device, dtype=torch.long)
        if bool((self.mask.sum(-1) == 0).any()):
            raise InputError("a prompt is empty (its attention_mask is all zeros)")
        # Without padding the model needs no mask at all: it attends causally, fastest path.
        self.padded = not bool(self.mask.all())
        self.eos = torch.tensor(_eos_ids(model, config), device=device, dtype=torch.long)
        pad = config.pad_token_id
        if pad is None:
            pad = getattr(model.config, "pad_token_id", None)
        if pad is None:
            pad = int(self.eos[0]) if len(self.eos) else 0
        self.pad_token_id = pad
        self.generator = None
        if config.do_sample:
            self.generator = torch.Generator(device=device)
            self.generator.manual_seed(
                config.seed if config.seed is not None else int(torch.seed() % 2**63)
            )
        self.seen = None
        if config.repetition_penalty != 1.0:
            vocab = model.config.vocab_size
            self.seen = torch.zeros(b, vocab, dtype=torch.bool, device=device)
            self.seen.scatter_(1, self.input_ids, self.mask.bool())
        self.finished = torch.zeros(b, dtype=torch.bool, device=device)
        self.generated = 0
        self.cache = model.new_cache(b, s + config.max_new_tokens)
        self._logits: torch.Tensor | None = None

    def _forward(self, ids: torch.Tensor) -> torch.Tensor:
        mask = self.mask if self.padded else None
        out = self.model(ids, attention_mask=mask, past_key_values=self.cache, logits_to_keep=1)
        return out.logits[:, -1]

    @property
    def done(self) -> bool:
        """Whether every row has finished or the token budget is spent."""
        return self.generated >= self.config.max_new_tokens or bool(self.finished.all())

    def finish(self, row: int) -> None:
        """Stop ``row``: from now on it emits the pad token."""
        self.finished[row] = True

    def step(self) -> torch.Tensor:
        """Every row's next token (B,) (the pad token for finished rows)."""
        if self._logits is None:
            self._logits = self._forward(self.input_ids)
        logits = self._logits
        if self.generated < self.config.min_new_tokens and len(self.eos):
            logits = logits.index_fill(-1, self.eos, float("-inf"))
        tokens = next_tokens(logits, self.seen, self.config, self.generator)
        tokens = torch.where(self.finished, torch.full_like(tokens, self.pad_token_id), tokens)
        if self.seen is not None:
            self.seen[torch.arange(len(tokens)), tokens] |= ~self.finished
        if len(self.eos):
            self.finished |= torch.isin(tokens, self.eos)
        self.generated += 1
        if not self.done:
            self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)
            self._logits = self._forward(tokens[:, None])
        return tokens


def _config_of(config: GenerationConfig | None, overrides: dict[str, Any]) -> GenerationConfig:
    return (config or GenerationConfig()).updated(**overrides)


def stream_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> Iterator[torch.Tensor]:
    """Yield every row's next token id (B,) step by step (see :func:`generate`)."""
    config = _config_of(config, overrides)
    with torch.inference_mode():
        decoder = Decoder(model, input_ids, attention_mask, config)
        while not decoder.done:
            yield decoder.step()


def generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> torch.Tensor:
    """The prompts (B, S) followed by up to ``max_new_tokens`` generated tokens (B, S + N);
    rows that finished early (end-of-sequence) are filled with the pad token. Prompts of
    different lengths must be left-padded, with ``attention_mask`` marking real tokens.
    ``overrides`` replace fields of ``config`` (e.g. ``do_sample=True, seed=0``)."""
    steps = list(stream_generate(model, input_ids, attention_mask, config, **overrides))
    prompt = input_ids if input_ids.dim() == 2 else input_ids[None]
    return torch.cat([prompt.to(steps[0].device), torch.stack(steps, dim=1)], dim=1)


# ------------------------------------------------------------------------------------------
# Text in, text out
# ------------------------------------------------------------------------------------------


class _TextTracker:
    """One row's generated text: decodes its tokens, finds stop strings, and releases the text
    that can no longer change (not an unfinished UTF-8 character, not a stop string's prefix)."""

    def __init__(self, tokenizer: Any, stop_strings: Sequence[str]):
        self.tokenizer = tokenizer
        self.stop_strings = list(stop_strings)
        self.tokens: list[int] = []
        self.released = 0  # characters already handed out
        self.stopped = False

    def add(self, token: int) -> None:
        self.tokens.append(token)

    def text(self) -> str:
        """The text so far, cut before the first stop string (which marks the row stopped)."""
        text = self.tokenizer.decode(self.tokens, skip_special_tokens=True)
        cut = min((i for s in self.stop_strings if (i := text.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            return text[:cut]
        return text

    def release(self, final: bool) -> str:
        """The text not handed out yet that is safe to hand out now."""
        text = self.text()
        end = len(text)
        if not final and not self.stopped:
            # A byte-level BPE token can end inside a UTF-8 character: hold the replacement char.
            while end > self.released and text[end - 1] == "\ufffd":
                end -= 1
            # Hold a tail that may grow into a stop string.
            for stop in self.stop_strings:
                for n in range(min(len(stop) - 1, end - self.released), 0, -1):
                    if text[:end].endswith(stop[:n]):
                        end -= n
                        break
        piece = text[self.released : end]
        self.released = max(self.released, end)
        return piece


def _advance(decoder: Decoder, trackers: list[_TextTracker]) -> None:
    """One decoding step: each live row's token goes to its tracker; a row whose text now
    holds a stop string is finished."""
    live = (~decoder.finished).tolist()
    tokens = decoder.step().tolist()
    eos = set(decoder.eos.tolist())
    for row, tracker in enumerate(trackers):
        if not live[row] or tokens[row] in eos:
            continue
        tracker.add(tokens[row])
        if tracker.stop_strings:
            tracker.text()
            if tracker.stopped:
                decoder.finish(row)


def _encode_prompts(tokenizer: Any, prompts: Sequence[str], device: torch.device) -> Any:
    if not prompts or any(not isinstance(p, str) for p in prompts):
        raise InputError("prompts must be a string or a non-empty list of strings")
    batch = tokenizer(list(prompts), padding=True, padding_side="left", return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)


def _text_config(
    tokenizer: Any, config: GenerationConfig | None, overrides: dict[str, Any]
) -> GenerationConfig:
    config = _config_of(config, overrides)
    if config.pad_token_id is None and getattr(tokenizer, "pad_token_id", None) is not None:
        config = config.updated(pad_token_id=tokenizer.pad_token_id)
    return config


def generate_text(
    model: Any,
    tokenizer: Any,
    prompts: str | Sequence[str],
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> str | list[str]:
    """The continuation of each prompt (a string for one prompt, a list for several), cut
    before the first stop string; special tokens are left out of the text."""
    single = isinstance(prompts, str)
    batch = [prompts] if single else list(prompts)
    config = _text_config(tokenizer, config, overrides)
    input_ids, mask = _encode_prompts(tokenizer, batch, model.device)
    trackers = [_TextTracker(tokenizer, config.stop_strings) for _ in batch]
    with torch.inference_mode():
        decoder = Decoder(model, input_ids, mask, config)
        while not decoder.done:
            _advance(decoder, trackers)
    texts = [tracker.text() for tracker in trackers]
    return texts[0] if single else texts


def stream_text(
    model: Any,
    tokenizer: Any,
    prompt: str,
    config: GenerationConfig | None = None,
    **overrides: Any,
) -> Iterator[str]:
    """Yield the continuation of ``prompt`` in pieces as it is generated; the pieces join to
    exactly what :func:`generate_text` returns (same settings and seed)."""
    if not isinstance(prompt, str):
        raise InputError("stream_text takes one prompt string")
    config = _text_config(tokenizer, config, overrides)
    input_ids, mask = _encode_prompts(tokenizer, [prompt], model.device)
    tracker = _TextTracker(tokenizer, config.stop_strings)
    with torch.inference_mode():
        decoder = Decoder(model, input_ids, mask, config)
        while not decoder.done:
            _advance(decoder, [tracker])
            piece = tracker.release(final=False)
            if piece:
                yield piece
    piece = tracker.release(final=True)
    if piece:
        yield piece
