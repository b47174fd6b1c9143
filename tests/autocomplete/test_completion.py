"""Constrained beam search on a hand-built tokenizer and a hand-built bigram model."""

from __future__ import annotations

import math

import pytest
import torch

from septet.autocomplete.completion import Completer
from septet.autocomplete.tokenization import CodeTokenizer

MERGES = [
    ("s", "e"), ("se", "l"), ("sel", "f"),
    ("s", "o"), ("so", "r"), ("sor", "t"), ("sort", "e"), ("sorte", "d"),
]  # fmt: skip


class BigramScorer:
    """P(next token | last token) from a table; rows not given are near-uniform."""

    kind = "bigram"

    def __init__(self, tokenizer: CodeTokenizer, table: dict[str, dict[str, float]]):
        v = tokenizer.vocab_size
        self.rows = torch.full((v, v), 1e-9)
        ids = {t: i for i, t in enumerate(tokenizer.token_bytes) if t}
        for prev, row in table.items():
            for nxt, p in row.items():
                self.rows[ids[prev.encode()], ids[nxt.encode()]] = p
        self.rows = (self.rows / self.rows.sum(-1, keepdim=True)).log()
        self.calls = 0

    def advance(self, state, ids):
        self.calls += 1
        return self.rows[ids[:, -1]], ids[:, -1:]

    def select(self, state, rows):
        return state[rows]

    def copy(self, state):
        return state

    def length(self, state):
        return None


@pytest.fixture
def completer() -> Completer:
    tokenizer = CodeTokenizer.from_merges(MERGES)
    table = {
        " ": {"self": 0.5, "sorted": 0.3, "s": 0.2},
        "self": {".": 1.0},  # "self" then "." : the token ends after "self"
        "sorted": {"(": 1.0},
        "s": {"(": 1.0},
    }
    return Completer(tokenizer, BigramScorer(tokenizer, table), beam_size=4)


def test_candidates_extend_the_typed_prefix_ranked_by_probability(completer: Completer) -> None:
    """Given "x = s" typed, then "self" and "sorted" are offered, with the probabilities the
    table gives (shares of the three ways the token can end: self .5, sorted .3, s .2)."""
    got = completer.complete("x = s")
    assert [c.text for c in got[:2]] == ["elf", "orted"]
    assert all(c.probability < 1e-6 for c in got[2:])  # paths through the near-zero rows
    assert got[0].probability == pytest.approx(0.5, abs=1e-3)
    assert got[1].probability == pytest.approx(0.3, abs=1e-3)
    assert got[0].log_probability == pytest.approx(math.log(0.5), abs=1e-3)


def test_a_longer_prefix_rules_out_what_no_longer_matches(completer: Completer) -> None:
    got = completer.complete("x = so")
    assert got[0].text == "rted" and got[0].probability > 0.999
    assert not any(c.text.startswith("elf") for c in got)


def test_typing_one_more_character_reuses_the_context(completer: Completer) -> None:
    """The context "x = " is fed once; "s", "so", "sor" only run the search."""
    completer.complete("x = s")
    fed = completer.context_tokens_fed
    completer.complete("x = so")
    completer.complete("x = sor")
    assert completer.context_tokens_fed == fed
    completer.complete("x = sorted(y) + s")  # a longer context feeds only its new tokens
    assert completer.context_tokens_fed == fed + len(completer.tokenizer.encode("sorted(y) + "))


def test_completion_stops_at_the_token_and_line_boundary(completer: Completer) -> None:
    """After a blank in a line, the next token is predicted whole and nothing runs past it."""
    got = completer.complete("x = ")
    assert [c.text for c in got][:3] == ["self", "sorted", "s"]
    assert all("\n" not in c.text and "." not in c.text for c in got)


def test_the_shipped_model_completes_python() -> None:
    """The model in the package gives a real completion of a common identifier."""
    from septet.autocomplete.completion import load_completer

    completer = load_completer()
    texts = [c.text for c in completer.complete("import os\n\n\ndef main(argv):\n    return os.pa")]
    assert "th" in texts
    line = completer.complete_line("class Foo:\n    def __init__(self")
    assert isinstance(line, str) and "\n" not in line


