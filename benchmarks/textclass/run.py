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
Finished runs are cached in benchmarks/results/textclass-runs.json
(keyed by their settings), so the script can be stopped and rerun to continue; ``--fresh``
recomputes everything.

    python benchmarks/textclass/run.py [--systems TextCNN,SVM] [--modes flat,hierarchical]
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
NEURAL = ["FastText", "TextCNN", "TextRNN", "TextRCNN", "DPCNN", "Transformer", "HMCN", "MiniLM"]
BASELINES = ["SVM", "fastText"]
MODES = ["flat", "hierarchical"]

# Hyper-parameters per encoder: NeuralClassifier-like sizes, trimmed for a 2-core CPU.
ENCODER_PARAMS = {
    "FastText": {"embedding_dim": 128, "bigram_buckets": 100_000},
    "TextCNN": {"embedding_dim": 128, "num_filters": 128, "kernel_sizes": [2, 3, 4]},
    "TextRNN": {"embedding_dim": 128, "hidden_dim": 96, "pooling": "attention"},
    "TextRCNN": {"embedding_dim": 128, "hidden_dim": 96, "projection_dim": 256},
    "DPCNN": {"embedding_dim": 128, "num_filters": 128},
    "Transformer": {"embedding_dim": 128, "num_layers": 2, "num_heads": 4, "feedforward_dim": 256},
    "HMCN": {"embedding_dim": 128, "hidden_dim": 96, "global_dim": 384, "local_dim": 384},
    "MiniLM": {},
}
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
    # The runs below were made with per-label F1 thresholds, before "micro" became the default.
    "threshold_objective": "label",
}
MINILM_TRAINING = {"batch_size": 32, "learning_rate": 0.002, "max_tokens": 64}
# FastText is a linear model over averaged embeddings: it wants a larger step.
LEARNING_RATES = {"FastText": 0.02}


def load_split(name: str, limit: int):
    documents = read_documents(DATA / f"{name}.jsonl.gz", "plain")
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


