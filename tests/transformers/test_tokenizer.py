"""Tokenizer: the same ids, offsets and text as Hugging Face transformers (the oracle) for every
source a model ships (tokenizer.json, vocab.txt, vocab.json + merges.txt, GGUF), on a few
hundred varied strings; padding, truncation, pairs, chat templates and saving."""

from __future__ import annotations

import json
import pickle
import random
import shutil
import threading
import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from septet.errors import ConfigError, InputError, NotFoundError
from septet.transformers.bundled import minilm_path, smollm2_gguf_path
from septet.transformers.chat_template import ChatTemplateError
from septet.transformers.tokenizer import Tokenizer

transformers = pytest.importorskip("transformers")

HANDWRITTEN = [
    "",
    " ",
    "Hello world",
    "Hello, world! How's it going?",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\nand\u00a0no-break spaces",
    "whitespace     runs          of\n\n\n\nmany kinds\t\t\t",
    "Café, naïve, résumé, Ångström, Œuvre, façade, jalapeño",
    "ÀÉÎÕÜ àéîõü — “quotes” ‘single’ «guillemets»",
    "中文分词测试：今天天气很好。",
    "日本語のテキストとカタカナ、ひらがな。",
    "한국어 문장도 있습니다.",
    "Mixed 中文 and English 和 数字 12345",
    "emoji 😀🎉👍🏽 and flags 🇫🇷🇯🇵 and ZWJ 👩‍👩‍👧‍👦",
    "math ∑∫√∞ ≤ ≥ ≠ ± × ÷ and arrows → ← ↔",
    "Ελληνικά κείμενο, русский текст, עברית, العربية, हिन्दी",
    "def f(x):\n    return x ** 2  # square\n",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    '{"json": [1, 2.5, null, true], "key": "value"}',
    '<html><body class="x">Tags &amp; entities</body></html>',
    "URLs: https://example.com/path?query=1&other=two#frag",
    "e-mail: someone@example.org, phone +1 (555) 010-9999",
    "numbers 3.14159 2,718 1e-10 -42 0x1F 1_000_000",
    "CamelCaseWords and snake_case_words and kebab-case-words",
    "don't won't can't I'm you're we've they'll he'd",
    "ALL CAPS SHOUTING!!! and lower case whispering...",
    "repeated letters aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa bbbbbbbbbbb",
    "control\x00chars\x01and\x7fdelete",
    "combining e\u0301 a\u0308 o\u0302 vs precomposed é ä ô",
    "zero\u200bwidth\u200cjoiners\u200d and soft\u00adhyphen",
    "[CLS] [SEP] [MASK] literal special-looking tokens",
    "<|endoftext|> <s> </s> <|im_start|>user",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "The quick brown fox jumps over the lazy dog. " * 40,
    "word " * 600,
]

ALPHABET = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    " \t\n.,;:!?'\"()[]{}<>-_=+*/\\|@#$%^&~`"
    "éèêëàâäôöûüçñÉÀÇßøåæœ"
    "中文日本語한국어"
    "αβγδΩπ"
    "😀🎉👍🇫🇷"
    "\u00a0\u2003\u200b\u0301"
)


def varied_strings(count: int = 260, seed: int = 7) -> list[str]:
    """The handwritten strings plus seeded random mixes of letters, marks, CJK, emoji and
    whitespace of lengths from 1 to a few hundred characters."""
    rng = random.Random(seed)
    words = [w for text in HANDWRITTEN for w in text.split()]
    strings = list(HANDWRITTEN)
    while len(strings) < count:
        if rng.random() < 0.5:
            length = rng.choice([1, 2, 5, 20, 80, 300])
            strings.append("".join(rng.choice(ALPHABET) for _ in range(length)))
        else:
            pieces = [rng.choice(words) for _ in range(rng.randint(1, 40))]
            separators = [rng.choice([" ", "  ", "\n", "\t", "", " , "]) for _ in pieces]
            strings.append("".join(p + s for p, s in zip(pieces, separators, strict=True)))
    return strings


STRINGS = varied_strings()


