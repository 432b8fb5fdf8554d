"""KL divergence between the teacher's and the student's distribution over a list."""

from __future__ import annotations

import torch
from torch import Tensor

from rankdistill.errors import RankdistillError
from rankdistill.training.losses.listwise import ListwiseLoss


def kl_loss(scores: Tensor, targets: Tensor, mask: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(softmax(t / tau) || softmax(s)) per query, mean over queries."""
    log_q = torch.log_softmax(scores.masked_fill(~mask, float("-inf")), dim=1)
    log_p = torch.log_softmax((targets / temperature).masked_fill(~mask, float("-inf")), dim=1)
    terms = torch.where(mask, log_p.exp() * (log_p - log_q), torch.zeros_like(scores))
    return terms.sum(dim=1).mean()


class KLDivergenceLoss(ListwiseLoss):
    """KL(softmax(t / temperature) || softmax(s)): the student's list distribution matches the teacher's.

    With rank targets (1..100) a temperature of 1 puts nearly all mass on the top passage; a larger one spreads it.

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        temperature: divides the targets before their softmax; must be > 0.
        **kwargs: ``activation_fn``, ``mini_batch_size`` (:class:`~rankdistill.training.losses.listwise.ListwiseLoss`).

    Raises:
        RankdistillError: a temperature <= 0.

    References:
        - Hinton, Vinyals and Dean, Distilling the Knowledge in a Neural Network, 2015 (the temperature).

    Inputs:
        +-----------------------------------+-------------------------------------+--------------+
        | inputs                            | labels                              | model labels |
        +===================================+=====================================+==============+
        | (query, [passage_1 .. passage_n]) | graded targets [t_1 .. t_n]         | 1            |
        +-----------------------------------+-------------------------------------+--------------+

    Relations:
        - sentence-transformers' ``ListNetLoss`` (loss ``listnet``) is the cross-entropy H(softmax(t), softmax(s)):
          KL at temperature 1 plus a constant, so the same gradient.
    """

    def __init__(self, model, temperature: float = 1.0, **kwargs) -> None:
        super().__init__(model, **kwargs)
        if temperature <= 0:
            raise RankdistillError(f"kl: temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def compute(self, scores, targets, mask):
        return kl_loss(scores, targets, mask, self.temperature)

    def get_config_dict(self):
        return {**super().get_config_dict(), "temperature": self.temperature}
