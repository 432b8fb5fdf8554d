"""Localized contrastive estimation: one relevant passage against the hard negatives of its list."""

from __future__ import annotations

from torch import Tensor, nn

from rankdistill.training.losses.listwise import ListwiseLoss


def lce_loss(scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """-log softmax(s)[relevant], relevant = the first entry with the largest target; mean over queries."""
    logits = scores.masked_fill(~mask, float("-inf"))
    relevant = targets.masked_fill(~mask, float("-inf")).argmax(dim=1)  # argmax returns the first maximum
    return nn.functional.cross_entropy(logits, relevant)


class LCELoss(ListwiseLoss):
    """Softmax cross-entropy of the relevant passage against the other passages of its list.

    The relevant passage is the one with the largest target (the first of them on a tie: the parquet puts it at
    position 0); typically ``single-relevant`` sampling with relevance targets, the first stage of the paper's
    two-stage recipe (hard-negative fine-tuning before distillation).

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        **kwargs: ``activation_fn``, ``mini_batch_size`` (:class:`~rankdistill.training.losses.listwise.ListwiseLoss`).

    References:
        - Gao, Dai and Callan, Rethink Training of BERT Rerankers in Multi-Stage Retrieval Pipeline, ECIR 2021.

    Inputs:
        +-----------------------------------+-------------------------------------------+--------------+
        | inputs                            | labels                                    | model labels |
        +===================================+===========================================+==============+
        | (query, [passage_1 .. passage_n]) | [t_1 .. t_n]; the largest marks the one   | 1            |
        |                                   | relevant passage                          |              |
        +-----------------------------------+-------------------------------------------+--------------+

    Relations:
        - :class:`~rankdistill.training.losses.kl.KLDivergenceLoss` on one-hot targets approaches it as the
          temperature goes to 0.
    """

    def compute(self, scores, targets, mask):
        return lce_loss(scores, targets, mask)
