"""The textclass demo: a FastText classifier learns BBC News's five classes in seconds."""

from __future__ import annotations

import json
import time
from pathlib import Path

from septet.common.atomic import atomic_write_text
from septet.common.demo import DemoReport


def run_demo(out_dir: Path) -> DemoReport:
    """Train a small FastText on 4/5 of BBC News, score the held-out fifth, save the model."""
    from septet.textclass.classifier import TextClassifier
    from septet.textclass.datasets.bbc_news import bbc_news_split

    (train_texts, train_labels), (test_texts, test_labels) = bbc_news_split()
    started = time.perf_counter()
    classifier = TextClassifier(
        "FastText",
        multi_label=False,
        encoder_params={"embedding_dim": 64, "bigram_buckets": 20000},
        epochs=4,
        batch_size=32,
        learning_rate=0.02,
        max_tokens=150,
        seed=7,
        num_threads=1,  # one thread is fastest for a model this small, and on a busy machine
    )
    classifier.fit(train_texts, train_labels)
    seconds = time.perf_counter() - started
    metrics = classifier.evaluate(test_texts, test_labels, with_per_label=True)
    model_dir = classifier.save(Path(out_dir) / "bbc-fasttext")
    metrics_path = Path(out_dir) / "bbc-metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=2) + "\n")
    accuracy = metrics["flat"]["micro_f1"]  # one label per article: micro-F1 is accuracy
    return DemoReport(
        summary=(
            f"FastText on BBC News ({len(train_texts)} train / {len(test_texts)} test articles, "
            f"5 classes): accuracy {accuracy:.3f}, macro-F1 {metrics['flat']['macro_f1']:.3f}, "
            f"trained in {seconds:.1f} s"
        ),
        outputs=[model_dir, metrics_path],
    )
