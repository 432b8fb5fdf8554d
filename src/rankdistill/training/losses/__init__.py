"""The losses ``rankdistill train`` knows, by name: one file per family, the registry here.

Every loss takes the trainer's listwise call (see :mod:`~rankdistill.training.losses.listwise`) and a target per
passage, higher = better. Where sentence-transformers has a loss that computes the paper's formula it is used as
is (``adr-mse`` -> ``ADRMSELoss``, ``listnet`` -> ``ListNetLoss``; ``bce`` wraps ``BinaryCrossEntropyLoss``); the
others are written here, each a thin ``nn.Module`` over a pure function of ``(scores, targets, mask)`` so it can
be tested on numbers.

Which target each loss expects (all: higher = better):

=============  ===============================================================================================
ranknet        any targets; only their order matters: mean over pairs with t_i > t_j of
               log(1 + exp(-sigma (s_i - s_j))). Ties form no pair. Use rank targets (depth - rank + 1). A set
               built with ``pairs="compared"`` keeps only the pairs the sliding-window teacher compared;
               ``weighting="discount"`` weighs each pair by the DCG change of swapping it (the top counts most).
lce            one relevant passage per list = the one with the largest target (the first of them on a tie:
               the parquet puts it at position 0); typically ``single-relevant`` sampling, relevance targets.
kl             graded targets: KL(softmax(t / tau) || softmax(s)), mean over queries. With rank targets
               (1..100) tau = 1 puts nearly all mass on the top passage; a larger tau spreads it.
listnet        sentence-transformers' ListNetLoss: cross-entropy H(softmax(t), softmax(s)) = KL (tau = 1)
               + the entropy of softmax(t), so the same gradient as ``kl`` with tau = 1. No temperature.
approx-ndcg    graded targets as gains: ``gain="exp"`` (2^t - 1, lightning-ir's default, for relevance
               grades) or ``"linear"`` (t; use it with rank targets). Loss = 1 - NDCG with approximate ranks
               r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / tau); lists whose ideal DCG is 0 are left out.
adr-mse        any targets; only their order matters (sentence-transformers derives target ranks from them,
               ties averaged): mean of (r_i - rank_i)^2 / log2(1 + rank_i), r_i the approximate rank.
margin-mse     targets on the score scale (teacher scores): mean over pairs with t_i > t_j of
               ((s_i - s_j) - (t_i - t_j))^2; ``pairs="first"`` uses only (best, other) pairs, which is
               sentence-transformers' MarginMSELoss (query, positive, negatives) on the same numbers.
bce            binary labels in [0, 1] (relevance 0/1), or ``threshold=g`` to label t >= g as 1; pointwise
               binary cross-entropy on the logits.
=============  ===============================================================================================

This ``__init__`` imports neither torch nor sentence-transformers: configs validate loss names against
:data:`LOSSES` cheaply; the classes and functions load on first use.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, Literal, NamedTuple

from rankdistill.errors import RankdistillError


class LossEntry(NamedTuple):
    """Where a loss class lives (``module:Class``, imported on use) and its one-line summary for help texts."""

    target: str
    summary: str = ""


_HERE = "rankdistill.training.losses"
_ST = "sentence_transformers.cross_encoder.losses"

# name -> loss: the one list of loss names (configs, the CLI's help and make_loss read it)
LOSSES: dict[str, LossEntry] = {
    "ranknet": LossEntry(f"{_HERE}.ranknet:RankNetLoss", "pairs ordered by the target; the paper's distillation loss"),
    "lce": LossEntry(f"{_HERE}.lce:LCELoss", "softmax of one relevant vs hard negatives"),
    "kl": LossEntry(f"{_HERE}.kl:KLDivergenceLoss", "KL to softmax(target/temperature)"),
    "listnet": LossEntry(f"{_ST}:ListNetLoss"),
    "approx-ndcg": LossEntry(f"{_HERE}.approx_ndcg:ApproxNDCGLoss"),
    "adr-mse": LossEntry(f"{_ST}:ADRMSELoss"),
    "margin-mse": LossEntry(f"{_HERE}.margin_mse:ListwiseMarginMSELoss", "teacher scores"),
    "bce": LossEntry(f"{_HERE}.bce:ListwiseBCELoss", "binary labels"),
}
LossName = Literal[tuple(LOSSES)]  # type: ignore[valid-type]  # the names, for pydantic fields

# names importable from this package, loaded on first use: public name -> submodule
_EXPORTS = {
    "ListwiseLoss": "listwise", "pad_lists": "listwise", "pair_mask": "listwise", "compared_mask": "listwise",
    "target_ranks": "listwise", "score_pairs": "listwise", "MINI_BATCH_SIZE": "listwise",
    "RankNetLoss": "ranknet", "ranknet_loss": "ranknet",
    "LCELoss": "lce", "lce_loss": "lce",
    "KLDivergenceLoss": "kl", "kl_loss": "kl",
    "ApproxNDCGLoss": "approx_ndcg", "approx_ndcg_loss": "approx_ndcg", "approx_ranks": "approx_ndcg",
    "ListwiseMarginMSELoss": "margin_mse", "margin_mse_loss": "margin_mse",
    "ListwiseBCELoss": "bce",
}

__all__ = ["LOSSES", "LossEntry", "LossName", "loss_class", "loss_parameters", "make_loss", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{_HERE}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _key(name: str) -> str:
    """``approx_ndcg``, ``Approx-NDCG`` -> ``approx-ndcg``."""
    return name.strip().lower().replace("_", "-")


def loss_class(name: str) -> type:
    """The class registered under ``name`` (``_`` and ``-`` alike, any case).

    Raises:
        RankdistillError: no loss has that name.
    """
    key = _key(name)
    if key not in LOSSES:
        raise RankdistillError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    module, _, attr = LOSSES[key].target.partition(":")
    return getattr(importlib.import_module(module), attr)


def loss_parameters(cls: type) -> set[str]:
    """The keyword arguments a loss class takes besides ``model``.

    A constructor that takes ``**kwargs`` passes them to its base class, so the base's parameters count too.
    """
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in params if p.name not in ("self", "model") and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break
    return names


def make_loss(name: str, model, **kwargs: Any):
    """The loss ``name`` for ``model``, built with ``kwargs``.

    Args:
        name: a key of :data:`LOSSES` (``_`` for ``-`` and any case accepted).
        model: the sentence-transformers ``CrossEncoder`` being trained (one output label).
        **kwargs: the loss's own arguments (``loss_kwargs`` in a config), e.g. ``temperature`` for ``kl``.

    Returns:
        The ``torch.nn.Module`` the trainer calls.

    Raises:
        RankdistillError: an unknown name, an argument the loss does not take, or a bad value for one.
    """
    key = _key(name)
    cls = loss_class(key)
    allowed = loss_parameters(cls)
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise RankdistillError(f"loss {key!r} does not take {', '.join(unknown)}; it takes: {', '.join(sorted(allowed))}")
    try:
        return cls(model, **kwargs)
    except (TypeError, ValueError) as exc:
        raise RankdistillError(f"loss {key!r}: bad loss_kwargs {kwargs} ({exc})") from exc
