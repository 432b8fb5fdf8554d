"""Losses for training a cross-encoder on listwise data with sentence-transformers' CrossEncoderTrainer.

Every loss here takes the trainer's listwise call: ``loss([queries, docs_lists], labels, prompt=None,
task=None)`` where ``docs_lists[b]`` are the passages of query ``b`` and ``labels[b]`` a 1-D tensor of
their targets (higher = better), as ``CrossEncoderDataCollator`` builds it from the columns ``query``,
``docs``, ``labels`` (see ``rankdistill.distillation.builder.listwise_lists``). Lists may have different lengths: they
are scored flat, placed in a padded ``(batch, max_len)`` matrix, and a boolean ``mask`` marks the real
entries — the same scheme as sentence-transformers' own listwise losses (no ``-1`` label sentinels; a
padded entry never enters a sum or a mean).

Where sentence-transformers has a loss that computes the paper's formula it is used as is
(``adr-mse`` -> ``ADRMSELoss``, ``listnet`` -> ``ListNetLoss``, ``bce`` -> ``BinaryCrossEntropyLoss`` fed with
the flattened pairs). The others are written here: ``ranknet`` (natural log, and restricted to the pairs the
teacher compared for a set built with ``--pairs compared``, which sentence-transformers' RankNetLoss cannot
do), ``lce``, ``kl`` (with a temperature), ``approx-ndcg``, ``margin-mse`` (listwise, all pairs).
Each hand-written loss is a thin ``nn.Module`` over a pure function of ``(scores, targets, mask)`` so it
can be tested on numbers.

Which target each loss expects (all: higher = better):

=============  ===============================================================================================
ranknet        any targets; only their order matters: mean over pairs with t_i > t_j of
               log(1 + exp(-sigma (s_i - s_j))). Ties form no pair. Use rank targets (depth - rank + 1). A set
               built with ``--pairs compared`` keeps only the pairs the sliding-window teacher compared;
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
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from rankdistill.errors import RankdistillError

LOSSES = ("ranknet", "lce", "kl", "listnet", "approx-ndcg", "adr-mse", "margin-mse", "bce")


# --- pure functions on padded (batch, n) scores / targets with a boolean mask -------------------------


def pad_lists(values: Sequence[Tensor], fill: float = 0.0) -> tuple[Tensor, Tensor]:
    """Stack 1-D tensors of different lengths into ``(batch, max_len)`` plus the mask of real entries."""
    n = max(len(v) for v in values)
    out = torch.full((len(values), n), fill, dtype=torch.float32, device=values[0].device if len(values) else None)
    mask = torch.zeros((len(values), n), dtype=torch.bool, device=out.device)
    for i, v in enumerate(values):
        out[i, : len(v)] = v.to(out.dtype)
        mask[i, : len(v)] = True
    return out, mask


def _pair_mask(targets: Tensor, mask: Tensor) -> Tensor:
    """(b, i, j) is True where both entries are real and t_i > t_j."""
    both = mask[:, :, None] & mask[:, None, :]
    return both & (targets[:, :, None] > targets[:, None, :])


def compared_mask(windows: Tensor) -> Tensor:
    """(b, i, j) is True where passages i and j shared a teacher window, or either has none (-1).

    ``windows[b, i] = (first, last)`` window of passage i (see :mod:`rankdistill.teacher.windows`); ranges that
    overlap met in a window. A passage without one (a cross negative, one below the teacher's depth) is ordered
    by its target against every other passage.
    """
    first, last = windows[..., 0], windows[..., 1]
    met = (first[:, :, None] <= last[:, None, :]) & (first[:, None, :] <= last[:, :, None])
    free = (first < 0)[:, :, None] | (first < 0)[:, None, :]
    return met | free


def target_ranks(targets: Tensor, mask: Tensor) -> Tensor:
    """1-based rank of each entry by target within its list (1 + the number of real entries above it)."""
    above = (targets[:, None, :] > targets[:, :, None]) & mask[:, None, :]
    return 1.0 + above.sum(dim=2).to(targets.dtype)


def ranknet_loss(scores: Tensor, targets: Tensor, mask: Tensor, sigma: float = 1.0, windows: Tensor | None = None,
                 weighting: Literal["none", "discount"] = "none") -> Tensor:
    """Mean over all pairs (in the batch) with t_i > t_j of log(1 + exp(-sigma (s_i - s_j))); with ``windows``
    only over the pairs the teacher compared (:func:`compared_mask`).

    ``weighting="discount"``: a weighted mean, pair (i, j) weighing |1/log2(1 + r_i) - 1/log2(1 + r_j)| for the
    target ranks r: the DCG change of swapping the two, so the teacher's decisions at the top count most.
    """
    pairs = _pair_mask(targets, mask)
    if windows is not None:
        pairs = pairs & compared_mask(windows)
    diffs = scores[:, :, None] - scores[:, None, :]
    losses = nn.functional.softplus(-sigma * diffs)
    if weighting == "discount":
        discount = 1.0 / torch.log2(1.0 + target_ranks(targets, mask))
        weights = (discount[:, :, None] - discount[:, None, :]).abs() * pairs
        return (losses * weights).sum() / weights.sum().clamp(min=1e-12)
    return losses[pairs].sum() / pairs.sum().clamp(min=1)


def lce_loss(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """-log softmax(s)[relevant], relevant = the first entry with the largest target; mean over queries."""
    logits = scores.masked_fill(~mask, float("-inf"))
    relevant = targets.masked_fill(~mask, float("-inf")).argmax(dim=1)  # argmax returns the first maximum
    return nn.functional.cross_entropy(logits, relevant)


def kl_loss(scores: Tensor, targets: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(softmax(t / tau) || softmax(s)) per query, mean over queries."""
    log_q = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    log_p = torch.log_softmax((targets / temperature).masked_fill(~mask, float("-inf")), dim=1)
    terms = torch.where(mask, log_p.exp() * (log_p - log_q), torch.zeros_like(scores))
    return terms.sum(dim=1).mean()


def approx_ranks(scores: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """r_i = 1 + sum over real j != i of sigmoid((s_j - s_i) / tau): a differentiable rank (1 = best)."""
    diffs = scores[:, None, :] - scores[:, :, None]  # [b, i, j] = s_j - s_i
    sig = torch.sigmoid(diffs / temperature)
    eye = torch.eye(scores.shape[1], dtype=torch.bool, device=scores.device)
    keep = mask[:, None, :] & ~eye[None]
    return 1.0 + (sig * keep).sum(dim=2)


def approx_ndcg_loss(
    scores: Tensor, targets: Tensor, mask: Tensor, temperature: float = 1.0, gain: Literal["exp", "linear"] = "exp"
) -> Tensor:
    """1 - NDCG where each passage sits at its approximate rank; mean over queries with a non-zero ideal DCG."""
    scores, targets = scores.double(), targets.double().clamp(min=0)  # double: 2^t gains of rank targets
    gains = torch.expm1(targets * torch.log(torch.tensor(2.0, dtype=targets.dtype))) if gain == "exp" else targets
    gains = gains.masked_fill(~mask, 0.0)
    ranks = approx_ranks(scores, mask, temperature)
    dcg = (gains / torch.log2(1.0 + ranks)).masked_fill(~mask, 0.0).sum(dim=1)
    ideal, _ = gains.sort(dim=1, descending=True)
    positions = torch.arange(1, scores.shape[1] + 1, dtype=scores.dtype, device=scores.device)
    idcg = (ideal / torch.log2(1.0 + positions)).sum(dim=1)
    useful = idcg > 0
    if not useful.any():
        return (scores * 0.0).sum().float()
    return (1.0 - dcg[useful] / idcg[useful]).mean().float()


def margin_mse_loss(
    scores: Tensor, targets: Tensor, mask: Tensor, pairs: Literal["all", "first"] = "all"
) -> Tensor:
    """Mean over pairs of ((s_i - s_j) - (t_i - t_j))^2; pairs with t_i > t_j, or (best, every other) ones."""
    if pairs == "first":
        best = targets.masked_fill(~mask, float("-inf")).argmax(dim=1)
        chosen = torch.zeros_like(mask[:, :, None] & mask[:, None, :])
        chosen[torch.arange(len(best)), best, :] = mask
        chosen[torch.arange(len(best)), best, best] = False
    else:
        chosen = _pair_mask(targets, mask)
    ds = scores[:, :, None] - scores[:, None, :]
    dt = targets[:, :, None] - targets[:, None, :]
    return ((ds - dt) ** 2)[chosen].sum() / chosen.sum().clamp(min=1)


# --- nn.Module losses for CrossEncoderTrainer -----------------------------------------------------------


def _check_model(loss: nn.Module, model) -> None:
    if getattr(model, "num_labels", 1) != 1:
        raise RankdistillError(f"{type(loss).__name__} needs a model with 1 output label, got {model.num_labels}")


def _check_listwise(name: str, inputs, labels) -> None:
    if isinstance(labels, Tensor):
        raise ValueError(f"{name} expects one label tensor per query (list[Tensor]), got a single tensor")
    if len(inputs) != 2:
        raise ValueError(f"{name} expects two inputs (queries, documents_lists), got {len(inputs)}")
    sizes = [len(d) for d in inputs[1]]
    if sizes != [len(lbl) for lbl in labels]:
        raise ValueError(f"{name}: passages per query {sizes} do not match labels per query {[len(x) for x in labels]}")


MINI_BATCH_SIZE = 32  # pairs per forward when a loss is given none: a 100-passage list in 4 length-sorted batches


def score_pairs(model, pairs: list[tuple[str, str]], prompt=None, task=None, mini_batch_size: int | None = None) -> Tensor:
    """The model's raw score of each (query, passage) pair, in mini-batches of pairs of similar length.

    Sorting by length before cutting the batches pads each to its own longest pair rather than the list's
    longest; the scores come back in input order, so the loss (and its gradient) is the same as in one batch.
    """
    from sentence_transformers.util import batch_to_device

    size = mini_batch_size if mini_batch_size and mini_batch_size > 0 else MINI_BATCH_SIZE
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    out = []
    for start in range(0, len(pairs), size):
        chunk = [pairs[i] for i in order[start : start + size]]
        tokens = batch_to_device(model.preprocess(chunk, prompt=prompt, task=task), model.device)
        out.append(model(tokens)["scores"].view(-1))
    scores = torch.cat(out).float()
    return scores[torch.argsort(torch.as_tensor(order, device=scores.device))]


class ListwiseLoss(nn.Module):
    """Scores every (query, passage) of a batch of lists, pads, and applies ``compute(scores, targets, mask)``."""

    def __init__(self, model, activation_fn: nn.Module | None = None, mini_batch_size: int | None = None) -> None:
        super().__init__()
        _check_model(self, model)
        self.model = model
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = mini_batch_size

    def compute(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_compared(self, scores: Tensor, targets: Tensor, mask: Tensor, windows: Tensor) -> Tensor:
        raise RankdistillError(
            f"{type(self).__name__} cannot learn from a set built with --pairs compared (it has no pairs to restrict); "
            "use the ranknet loss, or rebuild the set with --pairs all"
        )

    def forward(self, inputs: list, labels: list[Tensor], prompt: str | None = None, task: str | None = None) -> Tensor:
        _check_listwise(type(self).__name__, inputs, labels)
        queries, docs_lists = inputs
        pairs = [(q, d) for q, docs in zip(queries, docs_lists) for d in docs]
        flat = self.activation_fn(score_pairs(self.model, pairs, prompt, task, self.mini_batch_size))
        sizes = [len(d) for d in docs_lists]
        scores, mask = pad_lists(list(torch.split(flat, sizes)))
        labels = [torch.as_tensor(lbl, dtype=torch.float32, device=flat.device) for lbl in labels]
        if labels[0].ndim == 2:  # (target, first window, last window) per passage: a set built with --pairs compared
            targets, _ = pad_lists([lbl[:, 0] for lbl in labels])
            first, _ = pad_lists([lbl[:, 1] for lbl in labels], fill=-1.0)
            last, _ = pad_lists([lbl[:, 2] for lbl in labels], fill=-1.0)
            windows = torch.stack([first, last], dim=-1).to(scores.device)
            return self.compute_compared(scores, targets.to(scores.device), mask, windows)
        targets, _ = pad_lists(labels)
        return self.compute(scores, targets.to(scores.device), mask)

    def get_config_dict(self) -> dict[str, Any]:
        return {"mini_batch_size": self.mini_batch_size}


class RankNetLoss(ListwiseLoss):
    """The paper's RankNet, natural log (``reduction_log="binary"`` divides by ln 2, sentence-transformers'
    default); written here because sentence-transformers' ``RankNetLoss`` cannot restrict the pairs to those
    the teacher compared."""

    def __init__(self, model, sigma: float = 1.0, reduction_log: Literal["natural", "binary"] = "natural",
                 weighting: Literal["none", "discount"] = "none", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if reduction_log not in ("natural", "binary"):
            raise ValueError(f"reduction_log must be 'natural' or 'binary', got {reduction_log!r}")
        if weighting not in ("none", "discount"):
            raise ValueError(f"weighting must be 'none' or 'discount', got {weighting!r}")
        self.sigma = float(sigma)
        self.reduction_log = reduction_log
        self.weighting = weighting

    def _scale(self, value: Tensor) -> Tensor:
        return value / math.log(2.0) if self.reduction_log == "binary" else value

    def compute(self, scores, targets, mask):
        return self._scale(ranknet_loss(scores, targets, mask, self.sigma, weighting=self.weighting))

    def compute_compared(self, scores, targets, mask, windows):
        return self._scale(ranknet_loss(scores, targets, mask, self.sigma, windows, self.weighting))

    def get_config_dict(self):
        return {**super().get_config_dict(), "sigma": self.sigma, "reduction_log": self.reduction_log,
                "weighting": self.weighting}


class LCELoss(ListwiseLoss):
    """Localized contrastive estimation: softmax cross-entropy of the relevant passage against its hard negatives."""

    def compute(self, scores, targets, mask):
        return lce_loss(scores, targets, mask)


class KLDivergenceLoss(ListwiseLoss):
    """KL(softmax(t / temperature) || softmax(s)): the student's list distribution matches the teacher's."""

    def __init__(self, model, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if temperature <= 0:
            raise RankdistillError(f"kl: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute(self, scores, targets, mask):
        return kl_loss(scores, targets, mask, self.temperature)

    def get_config_dict(self):
        return {**super().get_config_dict(), "temperature": self.temperature}


class ApproxNDCGLoss(ListwiseLoss):
    """1 - NDCG at differentiable approximate ranks (Qin et al. 2010; lightning-ir's ApproxNDCG)."""

    def __init__(self, model, temperature: float = 1.0, gain: Literal["exp", "linear"] = "exp", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if gain not in ("exp", "linear"):
            raise RankdistillError(f"approx-ndcg: gain must be 'exp' or 'linear', got {gain!r}")
        self.temperature, self.gain = temperature, gain

    def compute(self, scores, targets, mask):
        return approx_ndcg_loss(scores, targets, mask, self.temperature, self.gain)

    def get_config_dict(self):
        return {**super().get_config_dict(), "temperature": self.temperature, "gain": self.gain}


class ListwiseMarginMSELoss(ListwiseLoss):
    """MarginMSE over the pairs of a list (lightning-ir's SupervisedMarginMSE); ``pairs="first"``: best vs others."""

    def __init__(self, model, pairs: Literal["all", "first"] = "all", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if pairs not in ("all", "first"):
            raise RankdistillError(f"margin-mse: pairs must be 'all' or 'first', got {pairs!r}")
        self.pairs = pairs

    def compute(self, scores, targets, mask):
        return margin_mse_loss(scores, targets, mask, self.pairs)

    def get_config_dict(self):
        return {**super().get_config_dict(), "pairs": self.pairs}


class ListwiseBCELoss(nn.Module):
    """sentence-transformers' BinaryCrossEntropyLoss on the flattened (query, passage) pairs of the lists.

    Pair-format input (``[queries, passages]`` with one label each) is passed straight through.
    """

    def __init__(self, model, threshold: float | None = None, pos_weight: float | None = None, **kwargs) -> None:
        super().__init__()
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        _check_model(self, model)
        self.model = model
        self.threshold = threshold
        weight = torch.tensor(pos_weight) if pos_weight is not None else None
        self.bce = BinaryCrossEntropyLoss(model, pos_weight=weight, **kwargs)

    def forward(self, inputs: list, labels, prompt: str | None = None, task: str | None = None) -> Tensor:
        if len(inputs) == 2 and inputs[1] and isinstance(inputs[1][0], str):
            queries, docs, flat = inputs[0], inputs[1], torch.as_tensor(labels, dtype=torch.float32)
        else:
            _check_listwise("ListwiseBCELoss", inputs, labels)
            queries = [q for q, docs in zip(*inputs) for _ in docs]
            docs = [d for docs in inputs[1] for d in docs]
            flat = torch.cat([torch.as_tensor(lbl, dtype=torch.float32) for lbl in labels])
        if self.threshold is not None:
            flat = (flat >= self.threshold).float()
        elif flat.numel() and (flat.min() < 0 or flat.max() > 1):
            raise RankdistillError(
                f"bce needs labels in [0, 1], got values in [{flat.min().item():g}, {flat.max().item():g}]; "
                "pass threshold=G to count targets >= G as relevant"
            )
        return self.bce([queries, docs], flat.to(self.model.device), prompt=prompt, task=task)

    def get_config_dict(self):
        return {"threshold": self.threshold, **self.bce.get_config_dict()}


# --- factory ---------------------------------------------------------------------------------------------


def _registry() -> dict[str, Any]:
    from sentence_transformers.cross_encoder.losses import ADRMSELoss, ListNetLoss

    return {
        "ranknet": RankNetLoss,
        "lce": LCELoss,
        "kl": KLDivergenceLoss,
        "listnet": ListNetLoss,
        "approx-ndcg": ApproxNDCGLoss,
        "adr-mse": ADRMSELoss,
        "margin-mse": ListwiseMarginMSELoss,
        "bce": ListwiseBCELoss,
    }


def make_loss(name: str, model, **kwargs) -> nn.Module:
    """The loss ``name`` for ``model`` (a sentence-transformers CrossEncoder); kwargs go to its constructor."""
    key = name.strip().lower().replace("_", "-")
    registry = _registry()
    if key not in registry:
        raise RankdistillError(f"unknown loss {name!r}; choose one of {', '.join(LOSSES)}")
    factory = registry[key]
    allowed = _accepted(factory)
    if isinstance(factory, type) and issubclass(factory, ListwiseLoss):
        allowed |= _accepted(ListwiseLoss)
    if factory is ListwiseBCELoss:
        allowed.add("activation_fn")
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise RankdistillError(f"loss {key!r} does not take {', '.join(unknown)}; it takes: {', '.join(sorted(allowed))}")
    return factory(model, **kwargs)


def _accepted(cls) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {p for p, v in params.items() if p not in ("self", "model") and v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
