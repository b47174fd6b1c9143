"""septet.textclass: hierarchical multi-label text classification (NeuralClassifier, and more).

Table of contents:
- :class:`TextClassifier` - fit / predict / predict_proba / evaluate / save / load
- :class:`TextEnsemble` - several classifiers' probabilities averaged, thresholds tuned on dev
- :func:`create_encoder`, :func:`list_encoders` - the encoder registry
- :class:`Taxonomy` - NeuralClassifier's taxonomy TSV; :func:`read_documents` - its JSONL and
  plain ``{"text", "labels"}`` JSONL
- :func:`evaluate` - metrics flat, per level and per label; :func:`tune_thresholds`, :func:`decode`
- :func:`load_config`, :func:`train_from_config` - the config-file workflow behind the CLI
- :func:`recursive_regularization` - the hierarchy penalty
- datasets: :func:`build_debtags`, :func:`load_bbc_news`
"""

from septet.common.lazy import lazy_exports

__all__ = [
    "Document",
    "Taxonomy",
    "TextClassifier",
    "TextEnsemble",
    "build_debtags",
    "config_reference",
    "create_encoder",
    "decode",
    "evaluate",
    "evaluate_from_config",
    "list_encoders",
    "load_bbc_news",
    "load_config",
    "predict_from_config",
    "read_documents",
    "recursive_regularization",
    "tokenize",
    "train_from_config",
    "tune_thresholds",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Document": ".data",
        "TextClassifier": ".classifier",
        "TextEnsemble": ".ensemble",
        "Taxonomy": ".taxonomy",
        "build_debtags": ".datasets.debtags",
        "config_reference": ".config",
        "create_encoder": ".encoders.base",
        "decode": ".decoding",
        "evaluate": ".metrics",
        "list_encoders": ".encoders.base",
        "load_bbc_news": ".datasets.bbc_news",
        "load_config": ".config",
        "predict_from_config": ".runner",
        "evaluate_from_config": ".runner",
        "read_documents": ".data",
        "recursive_regularization": ".hierarchy",
        "tokenize": ".data",
        "train_from_config": ".runner",
        "tune_thresholds": ".decoding",
    },
)
