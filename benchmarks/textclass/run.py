"""textclass benchmark: the frozen debtags split (shared/data/debtags), test set, thresholds
tuned on dev.

Systems, side by side in this one script:
- septet encoders FastText, TextCNN, TextRNN, TextRCNN, DPCNN, Transformer, HMCN and the
  fine-tuned MiniLM, each flat (tags only) and hierarchical (facets + tags, recursive
  regularisation, hierarchy-consistent decoding);
- TF-IDF (1-2-grams, sublinear) + one-vs-rest LinearSVC (C=0.5), scikit-learn: at its default
  decision threshold (the reference configuration, micro-F1 0.587) and with per-label
  thresholds tuned on dev like every other system;
- fastText (PyPI ``fasttext``, one-vs-all loss, word bigrams), thresholds tuned on dev.

Every system is scored in the same two-level label space: predicted tags imply their facet
(for flat systems that is how facet-level scores exist at all). Metrics: micro-F1, macro-F1 as
the mean of per-label F1, and macro-F1 as NeuralClassifier defines it (harmonic mean of
macro-precision and macro-recall), for tags (level 2), facets (level 1) and all labels; once
with every label and once leaving out the ``::TODO`` placeholder tags.

Budget: the machine has 2 cores shared with other jobs, so each neural run trains with one
thread for at most ``--budget`` seconds of CPU time (MiniLM: ``--minilm-budget``), which
does not shrink when the machine is busy, up to ``--epochs`` epochs with early stopping; the
cap may cut an epoch short, and the training table says how many epochs and documents each run
saw. Several copies of the script may run at once on different ``--systems``.
Finished runs are cached in benchmarks/results/textclass-runs.json (``--cache``; keyed by
their settings and device), so the script can be stopped and rerun to continue; ``--fresh``
recomputes everything.

On a GPU (``--device cuda``) CPU seconds say little, so ``--epochs-only`` drops the budgets:
each arm trains its planned epochs (``--epochs NAME=N`` or ``--epochs all=N`` to plan more),
with early stopping, under an optional wall-clock cap per run (``--max-seconds``). Every run
records the device it trained on (e.g. ``cuda (NVIDIA H100 80GB HBM3)``); the device is part
of the cache key and a column of the tables whenever a run did not train on the CPU.

    python benchmarks/textclass/run.py [--systems TextCNN,SVM] [--modes flat,hierarchical]
    python benchmarks/textclass/run.py --device cuda --epochs-only --epochs all=10 \
        --data .gpu/debtags --cache out/runs.json --results-dir out --systems TextRNN
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from septet.common.atomic import atomic_write_json
from septet.common.report import write_benchmark_results
from septet.textclass.classifier import TextClassifier
from septet.textclass.data import read_documents, tokenize
from septet.textclass.decoding import decode, tune_thresholds
from septet.textclass.hierarchy import add_ancestors
from septet.textclass.metrics import summary_scores
from septet.textclass.taxonomy import Taxonomy
from septet.textclass.vocabulary import LabelSpace

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "debtags"
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "textclass-runs.json"
BASELINES = ["SVM", "fastText"]
MODES = ["flat", "hierarchical"]

# Each neural arm: the encoder's hyper-parameters (NeuralClassifier-like sizes, trimmed for one
# CPU core), its training overrides, the epochs its learning-rate schedule is planned over and
# its CPU-second budget. Epochs are chosen so that the whole schedule (warm-up, linear decay
# to 0) fits the budget at the speed measured on an idle core; an arm that the budget still
# cuts short says so in the training table. Order = run order (most promising first).
ARMS = {
    "FastText": {
        "params": {"embedding_dim": 128, "bigram_buckets": 100_000},
        # A linear model over averaged embeddings wants a larger step; it overfits after
        # about 5 epochs (dev micro-F1 falls), and sees whole descriptions.
        "training": {"learning_rate": 0.05, "max_tokens": 256},
        "epochs": 5,
        "budget": 150,
    },
    "TextCNN": {
        "params": {"embedding_dim": 128, "num_filters": 128, "kernel_sizes": [2, 3, 4]},
        "training": {},
        "epochs": 6,
        "budget": 300,
    },
    "DPCNN": {
        "params": {"embedding_dim": 128, "num_filters": 128},
        "training": {},
        "epochs": 3,
        "budget": 180,
    },
    "TextRNN": {
        "params": {"embedding_dim": 128, "hidden_dim": 96, "pooling": "attention"},
        "training": {},
        "epochs": 2,
        "budget": 220,
    },
    "TextRCNN": {
        "params": {"embedding_dim": 128, "hidden_dim": 96, "projection_dim": 256},
        "training": {},
        "epochs": 2,
        "budget": 220,
    },
    "Transformer": {
        "params": {
            "embedding_dim": 128,
            "num_layers": 2,
            "num_heads": 4,
            "feedforward_dim": 256,
        },
        "training": {},
        "epochs": 2,
        "budget": 220,
    },
    "HMCN": {
        "params": {"embedding_dim": 128, "hidden_dim": 96, "global_dim": 384, "local_dim": 384},
        "training": {},
        "epochs": 2,
        "budget": 220,
    },
    "MiniLM": {
        "params": {"encoder_learning_rate": 1e-4},
        "training": {"batch_size": 32, "learning_rate": 0.005, "max_tokens": 48},
        "epochs": 1,
        "budget": 45,
    },
    # Variants beyond the table (flat only): positive examples weighed by the square
    # root of each label's negative/positive ratio, for the rare labels (macro-F1).
    "FastText-balanced": {
        "encoder": "FastText",
        "modes": ["flat"],
        "params": {"embedding_dim": 128, "bigram_buckets": 100_000},
        "training": {"learning_rate": 0.05, "max_tokens": 256, "positive_weight_power": 0.5},
        "epochs": 5,
        "budget": 150,
    },
    "TextCNN-balanced": {
        "encoder": "TextCNN",
        "modes": ["flat"],
        "params": {"embedding_dim": 128, "num_filters": 128, "kernel_sizes": [2, 3, 4]},
        "training": {"positive_weight_power": 0.5},
        "epochs": 6,
        "budget": 300,
    },
    # Beyond NeuralClassifier (session 3): a linear model over TF-IDF word and bigram
    # features; septet's own dual coordinate descent solves its one-vs-rest L2 squared-hinge
    # SVMs (one pass over the data per "epoch"), judged on dev and thresholded like every
    # septet model. (Trained by gradient with bce instead, it stalled at dev micro-F1 0.555:
    # without L2 its rare n-grams overfit or, at small steps, never grow.)
    "NGramLinear": {
        "modes": ["flat"],
        # C chosen on dev micro-F1 (best pass) from 0.25, 0.5, 1, 2: 0.6071, 0.6145, 0.6154,
        # 0.6156 (the SVM peer keeps its reference C = 0.5).
        "params": {"bigram_buckets": 200_000, "solver": "dual_cd", "c": 2.0},
        # Dev micro-F1 wobbles by +-0.01 from pass to pass while the solver converges, so
        # wait 5 passes, not 2, for a better one.
        "training": {"max_tokens": 512, "early_stopping": 5},
        "epochs": 20,
        "budget": 400,
    },
    # Hierarchical mode judged on the tags: the best epoch by the dev micro-F1 of the tags
    # (level 2), and each level's thresholds tuned for that level's own micro-F1.
    "FastText-levels": {
        "encoder": "FastText",
        "label": "FastText (tag-level epochs, per-level thresholds)",
        "modes": ["hierarchical"],
        "params": {"embedding_dim": 128, "bigram_buckets": 100_000},
        "training": {
            "learning_rate": 0.05,
            "max_tokens": 256,
            "selection_level": 2,
            "thresholds_per_level": True,
        },
        "epochs": 5,
        "budget": 150,
    },
    "TextCNN-levels": {
        "encoder": "TextCNN",
        "label": "TextCNN (tag-level epochs, per-level thresholds)",
        "modes": ["hierarchical"],
        "params": {"embedding_dim": 128, "num_filters": 128, "kernel_sizes": [2, 3, 4]},
        "training": {"selection_level": 2, "thresholds_per_level": True},
        "epochs": 6,
        "budget": 300,
    },
    # NGramLinear over facets + tags: the SVMs of the facets too, decoded consistently, judged
    # and thresholded per level like the *-levels arms (no recursive penalty: dual_cd has none).
    "NGramLinear-levels": {
        "encoder": "NGramLinear",
        "label": "NGramLinear (tag-level passes, per-level thresholds)",
        "modes": ["hierarchical"],
        "params": {"bigram_buckets": 200_000, "solver": "dual_cd", "c": 2.0},
        "training": {
            "max_tokens": 512,
            "early_stopping": 5,
            "recursive_penalty": 0.0,
            "selection_level": 2,
            "thresholds_per_level": True,
        },
        "epochs": 20,
        "budget": 400,
    },
    # A TextEnsemble: both members trained here exactly as in their own arms (same seed),
    # probabilities averaged with equal weights, and then with the weights tuned on dev
    # (grid of 0.1; each mix with its own thresholds), thresholds tuned on dev.
    "Ensemble": {
        "members": ["TextCNN", "NGramLinear"],
        "label": "ensemble TextCNN + NGramLinear",
        "modes": ["flat"],
        "tune_weights": True,
    },
}
for _arm in ("TextRNN", "TextRCNN", "Transformer", "HMCN"):
    ARMS[_arm]["budget"] = 100
    ARMS[_arm]["epochs"] = 1
NEURAL = list(ARMS)


def arm_modes(system: str, modes: list[str]) -> list[str]:
    """The modes a system runs in: baselines are flat; variants name theirs."""
    if system not in NEURAL:
        return ["flat"]
    return [m for m in modes if m in ARMS[system].get("modes", MODES)]


def system_label(system: str) -> str:
    arm = ARMS[system]
    if "label" in arm:
        return f"septet {arm['label']}"
    if "encoder" not in arm:
        return f"septet {system}"
    power = arm["training"].get("positive_weight_power")
    return f"septet {arm['encoder']} (positive weights ^{power:g})"


TRAINING = {
    "batch_size": 64,
    "learning_rate": 0.004,
    "max_tokens": 128,
    "min_token_count": 2,
    "max_vocab_size": 50_000,
    "early_stopping": 2,
    "num_threads": 1,
    "seed": 42,
    "eval_batch_size": 256,
    "threshold_objective": "micro",
    "threshold_min_support": 5,
}


def load_split(folder: Path, name: str, limit: int):
    documents = read_documents(folder / f"{name}.jsonl.gz", "plain")
    return documents[:limit] if limit else documents


class Scorer:
    """Closes predictions over the debtags taxonomy and scores them per level."""

    def __init__(self, taxonomy: Taxonomy, test_labels: list[list[str]]):
        self.space = LabelSpace(taxonomy, hierarchical=True)
        self.ancestors = self.space.ancestor_matrix()
        self.truth = self.space.to_matrix(test_labels)
        self.levels = self.space.levels
        self.todo = np.array([label.endswith("::TODO") for label in self.space.labels])

    def full_matrix(self, labels: list[str], predictions: np.ndarray) -> np.ndarray:
        """Predictions over some labels -> the whole space, ancestors added."""
        full = np.zeros((predictions.shape[0], len(self.space)), dtype=np.int8)
        columns = [self.space.index[label] for label in labels]
        full[:, columns] = predictions
        return add_ancestors(full, self.ancestors)

    def score(self, predicted: np.ndarray) -> dict:
        out = {}
        for todo_name, keep in (
            ("with_todo", np.ones_like(self.todo)),
            ("without_todo", ~self.todo),
        ):
            scores = {}
            for level_name, level_mask in (
                ("tags", self.levels == 2),
                ("facets", self.levels == 1),
                ("all", np.ones_like(self.todo)),
            ):
                columns = keep & level_mask
                scores[level_name] = summary_scores(self.truth[:, columns], predicted[:, columns])
            out[todo_name] = scores
        return out


def arm_settings(system: str, args) -> dict:
    """The arm as this invocation runs it: ``--budget-scale``, ``--budget NAME=S``,
    ``--epochs NAME=N`` and ``--epochs-only`` (budget 0 = none) applied."""
    arm = dict(ARMS[system])
    if "members" in arm:  # an ensemble: its members' arms say how they train
        return arm
    arm["budget"] = float(args.budgets.get(system, arm["budget"] * args.budget_scale))
    if args.epochs_only:
        arm["budget"] = 0.0
    arm["epochs"] = int(args.epochs.get(system, args.epochs.get("all", arm["epochs"])))
    return arm


def describe_device(choice: str) -> str:
    """``cpu``, or the accelerator's kind and name, e.g. ``cuda (NVIDIA H100 80GB HBM3)``."""
    from septet.common.device import choose_device

    device = choose_device(choice)
    if device.type == "cuda":
        import torch

        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type


