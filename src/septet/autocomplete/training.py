"""Train an autocomplete model: corpus -> BPE -> token windows -> the shared training loop.

The output folder is self-contained: ``tokenizer.json``, the model (``autocomplete.json`` says
which kind), ``loss_curve.json`` / ``loss_curve.csv``, and ``training.json`` recording the
command, corpus, sizes, time and held-out loss. Checkpoints go to ``checkpoints/`` inside it;
``resume=True`` continues from the newest one exactly (same tokenizer, same batches).
"""

from __future__ import annotations

import csv
import io
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from septet.autocomplete.corpus import read_corpus, split_by_file, stdlib_dir
from septet.autocomplete.tokenization import CodeTokenizer
from septet.errors import CheckpointError, ConfigError, InputError


@dataclass
class AutocompleteTrainingConfig:
    """What to train and for how long."""

    kind: str = "lstm"  # "lstm" or "llama"
    size: str = "small"  # "tiny" (tests, demo) or "small"
    vocab_size: int = 4096
    seq_len: int = 128
    batch_size: int = 16
    learning_rate: float = 2e-3
    max_steps: int = 2000
    max_minutes: float | None = None  # stop earlier when this much wall time has passed
    eval_every: int = 100
    eval_windows: int = 64
    checkpoint_every: int = 100
    validation_fraction: float = 0.05
    tokenizer_sample_bytes: int = 8_000_000
    seed: int = 0
    # a trained model folder to start from (its tokenizer and weights; a fresh schedule)
    init_from: str | None = None
    device: str = "auto"  # cpu, cuda, mps or auto (the best available)
    # folders left out of the corpus wherever they occur (e.g. the benchmark's held-out packages)
    exclude_dirs: list[str] = field(default_factory=list)
    max_bytes_per_package: int | None = None  # see corpus.read_corpus
    extra: dict[str, Any] = field(default_factory=dict)


def token_windows(token_lists: list[list[int]], separator: int, length: int) -> Any:
    """Concatenate files (separated by ``separator``) and cut into (N, length) windows."""
    import torch

    stream: list[int] = []
    for ids in token_lists:
        stream.extend(ids)
        stream.append(separator)
    n = len(stream) // length
    if n == 0:
        raise InputError(f"the corpus has {len(stream)} tokens, fewer than one window ({length})")
    # int32 keeps a large corpus at half the memory; batches are widened to int64 when drawn
    return torch.tensor(stream[: n * length], dtype=torch.int32).view(n, length)


