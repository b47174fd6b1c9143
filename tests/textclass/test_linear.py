"""NGramLinear: TF-IDF bags of words and bigrams under a full-rank linear head."""

import itertools

import numpy as np
import pytest
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from septet.errors import ConfigError
from septet.textclass.classifier import TextClassifier
from septet.textclass.encoders import create_encoder
from septet.textclass.encoders.linear import PAIR_MULTIPLIER, NGramBag
from septet.textclass.features import pad_batch
from septet.textclass.model import build_model
from septet.textclass.trainer import make_optimizers

VOCAB = 40
# 1_000_003 mod 999_000 = 1003 > VOCAB: no two bigrams of these ids share a hash bucket, so
# the features can equal scikit-learn's exactly.
BUCKETS = 999_000


def _documents(seed: int = 0, n: int = 30) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    # Small ids repeat within a document, so tf > 1 occurs; 2..VOCAB-1 are real tokens.
    return [list(rng.integers(2, 12 if i % 2 else VOCAB, rng.integers(1, 15))) for i in range(n)]


def _dense(bag: NGramBag, num_rows: int) -> np.ndarray:
    out = np.zeros((bag.rows.shape[0], num_rows))
    for row in range(bag.rows.shape[0]):
        for feature, weight in zip(bag.rows[row].tolist(), bag.weights[row].tolist(), strict=True):
            out[row, feature] += weight
    return out


def _sklearn_features(train: list[list[int]], test: list[list[int]], bigrams: bool):
    """scikit-learn's TF-IDF (sublinear tf, smooth idf, l2) over the same n-grams, its columns
    put in NGramLinear's row order: word w -> w, bigram (a, b) -> VOCAB + hash bucket."""

    def analyzer(document: str) -> list[str]:
        ids = document.split()
        return ids + ([f"{a}_{b}" for a, b in itertools.pairwise(ids)] if bigrams else [])

    vectorizer = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True)
    vectorizer.fit([" ".join(map(str, d)) for d in train])
    matrix = vectorizer.transform([" ".join(map(str, d)) for d in test]).toarray()
    out = np.zeros((len(test), VOCAB + (BUCKETS if bigrams else 0)))
    for name, column in vectorizer.vocabulary_.items():
        if "_" in name:
            a, b = map(int, name.split("_"))
            row = VOCAB + (a * PAIR_MULTIPLIER + b) % BUCKETS
        else:
            row = int(name)
        out[:, row] += matrix[:, column]
    return out


@pytest.mark.parametrize("bigrams", [False, True])
def test_features_are_scikit_learns_tfidf(bigrams):
    train, test = _documents(0), _documents(1, 8)
    encoder = create_encoder("NGramLinear", VOCAB, bigram_buckets=BUCKETS if bigrams else 0)
    encoder.fit_corpus(train)
    encoder.eval()
    bag = encoder(*pad_batch(test))
    expected = _sklearn_features(train, test, bigrams)
    np.testing.assert_allclose(_dense(bag, encoder.num_rows), expected, atol=1e-5)


def test_padding_does_not_change_a_documents_bag():
    encoder = create_encoder("NGramLinear", VOCAB, bigram_buckets=BUCKETS)
    encoder.fit_corpus(_documents(0))
    short, long = [5, 6, 5, 7], [3, 4, 8, 9, 10, 11, 3, 4]
    alone = _dense(encoder(*pad_batch([short])), encoder.num_rows)
    batched = _dense(encoder(*pad_batch([short, long])), encoder.num_rows)
    np.testing.assert_allclose(alone[0], batched[0], atol=1e-6)