@pytest.fixture
def chained() -> Completer:
    """A bigram table where "self" is surely followed by "." and "sorted" by "(" then a line
    end, so the suggestion can run on past the token being typed."""
    tokenizer = CodeTokenizer.from_merges(MERGES)
    table = {
        " ": {"self": 0.5, "sorted": 0.3, "s": 0.2},
        "self": {".": 0.9, "s": 0.1},
        "sorted": {"(": 0.8, "e": 0.2},
        "(": {"\n": 1.0},
        "s": {"(": 1.0},
    }
    return Completer(tokenizer, BigramScorer(tokenizer, table), beam_size=4)


def test_the_suggestion_runs_on_while_the_next_tokens_are_likely(chained: Completer) -> None:
    """ "x = s": the best token is "self" (its rest "elf"), and "." follows it with P=.9."""
    assert chained.suggest("x = s") == "elf."
    chained.extend_probability = 0.95  # "." (.9) is no longer likely enough
    assert chained.suggest("x = s") == "elf"
    chained.extend_probability = 0.5
    chained.max_extend_tokens = 0
    assert chained.suggest("x = s") == "elf"


def test_a_whole_typed_token_is_followed_by_the_next_ones_up_to_the_line_end(
    chained: Completer,
) -> None:
    """After "sorted" typed whole, "(" is suggested, and the newline after it is not."""
    assert chained.suggest("x = sorted") == "("
    assert "\n" not in chained.suggest("x = sorted")


def test_the_suggestion_never_ends_inside_a_python_token() -> None:
    """After "sorted" the likeliest run is "(", "se", "l", "f". Allowed three tokens, the run
    "(sel" stops inside the name "self", so the suggestion is cut back to "("; allowed more,
    it reaches the whole "(self" (joint .36, 4 keys saved: worth more than "(")."""
    tokenizer = CodeTokenizer.from_merges(MERGES)
    table = {
        " ": {"sorted": 1.0},
        "sorted": {"(": 0.9, "e": 0.1},
        "(": {"se": 0.9, "x": 0.1},
        "se": {"l": 0.9, "t": 0.1},
        "l": {"f": 0.5, "t": 0.4, ")": 0.1},
    }
    completer = Completer(tokenizer, BigramScorer(tokenizer, table), beam_size=4)
    completer.max_extend_tokens = 3
    assert completer.suggest("x = sorted") == "("
    completer.max_extend_tokens = 8
    assert completer.suggest("x = sorted") == "(self"


def test_a_run_is_offered_only_when_it_saves_more_keys_than_it_risks() -> None:
    """After "sorted(" comes "self" (.45) then ")" (.9): "(self)" saves 5 keys with P .405,
    worth 2.0 keys, more than "(self" (.45 x 4 = 1.8). With P(")") = .6 it is worth 1.35:
    then the shorter "(self" is offered."""
    tokenizer = CodeTokenizer.from_merges(MERGES)
    table = {
        " ": {"sorted": 1.0},
        "sorted": {"(": 1.0},
        "(": {"self": 0.45, "s": 0.2, "sorted": 0.2, "se": 0.15},
        "self": {")": 0.9, ".": 0.1},
        ")": {"\n": 1.0},
    }
    completer = Completer(tokenizer, BigramScorer(tokenizer, table), beam_size=4)
    assert completer.suggest("x = sorted") == "(self)"
    table["self"] = {")": 0.6, ".": 0.4}
    completer = Completer(tokenizer, BigramScorer(tokenizer, table), beam_size=4)
    assert completer.suggest("x = sorted") == "(self"


def test_the_second_likeliest_token_wins_when_its_run_saves_more() -> None:
    """The likeliest token is "self" (.5 x P(it ends) .9 = .45), then "." (.9): "elf." is
    worth .45 x .9 x 3 = 1.2 keys; "sorted" (.4 x .9 = .36) then "(" (.9): "orted(" is worth
    .36 x .9 x 5 = 1.5. Comparing two token candidates finds the better run."""
    tokenizer = CodeTokenizer.from_merges(MERGES)
    table = {
        " ": {"self": 0.5, "sorted": 0.4, "s": 0.1},
        "self": {".": 0.9, "s": 0.1},
        "sorted": {"(": 0.9, "e": 0.1},
        "(": {"\n": 1.0},
        ".": {"\n": 1.0},
    }
    completer = Completer(tokenizer, BigramScorer(tokenizer, table), compare_tokens=1)
    assert completer.suggest("x = s") == "elf."
    completer.compare_tokens = 2
    assert completer.suggest("x = s") == "orted("