class ShuffledWindows:
    """Batches of token windows, reshuffled every epoch by ``generator`` (whose state the
    trainer saves at each epoch's start, so a resumed run draws the same batches)."""

    def __init__(self, windows: Any, batch_size: int, seed: int):
        import torch

        self.windows = windows
        self.batch_size = batch_size
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return -(-len(self.windows) // self.batch_size)

    def __iter__(self) -> Any:
        import torch

        order = torch.randperm(len(self.windows), generator=self.generator)
        for i in range(0, len(order), self.batch_size):
            yield self.windows[order[i : i + self.batch_size]].long()


def steps_that_fit(
    step: int,
    *,
    seconds_per_step: float,
    seconds_used: float,
    seconds_allowed: float,
    max_steps: int,
) -> int:
    """The last step of a run that must end within ``seconds_allowed``, at step ``step`` after
    ``seconds_used``, going on at ``seconds_per_step``: a tenth of the time (at most 30 s) is
    kept for the final evaluation and save; never beyond ``max_steps``, never before the next
    step."""
    left = seconds_allowed - seconds_used - min(30.0, 0.1 * seconds_allowed)
    planned = min(max_steps, step + int(max(left, 0.0) / seconds_per_step))
    return max(step + 1, planned)


def _cached_windows(
    out: Path, tokenizer: CodeTokenizer, train_files: list, valid_files: list, length: int
) -> tuple[Any, Any]:
    """Train and validation windows, read from ``token_cache.pt`` when the tokenizer, corpus
    and window length are the same (encoding a corpus is the slow part of a resume)."""
    import hashlib

    import torch

    digest = hashlib.sha1(tokenizer.backend.to_str().encode())
    for f in [*train_files, None, *valid_files]:
        digest.update(b"|" if f is None else hashlib.sha1(f.text.encode()).digest())
    key = f"{digest.hexdigest()}-{length}"
    path = out / "token_cache.pt"
    if path.is_file():
        cached = torch.load(path)
        if cached.get("key") == key:
            return cached["train"].int(), cached["valid"].int()
    sep = tokenizer.end_of_file_id
    train = token_windows(tokenizer.encode_batch([f.text for f in train_files]), sep, length)
    valid = token_windows(tokenizer.encode_batch([f.text for f in valid_files]), sep, length)
    tmp = path.with_suffix(".tmp")
    torch.save({"key": key, "train": train, "valid": valid}, tmp)
    tmp.replace(path)
    return train, valid


def _initial_model(config: AutocompleteTrainingConfig, vocab_size: int) -> Any:
    """The model saved in ``config.init_from``, in float32 and training mode."""
    from septet.autocomplete.models import load_model, model_kind

    model = load_model(config.init_from).float()
    if model_kind(model) != config.kind:
        raise ConfigError(
            f"--init-from {config.init_from} holds a {model_kind(model)} model, not {config.kind};"
            f" pass --kind {model_kind(model)}"
        )
    rows = model.config.vocab_size
    if rows != vocab_size:
        raise CheckpointError(f"{config.init_from}: {rows} embeddings for {vocab_size} tokens")
    return model.train()


def train_autocomplete(
    out_dir: str | Path,
    corpus: str | Path | list[str | Path] | None = None,
    config: AutocompleteTrainingConfig | None = None,
    *,
    resume: bool = False,
    command: str | None = None,
) -> dict[str, Any]:
    """Train on the .py files under ``corpus``, one folder or several (default: the stdlib
    without tests); returns the summary also written to ``training.json``."""
    import torch

    from septet.autocomplete.models import build_model, language_model_loss, save_model
    from septet.common.atomic import atomic_write_json, atomic_write_text
    from septet.common.training import OptimizerConfig, Trainer, TrainerCallback, TrainingConfig

    config = config or AutocompleteTrainingConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if corpus is None:
        corpus_dirs = [stdlib_dir()]
    elif isinstance(corpus, (str, Path)):
        corpus_dirs = [Path(corpus)]
    else:
        corpus_dirs = [Path(c) for c in corpus]
    started = time.time()
    files = read_corpus(
        corpus_dirs,
        exclude_tests=True,
        exclude_dirs=config.exclude_dirs,
        max_bytes_per_package=config.max_bytes_per_package,
    )
    train_files, valid_files = split_by_file(files, config.validation_fraction)

    if resume and (out / "tokenizer.json").is_file():
        tokenizer = CodeTokenizer.load(out)
    elif config.init_from is not None:
        tokenizer = CodeTokenizer.load(config.init_from)
        tokenizer.save(out)
    else:
        sample, total = [], 0
        for f in train_files:  # a byte budget keeps BPE training short on big corpora
            if total > config.tokenizer_sample_bytes:
                break
            sample.append(f.text)
            total += len(f.text)
        tokenizer = CodeTokenizer.train(sample, config.vocab_size)
        tokenizer.save(out)
    train, valid = _cached_windows(out, tokenizer, train_files, valid_files, config.seq_len + 1)
    valid = valid[: config.eval_windows].long()
    batches = ShuffledWindows(train, config.batch_size, config.seed)

    torch.manual_seed(config.seed)
    if config.init_from is not None:
        model = _initial_model(config, tokenizer.vocab_size)
    else:
        model = build_model(config.kind, tokenizer.vocab_size, config.size)

    def evaluate(m: torch.nn.Module) -> dict[str, float]:
        m.eval()
        device = next(m.parameters()).device
        with torch.no_grad():
            losses = [
                float(language_model_loss(m, valid[i : i + 16].to(device)))
                for i in range(0, len(valid), 16)
            ]
        m.train()
        return {"valid_loss": sum(losses) / len(losses)}

    class StopAtTimeLimit(TrainerCallback):
        def on_step_end(self, state: Any, logs: dict[str, float]) -> None:
            if config.max_minutes is not None and time.time() - started > 60 * config.max_minutes:
                state.should_stop = True

    class FitScheduleToTimeLimit(TrainerCallback):
        """With --max-minutes, the schedule is planned to end when the time does, once the step
        rate is known (a run cut off at its full rate ends worse than one that decayed): after
        50 and 200 steps, then every 1,000, the last step becomes the one the remaining time
        reaches at the rate measured so far (never beyond --max-steps)."""

        def __init__(self) -> None:
            self.first: tuple[int, float] | None = None

        def on_step_end(self, state: Any, logs: dict[str, float]) -> None:
            if config.max_minutes is None:
                return
            now = time.time()
            if self.first is None:
                self.first = (state.step, now)  # the first step includes warm-up costs
                return
            done = state.step - self.first[0]
            if done not in (50, 200) and (done < 1000 or done % 1000):
                return
            state.total_steps = steps_that_fit(
                state.step,
                seconds_per_step=(now - self.first[1]) / done,
                seconds_used=now - started,
                seconds_allowed=60 * config.max_minutes,
                max_steps=config.max_steps,
            )
            for plan in trainer.scheduler.lr_lambdas:  # warm-up stays a small part of the run
                plan.warmup_steps = min(plan.warmup_steps, max(state.step, state.total_steps // 50))

    training = TrainingConfig(
        max_steps=config.max_steps,
        seed=config.seed,
        device=config.device,
        log_every=10,
        eval_every=config.eval_every,
        checkpoint_dir=str(out / "checkpoints"),
        checkpoint_every=config.checkpoint_every,
        best_metric="valid_loss",
        greater_is_better=False,
        optimizer=OptimizerConfig(
            learning_rate=config.learning_rate,
            weight_decay=0.01,
            warmup_ratio=0.02,
            schedule="cosine",
            min_lr_ratio=0.1,
        ),
    )

    class ScheduleFollowsMaxSteps(TrainerCallback):
        """A resumed run may be given another --max-steps (to fit the time left): the decay
        then ends at the new last step (a checkpoint restores the old plan otherwise)."""

        def on_step_end(self, state: Any, logs: dict[str, float]) -> None:
            for plan in trainer.scheduler.lr_lambdas:
                if getattr(plan, "total_steps", state.total_steps) != state.total_steps:
                    plan.total_steps = state.total_steps

    trainer = Trainer(
        model,
        language_model_loss,
        batches,
        training,
        evaluate=evaluate,
        callbacks=[StopAtTimeLimit(), FitScheduleToTimeLimit(), ScheduleFollowsMaxSteps()],
    )
    has_checkpoint = resume and any((out / "checkpoints").glob("step-*"))
    result = trainer.train(resume_from="latest" if has_checkpoint else None)
    final = evaluate(model)
    save_model(model.cpu(), out, half=True)

    curve = [dict(entry) for entry in result.history]
    atomic_write_json(out / "loss_curve.json", {"train": curve, "validation": result.evaluations})
    buffer = io.StringIO()
    keys = sorted({k for entry in curve for k in entry})
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(curve)
    atomic_write_text(out / "loss_curve.csv", buffer.getvalue())
    summary = {
        "command": command or " ".join(sys.argv),
        "corpus": [str(c) for c in corpus_dirs] if len(corpus_dirs) > 1 else str(corpus_dirs[0]),
        "train_files": len(train_files),
        "validation_files": len(valid_files),
        "train_tokens": int(train.numel()),
        "parameters": sum(p.numel() for p in model.parameters()),
        "steps": result.state.step,
        "minutes": round((time.time() - started) / 60, 2),
        "device": str(trainer.device),
        "device_name": _device_name(trainer.device),
        "valid_loss": final["valid_loss"],
        "valid_perplexity": math.exp(final["valid_loss"]),
        "config": asdict(config),
        "python": sys.version.split()[0],
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(out / "training.json", summary)
    return summary


def _device_name(device: Any) -> str:
    """The accelerator's name (for the training record), or the CPU's architecture."""
    import platform

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
