"""RankNet, the paper's distillation loss: every pair the targets order, optionally only the pairs the teacher
compared, optionally weighted by the DCG change of swapping them."""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

from rankdistill.errors import RankdistillError
from rankdistill.training.losses.listwise import ListwiseLoss, compared_mask, pair_mask, target_ranks


def ranknet_loss(scores: Tensor, targets: Tensor, mask: Tensor, sigma: float = 1.0, windows: Tensor | None = None,
                 weighting: Literal["none", "discount"] = "none") -> Tensor:
    """Mean over all pairs (in the batch) with t_i > t_j of log(1 + exp(-sigma (s_i - s_j))); with ``windows``
    only over the pairs the teacher compared (:func:`~rankdistill.training.losses.listwise.compared_mask`).

    ``weighting="discount"``: a weighted mean, pair (i, j) weighing |1/log2(1 + r_i) - 1/log2(1 + r_j)| for the
    target ranks r: the DCG change of swapping the two, so the teacher's decisions at the top count most.
    """
    pairs = pair_mask(targets, mask)
    if windows is not None:
        pairs = pairs & compared_mask(windows)
    diffs = scores[:, :, None] - scores[:, None, :]
    losses = nn.functional.softplus(-sigma * diffs)
    if weighting == "discount":
        discount = 1.0 / torch.log2(1.0 + target_ranks(targets, mask))
        weights = (discount[:, :, None] - discount[:, None, :]).abs() * pairs
        return (losses * weights).sum() / weights.sum().clamp(min=1e-12)
    return losses[pairs].sum() / pairs.sum().clamp(min=1)


class RankNetLoss(ListwiseLoss):
    """RankNet over the pairs of each list: mean of log(1 + exp(-sigma (s_i - s_j))) over pairs with t_i > t_j.

    Only the targets' order matters; ties form no pair, so rank targets (depth - rank + 1) and teacher scores give
    the same pairs. Written here rather than taken from sentence-transformers because its ``RankNetLoss`` can
    neither keep only the pairs the sliding-window teacher compared (a set built with ``pairs="compared"``) nor
    weigh pairs by their DCG change; it also defaults to log2 where the paper uses the natural log.

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        sigma: the score difference's scale inside the sigmoid.
        reduction_log: ``natural`` (the paper's) or ``binary`` (divides by ln 2: sentence-transformers' default).
        weighting: ``none`` (a plain mean over pairs) or ``discount`` (pair (i, j) weighs the DCG change of
            swapping them, |1/log2(1 + r_i) - 1/log2(1 + r_j)| for target ranks r; LambdaRank's idea).
        **kwargs: ``activation_fn``, ``mini_batch_size`` (:class:`~rankdistill.training.losses.listwise.ListwiseLoss`).

    Raises:
        RankdistillError: an unknown ``reduction_log`` or ``weighting``.

    References:
        - Burges et al., Learning to Rank using Gradient Descent, ICML 2005.
        - Burges, From RankNet to LambdaRank to LambdaMART: An Overview, MSR-TR-2010-82 (the DCG-change weights).
        - Schlatt et al., A Systematic Investigation of Distilling Large Language Models into Cross-Encoders for
          Passage Re-ranking, 2024 (RankNet as the best distillation loss).

    Inputs:
        +-----------------------------------+---------------------------------------------+-----------------+
        | inputs                            | labels                                      | model labels    |
        +===================================+=============================================+=================+
        | (query, [passage_1 .. passage_n]) | [t_1 .. t_n], higher = better               | 1               |
        +-----------------------------------+---------------------------------------------+-----------------+
        | (query, [passage_1 .. passage_n]) | [(t_i, first window, last window) ...]      | 1               |
        +-----------------------------------+---------------------------------------------+-----------------+

    Relations:
        - sentence-transformers' ``RankNetLoss`` with ``reduction_log="natural"`` gives the same value on all pairs.
        - :class:`~rankdistill.training.losses.margin_mse.ListwiseMarginMSELoss` uses the same pairs but also
          matches the size of each margin.
    """

    def __init__(self, model, sigma: float = 1.0, reduction_log: Literal["natural", "binary"] = "natural",
                 weighting: Literal["none", "discount"] = "none", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if reduction_log not in ("natural", "binary"):
            raise RankdistillError(f"ranknet: reduction_log must be 'natural' or 'binary', got {reduction_log!r}")
        if weighting not in ("none", "discount"):
            raise RankdistillError(f"ranknet: weighting must be 'none' or 'discount', got {weighting!r}")
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
