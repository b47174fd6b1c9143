"""Small, readable data for the textclass tests: a separable toy corpus with a two-level
hierarchy (topic, then subtopic), written in both file formats on demand."""

import json
import random

import pytest

# Each leaf label has its own cue words; documents mix a leaf's cues with shared filler.
CUES = {
    "sport--football": ["goal", "striker", "penalty", "offside"],
    "sport--tennis": ["racket", "serve", "deuce", "wimbledon"],
    "tech--linux": ["kernel", "distro", "bash", "systemd"],
    "tech--chips": ["silicon", "transistor", "wafer", "foundry"],
}
FILLER = ["the", "a", "of", "and", "today", "news", "report", "people", "said", "new"]
TAXONOMY_TSV = (
    "Root\tsport\ttech\nsport\tsport--football\tsport--tennis\ntech\ttech--linux\ttech--chips\n"
)


def toy_corpus(n: int, seed: int) -> tuple[list[str], list[list[str]]]:
    """``n`` texts; each has one or two leaf labels (as A--B paths) and their cue words."""
    rng = random.Random(seed)
    texts, labels = [], []
    leaves = sorted(CUES)
    for _ in range(n):
        chosen = sorted(rng.sample(leaves, rng.choice([1, 1, 2])))
        words = [w for leaf in chosen for w in rng.choices(CUES[leaf], k=4)]
        words += rng.choices(FILLER, k=6)
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(chosen)
    return texts, labels


@pytest.fixture(scope="session")
def toy_train():
    return toy_corpus(160, seed=1)


@pytest.fixture(scope="session")
def toy_dev():
    return toy_corpus(40, seed=2)


@pytest.fixture
def toy_files(tmp_path, toy_train, toy_dev):
    """train/dev/test JSONL in NeuralClassifier format plus the taxonomy TSV."""
    paths = {}
    for name, (texts, labels) in {"train": toy_train, "dev": toy_dev, "test": toy_dev}.items():
        path = tmp_path / f"{name}.json"
        rows = [
            json.dumps({"doc_label": labs, "doc_token": text.split()})
            for text, labs in zip(texts, labels, strict=True)
        ]
        path.write_text("\n".join(rows) + "\n")
        paths[name] = path
    paths["taxonomy"] = tmp_path / "toy.taxonomy"
    paths["taxonomy"].write_text(TAXONOMY_TSV)
    return paths
