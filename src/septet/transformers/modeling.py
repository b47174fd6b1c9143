"""What every model family shares: loading checked checkpoints, saving HF-readable folders,
weight initialisation and tying, attention masks and the task losses.

Loading is strict: every tensor of the model must come from the checkpoint with the right
shape, and every tensor of the checkpoint must land somewhere, or a CheckpointError lists
what is missing, unexpected and mis-shaped. Three things are allowed, each for a reason:
a task head the checkpoint lacks (``new_head_keys``: fine-tuning starts from a base model) is
freshly initialised and reported in a warning; a weight tied to another (the LM decoder and
the word embeddings) may be absent; buffers old library versions saved
(``ignored_checkpoint_keys``) are dropped. Checkpoint names may carry the base-model prefix
(``bert.encoder...``, saved from a head model) or not (saved from the base model).

A family adapts foreign names and layouts through four hooks: ``rename_checkpoint_key``,
``convert_checkpoint_tensor``, ``merge_checkpoint_tensors`` (e.g. fuse q/k/v) and, for saving,
``checkpoint_state_dict`` (the inverse: HF names and layouts).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
import torch.nn.functional as F
from torch import nn

from septet.errors import CheckpointError, ConfigError
from septet.transformers.config import ModelConfig

logger = logging.getLogger("septet.transformers")

# The torch.nn.init functions module constructors call; disabled while building a model whose
# every weight a checkpoint is about to overwrite (initialising 100M+ values costs seconds).
_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
)
_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "half": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@contextlib.contextmanager
def no_weight_init() -> Iterator[None]:
    """Within the block, torch.nn.init functions leave tensors as they are."""
    saved = {name: getattr(nn.init, name) for name in _INIT_FUNCTIONS}

    def skip(tensor: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        return tensor

    try:
        for name in _INIT_FUNCTIONS:
            setattr(nn.init, name, skip)
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | str | None:
    """A torch dtype from a dtype, a name ("bfloat16", "fp16"...), "auto" or None."""
    if dtype is None or isinstance(dtype, torch.dtype) or dtype == "auto":
        return dtype
    if isinstance(dtype, str):
        name = dtype.removeprefix("torch.")
        if name in _DTYPES:
            return _DTYPES[name]
    raise ConfigError(f"unknown dtype {dtype!r}; use float32, bfloat16, float16 or 'auto'")


class PreTrainedModel(nn.Module):
    """Base of every model: ``from_pretrained``, ``save_pretrained``, init and tying."""

    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # The attribute holding the base model in head models, and the checkpoint prefix.
    base_model_prefix: ClassVar[str] = ""
    # Regexes (re.search over this model's parameter names) of task-head weights a checkpoint
    # may lack: they are freshly initialised and reported.
    new_head_keys: ClassVar[tuple[str, ...]] = ()
    # Regexes of checkpoint names to drop: buffers that some library versions saved.
    ignored_checkpoint_keys: ClassVar[tuple[str, ...]] = ()
    # {parameter: the parameter it shares storage with} when config.tie_word_embeddings.
    tied_weights: ClassVar[dict[str, str]] = {}
    # Submodules a checkpoint may lack entirely (BERT's pooler in sentence-transformers
    # checkpoints): then they are removed (set to None), never left at random values.
    optional_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: ModelConfig):
        super().__init__()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"{type(self).__name__} needs a {self.config_class.__name__}, "
                f"not {type(config).__name__}"
            )
        self.config = config
        self.name_or_path: str | None = None

    # -- init and tying ------------------------------------------------------------------
    def post_init(self) -> None:
        """Families call this at the end of ``__init__``: initialise weights, tie them."""
        self.apply(self._init_module)
        self.tie_weights()

    def _init_module(self, module: nn.Module) -> None:
        """BERT-style init: normal(0, initializer_range) weights, zero biases, unit norms."""
        std = self.config.initializer_range
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            if module.weight is not None:
                nn.init.ones_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)

    def tie_weights(self) -> None:
        """Make each ``tied_weights`` parameter share its source (when the config ties)."""
        if not self.config.tie_word_embeddings:
            return
        for target, source in self.tied_weights.items():
            owner_name, _, attr = target.rpartition(".")
            owner = self.get_submodule(owner_name)
            setattr(owner, attr, self.get_parameter(source))

    # -- properties ----------------------------------------------------------------------
    @property
    def base_model(self) -> nn.Module:
        """The encoder/decoder body (the model itself for a base model)."""
        return getattr(self, self.base_model_prefix, self) if self.base_model_prefix else self

    @property
    def device(self) -> torch.device:
        """The device of the first parameter."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating parameter."""
        return next(p.dtype for p in self.parameters() if p.is_floating_point())

    def num_parameters(self) -> int:
        """How many distinct parameter values the model holds (tied ones counted once)."""
        return sum(p.numel() for p in self.parameters())

    # -- checkpoint name hooks -----------------------------------------------------------
    @classmethod
    def rename_checkpoint_key(cls, key: str) -> str | None:
        """This model's name for a checkpoint name (None drops it). The default maps legacy
        TensorFlow-era LayerNorm names (``gamma``/``beta``) to ``weight``/``bias``."""
        if key.endswith(".gamma"):
            return key[: -len("gamma")] + "weight"
        if key.endswith(".beta"):
            return key[: -len("beta")] + "bias"
        return key

    @classmethod
    def convert_checkpoint_tensor(cls, key: str, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor in this model's layout (``key`` is already in this model's names)."""
        return tensor

    @classmethod
    def merge_checkpoint_tensors(
        cls, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Combine several checkpoint tensors into one of this model's (e.g. fused q/k/v)."""
        return state_dict

    def checkpoint_state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors ``save_pretrained`` writes, in HF names and layouts (tied copies left
        out, as HF does)."""
        state = self.state_dict()
        if self.config.tie_word_embeddings:
            for target in self.tied_weights:
                state.pop(target, None)
        return state

    # -- loading -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path_or_name: str | Path,
        *,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        allow_download: bool = False,
        **config_overrides: Any,
    ) -> Self:
        """Load a model folder, weight file, GGUF file or cached Hub name; the model is in
        eval mode, fp32 unless ``dtype`` says otherwise ("auto": the checkpoint's dtype).
        ``config_overrides`` replace config fields (e.g. ``num_labels=3``)."""
        from septet.transformers.checkpoint import load_checkpoint, resolve_model_path

        path = resolve_model_path(path_or_name, allow_download=allow_download)
        config_dict, state_dict = load_checkpoint(path)
        model = cls.from_checkpoint(
            config_dict,
            state_dict,
            source=str(path),
            dtype=dtype,
            device=device,
            **config_overrides,
        )
        model.name_or_path = str(path_or_name)
        return model

    @classmethod
    def from_checkpoint(
        cls,
        config_dict: dict[str, Any] | None,
        state_dict: dict[str, torch.Tensor],
        *,
        source: str = "the checkpoint",
        dtype: torch.dtype | str | None = None,
        device: torch.device | str | None = None,
        **config_overrides: Any,
    ) -> Self:
        """Build from an already read config.json dict and state dict (see from_pretrained)."""
        if config_dict is None:
            raise CheckpointError(
                f"{source} has weights but no config.json beside them; septet needs the "
                "config to know the architecture"
            )
        config = cls.config_class.from_dict(config_dict, **config_overrides)
        wanted = resolve_dtype(dtype)
        if wanted == "auto":
            wanted = next(
                (t.dtype for t in state_dict.values() if t.is_floating_point()), torch.float32
            )
        target_device = torch.device(device) if device is not None else torch.device("cpu")
        with no_weight_init(), target_device:
            model = cls(config)
        model.load_checkpoint_state_dict(state_dict, source=source, dtype=wanted)
        model.name_or_path = source
        return model.eval()

    def load_checkpoint_state_dict(
        self,
        state_dict: dict[str, torch.Tensor],
        *,
        source: str = "the checkpoint",
        dtype: torch.dtype | None = None,
    ) -> None:
        """Fill this model from a checkpoint state dict (HF names), strictly (see module doc)."""
        checkpoint = self._checkpoint_to_model_names(state_dict)
        self._remove_absent_optional_modules(checkpoint, source)
        tied = set(self.tied_weights) if self.config.tie_word_embeddings else set()

        # Names are compared in checkpoint terms (before fusing), so an error names the very
        # tensor a user's file lacks or has too many of.
        wanted = set(self.checkpoint_state_dict())
        missing = sorted(k for k in wanted if k not in checkpoint and k not in tied)
        missing = [k for k in missing if not self._is_new_head(k)]
        unexpected = sorted(k for k in checkpoint if k not in wanted and k not in tied)
        if missing or unexpected:
            raise CheckpointError(
                _describe_mismatch(type(self).__name__, source, missing, unexpected, [])
            )

        tensors = self.merge_checkpoint_tensors(
            {k: self.convert_checkpoint_tensor(k, t) for k, t in checkpoint.items()}
        )
        expected = self.state_dict()
        absent = [k for k in expected if k not in tensors and k not in tied]
        new_head = [k for k in absent if self._is_new_head(k)]
        absent = [k for k in absent if k not in new_head]
        mis_shaped = [
            f"{k}: checkpoint {tuple(tensors[k].shape)}, model {tuple(expected[k].shape)}"
            for k in tensors
            if k in expected and tuple(tensors[k].shape) != tuple(expected[k].shape)
        ]
        if absent or mis_shaped:
            raise CheckpointError(
                _describe_mismatch(type(self).__name__, source, absent, [], mis_shaped)
            )

        device = self.device
        params = dict(self.named_parameters(remove_duplicate=False))
        buffers = dict(self.named_buffers(remove_duplicate=False))
        with torch.no_grad():
            for name, tensor in tensors.items():
                if name in tied or name not in expected:
                    continue
                if name in params:
                    value = tensor.to(device=device, dtype=dtype or params[name].dtype)
                    params[name].data = value.contiguous()
                else:
                    buffers[name].copy_(tensor.to(device=device, dtype=buffers[name].dtype))
            if new_head:
                for owner in sorted({name.rpartition(".")[0] for name in new_head}):
                    self._init_module(self.get_submodule(owner))
                logger.warning(
                    "%s: %s has no weights for %s; they are freshly initialised (train them "
                    "before use)",
                    type(self).__name__,
                    source,
                    ", ".join(new_head),
                )
            if dtype is not None:
                for param in self.parameters():
                    if param.is_floating_point() and param.dtype != dtype:
                        param.data = param.data.to(dtype)
        self.tie_weights()

    def _is_new_head(self, name: str) -> bool:
        return any(re.search(pattern, name) for pattern in self.new_head_keys)

    def _remove_absent_optional_modules(
        self, checkpoint: dict[str, torch.Tensor], source: str
    ) -> None:
        prefix = self.base_model_prefix
        for name in self.optional_modules:
            owner_name, _, attr = name.rpartition(".")
            owner = self.get_submodule(owner_name)
            scoped = [name, f"{prefix}.{name}"] if prefix else [name]
            if getattr(owner, attr, None) is None or any(
                k.startswith(tuple(f"{s}." for s in scoped)) for k in checkpoint
            ):
                continue
            setattr(owner, attr, None)
            logger.info(
                "%s: %s has no %s weights; it is left out", type(self).__name__, source, name
            )

    def _checkpoint_to_model_names(
        self, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Checkpoint names renamed (hook) and scoped to this model: the base-model prefix
        added for a head model, removed for a base model; ignored names dropped."""
        prefix = self.base_model_prefix
        is_head = bool(prefix) and isinstance(getattr(self, prefix, None), nn.Module)
        top_level = {name.split(".")[0] for name in self.state_dict()}
        renamed: dict[str, torch.Tensor] = {}
        for key, tensor in state_dict.items():
            name = self.rename_checkpoint_key(key)
            if name is not None:
                renamed[name] = tensor
        has_prefix = bool(prefix) and any(k.startswith(prefix + ".") for k in renamed)
        # Optional modules this model was built without (a classifier's encoder has no
        # pooler): their weights in a checkpoint (roberta-base has one) are not used.
        absent = tuple(
            f"{scope}{name}."
            for scope, owner in (("", self), (f"{prefix}.", self.base_model if is_head else None))
            if owner is not None
            for name in getattr(owner, "optional_modules", ())
            if getattr(owner, name, None) is None
        )
        out: dict[str, torch.Tensor] = {}
        dropped: list[str] = []
        for name, tensor in renamed.items():
            outside = not name.startswith(prefix + ".") and name.split(".")[0] not in top_level
            if prefix and outside and has_prefix:
                # Another task's head in a head model's checkpoint (an MLM head when loading
                # a classifier, any head when loading a base model): it has no place here.
                dropped.append(name)
                continue
            if prefix and is_head and outside:
                name = f"{prefix}.{name}"
            elif prefix and not is_head and name.startswith(prefix + "."):
                name = name[len(prefix) + 1 :]
            if any(re.search(pattern, name) for pattern in self.ignored_checkpoint_keys):
                continue
            if name.startswith(absent):
                continue
            out[name] = tensor
        if dropped:
            logger.info(
                "%s: not using the checkpoint's head weights %s", type(self).__name__, dropped
            )
        return out

    # -- saving --------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` (each atomically) that this class
        and HF transformers both load; returns the folder."""
        from safetensors.torch import save

        from septet.common.atomic import atomic_write_bytes, atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {
            name: tensor.detach().to("cpu").contiguous().clone()
            for name, tensor in self.checkpoint_state_dict().items()
        }
        atomic_write_bytes(folder / "model.safetensors", save(tensors, metadata={"format": "pt"}))
        config = self.config.to_dict()
        config["architectures"] = [type(self).__name__]
        config["dtype"] = str(self.dtype).removeprefix("torch.")
        config.pop("torch_dtype", None)
        atomic_write_json(folder / "config.json", config)
        return folder


def _describe_mismatch(
    model: str, source: str, missing: list[str], unexpected: list[str], mis_shaped: list[str]
) -> str:
    parts = []
    for title, names in (
        ("missing", missing),
        ("unexpected", unexpected),
        ("wrong shape", mis_shaped),
    ):
        if names:
            shown = ", ".join(names[:20]) + (
                f" (and {len(names) - 20} more)" if len(names) > 20 else ""
            )
            parts.append(f"{len(names)} {title}: {shown}")
    return (
        f"{source} does not fit {model}: "
        + "; ".join(parts)
        + "; check that the checkpoint is for this architecture and size"
    )


def fuse_projections(
    state_dict: dict[str, torch.Tensor], parts: tuple[str, ...], fused: str
) -> dict[str, torch.Tensor]:
    """Concatenate ``<module>.<part>.{weight,bias}`` for each part (in order, along dim 0)
    into ``<module>.<fused>.{weight,bias}``; groups with a part absent are left as they are,
    so the strict check reports the absent tensor by its checkpoint name."""
    out = dict(state_dict)
    first = f".{parts[0]}."
    for name in state_dict:
        if first not in name:
            continue
        head, _, kind = name.rpartition(first)
        names = [f"{head}.{part}.{kind}" for part in parts]
        if all(n in out for n in names):
            out[f"{head}.{fused}.{kind}"] = torch.cat([out.pop(n) for n in names], dim=0)
    return out


def split_projection(
    state_dict: dict[str, torch.Tensor], parts: tuple[str, ...], fused: str
) -> dict[str, torch.Tensor]:
    """The inverse of ``fuse_projections``: equal chunks along dim 0, one per part."""
    out: dict[str, torch.Tensor] = {}
    marker = f".{fused}."
    for name, tensor in state_dict.items():
        if marker in name:
            head, _, kind = name.rpartition(marker)
            for part, chunk in zip(parts, tensor.chunk(len(parts), dim=0), strict=True):
                out[f"{head}.{part}.{kind}"] = chunk
        else:
            out[name] = tensor
    return out


# -- shared by encoder families ------------------------------------------------------------
def padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """An additive SDPA mask (batch, 1, 1, seq) from a 0/1 attention mask, or None when
    nothing is padded (so SDPA can take its fastest path)."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    keep = attention_mask[:, None, None, :].to(torch.bool)
    mask = torch.zeros(keep.shape, dtype=dtype, device=attention_mask.device)
    return mask.masked_fill_(~keep, torch.finfo(dtype).min)


# oneDNN linear with the bias, an activation or a residual add fused into the matmul: on CPU
# this skips the separate passes over (tokens x features) outputs that addmm's bias copy,
# the activation and the add otherwise cost (measured 1.2x+ on a whole MiniLM forward).
# oneDNN names and GELU algorithm of each HF activation.
_ONEDNN_ACTIVATIONS = {
    None: ("none", ""),
    "gelu": ("gelu", "none"),
    "gelu_new": ("gelu", "tanh"),
    "gelu_pytorch_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
    "silu": ("swish", ""),
    "swish": ("swish", ""),
}


@functools.cache
def _onednn_linear() -> Any:
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    return op if torch.backends.mkldnn.is_available() else None


def can_fuse(x: torch.Tensor, module: nn.Linear) -> bool:
    """Whether ``linear_activation``/``linear_residual`` may take the fused oneDNN path:
    CPU, fp32 or bf16, no autograd, module in eval mode (dropout off)."""
    return (
        x.device.type == "cpu"
        and not module.training
        and not torch.is_grad_enabled()
        and x.dtype in (torch.float32, torch.bfloat16)
        and module.weight.dtype == x.dtype
        and _onednn_linear() is not None
    )


def linear_activation(x: torch.Tensor, module: nn.Linear, act: str | None = None) -> torch.Tensor:
    """``act(module(x))`` (``act`` an HF hidden_act name or None), fused on CPU inference."""
    if can_fuse(x, module) and act in _ONEDNN_ACTIVATIONS:
        name, algorithm = _ONEDNN_ACTIVATIONS[act]
        return _onednn_linear()(x, module.weight, module.bias, name, [], algorithm)
    y = module(x)
    return y if act is None else activation(act)(y)


def linear_residual(
    x: torch.Tensor, module: nn.Linear, residual: torch.Tensor, dropout: nn.Module | None = None
) -> torch.Tensor:
    """``residual + dropout(module(x))``, fused on CPU inference (where dropout is off)."""
    if can_fuse(x, module) and (dropout is None or not dropout.training):
        return _onednn_linear().binary(x, residual, module.weight, module.bias, "add")
    y = module(x)
    return residual + (dropout(y) if dropout is not None else y)


def activation(name: str) -> Any:
    """The elementwise function an HF ``hidden_act`` names."""
    if name == "gelu":
        return F.gelu
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return _gelu_tanh
    if name == "relu":
        return F.relu
    if name in ("silu", "swish"):
        return F.silu
    raise ConfigError(f"config key 'hidden_act' is {name!r}, which septet does not implement")


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


def run_layer_stack(
    layers: nn.ModuleList,
    x: torch.Tensor,
    mask: torch.Tensor | None,
    output_hidden_states: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...] | None]:
    """Run an encoder's layers in order; with ``output_hidden_states`` also every layer's
    input and the last output (HF's ``hidden_states``: embeddings first)."""
    states = [x] if output_hidden_states else None
    for layer in layers:
        x = layer(x, mask)
        if states is not None:
            states.append(x)
    return x, tuple(states) if states is not None else None


