"""Measuring a completer the way an editor user feels it.

- :func:`simulate_keystrokes`: type a file character by character; whenever the top
  suggestion matches what follows, accept it with one key (the anchor's Tab). Keystrokes saved
  = 1 - keys pressed / characters in the file.
- :func:`next_token_accuracy`: top-1 / top-5 of the model's next-token distribution.
- :func:`line_completion_scores`: CodeXGLUE's line-level metrics, exact match and edit
  similarity (1 - Levenshtein distance / longer length), on the rest of a line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

Suggest = Callable[[str], "str | None"]


@dataclass
class KeystrokeResult:
    """Counts of one simulated typing session."""

    characters: int
    keystrokes: int
    accepted: int  # suggestions taken
    suggestions: int  # times a suggestion was asked for

    @property
    def saved(self) -> float:
        """Fraction of keystrokes saved, 1 - keystrokes / characters."""
        return 1.0 - self.keystrokes / self.characters if self.characters else 0.0

    def __add__(self, other: KeystrokeResult) -> KeystrokeResult:
        return KeystrokeResult(
            self.characters + other.characters,
            self.keystrokes + other.keystrokes,
            self.accepted + other.accepted,
            self.suggestions + other.suggestions,
        )


def simulate_keystrokes(text: str, suggest: Suggest) -> KeystrokeResult:
    """Type ``text``; ``suggest(text_before_cursor)`` returns the text it would insert (or
    None). A suggestion of two or more characters that matches what follows is accepted with
    one keystroke; otherwise the next character is typed."""
    pos = keys = accepted = asked = 0
    while pos < len(text):
        suggestion = suggest(text[:pos])
        asked += 1
        keys += 1
        if suggestion and len(suggestion) > 1 and text.startswith(suggestion, pos):
            pos += len(suggestion)
            accepted += 1
        else:
            pos += 1
    return KeystrokeResult(len(text), keys, accepted, asked)


def edit_similarity(a: str, b: str) -> float:
    """1 - Levenshtein(a, b) / max(len(a), len(b)); 1.0 for two empty strings."""
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


@dataclass
class LineScores:
    """Line-level completion: exact match and mean edit similarity over ``lines`` cases."""

    exact_match: float
    edit_similarity: float
    lines: int


def line_completion_cases(text: str, max_cases: int = 50) -> list[tuple[str, str]]:
    """(text before, rest of the line) cases: each non-blank line cut after its indentation
    and first token, so some of the line is given and the rest must be predicted."""
    from septet.autocomplete.tokenization import split_pieces

    cases = []
    offset = 0
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        pieces = split_pieces(body)
        stripped = body.strip()
        if stripped and not stripped.startswith("#") and len(pieces) > 3:
            cut = len(body) - len(body.lstrip(" \t"))
            first = next(p for p in pieces if p.strip())
            cut += len(first)
            cases.append((text[: offset + cut], body[cut:]))
        offset += len(line)
        if len(cases) >= max_cases:
            break
    return cases


def line_completion_scores(cases: Sequence[tuple[str, str]], complete_line: Suggest) -> LineScores:
    """Exact match and edit similarity of ``complete_line(before)`` against each rest."""
    if not cases:
        return LineScores(0.0, 0.0, 0)
    exact = similar = 0.0
    for before, truth in cases:
        predicted = complete_line(before) or ""
        exact += predicted.strip() == truth.strip()
        similar += edit_similarity(predicted.strip(), truth.strip())
    return LineScores(exact / len(cases), similar / len(cases), len(cases))


def next_token_accuracy(
    scorer: object, token_ids: Sequence[int], window: int = 256
) -> tuple[float, float, int]:
    """(top-1, top-5, tokens scored) of predicting each token from the ones before it,
    in windows of ``window`` tokens."""
    import torch

    top1 = top5 = total = 0
    with torch.inference_mode():
        for start in range(0, len(token_ids) - 1, window):
            chunk = list(token_ids[start : start + window + 1])
            if len(chunk) < 2:
                break
            ids = torch.tensor([chunk[:-1]])
            state = None
            logits = []
            for i in range(ids.shape[1]):  # one token at a time: the scorer's incremental face
                lp, state = scorer.advance(state, ids[:, i : i + 1])
                logits.append(lp[0])
            predictions = torch.stack(logits).topk(5, -1).indices
            targets = torch.tensor(chunk[1:])
            top1 += int((predictions[:, 0] == targets).sum())
            top5 += int((predictions == targets[:, None]).any(-1).sum())
            total += len(targets)
    return top1 / max(total, 1), top5 / max(total, 1), total