def hf_tokenizer(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoTokenizer.from_pretrained(*args, **kwargs)


def assert_same_as_hf(ours: Tokenizer, hf, strings: list[str], *, offsets: bool = True) -> None:
    """Ids, offsets and decoded text (with and without special tokens) agree on every string."""
    for text in strings:
        expected = hf(text, return_offsets_mapping=offsets)
        got = ours(text, return_offsets=offsets, return_tensors=None)
        assert got["input_ids"] == expected["input_ids"], text
        if offsets:
            assert [tuple(o) for o in got["offset_mapping"]] == [
                tuple(o) for o in expected["offset_mapping"]
            ], text
        ids = got["input_ids"]
        assert ours.decode(ids) == hf.decode(ids), text
        assert ours.decode(ids, skip_special_tokens=True) == hf.decode(
            ids, skip_special_tokens=True
        ), text


# ------------------------------------------------------------------------------------------
# Sources
# ------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def minilm_hf():
    return hf_tokenizer(str(minilm_path()))


@pytest.fixture(scope="module")
def minilm() -> Tokenizer:
    return Tokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def minilm_vocab_txt(tmp_path_factory) -> Tokenizer:
    """The MiniLM tokenizer rebuilt from vocab.txt + tokenizer_config.json alone."""
    folder = tmp_path_factory.mktemp("minilm-vocab")
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(minilm_path() / name, folder / name)
    return Tokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def smollm2_hf():
    path = smollm2_gguf_path()
    return hf_tokenizer(str(path.parent), gguf_file=path.name)


@pytest.fixture(scope="module")
def smollm2() -> Tokenizer:
    return Tokenizer.from_pretrained(smollm2_gguf_path())


def train_byte_level_bpe(folder, *, roberta: bool) -> None:
    """A small byte-level BPE trained here, saved as vocab.json + merges.txt the way GPT-2 and
    RoBERTa ship theirs, with a tokenizer_config.json naming the class."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"] if roberta else ["<|endoftext|>"]
    rust = RustTokenizer(models.BPE())
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    rust.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    rust.train_from_iterator(HANDWRITTEN * 3, trainer=trainer)
    rust.model.save(str(folder))
    config = {"tokenizer_class": "RobertaTokenizer" if roberta else "GPT2Tokenizer"}
    if not roberta:
        config["add_prefix_space"] = False
    (folder / "tokenizer_config.json").write_text(json.dumps(config))


@pytest.fixture(scope="module", params=["gpt2", "roberta"])
def byte_level_pair(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"bpe-{request.param}")
    train_byte_level_bpe(folder, roberta=request.param == "roberta")
    return Tokenizer.from_pretrained(folder), hf_tokenizer(str(folder)), request.param


def test_minilm_from_tokenizer_json_matches_hf(minilm, minilm_hf):
    assert_same_as_hf(minilm, minilm_hf, STRINGS)


def test_minilm_from_vocab_txt_matches_hf(minilm_vocab_txt, minilm_hf):
    assert type(minilm_vocab_txt.backend.model).__name__ == "WordPiece"
    assert_same_as_hf(minilm_vocab_txt, minilm_hf, STRINGS)


def test_byte_level_bpe_from_vocab_and_merges_matches_hf(byte_level_pair):
    ours, hf, style = byte_level_pair
    assert_same_as_hf(ours, hf, STRINGS)
    if style == "roberta":
        assert ours.encode("hi")[0] == ours.convert_tokens_to_ids("<s>")
        assert ours.encode("hi")[-1] == ours.convert_tokens_to_ids("</s>")
    else:
        assert ours.encode("<|endoftext|>") == [ours.eos_token_id]


def test_smollm2_gguf_matches_hf(smollm2, smollm2_hf):
    assert_same_as_hf(smollm2, smollm2_hf, STRINGS)
    assert smollm2.eos_token == smollm2_hf.eos_token == "<|im_end|>"
    assert smollm2.pad_token_id == smollm2_hf.pad_token_id
    assert len(smollm2) == len(smollm2_hf)


def test_wordpiece_settings_are_honoured(tmp_path):
    # Given a cased vocabulary configured not to lowercase or strip accents,
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "Café", "café", "cafe", "中", "##s"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps(
            {"tokenizer_class": "BertTokenizer", "do_lower_case": False, "strip_accents": False}
        )
    )
    tokenizer = Tokenizer.from_pretrained(tmp_path)
    hf = hf_tokenizer(str(tmp_path))
    # then case and accents survive, and CJK characters are split one by one, as in HF.
    for text in ["Café cafés café CAFE", "中中文", "cafe Cafe"]:
        assert tokenizer.encode(text) == hf(text)["input_ids"]
    assert tokenizer.tokenize("Café") == ["Café"]


# ------------------------------------------------------------------------------------------
# Batches: padding, truncation, pairs
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("side", ["right", "left"])
def test_batch_padding_matches_hf(minilm, minilm_hf, smollm2, smollm2_hf, side):
    batch = STRINGS[:12]
    for ours, hf in ((minilm, minilm_hf), (smollm2, smollm2_hf)):
        hf.padding_side = side
        expected = hf(batch, padding=True, return_tensors="pt", return_offsets_mapping=True)
        got = ours(batch, padding_side=side, return_offsets=True)
        hf.padding_side = "right"
        for key in expected:
            assert torch.equal(got[key], expected[key]), key
        assert set(got) == set(expected)


def test_truncation_and_max_length_padding_match_hf(minilm, minilm_hf, smollm2, smollm2_hf):
    batch = STRINGS[30:40]
    for ours, hf in ((minilm, minilm_hf), (smollm2, smollm2_hf)):
        for side in ("right", "left"):
            hf.truncation_side = side
            expected = hf(batch, padding="max_length", truncation=True, max_length=16)
            got = ours(
                batch,
                padding="max_length",
                truncation=True,
                max_length=16,
                truncation_side=side,
                return_tensors=None,
            )
            assert got["input_ids"] == expected["input_ids"]
            assert got["attention_mask"] == expected["attention_mask"]
        hf.truncation_side = "right"


def test_truncation_defaults_to_model_max_length(minilm):
    ids = minilm(["word " * 2000], truncation=True)["input_ids"]
    assert ids.shape == (1, 512)
    assert ids[0, -1].item() == minilm.sep_token_id


def test_pairs_match_hf(minilm, minilm_hf):
    questions = ["Where is the cat?", "Wer ist da?"]
    contexts = ["The cat sat on the mat in the kitchen.", "Niemand."]
    expected = minilm_hf(questions, contexts, padding=True, return_tensors="pt")
    got = minilm(questions, contexts)
    for key in ("input_ids", "token_type_ids", "attention_mask"):
        assert torch.equal(got[key], expected[key]), key
    cut = minilm_hf(questions, contexts, truncation=True, max_length=9)["input_ids"]
    assert (
        minilm(
            questions, contexts, truncation=True, max_length=9, padding=False, return_tensors=None
        )["input_ids"]
        == cut
    )


def test_pad_to_multiple_of_and_batch_decode(smollm2):
    batch = smollm2(["one", "two three four five"], pad_to_multiple_of=8, padding_side="left")
    assert batch["input_ids"].shape == (2, 8)
    assert batch["attention_mask"][0].tolist()[:7] == [0] * 7
    decoded = smollm2.batch_decode(batch["input_ids"], skip_special_tokens=True)
    assert decoded == ["one", "two three four five"]


def test_single_text_without_tensors_gives_flat_lists(smollm2):
    got = smollm2("Hello there", return_tensors=None)
    assert got["input_ids"] == smollm2.encode("Hello there")
    assert got["attention_mask"] == [1] * len(got["input_ids"])


def test_no_pad_token_is_a_clear_error_and_can_be_set(tmp_path):
    # Given a GPT-2 style vocabulary, which has no padding token,
    train_byte_level_bpe(tmp_path, roberta=False)
    ours = Tokenizer.from_pretrained(tmp_path)
    assert ours.pad_token is None
    with pytest.raises(InputError, match="no pad token"):
        ours(["a", "a longer text"])
    ours.pad_token = ours.eos_token
    assert ours(["a", "a longer text"])["input_ids"].shape[0] == 2
    ours.pad_token = None
    with pytest.raises(ConfigError, match="not in the vocabulary"):
        ours.pad_token = "<never-seen>"


def test_bad_arguments_name_the_problem(minilm):
    with pytest.raises(InputError, match="must be a string"):
        minilm([1, 2])
    with pytest.raises(InputError, match="padding"):
        minilm("x", padding="sideways")
    with pytest.raises(ConfigError, match="padding_side"):
        minilm("x", padding_side="up")
    with pytest.raises(InputError, match="no room"):
        minilm("hello", truncation=True, max_length=2)
    with pytest.raises(InputError, match="without padding"):
        minilm(["a", "a b c"], padding=False)
    with pytest.raises(InputError, match="surrogate"):
        minilm("lone \ud800 surrogate")
    with pytest.raises(InputError, match="surrogate"):
        minilm.encode("\udfff")
    with pytest.raises(InputError, match="batch_decode"):
        minilm.decode([[1, 2]])


def test_threads_do_not_see_each_others_truncation(minilm):
    # Given one thread truncating to 8 tokens and others encoding in full at the same time,
    text = "word " * 100
    full, cut = len(minilm.encode(text)), 8
    results: list[tuple[str, int]] = []

    def work(kind: str) -> None:
        for _ in range(30):
            if kind == "cut":
                ids = minilm([text], truncation=True, max_length=cut)["input_ids"]
                results.append((kind, ids.shape[1]))
            else:
                results.append((kind, len(minilm.encode(text))))

    threads = [threading.Thread(target=work, args=(k,)) for k in ("cut", "full", "full")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # then each call gets its own setting.
    assert {length for kind, length in results if kind == "cut"} == {cut}
    assert {length for kind, length in results if kind == "full"} == {full}


def test_pickle_round_trip(smollm2):
    copy = pickle.loads(pickle.dumps(smollm2))
    assert copy.encode("Hello <|im_start|> world") == smollm2.encode("Hello <|im_start|> world")
    assert copy.apply_chat_template([{"role": "user", "content": "x"}]) == (
        smollm2.apply_chat_template([{"role": "user", "content": "x"}])
    )


def test_missing_files_are_not_found(tmp_path):
    with pytest.raises(NotFoundError, match="nowhere"):
        Tokenizer.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "README.md").write_text("nothing here")
    with pytest.raises(NotFoundError, match=r"tokenizer\.json, vocab\.txt"):
        Tokenizer.from_pretrained(tmp_path)


# SmolLM2's vocabulary lacks a few byte tokens (five control characters, and the lead bytes of
# planes 4 and up), so text made of those cannot survive; every other text must.
MISSING_BYTE_CHARACTERS = "\x04\x06\x13\x14\x16\x1d"


@settings(max_examples=60, deadline=None)
@given(
    st.text(
        st.characters(
            max_codepoint=0x3FFFF,
            exclude_characters=MISSING_BYTE_CHARACTERS,
            exclude_categories=["Cs"],
        ),
        max_size=80,
    )
)
def test_byte_level_bpe_decodes_back_to_the_exact_text(smollm2, text):
    assert smollm2.decode(smollm2.encode(text)) == text


# ------------------------------------------------------------------------------------------
# Chat templates
# ------------------------------------------------------------------------------------------
CONVERSATIONS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "Colour of the sky?"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": "And grass? Ünïcödé 中文 😀"},
    ],
    [{"role": "user", "content": "  spaces  \n\n and newlines  "}],
]


@pytest.mark.parametrize("add_generation_prompt", [True, False])
def test_smollm2_chat_template_matches_hf(smollm2, smollm2_hf, add_generation_prompt):
    for conversation in CONVERSATIONS:
        expected = smollm2_hf.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=add_generation_prompt
        )
        got = smollm2.apply_chat_template(conversation, add_generation_prompt=add_generation_prompt)
        assert got == expected
        ids = smollm2.apply_chat_template(
            conversation, add_generation_prompt=add_generation_prompt, tokenize=True
        )
        assert ids == smollm2_hf.encode(expected, add_special_tokens=False)


def test_template_features_match_hf(smollm2, smollm2_hf):
    # Loop controls, namespaces, tojson with non-ASCII, special-token variables, whitespace
    # control by trim_blocks/lstrip_blocks: all as HF renders them.
    template = (
        "{{ bos_token }}{% set ns = namespace(n=0) %}\n"
        "{% for m in messages %}\n"
        "    {% if m.role == 'skip' %}{% continue %}{% endif %}\n"
        "    {% set ns.n = ns.n + 1 %}\n"
        "[{{ ns.n }}] {{ m | tojson }}\n"
        "{% endfor %}\n"
        "{% if add_generation_prompt %}>>{{ eos_token }}{% endif %}"
    )
    messages = [
        {"role": "user", "content": 'héllo "quoted" <tag>'},
        {"role": "skip", "content": "ignored"},
        {"role": "assistant", "content": "中文"},
    ]
    expected = smollm2_hf.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    assert smollm2.apply_chat_template(messages, chat_template=template) == expected


def test_template_raise_exception_is_an_input_error(smollm2):
    template = (
        "{% if messages[0].role != 'user' %}{{ raise_exception('first must be user') }}{% endif %}"
    )
    with pytest.raises(ChatTemplateError, match="first must be user"):
        smollm2.apply_chat_template([{"role": "assistant", "content": "x"}], chat_template=template)


def test_no_chat_template_is_a_config_error(minilm):
    with pytest.raises(ConfigError, match="no chat template"):
        minilm.apply_chat_template([{"role": "user", "content": "hi"}])


# ------------------------------------------------------------------------------------------
# Saving
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["minilm_vocab_txt", "smollm2"])
def test_save_pretrained_round_trips_through_us_and_hf(request, tmp_path, source):
    ours: Tokenizer = request.getfixturevalue(source)
    ours.save_pretrained(tmp_path)
    reloaded = Tokenizer.from_pretrained(tmp_path)
    hf = hf_tokenizer(str(tmp_path))
    sample = STRINGS[:60]
    for text in sample:
        expected = ours.encode(text)
        assert reloaded.encode(text) == expected, text
        assert hf(text)["input_ids"] == expected, text
    assert reloaded.special_tokens_map == ours.special_tokens_map
    assert reloaded.chat_template == ours.chat_template
    assert hf.pad_token_id == ours.pad_token_id
    if ours.chat_template is not None:
        chat = CONVERSATIONS[1]
        assert hf.apply_chat_template(chat, tokenize=False, add_generation_prompt=True) == (
            ours.apply_chat_template(chat)
        )


# ------------------------------------------------------------------------------------------
# SentencePiece vocabularies in GGUF (Llama 1/2, Mistral): merges rebuilt from scores
# ------------------------------------------------------------------------------------------
def write_sentencepiece_gguf(path) -> None:
    """A GGUF holding only tokenizer metadata, as llama.cpp writes a Llama-2 style vocabulary:
    <unk> <s> </s>, the 256 <0xNN> byte tokens, then BPE pieces ('▁' marks a word start)
    scored by merge rank. The pieces are learned here from the handwritten strings."""
    import gguf
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers, trainers

    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    specials = ["<unk>", "<s>", "</s>", *byte_tokens]
    rust = RustTokenizer(models.BPE(byte_fallback=True))
    rust.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=specials, show_progress=False)
    rust.train_from_iterator(HANDWRITTEN * 3, trainer=trainer)
    vocab = rust.get_vocab()
    tokens = [token for token, _ in sorted(vocab.items(), key=lambda item: item[1])]
    types = [2, 3, 3, *([6] * 256), *([1] * (len(tokens) - len(specials)))]
    scores = [0.0] * len(specials) + [-float(i) for i in range(len(tokens) - len(specials))]

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_sentencepiece_gguf_matches_hf(tmp_path):
    path = tmp_path / "spm.gguf"
    write_sentencepiece_gguf(path)
    ours = Tokenizer.from_pretrained(path)
    hf = hf_tokenizer(str(tmp_path), gguf_file=path.name)
    assert ours.encode("hello")[0] == ours.bos_token_id == 1
    assert_same_as_hf(ours, hf, STRINGS)
