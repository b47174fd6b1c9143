"""TextClassifier: the scikit-learn-style face of textclass (fit, predict, predict_proba,
save, load), over any registered encoder, flat or hierarchical, multi-label or multi-class."""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from septet.errors import CheckpointError, ConfigError, InputError
from septet.textclass import config as cfg
from septet.textclass.data import Document, documents_from_texts
from septet.textclass.taxonomy import ROOT, Taxonomy
from septet.textclass.vocabulary import LabelSpace

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "textclass.json"


def _option_table() -> dict[str, tuple[str, str]]:
    """keyword argument -> (config section, key); ``loss`` names the loss."""
    table = {}
    for section in cfg.CLASSIFIER_SECTIONS:
        for f in dataclasses.fields(cfg.SECTIONS[section]):
            table[f.name] = (section, f.name)
    del table["name"]
    table["loss"] = ("loss", "name")
    return table


OPTIONS = _option_table()


class TextClassifier:
    """Train and apply a text classifier: ``TextClassifier(encoder="TextRCNN",
    hierarchy="taxonomy.tsv").fit(texts, labels)``.

    ``hierarchy``: None (flat labels), a :class:`Taxonomy`, the path of a taxonomy TSV, or
    True to read the hierarchy from ``A--B--C`` label paths. ``labels`` declares a flat
    classifier's label set (default: the labels seen in training). ``multi_label=False`` makes a
    multi-class classifier (softmax, one label per text). The other keyword arguments are the
    keys of the config sections [feature], [loss] (``loss=`` names it), [hierarchy], [train]
    and [eval]; see ``septet textclass keys``.
    """

    def __init__(
        self,
        encoder: str = "TextRCNN",
        hierarchy: Taxonomy | str | os.PathLike | bool | None = None,
        *,
        multi_label: bool = True,
        encoder_params: dict[str, Any] | None = None,
        labels: Sequence[str] | None = None,
        **options: Any,
    ):
        self.encoder = encoder
        self.hierarchy = hierarchy
        self.labels = None if labels is None else list(labels)
        self.multi_label = multi_label
        self.encoder_params = dict(encoder_params or {})
        self.sections = {name: cfg.SECTIONS[name]() for name in cfg.CLASSIFIER_SECTIONS}
        if not multi_label:
            self.sections["loss"].name = "softmax_ce"
            self.sections["eval"].decoding = "argmax"
        self.set_params(**options)
        self.model = None
        self.label_space: LabelSpace | None = None
        self.featurizer = None
        self.thresholds: np.ndarray | None = None
        self.training_: dict[str, Any] = {}

    # -- scikit-learn conventions -------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Every constructor argument and option with its current value."""
        params = {
            "encoder": self.encoder,
            "hierarchy": self.hierarchy,
            "multi_label": self.multi_label,
            "encoder_params": dict(self.encoder_params),
            "labels": None if self.labels is None else list(self.labels),
        }
        for name, (section, key) in OPTIONS.items():
            params[name] = getattr(self.sections[section], key)
        return params

    def set_params(self, **params: Any) -> TextClassifier:
        """Change options by keyword; an unknown keyword or a wrong type names the key."""
        for name, value in params.items():
            if name in ("encoder", "hierarchy", "multi_label", "encoder_params", "labels"):
                setattr(self, name, value)
                continue
            if name not in OPTIONS:
                import difflib

                close = difflib.get_close_matches(name, list(OPTIONS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ConfigError(f"unknown TextClassifier option {name!r}{hint}")
            section, key = OPTIONS[name]
            current = getattr(self.sections[section], key)
            setattr(self.sections[section], key, cfg.check_value(name, value, current))
        return self

    @property
    def classes_(self) -> list[str]:
        """The label names, in the column order of :meth:`predict_proba`."""
        self._check_fitted()
        return list(self.label_space.labels)

    # -- training ---------------------------------------------------------------------------
    def fit(
        self,
        texts: Sequence[str] | Sequence[Document],
        labels: Sequence[Sequence[str]] | Sequence[str] | None = None,
        *,
        dev: tuple[Sequence, Sequence | None] | None = None,
        checkpoint_dir: str | os.PathLike | None = None,
        resume: bool = False,
    ) -> TextClassifier:
        """Train on ``texts`` with ``labels`` (label lists; plain labels when multi-class).
        ``dev`` = (texts, labels) picks the best epoch and tunes thresholds; without it a
        ``validation_fraction`` of the training data is held out."""
        import torch

        from septet.common.seeding import seed_everything
        from septet.textclass.encoders.base import encoder_class, prior_bias
        from septet.textclass.hierarchy import recursive_regularization
        from septet.textclass.losses import make_loss, positive_weights
        from septet.textclass.model import build_model
        from septet.textclass.trainer import train_model

        train_options = self.sections["train"]
        loss_options = self.sections["loss"]
        if not self.multi_label and loss_options.name != "softmax_ce":
            raise ConfigError("a multi-class classifier (multi_label=False) trains with softmax_ce")
        documents = self._documents(texts, labels, "training")
        seed_everything(train_options.seed)
        taxonomy = self._taxonomy()
        if taxonomy is None and self.hierarchy is None and self.labels is not None:
            taxonomy = Taxonomy.flat(self.labels)
        self.label_space = LabelSpace.from_training_labels(
            (d.labels for d in documents), taxonomy, hierarchical=self.hierarchy is not None
        )
        if dev is not None:
            dev_documents = self._documents(dev[0], dev[1], "dev")
        else:
            documents, dev_documents = self._hold_out(documents)
        train_targets = self.label_space.to_matrix([d.labels for d in documents])
        dev_targets = self.label_space.to_matrix([d.labels for d in dev_documents])
        cls = encoder_class(self.encoder)
        if getattr(cls, "needs_sigmoid_loss", False) and loss_options.name == "softmax_ce":
            raise ConfigError(f"encoder {self.encoder} has sigmoid outputs; use loss bce or focal")
        self.featurizer = self._make_featurizer(cls, documents)
        train_ids = self.featurizer.transform(documents)
        dev_ids = self.featurizer.transform(dev_documents)
        torch.manual_seed(train_options.seed)
        self.model = build_model(
            cls.registry_name,
            self.featurizer.vocab_size,
            self.encoder_params,
            self.label_space.levels,
            self._parent_ids(),
        )
        if hasattr(self.model.encoder, "fit_corpus"):  # corpus statistics (NGramLinear's idf)
            self.model.encoder.fit_corpus(train_ids)
        if train_options.prior_bias:
            self.model.head.init_bias(
                prior_bias(train_targets, softmax=loss_options.name == "softmax_ce")
            )
        power = loss_options.positive_weight_power
        if power and loss_options.name != "bce":
            raise ConfigError(
                f"positive_weight_power applies to the bce loss, not {loss_options.name!r}"
            )
        loss_fn = make_loss(
            loss_options.name,
            focal_gamma=loss_options.focal_gamma,
            focal_alpha=loss_options.focal_alpha,
            pos_weight=positive_weights(train_targets, power) if power else None,
        )
        penalty = None
        weight = self.sections["hierarchy"].recursive_penalty
        if self.label_space.hierarchical and weight > 0 and len(self.label_space.edges):
            edges = torch.from_numpy(self.label_space.edges)
            penalty = lambda model: weight * recursive_regularization(model.output_weight, edges)  # noqa: E731
        self.thresholds = None

        evaluation = self.sections["eval"]
        tuned = self.multi_label and evaluation.decoding != "argmax" and evaluation.tune_thresholds
        judged = self._selected_columns()

        def dev_score(probabilities: np.ndarray) -> float:
            from septet.textclass.decoding import tune_global_threshold
            from septet.textclass.metrics import summary_scores

            if tuned:
                # Thresholds will be tuned on dev after training, so judge an epoch at its
                # best single threshold, not at the fixed eval.threshold: a model whose
                # scores run low (rare labels) or high (positive weights) is otherwise
                # judged by its calibration rather than its ranking.
                self.thresholds = np.float32(
                    tune_global_threshold(probabilities[:, judged], dev_targets[:, judged])
                )
            predictions = self.decode_probabilities(probabilities)
            self.thresholds = None
            return summary_scores(dev_targets[:, judged], predictions[:, judged])["micro_f1"]

        if getattr(self.model.encoder.params, "solver", "gradient") == "dual_cd":
            from septet.textclass.linear_svm import solve_ngram_linear

            self._check_dual_cd(penalty is not None)
            result = solve_ngram_linear(
                self.model,
                train_ids,
                train_targets,
                dev_ids,
                dev_score,
                train_options,
                positive_weights=positive_weights(train_targets, power).numpy() if power else None,
            )
        else:
            result = train_model(
                self.model,
                train_ids,
                train_targets,
                dev_ids,
                dev_score,
                train_options,
                loss_fn=loss_fn,
                penalty=penalty,
                single_label=not self.multi_label,
                checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir else None,
                resume=resume,
                fingerprint=self._fingerprint(len(documents), len(dev_documents)),
            )
        self.model.load_state_dict(result.best_state)
        if self.multi_label and evaluation.decoding != "argmax" and evaluation.tune_thresholds:
            dev_probabilities = result.best_dev_probabilities
            if dev_probabilities is None:  # resumed after the best epoch: compute them again
                dev_probabilities = self._probabilities(dev_ids)
            self.thresholds = self.tune_thresholds(dev_probabilities, dev_targets)
        self.training_ = {
            "best_epoch": result.best_epoch,
            "best_dev_micro_f1": result.best_score,
            "history": result.history,
            "documents_per_second": result.documents_per_second,
            "stopped_because": result.stopped_because,
            "cpu_seconds": result.cpu_seconds,
            "train_documents": len(documents),
            "dev_documents": len(dev_documents),
        }
        return self

    def tune_thresholds(
        self, probabilities: np.ndarray, targets: np.ndarray, objective: str | None = None
    ) -> np.ndarray:
        """Per-label thresholds tuned on (dev) ``probabilities`` against 0/1 ``targets`` by
        the [eval] options (``objective`` overrides eval.threshold_objective); with
        eval.thresholds_per_level, each hierarchy level is tuned on its own."""
        from septet.textclass.decoding import tune_thresholds

        evaluation = self.sections["eval"]
        options = {
            "min_support": evaluation.threshold_min_support,
            "objective": objective or evaluation.threshold_objective,
        }
        if not (evaluation.thresholds_per_level and self.label_space.hierarchical):
            return tune_thresholds(probabilities, targets, **options)
        thresholds = np.zeros(probabilities.shape[1], dtype=np.float32)
        for level in np.unique(self.label_space.levels):
            columns = self.label_space.levels == level
            thresholds[columns] = tune_thresholds(
                probabilities[:, columns], targets[:, columns], **options
            )
        return thresholds

    def _check_dual_cd(self, has_penalty: bool) -> None:
        """Settings that the dual_cd solver would ignore are errors naming the key."""
        loss = self.sections["loss"]
        if not self.multi_label:
            raise ConfigError(
                "solver dual_cd trains one-vs-rest SVMs for multi-label tasks; use the "
                "gradient solver for a multi-class classifier"
            )
        if loss.name != "bce":
            raise ConfigError(
                "solver dual_cd minimises the squared hinge loss; leave loss.name = bce (the "
                "loss applies to the gradient solver; loss.positive_weight_power applies to "
                "both: with dual_cd it multiplies C for each label's positive documents)"
            )
        if has_penalty:
            raise ConfigError(
                "hierarchy.recursive_penalty applies to the gradient solver; set it to 0 "
                "with solver dual_cd"
            )

    def _selected_columns(self) -> np.ndarray:
        """The labels whose dev micro-F1 judges an epoch (eval.selection_level)."""
        level = self.sections["eval"].selection_level
        everything = np.ones(len(self.label_space.labels), dtype=bool)
        if level == 0:
            return everything
        if not self.label_space.hierarchical:
            raise ConfigError(
                f"eval.selection_level = {level} needs a hierarchy; use 0 for a flat task"
            )
        levels = self.label_space.levels
        if level < 0 or not (levels == level).any():
            raise ConfigError(
                f"eval.selection_level = {level} is not a level of this hierarchy; its levels "
                f"are {sorted(set(levels.tolist()))} (or 0 for all labels)"
            )
        return levels == level

    def _documents(self, texts, labels, role: str) -> list[Document]:
        if isinstance(texts, str) or not isinstance(texts, Sequence):
            raise InputError(f"{role} texts must be a list of strings or Documents")
        if texts and isinstance(texts[0], Document):
            documents = [dataclasses.replace(d) for d in texts]
            if labels is not None:
                for document, label in zip(documents, labels, strict=True):
                    document.labels = self._label_list(label)
        else:
            documents = documents_from_texts(list(texts))
            if labels is None:
                raise InputError(f"{role} labels are missing")
            if len(labels) != len(documents):
                raise InputError(
                    f"{len(documents)} {role} texts but {len(labels)} label lists; "
                    "give one per text"
                )
            for document, label in zip(documents, labels, strict=True):
                document.labels = self._label_list(label)
        if not documents:
            raise InputError(f"the {role} data is empty")
        if not self.multi_label:
            for i, document in enumerate(documents):
                if len(document.labels) != 1:
                    raise InputError(
                        f"{role} document {i} has {len(document.labels)} labels; a multi-class "
                        "classifier needs exactly one (use multi_label=True for label sets)"
                    )
        return documents

    def _label_list(self, label) -> list[str]:
        if isinstance(label, str):
            return [label]
        return [str(x) for x in label]

    def _taxonomy(self) -> Taxonomy | None:
        if self.hierarchy is None or self.hierarchy is False:
            return None
        if isinstance(self.hierarchy, Taxonomy):
            return self.hierarchy
        if self.hierarchy is True:
            return None  # built from A--B--C paths in the labels
        return Taxonomy.read_tsv(self.hierarchy)

    def _hold_out(self, documents: list[Document]) -> tuple[list[Document], list[Document]]:
        fraction = self.sections["train"].validation_fraction
        n_dev = round(len(documents) * fraction)
        if n_dev < 1 or len(documents) - n_dev < 1:
            return documents, documents  # too small to split: select on the training data
        order = np.random.default_rng(self.sections["train"].seed).permutation(len(documents))
        dev_ids = set(order[:n_dev].tolist())
        train = [d for i, d in enumerate(documents) if i not in dev_ids]
        dev = [d for i, d in enumerate(documents) if i in dev_ids]
        return train, dev

    def _make_featurizer(self, cls, documents: list[Document]):
        feature = self.sections["feature"]
        if getattr(cls, "uses_pretrained_tokenizer", False):
            return cls.make_featurizer(self.encoder_params, feature.max_tokens)
        from septet.textclass.features import VocabularyFeaturizer

        featurizer = VocabularyFeaturizer(feature.fields, feature.max_tokens)
        featurizer.fit(
            documents, min_count=feature.min_token_count, max_size=feature.max_vocab_size
        )
        return featurizer

    def _parent_ids(self) -> list[int]:
        space = self.label_space
        return [
            -1
            if space.taxonomy.parent_of[label] == ROOT
            else space.index[space.taxonomy.parent_of[label]]
            for label in space.labels
        ]

    def _fingerprint(self, n_train: int, n_dev: int) -> str:
        described = {
            "params": {k: repr(v) for k, v in self.get_params().items()},
            "labels": self.label_space.labels,
            "vocab": self.featurizer.vocab_size,
            "sizes": [n_train, n_dev],
        }
        return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()

    # -- prediction -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.model is None:
            raise InputError("this TextClassifier is not trained yet; call fit() or load() first")

    def _probabilities(self, sequences) -> np.ndarray:
        from septet.common.device import choose_device
        from septet.textclass.trainer import apply_threads, predict_probabilities

        device = choose_device(self.sections["train"].device)
        apply_threads(self.sections["train"].num_threads)
        self.model.to(device)
        return predict_probabilities(
            self.model,
            sequences,
            self.sections["train"].eval_batch_size,
            device,
            single_label=not self.multi_label,
        )

    def decode_probabilities(
        self, probabilities: np.ndarray, thresholds: np.ndarray | None = None
    ) -> np.ndarray:
        """0/1 predictions from probabilities: the configured decoding, the tuned thresholds
        (or these ``thresholds``) and (hierarchies) ancestor closure."""
        from septet.textclass.decoding import decode
        from septet.textclass.hierarchy import add_ancestors

        evaluation = self.sections["eval"]
        method = "argmax" if not self.multi_label else evaluation.decoding
        if thresholds is None:
            thresholds = self.thresholds if self.thresholds is not None else evaluation.threshold
        predictions = decode(
            probabilities, method=method, thresholds=thresholds, top_k=evaluation.top_k
        )
        if (
            self.label_space.hierarchical
            and self.multi_label
            and self.sections["hierarchy"].consistent_decoding
        ):
            predictions = add_ancestors(predictions, self._ancestors())
        return predictions

    def _ancestors(self) -> np.ndarray:
        if getattr(self, "_ancestor_cache", None) is None:
            self._ancestor_cache = self.label_space.ancestor_matrix()
        return self._ancestor_cache

    def _as_documents(self, texts) -> list[Document]:
        if isinstance(texts, str):
            raise InputError("give a list of texts, not one string")
        if len(texts) and isinstance(texts[0], Document):
            return list(texts)
        return documents_from_texts(list(texts))

    def predict_proba(self, texts: Sequence[str] | Sequence[Document]) -> np.ndarray:
        """Probabilities ``[texts, labels]``, columns in :attr:`classes_` order."""
        self._check_fitted()
        return self._probabilities(self.featurizer.transform(self._as_documents(texts)))

    def predict_matrix(self, texts: Sequence[str] | Sequence[Document]) -> np.ndarray:
        """0/1 predictions ``[texts, labels]`` after decoding."""
        return self.decode_probabilities(self.predict_proba(texts))

    def predict(self, texts: Sequence[str] | Sequence[Document]) -> list:
        """Label lists (multi-label) or one label per text (multi-class)."""
        matrix = self.predict_matrix(texts)
        decoded = [self.label_space.decode(row) for row in matrix]
        if not self.multi_label:
            return [labels[0] for labels in decoded]
        return decoded

    def evaluate(
        self,
        texts: Sequence[str] | Sequence[Document],
        labels: Sequence | None = None,
        *,
        ignore_labels: Sequence[str] = (),
        with_per_label: bool = True,
    ) -> dict:
        """Metrics on labelled data: flat, per level (hierarchies) and per label. Columns whose
        label matches a glob in ``ignore_labels`` are left out of the scores."""
        from septet.textclass.metrics import evaluate

        self._check_fitted()
        documents = self._documents(texts, labels, "evaluation")
        truth = self.label_space.to_matrix([d.labels for d in documents])
        predictions = self.predict_matrix(documents)
        keep = np.array(
            [
                not any(fnmatch.fnmatchcase(label, p) for p in ignore_labels)
                for label in self.label_space.labels
            ]
        )
        names = [label for label, k in zip(self.label_space.labels, keep, strict=True) if k]
        levels = self.label_space.levels[keep] if self.label_space.hierarchical else None
        return evaluate(
            truth[:, keep], predictions[:, keep], names, levels, with_per_label=with_per_label
        )

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> Path:
        """Write the trained model to folder ``path`` (model.safetensors + textclass.json),
        atomically: a crash leaves the old folder or the new one, never a mix."""
        from safetensors.torch import save_file

        from septet.common.atomic import atomic_directory

        self._check_fitted()
        with atomic_directory(path) as staging:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            save_file(state, str(staging / WEIGHTS_FILE))
            meta = {
                "format": "septet.textclass",
                "version": FORMAT_VERSION,
                "encoder": self.encoder,
                "encoder_params": self.encoder_params,
                "multi_label": self.multi_label,
                "hierarchical": self.label_space.hierarchical,
                "options": {
                    name: value for name, value in self.get_params().items() if name in OPTIONS
                },
                "labels": self.label_space.to_dict(),
                "featurizer": self.featurizer.to_dict(),
                "thresholds": None if self.thresholds is None else self.thresholds.tolist(),
                "training": self.training_,
            }
            (staging / META_FILE).write_text(json.dumps(meta, ensure_ascii=False), "utf-8")
            for name in (WEIGHTS_FILE, META_FILE):
                with open(staging / name, "rb") as handle:
                    os.fsync(handle.fileno())
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike, *, device: str | None = None) -> TextClassifier:
        """Load a folder written by :meth:`save`; every weight's name and shape is checked."""
        from safetensors.torch import load_file

        from septet.textclass.encoders.base import encoder_class
        from septet.textclass.model import build_model

        folder = Path(path)
        meta = read_saved_meta(folder, META_FILE, "septet.textclass", "TextClassifier")
        options = dict(meta["options"])
        if device is not None:
            options["device"] = device
        model = cls(
            meta["encoder"],
            hierarchy=True if meta["hierarchical"] else None,
            multi_label=meta["multi_label"],
            encoder_params=meta["encoder_params"],
            **options,
        )
        model.label_space = LabelSpace.from_dict(meta["labels"])
        model.hierarchy = model.label_space.taxonomy if meta["hierarchical"] else None
        encoder = encoder_class(meta["encoder"])
        if meta["featurizer"]["kind"] == "vocabulary":
            from septet.textclass.features import VocabularyFeaturizer

            model.featurizer = VocabularyFeaturizer.from_dict(meta["featurizer"])
        else:
            model.featurizer = encoder.featurizer_from_dict(meta["featurizer"])
        model.model = build_model(
            encoder.registry_name,
            model.featurizer.vocab_size,
            meta["encoder_params"],
            model.label_space.levels,
            model._parent_ids(),
        )
        state = load_file(str(folder / WEIGHTS_FILE))
        check_state_dict(model.model.state_dict(), state, folder / WEIGHTS_FILE)
        model.model.load_state_dict(state)
        model.model.eval()
        thresholds = meta.get("thresholds")
        model.thresholds = None if thresholds is None else np.asarray(thresholds, np.float32)
        model.training_ = meta.get("training", {})
        return model


def check_state_dict(expected: dict, found: dict, where: Path) -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped weights."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    shapes = sorted(
        f"{k} (file {tuple(found[k].shape)}, model {tuple(expected[k].shape)})"
        for k in set(expected) & set(found)
        if tuple(found[k].shape) != tuple(expected[k].shape)
    )
    problems = []
    for title, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shapes)):
        if items:
            problems.append(
                f"{title}: {', '.join(items[:10])}" + (" ..." if len(items) > 10 else "")
            )
    if problems:
        raise CheckpointError(f"{where} does not fit the model; " + "; ".join(problems))


def read_saved_meta(folder: Path, file_name: str, format_name: str, what: str) -> dict:
    """The JSON description of a saved folder, checked to be ``format_name`` at this
    ``FORMAT_VERSION``; anything else is a CheckpointError that names the file."""
    meta_path = folder / file_name
    if not meta_path.is_file():
        raise CheckpointError(f"{folder} is not a saved {what} (no {file_name})")
    try:
        meta = json.loads(meta_path.read_text("utf-8"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{meta_path} is not valid JSON: {error}") from None
    if meta.get("format") != format_name or meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_path} is not a version-{FORMAT_VERSION} {what} folder")
    return meta
