"""Every registered encoder: forward and backward on a tiny batch, output shapes."""

import pytest
import torch

from septet.errors import ConfigError, NotFoundError
from septet.textclass.encoders import create_encoder, list_encoders
from septet.textclass.encoders.base import prior_bias
from septet.textclass.model import build_model

VOCAB = 50
SMALL = {  # small sizes keep the test fast; the defaults are used elsewhere
    "FastText": {"bigram_buckets": 97},
    "TextCNN": {"num_filters": 8},
    "TextRNN": {"hidden_dim": 8, "attention_dim": 8},
    "TextRCNN": {"hidden_dim": 8, "projection_dim": 12},
    "DRNN": {"hidden_dim": 8, "window_size": 3},
    "DPCNN": {"num_filters": 8},
    "TextVDCNN": {"stage_filters": [8, 8, 16, 16], "top_k": 2},
    "AttentiveConvNet": {"hidden_dim": 8},
    "RegionEmbedding": {"region_size": 3, "embedding_dim": 8},
    "Transformer": {"num_layers": 1, "feedforward_dim": 16},
    "StarTransformer": {"num_cycles": 1},
    "HMCN": {"hidden_dim": 8, "global_dim": 8, "local_dim": 8},
}
VOCABULARY_ENCODERS = sorted(SMALL)


def test_the_registry_lists_every_neuralclassifier_encoder():
    assert set(VOCABULARY_ENCODERS) <= set(list_encoders())


@pytest.mark.parametrize("name", VOCABULARY_ENCODERS)
def test_forward_backward_and_shapes(name):
    torch.manual_seed(0)
    params = {"embedding_dim": 16, **SMALL[name]}
    levels, parents = [1, 1, 2, 2, 2], [-1, -1, 0, 0, 1]
    model = build_model(name, VOCAB, params, levels, parents)
    ids = torch.randint(2, VOCAB, (3, 7))
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False  # a shorter document
    mask[2, 1:] = False  # a one-token document
    ids[~mask] = 0
    features = model.encoder(ids, mask)
    assert features.shape == (3, model.encoder.output_dim)
    logits = model(ids, mask)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    targets = torch.tensor([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1, 0, 0, 1, 0]], dtype=torch.float32)
    loss = model.loss(ids, mask, targets, torch.nn.functional.binary_cross_entropy_with_logits)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert model.encoder.embedding.weight.grad.abs().sum() > 0  # gradients reach the tokens


@pytest.mark.parametrize("name", ["TextCNN", "DPCNN", "TextVDCNN", "RegionEmbedding"])
def test_padding_does_not_change_features(name):
    torch.manual_seed(0)
    params = {"embedding_dim": 16, "dropout": 0.0, **SMALL[name]}
    encoder = create_encoder(name, VOCAB, **params).eval()
    ids = torch.randint(2, VOCAB, (1, 6))
    short = encoder(ids, torch.ones(1, 6, dtype=torch.bool))
    padded_ids = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    padded_mask = torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], dim=1).bool()
    if name in ("TextCNN", "RegionEmbedding"):
        torch.testing.assert_close(encoder(padded_ids, padded_mask), short)
    else:  # pyramids pool differently on longer inputs; only check it runs and is finite
        assert torch.isfinite(encoder(padded_ids, padded_mask)).all()


def test_unknown_encoder_lists_the_names():
    with pytest.raises(NotFoundError, match="TextRCNN"):
        create_encoder("TextRCNNN", VOCAB)


def test_unknown_encoder_parameter_names_the_key():
    with pytest.raises(ConfigError, match=r"params\.kernel_size .*TextCNN"):
        create_encoder("TextCNN", VOCAB, kernel_size=3)


def test_wrong_parameter_type_names_the_key():
    with pytest.raises(ConfigError, match=r"params\.hidden_dim"):
        create_encoder("TextRNN", VOCAB, hidden_dim="big")


def test_names_are_case_insensitive():
    assert type(create_encoder("textcnn", VOCAB)).__name__ == "TextCNN"


def test_prior_bias_makes_an_untrained_head_predict_label_frequencies():
    targets = torch.zeros(99, 3)
    targets[:9, 0] = 1  # 9 of 99 documents (smoothed: 9.5 / 100)
    targets[:, 1] = 1  # every document
    bias = prior_bias(targets.numpy())  # label 2: no document at all
    assert bias.sigmoid().tolist() == pytest.approx([0.095, 0.995, 0.005])
    softmax = prior_bias(targets.numpy(), softmax=True).softmax(0)
    assert softmax.tolist() == pytest.approx([9.5 / 109.5, 99.5 / 109.5, 0.5 / 109.5])


@pytest.mark.parametrize("name", ["TextCNN", "HMCN"])
def test_heads_start_from_the_prior_bias(name):
    torch.manual_seed(0)
    levels, parents = [1, 1, 2, 2, 2], [-1, -1, 0, 0, 1]
    model = build_model(name, VOCAB, {"embedding_dim": 16, **SMALL[name]}, levels, parents)
    bias = torch.tensor([-1.0, -2.0, -3.0, -4.0, -5.0])
    model.head.init_bias(bias)
    zero_features = torch.zeros(2, model.encoder.output_dim)
    if name == "HMCN":  # global and every local output start there
        torch.testing.assert_close(model.head.global_output.bias, bias)
        local = torch.cat([out.bias for out in model.head.local_outputs])
        torch.testing.assert_close(local, bias)
    else:
        torch.testing.assert_close(model.head(zero_features), bias.expand(2, 5))


# Encoders that pack sequences for an RNN need their lengths on the CPU, which the meta device
# cannot give; HMCN's head is checked on its own below.
PACKED = {"TextRNN", "TextRCNN", "DRNN", "HMCN"}


@pytest.mark.parametrize("name", sorted(set(VOCABULARY_ENCODERS) - PACKED))
def test_every_tensor_follows_the_model_to_its_device(name):
    # The meta device stands in for a GPU: a tensor made on the CPU inside forward (instead of
    # on the input's device) fails here exactly as it would on CUDA.
    levels, parents = [1, 1, 2, 2, 2], [-1, -1, 0, 0, 1]
    model = build_model(name, VOCAB, {"embedding_dim": 16, **SMALL[name]}, levels, parents)
    model = model.to("meta")
    ids = torch.randint(2, VOCAB, (3, 7)).to("meta")
    mask = torch.ones(3, 7, dtype=torch.bool).to("meta")
    loss = model.loss(
        ids,
        mask,
        torch.zeros(3, 5, device="meta"),
        torch.nn.functional.binary_cross_entropy_with_logits,
    )
    assert loss.device.type == "meta"


def test_hmcn_head_follows_the_model_to_its_device():
    # Its forward pass only: the violation penalty's boolean indexing has no meta kernel.
    levels, parents = [1, 1, 2, 2, 2], [-1, -1, 0, 0, 1]
    model = build_model("HMCN", VOCAB, {"embedding_dim": 16, **SMALL["HMCN"]}, levels, parents)
    head = model.head.to("meta")
    assert all(members.device.type == "meta" for members in head.level_members)
    logits = head(torch.zeros(2, model.encoder.output_dim, device="meta"))
    assert logits.device.type == "meta" and logits.shape == (2, 5)
