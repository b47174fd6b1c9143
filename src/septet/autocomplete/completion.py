"""Completion: a beam search constrained by the partly typed token, over a cached context.

Text before the cursor = context + the last piece (the Python token being typed, see
:mod:`septet.autocomplete.tokenization`). The context is encoded and fed once; its state is
cached, so typing one more character of the same token costs no model call for the context,
and a longer context only feeds the new tokens (a prefix of the old one is reused).

The search extends the typed piece token by token. While the typed bytes are not yet covered,
a token must agree with them (start with what is left, or be a prefix of it); after that, a
token must continue the same piece. A beam ends where the piece ends: its score is the beam's
log-probability plus that of "the next token starts a new piece", so a candidate's probability
is that of the whole Python token, ended. Nothing crosses a token or line boundary.

Two things keep a call inside an editor's latency budget:

- work is reused across keystrokes: every beam the search scores is a path of tokens after
  the context, and its model output (the next-token log-probabilities and the state after it)
  is kept, keyed by that path, until the context changes. Typing one more character of a rare
  word re-runs the search (so the candidates are exactly those of a fresh search), but the
  paths the previous keystroke already scored cost no model call: only the new ones are fed.
- a budget: once ``time_budget`` seconds have passed since the call began, or
  ``max_model_calls`` batched model calls were made, no further expansion starts (the first
  always does, so a context that took the whole budget still gets its likeliest tokens); the
  search returns the best tokens finished so far (paths already scored still count, they
  are free) and the suggestion stops running on past the token.
"""

from __future__ import annotations

import bisect
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from septet.autocomplete.tokenization import CodeTokenizer, is_one_piece, split_pieces
from septet.errors import ConfigError

_WORD = re.compile(r"\w+")
_BLANK = re.compile(r"[ \t]+")


@dataclass
class Candidate:
    """One completion: ``text`` is what to insert at the cursor."""

    text: str
    probability: float  # share among the candidates found, including "nothing to add"
    log_probability: float  # the model's log P(this whole token | context)


@dataclass
class _Beam:
    ids: tuple[int, ...]  # the tokens after the context
    data: bytes
    score: float
    state: Any  # a batched state that holds this beam ...
    row: int  # ... in this row
    logprobs: torch.Tensor  # (V,) of the token after it


@dataclass
class _Budget:
    """When a call must stop starting model calls. The first one always runs (if the cap
    allows any), even when feeding a new context used up the time: a token the first search
    step can finish is then still offered."""

    deadline: float
    calls_left: int
    clock: Callable[[], float]
    calls_made: int = 0

    def spent(self) -> bool:
        if self.calls_left <= 0:
            return True
        return self.calls_made > 0 and self.clock() >= self.deadline

    def charge(self) -> None:
        self.calls_left -= 1
        self.calls_made += 1


@dataclass
class _ContextCache:
    ids: list[int] = field(default_factory=list)
    state: Any = None
    logprobs: torch.Tensor | None = None
    snapshots: list[tuple[int, Any, torch.Tensor]] = field(default_factory=list)


