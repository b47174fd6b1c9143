"""Sentence embeddings from the real all-MiniLM-L6-v2 weights: given 50 varied sentences,
septet's SentenceEmbedder gives the vectors HF transformers + mean pooling gives (cosine at
least 0.99999), in input order, whatever the batch size."""

from __future__ import annotations

import pytest
import torch

from septet import transformers as st
from septet.errors import ConfigError, InputError

pytestmark = pytest.mark.usefixtures("one_thread")

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A man is riding a white horse on an enclosed ground.",
    "A monkey is playing drums.",
    "Someone in a gorilla costume is playing a set of drums.",
    "Hi",
    "?",
    "ok.",
    "",
    "   leading and trailing spaces   ",
    "tabs\tand\nnewlines\r\nmixed in",
    "Wait... what?!?! No way!!!",
    "(parentheses), [brackets], {braces} & <angles>; semi:colons -- dashes",
    "e-mail me at someone@example.com or visit https://example.org/path?q=1#frag",
    "Prices rose 3.5% to $1,234.56 on 2024-03-01, up from €999.",
    "Café déjà vu: naïve coöperation at the façade of the Ångström institute.",
    "Straße, Größe und Übermaß sind deutsche Wörter.",
    "Le chat est sur la table, et le chien dort sous la chaise.",
    "¿Dónde está la biblioteca? ¡Allí!",
    "Это предложение написано по-русски.",
    "Αυτή είναι μια ελληνική πρόταση.",
    "这是一个中文句子，用于测试分词。",
    "日本語の文章もテストします。",
    "한국어 문장도 포함합니다.",
    "مرحبا بالعالم، هذه جملة عربية.",
    "שלום עולם, זה משפט בעברית.",
    "हिन्दी में एक वाक्य।",
    "Emoji test 😀🎉👍🏽 with family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵",
    "Zero\u200bwidth\u200bspaces and combining e\u0301 accents",
    "ALL CAPS SENTENCE SHOUTING LOUDLY",
    "snake_case_identifier and camelCaseIdentifier and kebab-case-identifier",
    "def f(x): return x ** 2  # a line of Python code",
    "SELECT name FROM users WHERE id = 42;",
    "<html><body><p>Some HTML markup</p></body></html>",
    '{"json": true, "numbers": [1, 2, 3]}',
    "1234567890 0987654321 3.14159 2.71828",
    "The quick brown fox jumps over the lazy dog.",
    "A quick brown dog outpaces a lazy fox.",
    "Neural networks learn representations from data.",
    "The stock market fell sharply after the announcement.",
    "I love this movie, it was fantastic!",
    "I hated this film; it was a waste of time.",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    " ".join(["a long sentence that repeats itself"] * 12),
    " ".join(f"word{i}" for i in range(300)),
    "The end.",
]
assert len(SENTENCES) == 50


@pytest.fixture(scope="module")
def embedder():
    return st.SentenceEmbedder.from_pretrained(st.minilm_path())


@pytest.fixture(scope="module")
def hf_vectors(hf):
    """HF transformers' model and tokenizer on the same folder, mean pooled (the reference)."""
    folder = st.minilm_path()
    tokenizer = hf.AutoTokenizer.from_pretrained(folder)
    model = hf.AutoModel.from_pretrained(folder).eval()
    vectors = []
    # Small batches keep padding (and test time) down; padding does not change the result.
    for start in range(0, len(SENTENCES), 5):
        texts = SENTENCES[start : start + 5]
        batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
        with torch.no_grad():
            hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        vectors.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9))
    return torch.cat(vectors)


def test_embeddings_match_hf_mean_pooling(embedder, hf_vectors):
    vectors = embedder.encode(SENTENCES, batch_size=8)
    assert vectors.shape == (50, 384) and vectors.dtype == torch.float32
    cosine = torch.nn.functional.cosine_similarity(vectors, hf_vectors, dim=1)
    worst = int(cosine.argmin())
    assert cosine.min().item() >= 0.99999, (SENTENCES[worst], cosine.min().item())
    assert torch.allclose(vectors.norm(dim=1), torch.ones(50), atol=1e-5)


def test_order_and_batch_size_do_not_change_vectors(embedder):
    reference = embedder.encode(SENTENCES[:12], batch_size=32)
    for batch_size in (1, 5):
        assert torch.allclose(
            embedder.encode(SENTENCES[:12], batch_size=batch_size), reference, atol=1e-5
        )
    reversed_vectors = embedder.encode(SENTENCES[:12][::-1])
    assert torch.allclose(reversed_vectors.flip(0), reference, atol=1e-5)


def test_single_string_empty_list_and_unnormalised(embedder):
    one = embedder.encode("A man is eating food.")
    assert one.shape == (384,)
    assert embedder.encode([]).shape == (0, 384)
    raw = embedder.encode(["A man is eating food."], normalize=False)
    assert raw.norm().item() > 1.5
    assert torch.allclose(raw[0] / raw.norm(), one, atol=1e-5)


def test_similarity_ranks_by_meaning(embedder):
    scores = embedder.similarity("A man is eating pasta.", SENTENCES[:9])
    ranked = scores[0].argsort(descending=True).tolist()
    assert set(ranked[:2]) == {0, 1}  # the two sentences about eating
    assert scores[0, 0] > 0.6 > scores[0, 2]


def test_bad_input_is_refused(embedder):
    with pytest.raises(InputError, match=r"texts\[1\] is a int"):
        embedder.encode(["fine", 3])
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        embedder.encode(["fine"], batch_size=0)


def test_unsupported_sentence_transformers_modules_are_refused(tmp_path):
    (tmp_path / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Dense"}]'
    )
    with pytest.raises(ConfigError, match="Dense"):
        st.SentenceEmbedder.from_pretrained(tmp_path)
