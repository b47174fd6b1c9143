"""Reading data: NeuralClassifier JSONL and taxonomy, plain JSONL, label validation."""

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from septet.errors import InputError
from septet.textclass.data import read_documents, tokenize
from septet.textclass.taxonomy import Taxonomy
from septet.textclass.vocabulary import LabelSpace, Vocabulary


def write(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_neuralclassifier_format_allows_absent_keyword_and_topic(tmp_path):
    path = write(
        tmp_path / "nc.json",
        [
            {"doc_label": ["A--B"], "doc_token": ["x", "y"], "doc_keyword": ["k"], "doc_topic": []},
            {"doc_label": ["A"], "doc_token": ["z"]},  # keyword and topic really absent
        ],
    )
    first, second = read_documents(path)
    assert first.tokens == ["x", "y"] and first.keywords == ["k"] and first.topics == []
    assert second.labels == ["A"] and second.keywords == [] and second.topics == []


def test_plain_format_is_tokenised_by_septet(tmp_path):
    path = write(
        tmp_path / "plain.jsonl", [{"text": "Linux x86-64 Kernel, in C++!", "labels": ["os"]}]
    )
    (doc,) = read_documents(path)
    assert doc.tokens == ["linux", "x86-64", "kernel", ",", "in", "c++", "!"]
    assert doc.labels == ["os"] and doc.text.startswith("Linux")


def test_a_bad_line_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "fine", "labels": []}\n{not json}\n')
    with pytest.raises(InputError, match=r"bad.jsonl:2"):
        read_documents(path)


def test_taxonomy_tsv_levels_and_ancestors(tmp_path):
    path = tmp_path / "t.taxonomy"
    path.write_text("Root\tA\tB\nA\tA--x\tA--y\nA--x\tA--x--deep\n")
    taxonomy = Taxonomy.read_tsv(path)
    assert taxonomy.labels == ["A", "B", "A--x", "A--y", "A--x--deep"]
    assert taxonomy.level("A--x--deep") == 3
    assert taxonomy.ancestors("A--x--deep") == ["A--x", "A"]
    assert Taxonomy.read_tsv(path).to_tsv() == path.read_text()


def test_unknown_label_error_names_the_label():
    space = LabelSpace(Taxonomy({"A": "Root", "A--b": "A"}), hierarchical=True)
    with pytest.raises(InputError, match="'A--zzz'"):
        space.encode(["A--zzz"])


def test_ancestors_are_added_when_hierarchical():
    taxonomy = Taxonomy.from_paths(["A--B--C", "D"])
    space = LabelSpace(taxonomy, hierarchical=True)
    assert space.decode(space.to_matrix([["A--B--C"]])[0]) == ["A", "A--B", "A--B--C"]
    flat = LabelSpace(taxonomy, hierarchical=False)
    assert flat.decode(flat.to_matrix([["A--B--C"]])[0]) == ["A--B--C"]


def test_short_names_resolve_to_paths_in_a_named_taxonomy():
    taxonomy = Taxonomy({"game": "Root", "game::strategy": "game"})
    assert taxonomy.close(["game--game::strategy"]) == ["game::strategy", "game"]
    with pytest.raises(InputError, match="does not match the taxonomy"):
        taxonomy.close(["other--game::strategy"])


def test_vocabulary_is_frequency_ordered_and_reproducible():
    vocab = Vocabulary.build([["b", "a", "b"], ["c", "a", "b"]], min_count=2)
    assert vocab.tokens == ["<pad>", "<unk>", "b", "a"]
    assert vocab.encode(["a", "zzz"], max_length=5) == [3, 1]
    assert vocab.encode([], max_length=5) == [1]  # never an empty sequence


@given(st.lists(st.lists(st.sampled_from(["A", "A--b", "A--b--c", "D"]), max_size=3), max_size=6))
def test_label_matrix_round_trips_closed_label_sets(label_lists):
    space = LabelSpace(Taxonomy.from_paths(["A--b--c", "D"]), hierarchical=True)
    matrix = space.to_matrix(label_lists)
    for row, labels in zip(matrix, label_lists, strict=True):
        assert sorted(space.decode(row)) == sorted(space.taxonomy.close(labels))
    assert matrix.dtype == np.float32


@given(st.text(max_size=60))
def test_tokenize_never_returns_whitespace(text):
    assert all(token.strip() == token and token for token in tokenize(text))
