"""The n-gram baseline: a proper distribution that follows its counts."""

from __future__ import annotations

import torch

from septet.autocomplete.ngram import NgramScorer


def test_ngram_distribution_sums_to_one_and_follows_counts() -> None:
    scorer = NgramScorer(vocab_size=10, n=3).fit([[1, 2, 3, 1, 2, 3, 1, 2, 4]])
    probs = scorer.distribution([1, 2])
    assert torch.isclose(probs.sum(), torch.tensor(1.0))
    assert probs.argmax() == 3  # "1 2" was followed by 3 twice, by 4 once
    logprobs, state = scorer.advance(None, torch.tensor([[1, 2]]))
    assert torch.allclose(logprobs[0], probs.log()) and state == [[1, 2]]
    assert scorer.select(state, torch.tensor([0, 0])) == [[1, 2], [1, 2]]
