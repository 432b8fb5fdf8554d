"""Pointwise binary cross-entropy on the (query, passage) pairs of the lists, through sentence-transformers."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rankdistill.errors import RankdistillError
from rankdistill.training.losses.listwise import check_listwise, check_model


class ListwiseBCELoss(nn.Module):
    """sentence-transformers' ``BinaryCrossEntropyLoss`` on the flattened (query, passage) pairs of the lists.

    Pair-format input (``[queries, passages]`` with one label each) is passed straight through.

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        threshold: label a target >= ``threshold`` as 1, the others 0; None = the targets are the labels and must
            lie in [0, 1] (relevance 0/1).
        pos_weight: the positive class's weight (``torch.nn.BCEWithLogitsLoss``); None = 1.
        activation_fn: applied to the logits first; None = sentence-transformers' default (identity).

    Raises:
        RankdistillError: at the call, labels outside [0, 1] without a ``threshold``.

    References:
        - Nogueira and Cho, Passage Re-ranking with BERT, 2019 (monoBERT's pointwise loss).

    Inputs:
        +-----------------------------------+---------------------------------------------+--------------+
        | inputs                            | labels                                      | model labels |
        +===================================+=============================================+==============+
        | (query, [passage_1 .. passage_n]) | [y_1 .. y_n] in [0, 1], or any with         | 1            |
        |                                   | ``threshold``                               |              |
        +-----------------------------------+---------------------------------------------+--------------+
        | (query, passage)                  | y in [0, 1]                                 | 1            |
        +-----------------------------------+---------------------------------------------+--------------+
    """

    def __init__(self, model, threshold: float | None = None, pos_weight: float | None = None,
                 activation_fn: nn.Module | None = None) -> None:
        super().__init__()
        from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

        check_model(self, model)
        self.model = model
        self.threshold = threshold
        weight = torch.tensor(pos_weight) if pos_weight is not None else None
        extra = {"activation_fn": activation_fn} if activation_fn is not None else {}
        self.bce = BinaryCrossEntropyLoss(model, pos_weight=weight, **extra)

    def forward(self, inputs: list, labels, prompt: str | None = None, task: str | None = None) -> Tensor:
        if len(inputs) == 2 and inputs[1] and isinstance(inputs[1][0], str):
            queries, docs, flat = inputs[0], inputs[1], torch.as_tensor(labels, dtype=torch.float32)
        else:
            check_listwise("ListwiseBCELoss", inputs, labels)
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