def test_the_head_is_linear_in_the_bag_and_its_gradients_are_sparse():
    levels, parents = [1, 1, 2], [-1, -1, 0]
    model = build_model("NGramLinear", VOCAB, {"bigram_buckets": 2000}, levels, parents)
    model.encoder.fit_corpus(_documents(0))
    optimizers = make_optimizers(model, _options())
    assert len(optimizers) == 2  # AdamW for the bias, SparseAdam for the table
    with torch.no_grad():
        model.head.table.weight.normal_()
    ids, mask = pad_batch([[2, 3, 4], [5, 5, 6, 7]])
    bag = model.encoder(ids, mask)
    dense = torch.from_numpy(_dense(bag, model.encoder.num_rows)).float()
    expected = dense @ model.head.table.weight + model.head.bias
    torch.testing.assert_close(model(ids, mask), expected, rtol=1e-5, atol=1e-5)
    loss = model.loss(
        ids, mask, torch.ones(2, 3), torch.nn.functional.binary_cross_entropy_with_logits
    )
    loss.backward()
    assert model.head.table.weight.grad.is_sparse
    grad = model.head.table.weight.grad.coalesce()
    nonzero = grad.values().abs().sum(1) > 0
    touched = set(grad.indices()[0][nonzero].tolist())
    assert touched == set(bag.rows[bag.weights != 0].tolist())  # only the n-grams present


def _options():
    from septet.textclass.config import TrainSection

    return TrainSection(learning_rate=0.01)


def test_bad_parameters_name_the_key():
    with pytest.raises(ConfigError, match="bigram_buckets"):
        create_encoder("NGramLinear", VOCAB, bigram_buckets=-1)
    with pytest.raises(ConfigError, match="dropout"):
        create_encoder("NGramLinear", VOCAB, dropout=1.0)
    with pytest.raises(ConfigError, match="embedding_dim"):
        create_encoder("NGramLinear", VOCAB, embedding_dim=8)


TOPICS = {
    "fruit": "apple banana cherry mango pear",
    "vehicle": "car truck bus train bicycle",
    "colour": "red green blue yellow purple",
}


def _texts(seed: int, n: int):
    rng = np.random.default_rng(seed)
    filler = ["the", "a", "of", "and", "to", "in", "is", "it"]
    texts, labels = [], []
    for _ in range(n):
        chosen = [t for t in TOPICS if rng.random() < 0.45] or ["fruit"]
        words = [w for t in chosen for w in rng.choice(TOPICS[t].split(), 2)]
        words += list(rng.choice(filler, 4))
        rng.shuffle(words)
        texts.append(" ".join(words))
        labels.append(chosen)
    return texts, labels


def test_classifier_learns_topics_and_reloads_with_its_idf(tmp_path):
    texts, labels = _texts(0, 300)
    dev_texts, dev_labels = _texts(1, 80)
    classifier = TextClassifier(
        "NGramLinear",
        encoder_params={"bigram_buckets": 1000},
        epochs=20,
        batch_size=16,
        learning_rate=0.05,
        min_token_count=1,
        num_threads=1,
    )
    classifier.fit(texts, labels, dev=(dev_texts, dev_labels))
    test_texts, test_labels = _texts(2, 80)
    assert classifier.evaluate(test_texts, test_labels)["flat"]["micro_f1"] > 0.95
    idf = classifier.model.encoder.idf_weights
    seen = idf[idf > 0]  # n-grams absent from training weigh 0
    assert float(seen.min()) >= 1.0 and float(seen.max()) > 2.0  # rare n-grams weigh more
    classifier.save(tmp_path / "model")
    loaded = TextClassifier.load(tmp_path / "model")
    torch.testing.assert_close(loaded.model.encoder.idf_weights, idf)
    np.testing.assert_allclose(
        loaded.predict_proba(test_texts), classifier.predict_proba(test_texts), atol=1e-6
    )


def test_runs_on_the_meta_device():
    # The meta device stands in for a GPU: tensors made on the CPU inside forward would fail.
    model = build_model("NGramLinear", VOCAB, {"bigram_buckets": 2000}, [1, 1], [-1, -1])
    model = model.to("meta")
    ids = torch.randint(2, VOCAB, (3, 7)).to("meta")
    mask = torch.ones(3, 7, dtype=torch.bool).to("meta")
    assert model(ids, mask).device.type == "meta"
