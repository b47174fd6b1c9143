"""Loading checkpoints: every format, both name styles, loud failures.

Given checkpoints made here from tiny HF models (safetensors, pytorch_model.bin, a sharded
safetensors index, with or without the base-model prefix, with legacy gamma/beta names), septet
loads each to the same outputs; a checkpoint that does not fit fails with a message naming
the tensors at fault."""

from __future__ import annotations

import fractions
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from septet import transformers as st
from septet.errors import CheckpointError, ConfigError, NotFoundError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hf_bert_mlm(tmp_path_factory, hf, tiny_hf_config):
    """A tiny HF BertForMaskedLM saved in HF's layout (keys prefixed with ``bert.``)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("hf-bert-mlm")
    model = hf.BertForMaskedLM(tiny_hf_config("bert")).eval()
    model.save_pretrained(folder)
    return model, folder


IDS = torch.tensor([[2, 15, 47, 3, 0, 0], [2, 9, 81, 33, 12, 3]])
MASK = (IDS != 0).long()


def logits_of(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).logits


def base_output(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS, attention_mask=MASK).last_hidden_state


def write_checkpoint(folder: Path, source: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """A model folder holding ``tensors`` as model.safetensors and ``source``'s config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text((source / "config.json").read_text())
    save_file({k: v.contiguous() for k, v in tensors.items()}, folder / "model.safetensors")
    return folder


