"""The keystroke simulator and the line-level metrics, on examples worked out by hand."""

from __future__ import annotations

import pytest

from septet.autocomplete.evaluation import (
    edit_similarity,
    line_completion_cases,
    line_completion_scores,
    simulate_keystrokes,
)

TEXT = "import os\nos.path\n"  # 18 characters


def test_keystroke_count_on_a_hand_worked_example() -> None:
    """i, m typed (2); "port" accepted (1); " sys" offered but wrong so " os\\nos." typed (7);
    "path" accepted (1); a one-character suggestion is never worth a key, so "\\n" typed (1).
    12 keys for 18 characters: 1/3 saved."""
    suggestions = {
        "im": "port",
        "import": " sys",
        "import os\nos.": "path",
        "import os\nos.path": "\n",
    }
    result = simulate_keystrokes(TEXT, suggestions.get)
    assert (result.characters, result.keystrokes, result.accepted) == (18, 12, 2)
    assert result.saved == pytest.approx(1 / 3)


def test_no_suggestions_means_nothing_saved() -> None:
    result = simulate_keystrokes(TEXT, lambda before: None)
    assert result.keystrokes == 18 and result.saved == 0.0


def test_sessions_add_up() -> None:
    a = simulate_keystrokes("ab", lambda before: None)
    b = simulate_keystrokes("abcd", lambda before: "abcd" if before == "" else None)
    total = a + b
    assert (total.characters, total.keystrokes) == (6, 3)


def test_edit_similarity_is_one_minus_normalised_levenshtein() -> None:
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "") == 1.0
    assert edit_similarity("abc", "") == 0.0


def test_line_cases_cut_after_the_first_token() -> None:
    text = "x = foo(1)\n# comment\n    return bar(x)\n"
    cases = line_completion_cases(text)
    assert cases == [("x", " = foo(1)"), ("x = foo(1)\n# comment\n    return", " bar(x)")]
    perfect = line_completion_scores(cases, dict(cases).get)
    assert (perfect.exact_match, perfect.edit_similarity, perfect.lines) == (1.0, 1.0, 2)
    empty = line_completion_scores(cases, lambda before: "")
    assert empty.exact_match == 0.0 and empty.edit_similarity == 0.0