def make_classifier(system: str, mode: str, taxonomy: Taxonomy, args):
    """The arm's TextClassifier (untrained) and its settings."""
    arm = arm_settings(system, args)
    options = {**TRAINING, **arm["training"], "device": args.device, "num_threads": args.threads}
    options["max_cpu_seconds"] = arm["budget"]
    # A wall-clock safety net in case something else lands on this run's core.
    options["max_seconds"] = args.max_seconds or 2 * arm["budget"]
    classifier = TextClassifier(
        arm.get("encoder", system),
        hierarchy=taxonomy if mode == "hierarchical" else None,
        labels=None if mode == "hierarchical" else [t for t in taxonomy.labels if "::" in t],
        encoder_params=arm["params"],
        epochs=arm["epochs"],
        **options,
    )
    return classifier, arm, options


def run_septet(encoder: str, mode: str, data, scorer: Scorer, taxonomy: Taxonomy, args) -> dict:
    if "members" in ARMS[encoder]:
        return run_ensemble(encoder, mode, data, scorer, taxonomy, args)
    train, dev, test = data
    classifier, arm, options = make_classifier(encoder, mode, taxonomy, args)
    started = time.perf_counter()
    classifier.fit(train, dev=(dev, None))
    train_seconds = time.perf_counter() - started
    test_probabilities = classifier.predict_proba(test)
    predicted = scorer.full_matrix(
        classifier.classes_, classifier.decode_probabilities(test_probabilities)
    )
    info = classifier.training_
    main_row = {
        "system": system_label(encoder),
        "mode": mode,
        "device": args.device_label,
        "train_seconds": train_seconds,
        "train_docs_per_second": info["documents_per_second"],
        "train_cpu_seconds": info["cpu_seconds"],
        "epochs": len(info["history"]),
        "planned_epochs": arm["epochs"],
        "budget_cpu_seconds": arm["budget"] or None,
        "max_seconds": options["max_seconds"] or None,
        "documents_seen": sum(h["documents"] for h in info["history"]),
        "best_epoch": info["best_epoch"],
        "best_dev_micro_f1": info["best_dev_micro_f1"],
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "history": info["history"],
        "stopped_because": info["stopped_because"],
        "scores": scorer.score(predicted),
    }
    if arm.get("encoder", encoder) == "MiniLM":
        return [main_row]  # one more pass over dev would cost MiniLM minutes
    # The same model with per-label-F1 thresholds, as the peers are also shown.
    by_label = classifier.tune_thresholds(
        classifier.predict_proba(dev),
        classifier.label_space.to_matrix([d.labels for d in dev]),
        objective="label",
    )
    by_label = scorer.full_matrix(
        classifier.classes_, classifier.decode_probabilities(test_probabilities, by_label)
    )
    return [
        main_row,
        {
            **main_row,
            "system": f"{main_row['system']} (per-label F1 thresholds)",
            "threshold_objective": "label",
            "scores": scorer.score(by_label),
        },
    ]


