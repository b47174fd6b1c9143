"""The completer's latency budget (a deadline and a cap on model calls per call) and the reuse
of scored beams from one keystroke to the next."""

from __future__ import annotations

import math

import pytest
import torch

from septet.autocomplete.completion import Completer
from septet.autocomplete.models import NextTokenScorer, build_model
from septet.autocomplete.tokenization import CodeTokenizer

from .test_completion import MERGES, BigramScorer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: small batched steps gain nothing from two on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TABLE = {
    " ": {"self": 0.5, "sorted": 0.3, "s": 0.2},
    "self": {".": 0.9, "s": 0.1},
    "sorted": {"(": 1.0},
    "s": {"(": 1.0},
}


class FakeClock:
    """Time that passes only when the model is called: 10 ms per call."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedBigram(BigramScorer):
    """The bigram model; each call moves a fake clock on by 10 ms."""

    def __init__(self, tokenizer: CodeTokenizer, table: dict, clock: FakeClock):
        super().__init__(tokenizer, table)
        self.clock = clock

    def advance(self, state, ids):
        self.clock.now += 0.010
        return super().advance(state, ids)


class GatheringBigram(BigramScorer):
    """The bigram model able to batch rows of several states (what beam reuse needs)."""

    def gather(self, parts):
        return torch.cat([state[rows] for state, rows in parts])


def timed_completer(**options) -> tuple[Completer, TimedBigram]:
    tokenizer = CodeTokenizer.from_merges(MERGES)
    clock = FakeClock()
    scorer = TimedBigram(tokenizer, TABLE, clock)
    return Completer(tokenizer, scorer, beam_size=4, clock=clock, **options), scorer


def test_no_model_call_starts_after_the_deadline() -> None:
    """The context costs one call (10 ms), the first search step another (20 ms); with a 15 ms
    budget no third call starts, and the tokens finished by then are the answer."""
    completer, scorer = timed_completer(time_budget=0.015, max_model_calls=None)
    got = completer.complete("x = s")
    assert scorer.calls == 2
    assert [c.text for c in got[:2]] == ["elf", "orted"]
    assert all(c.probability < 1e-6 for c in got[2:])  # the fourth beam, "sort", ended too
    # P(self, then no more of the name) = .5 x .9; P(sorted) = .3
    assert got[0].log_probability == pytest.approx(math.log(0.45), abs=1e-3)
    assert got[1].log_probability == pytest.approx(math.log(0.3), abs=1e-3)

    late, scorer = timed_completer(time_budget=0.005, max_model_calls=None)
    got = late.complete("x = s")  # the context took the whole budget: one step still runs
    assert scorer.calls == 2 and [c.text for c in got[:2]] == ["elf", "orted"]

    unlimited, scorer = timed_completer(time_budget=None, max_model_calls=None)
    assert [c.text for c in unlimited.complete("x = s")][:2] == ["elf", "orted"]
    assert scorer.calls > 2  # without the deadline the search goes on exploring


def test_the_deadline_stops_the_suggestion_running_past_the_token() -> None:
    """ "x = s": "elf." needs a call after the token "self" to see that "." ends a Python
    token; a budget spent by the search leaves the suggestion at "elf"."""
    completer, _ = timed_completer(time_budget=0.015, max_model_calls=None)
    assert completer.suggest("x = s") == "elf"
    completer, _ = timed_completer(time_budget=1.0, max_model_calls=None)
    assert completer.suggest("x = s") == "elf."


def test_the_cap_on_model_calls_per_call() -> None:
    completer, scorer = timed_completer(time_budget=None, max_model_calls=1)
    got = completer.complete("x = s")
    assert scorer.calls == 2  # the context, then one search step
    assert completer.model_calls == 1
    assert [c.text for c in got][:2] == ["elf", "orted"]
    completer.max_model_calls = 0  # nothing but the context: no token can be scored
    assert completer.complete("x = t") == []


def random_bigram_completer(scorer_class: type, seed: int) -> Completer:
    """A completer over a seeded random bigram table on the hand-built tokenizer: many paths
    through every prefix, so the beams differ from keystroke to keystroke."""
    tokenizer = CodeTokenizer.from_merges(MERGES)
    generator = torch.Generator().manual_seed(seed)
    v = tokenizer.vocab_size
    scorer = scorer_class(tokenizer, {})
    scorer.rows = torch.log_softmax(3 * torch.randn(v, v, generator=generator), -1)
    return Completer(tokenizer, scorer, beam_size=3, time_budget=None, max_model_calls=None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_typing_on_reuses_the_scored_beams_and_finds_what_a_fresh_search_finds(seed: int) -> None:
    """Typed character by character (with a backspace, a new token after a blank, and a new
    line), the completer that reuses the last keystroke's beams gives exactly the candidates
    and suggestions of a fresh completer at each keystroke, with fewer model calls."""
    text = "x = sorted_self_se\ny = selfsort"
    states = [text[:n] for n in range(4, len(text) + 1)]
    states.insert(10, states[9][:-1])  # a backspace
    reusing = random_bigram_completer(GatheringBigram, seed)
    fresh_calls = 0
    for typed in states:
        fresh = random_bigram_completer(GatheringBigram, seed)
        want = fresh.complete(typed)
        got = reusing.complete(typed)
        assert [c.text for c in got] == [c.text for c in want], typed
        assert [c.log_probability for c in got] == pytest.approx([c.log_probability for c in want])
        assert reusing.suggest(typed) == fresh.suggest(typed), typed
        fresh_calls += fresh.model_calls
    assert reusing.model_calls < 0.7 * fresh_calls


def test_without_a_way_to_gather_rows_nothing_is_reused() -> None:
    """A scorer without ``gather`` still completes, searching afresh at each keystroke."""
    completer = random_bigram_completer(BigramScorer, 0)
    completer.complete("x = sor")
    calls = completer.model_calls
    completer.complete("x = sor")
    assert completer.model_calls == 2 * calls


@pytest.mark.parametrize("kind", ["llama", "lstm"])
def test_gathered_rows_of_two_states_continue_like_the_sequences_they_hold(kind: str) -> None:
    """Rows taken from two batched states (beams of one step that were scored in different
    calls) and advanced together give the log-probs of feeding each whole sequence afresh."""
    torch.manual_seed(0)
    scorer = NextTokenScorer(build_model(kind, 64, "tiny"))
    context = torch.tensor([[5, 9, 11, 3, 7]])
    _, state = scorer.advance(None, context)
    _, first = scorer.advance(scorer.select(state, torch.tensor([0, 0])), torch.tensor([[1], [2]]))
    _, second = scorer.advance(scorer.select(state, torch.tensor([0])), torch.tensor([[4]]))
    parts = [(second, torch.tensor([0])), (first, torch.tensor([1, 0]))]
    got, _ = scorer.advance(scorer.gather(parts), torch.tensor([[6], [8], [10]]))
    for row, path in enumerate([[4, 6], [2, 8], [1, 10]]):
        whole = torch.cat([context, torch.tensor([path])], 1)
        want, _ = scorer.advance(None, whole)
        torch.testing.assert_close(got[row], want[0], atol=1e-4, rtol=1e-4)


def test_the_shipped_model_typing_on_finds_what_a_fresh_search_finds() -> None:
    """With the real Llama (its KV cache gathered across keystrokes, the context cache moving
    on at each blank), reuse changes no candidate and no suggestion, and saves model calls."""
    from septet.autocomplete.completion import load_completer

    reusing = load_completer(time_budget=None, max_model_calls=None)
    text = "import os\n\n\ndef main(argv):\n    return os.path.join(argv, STRICT_FRAMEWORK_RE"
    fresh_calls = 0
    for n in range(text.index("(argv,"), len(text) + 1):
        typed = text[:n]
        fresh = Completer(reusing.tokenizer, reusing.scorer, time_budget=None, max_model_calls=None)
        want = fresh.complete(typed)
        got = reusing.complete(typed)
        assert [c.text for c in got] == [c.text for c in want], typed
        assert [c.log_probability for c in got] == pytest.approx(
            [c.log_probability for c in want], abs=1e-4
        )
        assert reusing.suggest(typed) == fresh.suggest(typed), typed
        fresh_calls += fresh.model_calls
    assert reusing.model_calls < 0.8 * fresh_calls


@pytest.mark.parametrize("kind", ["llama", "lstm"])
def test_several_tokens_after_a_cached_context_score_like_a_fresh_feed(kind: str) -> None:
    """The context cache feeds only a longer context's new tokens; several of them after a
    non-empty decoder cache must score as the whole context fed at once."""
    torch.manual_seed(0)
    scorer = NextTokenScorer(build_model(kind, 64, "tiny"))
    context = torch.tensor([[5, 9, 11, 3, 7, 2, 8, 13]])
    want, _ = scorer.advance(None, context)
    _, state = scorer.advance(None, context[:, :3])
    got, state = scorer.advance(state, context[:, 3:])
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    after, _ = scorer.advance(state, torch.tensor([[4]]))
    whole, _ = scorer.advance(None, torch.cat([context, torch.tensor([[4]])], 1))
    torch.testing.assert_close(after, whole, atol=1e-4, rtol=1e-4)


def test_the_shipped_llama_runs_with_int8_weights_and_ranks_like_the_float_one() -> None:
    """load_completer's default 8-bit weights: the linear layers are packed, and completions
    of common code keep the float model's first candidate."""
    from septet.autocomplete.completion import load_completer
    from septet.errors import ConfigError
    from septet.transformers.quantize import PackedLinear

    packed = load_completer(time_budget=None, max_model_calls=None)
    exact = load_completer(weights="fp32", time_budget=None, max_model_calls=None)
    assert any(isinstance(m, PackedLinear) for m in packed.scorer.model.modules())
    assert not any(isinstance(m, PackedLinear) for m in exact.scorer.model.modules())
    for text in ("import os\nos.pa", "class Point:\n    def __init__(se", "for i in ra"):
        assert packed.complete(text)[0].text == exact.complete(text)[0].text, text
    with pytest.raises(ConfigError, match="weights"):
        load_completer(weights="fp16")
