"""A scoring model from its folder: what the folder holds (config, tokenizer, head, gates), then its weights.

Two steps, so that what the folder says (one label? a gated encoder?) is checked before any weights load. Any
one-label sequence-classification model loads, and so do rankdistill's own heads: the similarity head
(:mod:`rankdistill.modeling.heads`) on a bare encoder, and the gated encoder (:mod:`rankdistill.modeling.gated`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError


@dataclass
class ModelFiles:
    """What a model folder holds besides the encoder's weights."""

    path: str
    config: Any
    tokenizer: Any
    head: Any = None  # rankdistill's similarity head, scoring the encoder's token states; None: the model's own head
    gates: Any = None  # rankdistill's gated encoder: its gates, (layers, heads); None for any other model

    @property
    def use_types(self) -> bool:
        """Whether the model reads token type ids (BERT does; RoBERTa's single type does not count)."""
        return "token_type_ids" in self.tokenizer.model_input_names and getattr(self.config, "type_vocab_size", 2) > 1


def read_model_files(model: str | Path, path: str) -> ModelFiles:
    """Config, tokenizer and rankdistill's head and gates of the model at ``path`` (``model``: as the caller named it).

    Raises:
        RankdistillError: the folder does not load, or its head gives more than one score.
    """
    from transformers import AutoConfig, AutoTokenizer

    from rankdistill.modeling.cross_encoder import has_similarity_head, is_gated, load_similarity_head
    from rankdistill.modeling.gated import read_gates

    try:
        config = AutoConfig.from_pretrained(path)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        raise RankdistillError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from exc
    trained_head = any(a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))
    if trained_head and getattr(config, "num_labels", 1) != 1:  # a bare encoder's config says 2 by default
        raise RankdistillError(f"model {model!r} has {config.num_labels} output labels; re-ranking needs a one-score cross-encoder")
    head = load_similarity_head(path) if has_similarity_head(path) else None
    gates = read_gates(path) if is_gated(path) else None
    return ModelFiles(path, config, tokenizer, head, gates)


def load_weights(files: ModelFiles, model: str | Path, dtype: str, device: str) -> tuple[Any, list[str]]:
    """The encoder in eval mode on ``device`` and the names of the head weights it lacked (initialised fresh).

    A missing head is initialised under a fixed seed, so an untrained model scores the same every run, and is
    reported in one warning. Without rankdistill's head the model's own head runs in float32.

    Raises:
        RankdistillError: the weights do not load.
    """
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers import logging as hf_logging

    from rankdistill.modeling.gated import ATTENTION, prepare

    auto_class = AutoModel if files.head is not None else AutoModelForSequenceClassification
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # we report a fresh head ourselves, in one line
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # a missing head is initialised the same way every run
            net, info = auto_class.from_pretrained(
                files.path,
                **({} if files.head is not None else {"num_labels": 1}),
                dtype=getattr(torch, dtype),
                attn_implementation="sdpa" if files.gates is None else ATTENTION,
                output_loading_info=True,
            )
    except (OSError, ValueError) as exc:
        raise RankdistillError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from exc
    finally:
        hf_logging.set_verbosity(level)
    fresh_head = sorted(info.get("missing_keys", []))
    if fresh_head:
        warnings.warn(
            f"model {model!r} has no trained scoring head ({', '.join(fresh_head)} newly initialised): "
            "its scores are not meaningful; train it first (rankdistill train)",
            stacklevel=3,  # the caller of the scorer
        )
    if files.gates is not None:
        prepare(net)
    net.eval().to(device)
    if files.head is not None:
        files.head.eval().to(device)  # computes in float32 whatever the encoder's dtype
    elif dtype != "float32":
        _float32_head(net)
    return net, fresh_head


def _float32_head(model) -> None:
    """Run the classification head in float32 on upcast features.

    A bf16 logit has 8 bits of mantissa: scores near 8 are rounded to steps of 1/16, which makes ties
    between close candidates. The head sees one token per pair, so fp32 there costs nothing measurable.
    """
    import torch

    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        return
    head.float()

    def upcast(_module, args, kwargs):
        cast = lambda x: x.float() if torch.is_tensor(x) and x.is_floating_point() else x  # noqa: E731
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    head.register_forward_pre_hook(upcast, with_kwargs=True)