def test_a_missing_tensor_is_named(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    tensors = load_file(folder / "model.safetensors")
    del tensors["bert.encoder.layer.1.attention.self.key.weight"]
    broken = write_checkpoint(tmp_path / "broken", folder, tensors)
    with pytest.raises(CheckpointError) as error:
        st.BertForMaskedLM.from_pretrained(broken)
    message = str(error.value)
    assert "1 missing: bert.encoder.layer.1.attention.self.key.weight" in message
    assert "unexpected" not in message


def test_unexpected_and_mis_shaped_tensors_are_named(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    tensors = load_file(folder / "model.safetensors")
    tensors["bert.encoder.layer.9.output.dense.weight"] = torch.zeros(3, 3)
    broken = write_checkpoint(tmp_path / "extra", folder, tensors)
    with pytest.raises(CheckpointError, match=r"1 unexpected: bert\.encoder\.layer\.9\.output"):
        st.BertForMaskedLM.from_pretrained(broken)

    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 40
    (broken / "config.json").write_text(json.dumps(config))
    del tensors["bert.encoder.layer.9.output.dense.weight"]
    save_file(tensors, broken / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"wrong shape: .*intermediate\.dense\.weight"):
        st.BertForMaskedLM.from_pretrained(broken)


def test_checkpoints_with_and_without_the_prefix_load_alike(hf_bert_mlm, tmp_path, hf):
    hf_model, folder = hf_bert_mlm
    prefixed = load_file(folder / "model.safetensors")
    assert all(k.startswith(("bert.", "cls.")) for k in prefixed)
    body = {k.removeprefix("bert."): v for k, v in prefixed.items() if k.startswith("bert.")}
    bare = write_checkpoint(tmp_path / "bare", folder, body)

    # A base model from a head checkpoint (the head is left out) and from a bare one.
    expected = base_output(hf_model.bert)
    for source in (folder, bare):
        assert torch.allclose(
            base_output(st.BertModel.from_pretrained(source)), expected, atol=1e-5
        )

    # A head model from a bare checkpoint with the head weights unprefixed beside it.
    heads = {k: v for k, v in prefixed.items() if k.startswith("cls.")}
    mixed = write_checkpoint(tmp_path / "mixed", folder, {**body, **heads})
    assert torch.allclose(
        logits_of(st.BertForMaskedLM.from_pretrained(mixed)), logits_of(hf_model), atol=1e-5
    )


def test_legacy_gamma_beta_names_load(hf_bert_mlm, tmp_path):
    hf_model, folder = hf_bert_mlm
    legacy = {}
    for name, tensor in load_file(folder / "model.safetensors").items():
        if "LayerNorm" in name:
            name = name.replace(".weight", ".gamma").replace(".bias", ".beta")
        legacy[name] = tensor
    assert any(k.endswith("LayerNorm.gamma") for k in legacy)
    model = st.BertForMaskedLM.from_pretrained(write_checkpoint(tmp_path / "old", folder, legacy))
    assert torch.allclose(logits_of(model), logits_of(hf_model), atol=1e-5)


def test_pytorch_model_bin_loads_and_pickled_code_is_refused(hf_bert_mlm, tmp_path):
    hf_model, folder = hf_bert_mlm
    target = tmp_path / "bin"
    target.mkdir()
    (target / "config.json").write_text((folder / "config.json").read_text())
    torch.save(load_file(folder / "model.safetensors"), target / "pytorch_model.bin")
    model = st.BertForMaskedLM.from_pretrained(target)
    assert torch.allclose(logits_of(model), logits_of(hf_model), atol=1e-5)

    torch.save({"weights": fractions.Fraction(1, 3)}, target / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        st.BertForMaskedLM.from_pretrained(target)


def test_a_sharded_safetensors_index_loads(hf, tiny_hf_config, tmp_path):
    torch.manual_seed(0)
    hf_model = hf.BertForSequenceClassification(tiny_hf_config("bert")).eval()
    hf_model.save_pretrained(tmp_path, max_shard_size="20KB")
    shards = sorted(p.name for p in tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    model = st.BertForSequenceClassification.from_pretrained(tmp_path)
    assert torch.allclose(logits_of(model), logits_of(hf_model), atol=1e-5)
    assert set(st.read_state_dict(tmp_path)) == set(hf_model.state_dict()) - {
        k for k in hf_model.state_dict() if k.endswith(("position_ids", "token_type_ids"))
    }

    (tmp_path / shards[-1]).unlink()
    with pytest.raises(CheckpointError, match=f"names shard '{shards[-1]}', which is missing"):
        st.BertForSequenceClassification.from_pretrained(tmp_path)


def test_dtype_choice(hf_bert_mlm):
    _, folder = hf_bert_mlm
    model = st.BertForMaskedLM.from_pretrained(folder, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    # Tied weights stay tied whatever the dtype.
    assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight
    assert st.BertForMaskedLM.from_pretrained(folder, dtype="auto").dtype == torch.float32
    with pytest.raises(ConfigError, match="unknown dtype 'int3'"):
        st.BertForMaskedLM.from_pretrained(folder, dtype="int3")


def test_folders_without_weights_or_config_fail_clearly(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("nothing")
    with pytest.raises(CheckpointError, match=r"found: notes\.txt"):
        st.BertModel.from_pretrained(tmp_path / "empty")
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "noconfig" / "model.safetensors").write_bytes(
        (folder / "model.safetensors").read_bytes()
    )
    with pytest.raises(CheckpointError, match=r"no config\.json"):
        st.BertModel.from_pretrained(tmp_path / "noconfig")
    truncated = write_checkpoint(tmp_path / "cut", folder, {})
    data = (folder / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        st.BertModel.from_pretrained(truncated)
    with pytest.raises(NotFoundError, match="neither an existing file"):
        st.BertModel.from_pretrained(tmp_path / "no" / "such" / "model")


def test_config_settings_septet_does_not_implement_are_refused(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    original = json.loads((folder / "config.json").read_text())
    cases = {
        "hidden_act": ("gelu_fast", "config key 'hidden_act' is 'gelu_fast'"),
        "position_embedding_type": ("relative_key", "'position_embedding_type' is 'relative_key'"),
        "hidden_size": ("32", "config key 'hidden_size' has value '32' of type str"),
        "is_decoder": (True, "'is_decoder' is True"),
    }
    for key, (value, message) in cases.items():
        with pytest.raises(ConfigError, match=message):
            st.BertConfig.from_dict({**original, key: value})
    with pytest.raises(ConfigError, match="model_type 'bert' but RobertaConfig"):
        st.RobertaConfig.from_dict(original)
    with pytest.raises(ConfigError, match="unknown BertConfig setting 'hiden_size'"):
        st.BertModel.from_pretrained(folder, hiden_size=3)


def test_config_round_trip_keeps_unknown_keys(hf_bert_mlm):
    _, folder = hf_bert_mlm
    original = json.loads((folder / "config.json").read_text())
    config = st.BertConfig.from_dict({**original, "task_specific_params": {"x": 1}}, num_labels=4)
    assert config.num_labels == 4 and config.id2label[3] == "LABEL_3"
    written = config.to_dict()
    assert written["task_specific_params"] == {"x": 1}
    assert st.BertConfig.from_dict(written) == config


def test_hub_names_resolve_offline_from_the_cache_layout(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--tiny-org--tiny-bert"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    resolved = st.resolve_model_path("tiny-org/tiny-bert", cache_dir=tmp_path / "hub")
    assert resolved == snapshot
    with pytest.raises(NotFoundError, match="not in the Hugging Face cache"):
        st.resolve_model_path("tiny-org/absent", cache_dir=tmp_path / "hub")


def test_save_pretrained_replaces_files_atomically(hf_bert_mlm, tmp_path):
    _, folder = hf_bert_mlm
    model = st.BertForMaskedLM.from_pretrained(folder)
    model.save_pretrained(tmp_path)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["BertForMaskedLM"] and config["model_type"] == "bert"
    # Tied decoder weights are stored once, as HF does.
    assert "cls.predictions.decoder.weight" not in load_file(tmp_path / "model.safetensors")


def test_bundled_model_paths():
    assert (st.minilm_path() / "config.json").is_file()
    assert st.smollm2_gguf_path().suffix == ".gguf"


AUTO_TASKS = {
    "AutoModel": "Model",
    "AutoModelForMaskedLM": "ForMaskedLM",
    "AutoModelForSequenceClassification": "ForSequenceClassification",
    "AutoModelForTokenClassification": "ForTokenClassification",
    "AutoModelForQuestionAnswering": "ForQuestionAnswering",
}


@pytest.mark.parametrize("family", ["bert", "roberta", "distilbert"])
def test_auto_classes_pick_the_family_and_task_from_config(family, hf, tiny_hf_config, tmp_path):
    prefix = {"bert": "Bert", "roberta": "Roberta", "distilbert": "DistilBert"}[family]
    torch.manual_seed(0)
    getattr(hf, prefix + "ForMaskedLM")(tiny_hf_config(family)).save_pretrained(tmp_path)
    config = st.AutoConfig.from_pretrained(tmp_path)
    assert type(config).__name__ == prefix + "Config"
    for auto_name, suffix in AUTO_TASKS.items():
        model = getattr(st, auto_name).from_pretrained(tmp_path, num_labels=2)
        assert type(model).__name__ == prefix + suffix
        fresh = getattr(st, auto_name).from_config(config)
        assert type(fresh) is type(model)
    with pytest.raises(
        ConfigError, match=f"AutoModelForCausalLM has no class for model_type '{family}'"
    ):
        st.AutoModelForCausalLM.from_pretrained(tmp_path)


def test_auto_classes_dispatch_decoders(hf, tmp_path):
    """GPT-2 and Llama-family configs go to the decoder classes (from gpt2.py and llama.py)."""
    configs = {
        "gpt2": hf.GPT2Config(n_embd=32, n_layer=1, n_head=4, vocab_size=99, n_positions=64),
        "llama": hf.LlamaConfig(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            vocab_size=99,
        ),
    }
    expected = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}
    for model_type, config in configs.items():
        folder = tmp_path / model_type
        torch.manual_seed(0)
        hf.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        model = st.AutoModelForCausalLM.from_pretrained(folder)
        assert type(model).__name__ == expected[model_type]
        assert type(st.AutoModel.from_pretrained(folder)).__name__ == expected[model_type].replace(
            "LMHeadModel", "Model"
        ).replace("ForCausalLM", "Model")


def test_auto_refuses_unknown_model_types(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(ConfigError, match="model_type 't5' is not one septet implements"):
        st.AutoConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 8}))
    with pytest.raises(ConfigError, match="no 'model_type'"):
        st.AutoConfig.from_pretrained(tmp_path)


def test_every_public_name_resolves_and_importing_the_package_is_light():
    import subprocess
    import sys

    missing = [name for name in st.__all__ if not hasattr(st, name)]
    assert not missing
    code = "import sys, septet.transformers; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_published_checkpoint_shapes_load_into_every_head(hf, tiny_hf_config, tmp_path):
    """bert-base-uncased is a BertForPreTraining checkpoint (MLM + next-sentence heads, a
    pooler); roberta-base holds a pooler beside its LM head. Every head loads them, leaving
    out what it does not use."""
    torch.manual_seed(0)
    pretraining = hf.BertForPreTraining(tiny_hf_config("bert")).eval()
    pretraining.save_pretrained(tmp_path / "bert")
    mlm = st.BertForMaskedLM.from_pretrained(tmp_path / "bert")
    with torch.no_grad():
        expected = pretraining(input_ids=IDS, attention_mask=MASK).prediction_logits
    assert torch.allclose(logits_of(mlm), expected, atol=1e-5)
    for name in ("BertModel", "BertForTokenClassification", "BertForQuestionAnswering"):
        getattr(st, name).from_pretrained(tmp_path / "bert", num_labels=2)

    lm = hf.RobertaForMaskedLM(tiny_hf_config("roberta")).eval()
    pooled = hf.RobertaModel(tiny_hf_config("roberta"))
    # As HF saves it: tied copies (decoder weight and bias) stored once.
    tied = ("position_ids", "lm_head.decoder.")
    tensors = {k: v for k, v in lm.state_dict().items() if not any(t in k for t in tied)}
    tensors.update({f"roberta.{k}": v for k, v in pooled.state_dict().items() if "pooler" in k})
    config_folder = tmp_path / "roberta-config"
    lm.config.save_pretrained(config_folder)
    folder = write_checkpoint(tmp_path / "roberta", config_folder, tensors)
    assert torch.allclose(
        logits_of(st.RobertaForMaskedLM.from_pretrained(folder)), logits_of(lm), atol=1e-5
    )
    assert st.RobertaModel.from_pretrained(folder).pooler is not None


def test_a_model_from_a_fresh_config_trains_from_scratch_and_saves(tmp_path, hf):
    config = st.AutoConfig.for_model(
        "distilbert", dim=16, n_layers=1, n_heads=2, hidden_dim=24, vocab_size=99, num_labels=2
    )
    model = st.AutoModelForSequenceClassification.from_config(config)
    assert type(model).__name__ == "DistilBertForSequenceClassification"
    # HF's initialisation: N(0, 0.02) weights, unit LayerNorms.
    assert 0.01 < model.distilbert.embeddings.word_embeddings.weight.std().item() < 0.03
    model.save_pretrained(tmp_path)
    reloaded = hf.DistilBertForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.allclose(logits_of(model.eval()), logits_of(reloaded), atol=1e-5)
