"""The config file: sections, documented keys, errors that name the bad key."""

import dataclasses
import json

import pytest

from septet.errors import ConfigError
from septet.textclass.classifier import TextClassifier
from septet.textclass.config import SECTIONS, config_from_dict, config_reference, load_config


def test_every_key_is_documented():
    reference = config_reference()
    for name, cls in SECTIONS.items():
        assert f"### [{name}]" in reference
        for f in dataclasses.fields(cls):
            assert f.metadata["doc"], f"{name}.{f.name} has no documentation"
            assert f"`{f.name}`" in reference


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"train": {"epoch": 3}}, r"unknown key train\.epoch \(did you mean 'epochs'\?\)"),
        ({"trian": {}}, r"unknown section \[trian\] \(did you mean 'train'\?\)"),
        ({"train": {"epochs": "ten"}}, r"train\.epochs must be a int"),
        ({"loss": {"focal_gamma": 3.0}}, r"loss\.focal_gamma is set but unused"),
        (
            {"loss": {"name": "focal", "positive_weight_power": 0.5}},
            r"loss\.positive_weight_power is set but unused",
        ),
        ({"loss": {"positive_weight_power": -1}}, r"loss\.positive_weight_power must be >= 0"),
        (
            {"hierarchy": {"recursive_penalty": 0.1}},
            r"hierarchy\.recursive_penalty is set but unused",
        ),
        ({"eval": {"top_k": 2}}, r"eval\.top_k is set but unused"),
        ({"loss": {"name": "hinge"}}, r"loss\.name must be one of"),
        ({"task": {"multi_label": False}, "loss": {"name": "bce"}}, r"multi-class task"),
        ({"feature": {"fields": ["token", "char"]}}, r"feature\.fields"),
    ],
)
def test_config_errors_name_the_key(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data)


def test_conditional_keys_are_accepted_when_used():
    config = config_from_dict(
        {
            "task": {"hierarchical": True},
            "data": {"taxonomy": "t.tsv"},
            "loss": {"name": "focal", "focal_gamma": 1.0},
            "hierarchy": {"recursive_penalty": 0.01},
            "eval": {"decoding": "top_k", "top_k": 2},
        }
    )
    assert config.loss.focal_gamma == 1.0 and config.eval.top_k == 2


def test_multi_class_defaults_to_softmax_and_argmax():
    config = config_from_dict({"task": {"multi_label": False}})
    assert (config.loss.name, config.eval.decoding) == ("softmax_ce", "argmax")


def test_toml_and_json_read_the_same(tmp_path):
    (tmp_path / "c.toml").write_text(
        '[model]\nencoder = "TextCNN"\n[model.params]\nnum_filters = 8\n'
    )
    (tmp_path / "c.json").write_text(
        json.dumps({"model": {"encoder": "TextCNN", "params": {"num_filters": 8}}})
    )
    assert load_config(tmp_path / "c.toml").to_dict() == load_config(tmp_path / "c.json").to_dict()


def test_unparseable_file_is_a_config_error(tmp_path):
    (tmp_path / "bad.toml").write_text("[train\nepochs = 1\n")
    with pytest.raises(ConfigError, match=r"bad\.toml cannot be parsed"):
        load_config(tmp_path / "bad.toml")


def test_classifier_options_are_checked_by_name():
    with pytest.raises(
        ConfigError, match=r"unknown TextClassifier option 'epoch' \(did you mean 'epochs'\?\)"
    ):
        TextClassifier("TextCNN", epoch=3)
    with pytest.raises(ConfigError, match="learning_rate"):
        TextClassifier("TextCNN", learning_rate="fast")
    params = TextClassifier("TextCNN", epochs=3, loss="focal").get_params()
    assert params["epochs"] == 3 and params["loss"] == "focal" and params["encoder"] == "TextCNN"