def run_septet(encoder: str, mode: str, data, scorer: Scorer, taxonomy: Taxonomy, args) -> dict:
    train, dev, test = data
    options = dict(TRAINING)
    if encoder == "MiniLM":
        options.update(MINILM_TRAINING)
    if encoder in LEARNING_RATES:
        options["learning_rate"] = LEARNING_RATES[encoder]
    options["max_cpu_seconds"] = float(args.minilm_budget if encoder == "MiniLM" else args.budget)
    options["max_seconds"] = 10 * options["max_cpu_seconds"]  # a safety net on a crowded machine
    classifier = TextClassifier(
        encoder,
        hierarchy=taxonomy if mode == "hierarchical" else None,
        labels=None if mode == "hierarchical" else [t for t in taxonomy.labels if "::" in t],
        encoder_params=ENCODER_PARAMS[encoder],
        epochs=args.epochs,
        **options,
    )
    started = time.perf_counter()
    classifier.fit(train, dev=(dev, None))
    train_seconds = time.perf_counter() - started
    predicted = scorer.full_matrix(classifier.classes_, classifier.predict_matrix(test))
    info = classifier.training_
    return {
        "system": f"septet {encoder}",
        "mode": mode,
        "train_seconds": train_seconds,
        "train_docs_per_second": info["documents_per_second"],
        "train_cpu_seconds": info["cpu_seconds"],
        "epochs": len(info["history"]),
        "documents_seen": sum(h["documents"] for h in info["history"]),
        "best_epoch": info["best_epoch"],
        "stopped_because": info["stopped_because"],
        "scores": scorer.score(predicted),
    }


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
    # A monotone map of SVM margins into (0, 1), so the same threshold grid applies.
    thresholds = tune_thresholds(
        1 / (1 + np.exp(-dev_scores)),
        y_dev,
        min_support=5,
        objective=TRAINING["threshold_objective"],
    )
    rows = []
    for name, predictions in (
        ("default threshold", (test_scores > 0).astype(np.int8)),
        ("tuned on dev", decode(1 / (1 + np.exp(-test_scores)), thresholds=thresholds)),
    ):
        rows.append(
            {
                "system": f"TF-IDF + LinearSVC ({name})",
                "mode": "flat",
                "train_seconds": seconds,
                "train_docs_per_second": len(train) / seconds,
                "train_cpu_seconds": cpu_seconds,
                "epochs": None,
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
    thresholds = tune_thresholds(
        probabilities(dev), y_dev, min_support=5, objective=TRAINING["threshold_objective"]
    )
    predictions = decode(probabilities(test), thresholds=thresholds)
    return [
        {
            "system": "fastText (PyPI, tuned on dev)",
            "mode": "flat",
            "train_seconds": seconds,
            "train_docs_per_second": 25 * len(train) / seconds,
            "train_cpu_seconds": cpu_seconds,
            "epochs": 25,
            "scores": scorer.score(scorer.full_matrix(tags, predictions)),
        }
    ]


def settings_key(system: str, mode: str, args) -> str:
    budget = args.minilm_budget if system == "MiniLM" else args.budget
    described = {
        "system": system,
        "mode": mode,
        "budget": budget if system in NEURAL else None,
        "epochs": args.epochs if system in NEURAL else None,
        "params": ENCODER_PARAMS.get(system),
        "training": TRAINING if system in NEURAL else None,
        "minilm": MINILM_TRAINING if system == "MiniLM" else None,
        "limit": args.limit,
        "threshold_objective": TRAINING["threshold_objective"],
    }
    if system in LEARNING_RATES:
        described["learning_rate"] = LEARNING_RATES[system]
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:12]
    return f"{system}|{mode}|{digest}"


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
            "train s": run.get("train_seconds"),
            "train CPU s": run.get("train_cpu_seconds"),
            "train docs/s": run.get("train_docs_per_second"),
            "train docs per CPU s": _documents(run) / run["train_cpu_seconds"]
            if run.get("train_cpu_seconds")
            else None,
            "epochs": run.get("epochs"),
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
    parser.add_argument("--budget", type=float, default=40.0, help="CPU seconds per neural run")
    parser.add_argument("--minilm-budget", type=float, default=120.0, help="CPU seconds")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N documents")
    parser.add_argument("--fresh", action="store_true", help="ignore cached runs")
    parser.add_argument(
        "--report-only", action="store_true", help="write the tables from cached runs, run nothing"
    )
    parser.add_argument("--results-dir", default=str(RESULTS))
    args = parser.parse_args(argv)
    systems = [s for s in args.systems.split(",") if s]
    modes = [m for m in args.modes.split(",") if m]
    for system in systems:
        if system not in NEURAL + BASELINES:
            parser.error(f"unknown system {system!r}; choose from {', '.join(NEURAL + BASELINES)}")

    taxonomy = Taxonomy.read_tsv(DATA / "taxonomy.tsv")
    data = tuple(load_split(name, args.limit) for name in ("train", "dev", "test"))
    scorer = Scorer(taxonomy, [d.labels for d in data[2]])
    cache_path = Path(args.results_dir) / CACHE.name
    cache = {} if args.fresh or not cache_path.is_file() else json.loads(cache_path.read_text())

    def remember(key: str, runs: list[dict]) -> None:
        # Re-read first: another process of this script may have added runs meanwhile.
        if cache_path.is_file():
            cache.update({k: v for k, v in json.loads(cache_path.read_text()).items() if k != key})
        cache[key] = runs
        atomic_write_json(cache_path, cache)

    for system in systems:
        for mode in modes if system in NEURAL else ["flat"]:
            key = settings_key(system, mode, args)
            if key in cache or args.report_only:
                continue
            print(f"running {system} ({mode})", file=sys.stderr, flush=True)
            if system == "SVM":
                runs = run_svm(data, scorer)
            elif system == "fastText":
                runs = run_fasttext(data, scorer)
            else:
                runs = [run_septet(system, mode, data, scorer, taxonomy, args)]
            remember(key, runs)

    if cache_path.is_file():  # include runs that a parallel process finished
        cache = json.loads(cache_path.read_text())
    order = {name: i for i, name in enumerate(BASELINES + NEURAL)}
    chosen = [
        (key, runs)
        for key, runs in cache.items()
        if key.split("|")[0] in systems
        and (key.split("|")[0] not in NEURAL or key.split("|")[1] in modes)
        and key == settings_key(key.split("|")[0], key.split("|")[1], args)
    ]
    chosen.sort(key=lambda item: (order[item[0].split("|")[0]], item[0].split("|")[1]))
    runs = [run for _, group in chosen for run in group]
    done = {(key.split("|")[0], key.split("|")[1]) for key, _ in chosen}
    missing = [
        f"{system} ({mode})"
        for system in systems
        for mode in (modes if system in NEURAL else ["flat"])
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
            "budget_seconds": args.budget,
            "minilm_budget_seconds": args.minilm_budget,
            "epochs": args.epochs,
            "training": TRAINING,
            "minilm_training": MINILM_TRAINING,
            "encoder_params": ENCODER_PARAMS,
        },
        {
            "debtags test, every label (thresholds tuned on dev)": table_rows(runs, "with_todo"),
            "debtags test, without ::TODO tags": table_rows(runs, "without_todo"),
            "training": training_rows(runs),
        },
        notes=NOTES.format(budget=args.budget, minilm=args.minilm_budget, epochs=args.epochs)
        + (f"\nNot run in this session's time: {', '.join(missing)}.\n" if missing else ""),
        results_dir=args.results_dir,
    )


NOTES = """\
Scores on the frozen debtags test split. Every system's predicted tags imply their facet.
"macro-F1 (mean)" is the mean of per-label F1 (scikit-learn's macro); "macro-F1 (NC)" is
NeuralClassifier's: the harmonic mean of macro-precision and macro-recall. Labels of the
taxonomy with no test document count as 0 in the macro averages, for every system alike.
Neural runs: one CPU thread, at most {budget:g} s of CPU time for training each ({minilm:g} s
for MiniLM), at most {epochs} epochs, early stopping after 2 epochs without a better dev
micro-F1. The budget, not convergence, ended most runs (see the training table): these are
small-budget numbers, not what the encoders reach when trained to convergence. Wall times
are inflated by other jobs on the 2 shared cores; CPU seconds are the fairer cost.
"""


if __name__ == "__main__":
    main()
