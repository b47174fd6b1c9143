"""septet.autocomplete: a neural Python code completer trained here, usable from any editor.

Table of contents:
- :class:`CodeTokenizer` - byte-level BPE over Python pieces, lossless
- :func:`build_model`, :func:`load_model`, :class:`NextTokenScorer` - LSTM and Llama models
- :func:`train_autocomplete` - corpus -> trained model folder
"""

from septet.common.lazy import lazy_exports

_EXPORTS = {
    "CodeTokenizer": ".tokenization",
    "split_pieces": ".tokenization",
    "read_corpus": ".corpus",
    "split_by_file": ".corpus",
    "stdlib_dir": ".corpus",
    "build_model": ".models",
    "load_model": ".models",
    "save_model": ".models",
    "NextTokenScorer": ".models",
    "LSTMLanguageModel": ".models",
    "AutocompleteTrainingConfig": ".training",
    "train_autocomplete": ".training",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
