"""ApproxNDCG: 1 - NDCG with each passage at a differentiable approximate rank."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from rankdistill.errors import RankdistillError
from rankdistill.training.losses.listwise import ListwiseLoss


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


class ApproxNDCGLoss(ListwiseLoss):
    """1 - NDCG at approximate ranks r_i = 1 + sum_{j != i} sigmoid((s_j - s_i) / temperature).

    Lists whose ideal DCG is 0 (no gain anywhere) are left out of the mean.

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        temperature: the sigmoid's temperature; smaller = closer to the true ranks, steeper gradients. Must be > 0.
        gain: ``exp`` (2^t - 1, lightning-ir's default, for relevance grades) or ``linear`` (t; for rank targets).
        **kwargs: ``activation_fn``, ``mini_batch_size`` (:class:`~rankdistill.training.losses.listwise.ListwiseLoss`).

    Raises:
        RankdistillError: an unknown ``gain`` or a temperature <= 0.

    References:
        - Qin, Liu and Li, A General Approximation Framework for Direct Optimization of Information Retrieval
          Measures, Information Retrieval 13, 2010.

    Inputs:
        +-----------------------------------+-------------------------------------+--------------+
        | inputs                            | labels                              | model labels |
        +===================================+=====================================+==============+
        | (query, [passage_1 .. passage_n]) | graded targets [t_1 .. t_n] (gains) | 1            |
        +-----------------------------------+-------------------------------------+--------------+

    Relations:
        - sentence-transformers' ``ADRMSELoss`` (loss ``adr-mse``) uses the same approximate ranks, against the
          target ranks instead of a gain.
    """

    def __init__(self, model, temperature: float = 1.0, gain: Literal["exp", "linear"] = "exp", **kwargs) -> None:
        super().__init__(model, **kwargs)
        if gain not in ("exp", "linear"):
            raise RankdistillError(f"approx-ndcg: gain must be 'exp' or 'linear', got {gain!r}")
        if temperature <= 0:
            raise RankdistillError(f"approx-ndcg: temperature must be > 0, got {temperature}")
        self.temperature, self.gain = temperature, gain

    def compute(self, scores, targets, mask):
        return approx_ndcg_loss(scores, targets, mask, self.temperature, self.gain)

    def get_config_dict(self):
        return {**super().get_config_dict(), "temperature": self.temperature, "gain": self.gain}