class Completer:
    """Ranked completions of the Python token at the cursor, for one editor buffer at a time."""

    def __init__(
        self,
        tokenizer: CodeTokenizer,
        scorer: Any,
        *,
        beam_size: int = 6,
        max_tokens: int = 10,
        context_window: int = 384,
        extend_probability: float = 0.2,
        max_extend_tokens: int = 4,
        compare_tokens: int = 1,
        time_budget: float | None = 0.035,
        max_model_calls: int | None = 8,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.tokenizer = tokenizer
        self.scorer = scorer
        self.beam_size = beam_size
        self.max_tokens = max_tokens
        self.context_window = context_window
        self.extend_probability = extend_probability
        self.max_extend_tokens = max_extend_tokens
        self.compare_tokens = compare_tokens  # token candidates whose runs suggest compares
        # A call starts no model call after ``time_budget`` seconds (by ``clock``) or after
        # ``max_model_calls`` of them; None: no limit.
        self.time_budget = time_budget
        self.max_model_calls = max_model_calls
        self.clock = clock
        self._cache = _ContextCache()
        self.context_tokens_fed = 0  # tokens fed for contexts: shows the cache at work
        # Paths after the context scored by the last call: {ids: (state, row, log-probs)},
        # valid while the context is ``_scored_context``.
        self._scored: dict[tuple[int, ...], tuple[Any, int, torch.Tensor]] = {}
        self._scored_context: list[int] | None = None
        self._reusable: dict[tuple[int, ...], tuple[Any, int, torch.Tensor]] = {}
        self.model_calls = 0  # batched model calls made by searches and runs (not contexts)
        token_bytes = tokenizer.token_bytes
        self._token_bytes = token_bytes
        self._sorted = sorted((b, i) for i, b in enumerate(token_bytes) if b)
        self._sorted_keys = [b for b, _ in self._sorted]
        self._by_bytes = {b: i for i, b in enumerate(token_bytes) if b}
        texts = [b.decode("utf-8", "replace") for b in token_bytes]
        self._texts = texts
        vocab = len(token_bytes)
        self._word_mask = torch.tensor([bool(_WORD.fullmatch(t)) for t in texts])
        self._blank_mask = torch.tensor([bool(_BLANK.fullmatch(t)) for t in texts])
        self._other = [i for i, t in enumerate(texts) if t and not _WORD.match(t) and t.strip()]
        self._mask_cache: dict[str, torch.Tensor] = {}
        self._nothing = torch.zeros(vocab, dtype=torch.bool)

    def reset(self) -> None:
        """Forget the cached context and scored beams (another buffer starts)."""
        self._cache = _ContextCache()
        self._scored, self._reusable, self._scored_context = {}, {}, None

    # -- context ---------------------------------------------------------------------------
    def _window(self, ids: list[int]) -> list[int]:
        """The last tokens of the context; the start moves in half-window jumps so that the
        cached state stays reusable between jumps."""
        if len(ids) <= self.context_window:
            return ids
        step = self.context_window // 2
        start = ((len(ids) - self.context_window) // step + 1) * step
        return ids[start:]

    def _context(self, ids: list[int]) -> tuple[torch.Tensor, Any]:
        """(log-probs of the next token, state) after ``ids``, reusing the cache."""
        if not ids:
            ids = [self.tokenizer.end_of_file_id]  # a file starts after a file separator
        cache = self._cache
        if cache.logprobs is not None and ids == cache.ids:
            return cache.logprobs, cache.state
        common = 0
        for a, b in zip(cache.ids, ids, strict=False):
            if a != b:
                break
            common += 1
        common = min(common, len(ids) - 1)  # at least one token is fed, to get log-probs
        start, state = 0, None
        if self.scorer.length(cache.state) is not None:  # a decoder cache: cut back in place
            if common > 0:
                cache.state.length = common
                start, state = common, cache.state
        else:  # a recurrent state: go back to the last snapshot inside the common prefix
            for n, snap_state, _ in reversed(cache.snapshots):
                if n <= common:
                    start, state = n, snap_state
                    break
        new = torch.tensor([ids[start:]], dtype=torch.long)
        logprobs, state = self.scorer.advance(state, new)
        self.context_tokens_fed += len(ids) - start
        snapshots = [s for s in cache.snapshots if s[0] <= start][-32:]
        if self.scorer.length(state) is None:
            snapshots.append((len(ids), state, logprobs))
        self._cache = _ContextCache(list(ids), state, logprobs, snapshots)
        return logprobs, state

    # -- constraint masks --------------------------------------------------------------------
    def _continuing(self, piece: str) -> torch.Tensor:
        """Tokens that extend ``piece`` and stay one piece."""
        if not piece:
            return ~self._nothing
        first = piece[0]
        if first.isalnum() or first == "_":
            return self._word_mask
        if first in " \t":
            return self._blank_mask
        if piece not in self._mask_cache:
            mask = self._nothing.clone()
            for i in self._other:
                if is_one_piece(piece + self._texts[i]):
                    mask[i] = True
            self._mask_cache[piece] = mask
        return self._mask_cache[piece]

    def _agreeing(self, remaining: bytes) -> list[int]:
        """Tokens whose bytes start with ``remaining`` or are a prefix of it."""
        out = []
        lo = bisect.bisect_left(self._sorted_keys, remaining)
        hi = lo
        while hi < len(self._sorted) and self._sorted_keys[hi].startswith(remaining):
            out.append(self._sorted[hi][1])
            hi += 1
        for n in range(1, len(remaining)):
            i = self._by_bytes.get(remaining[:n])
            if i is not None:
                out.append(i)
        return out

    # -- search ------------------------------------------------------------------------------
    def split(self, text: str) -> tuple[str, str]:
        """(context, the piece being typed) of the text before the cursor."""
        pieces = split_pieces(text)
        if not pieces:
            return text, ""
        last = pieces[-1]
        before = text[: len(text) - len(last)]
        # A piece nothing can extend ("(", a newline) and blanks inside a line are finished:
        # the completion is then the next token. Indentation after a newline stays open.
        mid_line_blank = last.strip(" \t") == "" and before and not before.endswith("\n")
        if mid_line_blank or not bool(self._continuing(last).any()):
            return text, ""
        return before, last

    def _budget(self) -> _Budget:
        """The budget of a call that starts now."""
        limit = self.time_budget
        calls = self.max_model_calls
        return _Budget(
            self.clock() + limit if limit is not None else math.inf,
            calls if calls is not None else 1 << 30,
            self.clock,
        )

    @torch.inference_mode()
    def complete(self, text: str, limit: int = 5) -> list[Candidate]:
        """Up to ``limit`` ranked completions of the token at the end of ``text``."""
        typed, finished, _ = self._search(text, limit, self._budget())
        return self._rank(finished, typed.encode("utf-8"), limit)

    def _search(
        self, text: str, limit: int, budget: _Budget
    ) -> tuple[str, dict[bytes, float], dict[bytes, _Beam]]:
        """The beam search: (typed part of the token, {token bytes: log P(whole token)},
        {token bytes: the beam where that token ended})."""
        context, typed = self.split(text)
        ctx_ids = self._window(self.tokenizer.encode(context))
        logprobs, state = self._context(ctx_ids)
        if self._scored_context != self._cache.ids or not hasattr(self.scorer, "gather"):
            self._scored = {}  # another context (or no way to batch rows of two states)
        self._scored_context = list(self._cache.ids)
        self._reusable, self._scored = self._scored, {}
        prefix = typed.encode("utf-8")
        finished: dict[bytes, float] = {}
        ends: dict[bytes, _Beam] = {}
        beams = [_Beam((), b"", 0.0, state, 0, logprobs[0])]  # the context is one sequence
        for _ in range(self.max_tokens):
            options: list[tuple[float, _Beam, int]] = []
            for beam in beams:
                lp = beam.logprobs
                done = len(beam.data) >= len(prefix)
                piece = _decode(beam.data) if done else None
                if done and beam.ids:
                    if piece is None:
                        continue
                    cont = self._continuing(piece)
                    p_cont = float(lp[cont].exp().sum()) if cont.any() else 0.0
                    end = beam.score + math.log(max(1.0 - p_cont, 1e-12))
                    if end > finished.get(beam.data, -math.inf):
                        finished[beam.data] = end
                        ends[beam.data] = beam
                    allowed = cont.nonzero().flatten()
                elif not done:
                    allowed = torch.tensor(
                        self._agreeing(prefix[len(beam.data) :]), dtype=torch.long
                    )
                else:  # nothing typed yet: the first token of a new piece
                    allowed = (~self._nothing).nonzero().flatten()
                    allowed = allowed[allowed != self.tokenizer.end_of_file_id]
                if len(allowed) == 0:
                    continue
                scores = lp[allowed]
                k = min(self.beam_size, len(allowed))
                top = torch.topk(scores, k)
                for s, j in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                    options.append((beam.score + s, beam, int(allowed[j])))
            if not options:
                break
            # A beam's score only falls as it grows, so one under the (limit+1)-th best
            # finished token can no longer make the list (limit + 1: "nothing to add" is
            # one of the finished tokens but not offered); stop when no live beam can.
            kept = sorted(finished.values(), reverse=True)[: limit + 1]
            if len(kept) > limit:
                options = [o for o in options if o[0] >= kept[-1]]
                if not options:
                    break
            options.sort(key=lambda o: -o[0])
            beams = self._score_paths(options[: self.beam_size], budget)
            if not beams:
                break
        return typed, finished, ends

    def _score_paths(self, options: list[tuple[float, _Beam, int]], budget: _Budget) -> list[_Beam]:
        """The beams ``(score, parent, token)`` with their model output: reused where the
        last call scored the same path, else from one batched model call, if the budget
        allows one (beams it cannot score are dropped)."""
        out: list[_Beam | None] = []
        missing: list[tuple[int, float, _Beam, int]] = []
        for score, parent, token in options:
            path = (*parent.ids, token)
            hit = self._scored.get(path) or self._reusable.get(path)
            if hit is not None:
                self._scored[path] = hit
                out.append(_Beam(path, parent.data + self._token_bytes[token], score, *hit))
            else:
                missing.append((len(out), score, parent, token))
                out.append(None)
        if missing and not budget.spent():
            budget.charge()
            self.model_calls += 1
            # rows of the parents, grouped by the batched state that holds them
            groups: dict[int, tuple[Any, list[tuple[int, float, _Beam, int]]]] = {}
            for m in missing:
                groups.setdefault(id(m[2].state), (m[2].state, []))[1].append(m)
            parts = [
                (st, torch.tensor([m[2].row for m in ms], dtype=torch.long))
                for st, ms in groups.values()
            ]
            ordered = [m for _, ms in groups.values() for m in ms]
            # the first step forks the (cached, shared) context state; later ones gather beams
            state = self.scorer.select(*parts[0]) if len(parts) == 1 else self.scorer.gather(parts)
            ids = torch.tensor([[m[3]] for m in ordered], dtype=torch.long)
            logprobs, state = self.scorer.advance(state, ids)
            for r, (i, score, parent, token) in enumerate(ordered):
                path = (*parent.ids, token)
                self._scored[path] = (state, r, logprobs[r])
                data = parent.data + self._token_bytes[token]
                out[i] = _Beam(path, data, score, state, r, logprobs[r])
        return [b for b in out if b is not None]

    def _rank(self, finished: dict[bytes, float], prefix: bytes, limit: int) -> list[Candidate]:
        if not finished:
            return []
        top = max(finished.values())
        total = sum(math.exp(v - top) for v in finished.values())
        out = []
        for data, score in sorted(finished.items(), key=lambda kv: -kv[1]):
            text = _decode(data)
            if text is None or len(data) <= len(prefix):
                continue
            out.append(
                Candidate(text[len(prefix.decode()) :], math.exp(score - top) / total, score)
            )
        return out[:limit]

    @torch.inference_mode()
    def suggest(self, text: str) -> str:
        """The inline suggestion an editor shows at the end of ``text`` ("" for none).

        First the most probable way to finish the token being typed (which may be: it is
        already whole). Then the likeliest next tokens of the line are followed while their
        joint probability stays at least ``extend_probability``, and the suggestion is cut
        where a Python token ends and the expected number of keys it saves, P(the text
        starts with it) x (its length - 1), is highest: a longer run is offered only when it
        is likely enough to pay for the risk of being wrong."""
        budget = self._budget()
        typed, finished, ends = self._search(text, self.compare_tokens - 1, budget)
        if not finished:
            return ""
        ranked = sorted(finished, key=finished.__getitem__, reverse=True)
        top = finished[ranked[0]]
        best_text, best_value = "", -math.inf
        for data in ranked[: self.compare_tokens]:
            base = (_decode(data) or typed)[len(typed) :]
            more, value = self._extend(typed + base, len(base), ends[data], budget)
            value *= math.exp(finished[data] - top)  # P(this token) / P(the likeliest)
            if value > best_value:
                best_text, best_value = base + more, value
        return best_text

    def _extend(self, whole: str, length: int, beam: _Beam, budget: _Budget) -> tuple[str, float]:
        """The continuation of the line after the whole token ending ``whole`` (``beam``)
        that saves the most keys in expectation (see :meth:`suggest`), and those keys;
        ``length``: characters of the suggestion before it."""
        if self.max_extend_tokens <= 0 or self.extend_probability >= 1:
            return "", length - 1.0
        floor = math.log(self.extend_probability)
        data, log_joint = b"", 0.0
        best_value, best_cut = length - 1.0, 0
        last_piece = split_pieces(whole)[-1] if whole else ""
        for step in range(self.max_extend_tokens + 1):
            lp = beam.logprobs.clone()
            lp[self.tokenizer.end_of_file_id] = -math.inf
            token = int(lp.argmax())
            token_text = _decode(self._token_bytes[token])
            new_piece = token_text is not None and not is_one_piece(last_piece + token_text)
            if new_piece and data:  # the text so far ends a Python token: a place to cut
                value = math.exp(log_joint) * (length + len(data.decode()) - 1)
                if value > best_value:
                    best_value, best_cut = value, len(data)
            log_joint += float(lp[token])
            if (
                step == self.max_extend_tokens
                or token_text is None
                or "\n" in token_text
                or "\r" in token_text
                or log_joint < floor
            ):
                break
            data += self._token_bytes[token]
            last_piece = token_text if new_piece else last_piece + token_text
            scored = self._score_paths([(0.0, beam, token)], budget)
            if not scored:  # out of budget: the best cut so far stands
                break
            beam = scored[0]
        return data[:best_cut].decode(), best_value

    @torch.inference_mode()
    def complete_line(self, text: str, max_tokens: int = 48) -> str:
        """The rest of the current line, greedily (for line-completion metrics)."""
        context, typed = self.split(text)
        ids = self._window(self.tokenizer.encode(context))
        logprobs, state = self._context(ids)
        state = self.scorer.copy(state)
        logprobs = logprobs[0]
        out = b""
        prefix = typed.encode()
        for _ in range(max_tokens):
            if len(out) < len(prefix):
                allowed = torch.tensor(self._agreeing(prefix[len(out) :]), dtype=torch.long)
                if len(allowed) == 0:
                    break
                token = int(allowed[logprobs[allowed].argmax()])
            else:
                token = int(logprobs.argmax())
            data = self._token_bytes[token]
            if token == self.tokenizer.end_of_file_id or b"\n" in data:
                out += data.split(b"\n")[0]
                break
            out += data
            logprobs, state = self.scorer.advance(state, torch.tensor([[token]]))
            logprobs = logprobs[0]
        return out.decode("utf-8", "replace")[len(typed) :]


def _decode(data: bytes) -> str | None:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def default_model_dir() -> Path:
    """The model shipped inside the package."""
    return Path(__file__).with_name("default_model")


def load_completer(
    model_dir: str | Path | None = None, *, weights: str = "int8", **options: Any
) -> Completer:
    """A :class:`Completer` over a trained model folder (default: the shipped model).

    ``weights``: "int8" runs a Llama's linear layers with 8-bit weights (one scale per row,
    :func:`septet.transformers.quantize.quantize_for_decoding`): a completion step reads a
    quarter of the weight bytes, about twice as fast on one CPU core, for at most a key or
    two in a thousand on stdlib validation files; "fp32" keeps the float weights (the LSTM
    always does)."""
    from septet.autocomplete.models import NextTokenScorer, load_model

    if weights not in ("int8", "fp32"):
        raise ConfigError(f"weights must be 'int8' or 'fp32', got {weights!r}")
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    choice = folder / "default.json"  # the shipped folder holds both kinds and names the best
    if choice.is_file():
        import json

        folder = folder / json.loads(choice.read_text())["kind"]
    tokenizer = CodeTokenizer.load(folder)
    scorer = NextTokenScorer(load_model(folder))
    if weights == "int8" and scorer.kind == "llama":
        from septet.transformers.quantize import quantize_for_decoding

        quantize_for_decoding(scorer.model, "int8", lm_head="int8")
    return Completer(tokenizer, scorer, **options)