def sequence_classification_loss(
    logits: torch.Tensor, labels: torch.Tensor, config: ModelConfig
) -> torch.Tensor:
    """MSE for regression, cross-entropy for single-label, BCE-with-logits for multi-label
    (chosen as HF does when ``problem_type`` is unset)."""
    problem = config.problem_type
    if problem is None:
        if config.num_labels == 1:
            problem = "regression"
        elif labels.dtype in (torch.long, torch.int):
            problem = "single_label_classification"
        else:
            problem = "multi_label_classification"
    if problem == "regression":
        if config.num_labels == 1:
            return F.mse_loss(logits.view(-1), labels.to(logits.dtype).view(-1))
        return F.mse_loss(logits, labels.to(logits.dtype))
    if problem == "single_label_classification":
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), labels.view(-1))
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


def token_classification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy over tokens; label -100 marks tokens to ignore (padding, sub-words)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


def span_loss(
    start_logits: torch.Tensor,
    end_logits: torch.Tensor,
    start_positions: torch.Tensor,
    end_positions: torch.Tensor,
) -> torch.Tensor:
    """Extractive QA loss: mean of start and end cross-entropies; positions beyond the
    sequence are ignored, as in HF."""
    length = start_logits.shape[1]
    start = start_positions.view(-1).clamp(0, length)
    end = end_positions.view(-1).clamp(0, length)
    start_loss = F.cross_entropy(start_logits, start, ignore_index=length)
    end_loss = F.cross_entropy(end_logits, end, ignore_index=length)
    return (start_loss + end_loss) / 2