def run_ensemble(system: str, mode: str, data, scorer: Scorer, taxonomy: Taxonomy, args):
    """A TextEnsemble of other arms, each trained here as in its own arm (same seed, so the
    same model on CPU), probabilities averaged, thresholds tuned on dev for the average."""
    from septet.textclass.ensemble import TextEnsemble

    train, dev, test = data
    arm = ARMS[system]
    built = [make_classifier(member, mode, taxonomy, args) for member in arm["members"]]
    ensemble = TextEnsemble([classifier for classifier, _, _ in built], arm.get("weights"))
    started, cpu_started = time.perf_counter(), time.process_time()
    ensemble.fit(train, dev=(dev, None))
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    infos = [member.training_ for member in ensemble.members]
    base = {
        "mode": mode,
        "device": args.device_label,
        "train_seconds": seconds,
        "train_cpu_seconds": cpu_seconds,
        "train_docs_per_second": sum(sum(h["documents"] for h in i["history"]) for i in infos)
        / seconds,
        "documents_seen": sum(sum(h["documents"] for h in i["history"]) for i in infos),
        "epochs": " + ".join(str(len(i["history"])) for i in infos),
        "planned_epochs": " + ".join(str(a["epochs"]) for _, a, _ in built),
        "budget_cpu_seconds": sum(a["budget"] for _, a, _ in built) or None,
        "best_epoch": " + ".join(str(i["best_epoch"]) for i in infos),
        "stopped_because": "; ".join(i["stopped_because"] for i in infos),
        "members": [
            {"system": member, **info} for member, info in zip(arm["members"], infos, strict=True)
        ],
        "finished_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    first = ensemble.members[0]
    targets = first.label_space.to_matrix([d.labels for d in dev])
    rows = []
    for tuned in (False, True) if arm.get("tune_weights") else (False,):
        if tuned:
            ensemble.tune(dev, tune_weights=True)
        mix = "/".join(f"{w:g}" for w in ensemble.weights)
        name = f"{system_label(system)} ({'weights tuned on dev' if tuned else 'mean'}: {mix})"
        test_probabilities = ensemble.predict_proba(test)
        by_label = first.tune_thresholds(ensemble.predict_proba(dev), targets, objective="label")
        row = {
            **base,
            "system": name,
            "weights": ensemble.weights.tolist(),
            "weight_tuning": getattr(ensemble, "tuning_", None) if tuned else None,
            "scores": scorer.score(
                scorer.full_matrix(
                    ensemble.classes_, ensemble.decode_probabilities(test_probabilities)
                )
            ),
        }
        rows += [
            row,
            {
                **row,
                "system": f"{name} (per-label F1 thresholds)",
                "threshold_objective": "label",
                "scores": scorer.score(
                    scorer.full_matrix(
                        ensemble.classes_, first.decode_probabilities(test_probabilities, by_label)
                    )
                ),
            },
        ]
    return rows


def _tags_matrix(label_lists, tags):
    index = {tag: i for i, tag in enumerate(tags)}
    matrix = np.zeros((len(label_lists), len(tags)), dtype=np.int8)
    for row, labels in enumerate(label_lists):
        for label in labels:
            if label in index:
                matrix[row, index[label]] = 1
    return matrix


def run_svm(data, scorer: Scorer) -> list[dict]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.svm import LinearSVC

    train, dev, test = data
    tags = sorted({label for d in train for label in d.labels})
    started, cpu_started = time.perf_counter(), time.process_time()
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform([d.raw_text for d in train])
    # int64: scikit-learn 1.9 mis-reads an int8 indicator matrix here (near-zero F1).
    y_train = _tags_matrix([d.labels for d in train], tags).astype(np.int64)
    model = OneVsRestClassifier(LinearSVC(C=0.5)).fit(x_train, y_train)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    dev_scores = model.decision_function(vectorizer.transform([d.raw_text for d in dev]))
    test_scores = model.decision_function(vectorizer.transform([d.raw_text for d in test]))
    y_dev = _tags_matrix([d.labels for d in dev], tags)
    base = {
        "mode": "flat",
        "train_seconds": seconds,
        "train_docs_per_second": len(train) / seconds,
        "train_cpu_seconds": cpu_seconds,
        "epochs": None,
    }
    rows = [
        {
            **base,
            "system": "TF-IDF + LinearSVC (default threshold)",
            "scores": scorer.score(scorer.full_matrix(tags, (test_scores > 0).astype(np.int8))),
        }
    ]
    # A monotone map of SVM margins into (0, 1), so the same threshold grid applies.
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    rows += tuned_rows(
        "TF-IDF + LinearSVC", base, sigmoid(dev_scores), y_dev, sigmoid(test_scores), tags, scorer
    )
    return rows


def tuned_rows(name, base, dev_probabilities, y_dev, test_probabilities, tags, scorer) -> list:
    """A peer's rows with thresholds tuned on dev exactly as septet tunes its own
    (objective micro), and with per-label-F1 thresholds (objective label, as session 1 ran
    the peers): whichever of the two scores higher is the peer's number to beat."""
    rows = []
    for objective, label in (("micro", "tuned on dev"), ("label", "per-label F1 thresholds")):
        thresholds = tune_thresholds(
            dev_probabilities,
            y_dev,
            min_support=TRAINING["threshold_min_support"],
            objective=objective,
        )
        predictions = decode(test_probabilities, thresholds=thresholds)
        rows.append(
            {
                **base,
                "system": f"{name} ({label})",
                "threshold_objective": objective,
                "scores": scorer.score(scorer.full_matrix(tags, predictions)),
            }
        )
    return rows


def run_fasttext(data, scorer: Scorer) -> list[dict]:
    try:
        import fasttext
    except ImportError:
        return [{"system": "fastText (PyPI)", "mode": "flat", "error": "not installed"}]
    train, dev, test = data

    def line(document) -> str:
        return " ".join(tokenize(document.raw_text)).replace("\n", " ")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train.txt"
        path.write_text(
            "\n".join(
                " ".join(f"__label__{label}" for label in d.labels) + " " + line(d) for d in train
            )
            + "\n"
        )
        started, cpu_started = time.perf_counter(), time.process_time()
        model = fasttext.train_supervised(
            str(path),
            epoch=25,
            lr=0.5,
            wordNgrams=2,
            dim=100,
            loss="ova",
            thread=1,
            seed=42,
            verbose=0,
        )
        seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    tags = [label.removeprefix("__label__") for label in model.get_labels()]
    index = {tag: i for i, tag in enumerate(tags)}

    def probabilities(documents) -> np.ndarray:
        out = np.zeros((len(documents), len(tags)), dtype=np.float32)
        labels, probs = model.predict([line(d) for d in documents], k=-1, threshold=0.0)
        for row, (names, values) in enumerate(zip(labels, probs, strict=True)):
            for name, value in zip(names, values, strict=True):
                out[row, index[name.removeprefix("__label__")]] = value
        return out

    y_dev = _tags_matrix([d.labels for d in dev], tags)
    base = {
        "mode": "flat",
        "train_seconds": seconds,
        "train_docs_per_second": 25 * len(train) / seconds,
        "train_cpu_seconds": cpu_seconds,
        "epochs": 25,
    }
    return tuned_rows(
        "fastText (PyPI)", base, probabilities(dev), y_dev, probabilities(test), tags, scorer
    )


def settings_key(system: str, mode: str, args) -> str:
    described = {
        "system": system,
        "mode": mode,
        "arm": arm_settings(system, args) if system in NEURAL else None,
        "training": TRAINING,
        "limit": args.limit,
    }
    if system in NEURAL and "members" in ARMS[system]:
        described["members"] = [arm_settings(m, args) for m in ARMS[system]["members"]]
    if args.device_label != "cpu":  # CPU keys stay as before, so cached CPU runs still count
        described["device"] = args.device_label
    if args.max_seconds:
        described["max_seconds"] = args.max_seconds
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    return f"{system}|{mode}|{digest}"


def device_column(runs: list[dict], run: dict) -> dict:
    """``{"device": ...}`` when any run trained off the CPU, else nothing (CPU-only tables)."""
    if all(r.get("device", "cpu") == "cpu" for r in runs):
        return {}
    return {"device": run.get("device", "cpu")}


def table_rows(runs: list[dict], todo: str) -> list[dict]:
    rows = []
    for run in runs:
        if "scores" not in run:
            rows.append({"system": run["system"], "mode": run["mode"], "note": run.get("error")})
            continue
        s = run["scores"][todo]
        rows.append(
            {
                "system": run["system"],
                "mode": run["mode"],
                **device_column(runs, run),
                "tags micro-F1": s["tags"]["micro_f1"],
                "tags macro-F1 (mean)": s["tags"]["macro_f1"],
                "tags macro-F1 (NC)": s["tags"]["macro_f1_harmonic"],
                "facets micro-F1": s["facets"]["micro_f1"],
                "facets macro-F1 (mean)": s["facets"]["macro_f1"],
                "facets macro-F1 (NC)": s["facets"]["macro_f1_harmonic"],
                "all micro-F1": s["all"]["micro_f1"],
                "all macro-F1 (mean)": s["all"]["macro_f1"],
                "all macro-F1 (NC)": s["all"]["macro_f1_harmonic"],
            }
        )
    return rows


def _documents(run: dict) -> float:
    """Training documents processed (epochs x documents for the baselines)."""
    if run.get("documents_seen"):
        return float(run["documents_seen"])
    return run["train_docs_per_second"] * run["train_seconds"]


def training_rows(runs: list[dict]) -> list[dict]:
    return [
        {
            "system": run["system"],
            "mode": run["mode"],
            **device_column(runs, run),
            "train s": run.get("train_seconds"),
            "train CPU s": run.get("train_cpu_seconds"),
            "train docs/s": run.get("train_docs_per_second"),
            "train docs per CPU s": _documents(run) / run["train_cpu_seconds"]
            if run.get("train_cpu_seconds")
            else None,
            "CPU budget s": run.get("budget_cpu_seconds"),
            **({"wall cap s": run.get("max_seconds")} if run.get("device", "cpu") != "cpu" else {}),
            "epochs run / planned": f"{run['epochs']} / {run['planned_epochs']}"
            if run.get("planned_epochs")
            else run.get("epochs"),
            "best epoch": run.get("best_epoch"),
            "documents seen": run.get("documents_seen"),
            "stopped because": run.get("stopped_because"),
        }
        for run in runs
        if "scores" in run
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default=",".join(BASELINES + NEURAL))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument(
        "--budget-scale",
        type=float,
        default=1.0,
        help="multiply every neural arm's CPU-second budget (see ARMS) by this",
    )
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="NAME=SECONDS",
        help="one arm's CPU-second budget, e.g. --budget MiniLM=3600 (repeatable)",
    )
    parser.add_argument(
        "--epochs",
        action="append",
        default=[],
        metavar="NAME=N",
        help="plan N epochs for one arm, or all=N for every neural arm (repeatable)",
    )
    parser.add_argument(
        "--epochs-only",
        action="store_true",
        help="no CPU-second budgets: every arm trains its planned epochs (for GPU runs)",
    )
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=0.0,
        help="wall-clock cap on each neural run's training (default: twice its CPU budget)",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads per run")
    parser.add_argument("--data", default=str(DATA), help="folder of the debtags split")
    parser.add_argument(
        "--cache", default="", help="cached runs (default: RESULTS_DIR/textclass-runs.json)"
    )
    parser.add_argument("--limit", type=int, default=0, help="use only the first N documents")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs")
    parser.add_argument(
        "--report-only", action="store_true", help="write the tables from cached runs, run nothing"
    )
    parser.add_argument(
        "--any-settings",
        action="store_true",
        help="report each system and mode's latest cached run even if its settings differ",
    )
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    args.budgets = {}
    for item in args.budget:
        name, _, seconds = item.partition("=")
        if name not in NEURAL or not seconds.replace(".", "", 1).isdigit():
            parser.error(f"--budget takes NAME=SECONDS with NAME one of {', '.join(NEURAL)}")
        args.budgets[name] = float(seconds)
    args.epochs = dict(item.partition("=")[::2] for item in args.epochs)
    for name, count in args.epochs.items():
        if name not in [*NEURAL, "all"] or not count.isdigit() or int(count) < 1:
            parser.error(f"--epochs takes NAME=N (N >= 1) with NAME all or one of {NEURAL}")
    if args.device not in ("cpu", "cuda", "auto") and not args.device.startswith("cuda:"):
        parser.error(f"--device must be cpu, cuda or auto, not {args.device!r}")
    args.device_label = describe_device(args.device)
    data_dir = Path(args.data)
    if not (data_dir / "taxonomy.tsv").is_file():
        parser.error(f"{data_dir} holds no debtags split (taxonomy.tsv, *.jsonl.gz); see --data")
    systems = [s for s in args.systems.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    for system in systems:
        if system not in NEURAL + BASELINES:
            parser.error(f"unknown system {system!r}; choose from {', '.join(NEURAL + BASELINES)}")

    taxonomy = Taxonomy.read_tsv(data_dir / "taxonomy.tsv")
    data = tuple(load_split(data_dir, name, args.limit) for name in ("train", "dev", "test"))
    scorer = Scorer(taxonomy, [d.labels for d in data[2]])
    cache_path = Path(args.cache) if args.cache else Path(args.results_dir) / CACHE.name
    cache = {} if args.fresh or not cache_path.is_file() else json.loads(cache_path.read_text())

    def remember(key: str, runs: list[dict]) -> None:
        import fcntl

        # Under a lock, re-read first: another process of this script (one per core) may
        # have added runs meanwhile.
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = Path(tempfile.gettempdir()) / f"septet-{cache_path.stem}.lock"
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if cache_path.is_file():
                stored = json.loads(cache_path.read_text())
                cache.update({k: v for k, v in stored.items() if k != key})
            cache[key] = runs
            atomic_write_json(cache_path, cache)

    for system in systems:
        for mode in arm_modes(system, modes):
            key = settings_key(system, mode, args)
            if key in cache or args.report_only:
                continue
            print(f"running {system} ({mode})", file=sys.stderr, flush=True)
            if system == "SVM":
                runs = run_svm(data, scorer)
            elif system == "fastText":
                runs = run_fasttext(data, scorer)
            else:
                runs = run_septet(system, mode, data, scorer, taxonomy, args)
            remember(key, runs)

    if cache_path.is_file():  # include runs that a parallel process finished
        cache = json.loads(cache_path.read_text())
    # Baselines first, then each encoder with its variants beside it.
    bases = BASELINES + [n for n in NEURAL if "encoder" not in ARMS[n]]
    order = {
        name: bases.index(ARMS[name].get("encoder", name)) + 0.5 * ("encoder" in ARMS[name])
        if name in NEURAL
        else bases.index(name)
        for name in BASELINES + NEURAL
    }
    # Per system and mode: the run with this invocation's settings, else (--any-settings)
    # the latest cached one; the training table shows each run's own budget and epochs.
    latest: dict[tuple[str, str], tuple[str, list]] = {}
    for key, group in cache.items():
        system, mode = key.split("|")[:2]
        if system not in systems or mode not in arm_modes(system, modes):
            continue
        exact = key == settings_key(system, mode, args)
        if not (exact or args.any_settings):
            continue
        previous = latest.get((system, mode))
        if (
            previous is None
            or exact
            or group[0].get("finished_at", "") > previous[1][0].get("finished_at", "")
        ) and not (previous and previous[0] == settings_key(system, mode, args)):
            latest[(system, mode)] = (key, group)
    chosen = list(latest.values())
    chosen.sort(key=lambda item: (order[item[0].split("|")[0]], item[0].split("|")[1]))
    runs = [run for _, group in chosen for run in group]
    done = {(key.split("|")[0], key.split("|")[1]) for key, _ in chosen}
    missing = [
        f"{system} ({mode})"
        for system in systems
        for mode in arm_modes(system, modes)
        if (system, mode) not in done
    ]
    write_benchmark_results(
        "textclass",
        {
            "runs": runs,
            "missing": missing,
            "train": len(data[0]),
            "dev": len(data[1]),
            "test": len(data[2]),
            "arms": {name: arm_settings(name, args) for name in NEURAL},
            "training": TRAINING,
            "device": args.device_label,
            "epochs_only": args.epochs_only,
            "limit": args.limit,
        },
        {
            "debtags test, every label (thresholds tuned on dev)": table_rows(runs, "with_todo"),
            "debtags test, without ::TODO tags": table_rows(runs, "without_todo"),
            "training": training_rows(runs),
        },
        notes=NOTES
        + device_note(runs, args)
        + (f"\nNot run in this session's time: {', '.join(missing)}.\n" if missing else ""),
        results_dir=args.results_dir,
    )


def device_note(runs: list[dict], args) -> str:
    """Says which runs trained on an accelerator and how they were budgeted."""
    devices = sorted({run.get("device", "cpu") for run in runs} - {"cpu"})
    note = ""
    if devices:
        note += (
            f"\nThe device column says where each run trained: {', '.join(devices)} or cpu. "
            "Runs on an accelerator had no CPU budget: they trained their planned epochs "
            "(training table) with early stopping, under the wall cap shown, on a machine "
            "shared with other jobs; their CPU seconds are not comparable with the CPU runs'.\n"
        )
    if args.limit:
        note += f"\nSMOKE SETTING: only the first {args.limit} documents of each split.\n"
    return note


NOTES = """\
Scores on the frozen debtags test split. Every system's predicted tags imply their facet.
"macro-F1 (mean)" is the mean of per-label F1 (scikit-learn's macro); "macro-F1 (NC)" is
NeuralClassifier's: the harmonic mean of macro-precision and macro-recall. Labels of the
taxonomy with no test document count as 0 in the macro averages, for every system alike.
"tuned on dev": per-label thresholds chosen on dev for micro-F1, rare labels (< 5 dev
documents) sharing one threshold tuned on them pooled - the same procedure for septet and
the peers. Every system is also shown with per-label-F1 thresholds (objective "label", how
session 1 ran the peers; MiniLM left out, its extra dev pass costs minutes): they trade
micro-F1 for macro-F1, so compare rows with the same thresholds.
Neural runs: one CPU thread each, a CPU-second budget and a planned number of epochs per
arm (training table; the learning rate decays linearly to 0 over the planned epochs), early
stopping after 2 epochs without a better dev micro-F1, best epoch by dev micro-F1. A run
that the budget stopped before its planned epochs did not converge. Hyper-parameters were
chosen on dev micro-F1 with short probes (FastText: learning rate, epochs, max tokens;
NGramLinear: C).
NGramLinear (session 3): TF-IDF words and hashed bigrams under septet's own one-vs-rest
linear SVM (dual coordinate descent, one pass over the data per "epoch", best pass by dev
micro-F1, stopped after 5 passes without a better one). The ensemble trains TextCNN and
NGramLinear as in their own arms and averages their probabilities, with equal weights and
with weights tuned on dev (grid of 0.1, each mix with its own thresholds, best dev
micro-F1); its cost is both members' training.
Wall times count other jobs on a shared machine; CPU seconds are the fair cost.
"""


if __name__ == "__main__":
    main()
