"""MarginMSE over the pairs of a list: the student's score margins match the teacher's."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rankdistill.errors import RankdistillError
from rankdistill.training.losses.listwise import ListwiseLoss, pair_mask


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
        chosen = pair_mask(targets, mask)
    ds = scores[:, :, None] - scores[:, None, :]
    dt = targets[:, :, None] - targets[:, None, :]
    return ((ds - dt) ** 2)[chosen].sum() / chosen.sum().clamp(min=1)


class ListwiseMarginMSELoss(ListwiseLoss):
    """Mean over pairs of ((s_i - s_j) - (t_i - t_j))^2: targets on the score scale (teacher scores).

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        pairs: ``all`` (every pair with t_i > t_j, lightning-ir's SupervisedMarginMSE) or ``first`` (the best
            passage against each other one).
        **kwargs: ``activation_fn``, ``mini_batch_size`` (:class:`~rankdistill.training.losses.listwise.ListwiseLoss`).

    Raises:
        RankdistillError: an unknown ``pairs``.

    References:
        - Hofstätter et al., Improving Efficient Neural Ranking Models with Cross-Architecture Knowledge
          Distillation, 2020.

    Inputs:
        +-----------------------------------+-------------------------------------+--------------+
        | inputs                            | labels                              | model labels |
        +===================================+=====================================+==============+
        | (query, [passage_1 .. passage_n]) | teacher scores [t_1 .. t_n]         | 1            |
        +-----------------------------------+-------------------------------------+--------------+

    Relations:
        - With ``pairs="first"`` it is sentence-transformers' ``MarginMSELoss`` on (query, positive, negatives).
        - :class:`~rankdistill.training.losses.ranknet.RankNetLoss` learns the same pairs' order only.
    """

    def __init__(self, model, pairs: Literal["all", "first"] = "all", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if pairs not in ("all", "first"):
            raise RankdistillError(f"margin-mse: pairs must be 'all' or 'first', got {pairs!r}")
        self.pairs = pairs

    def compute(self, scores, targets, mask):
        return margin_mse_loss(scores, targets, mask, self.pairs)

    def get_config_dict(self):
        return {**super().get_config_dict(), "pairs": self.pairs}
