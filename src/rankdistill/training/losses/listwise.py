"""What every listwise loss shares: padded lists with a mask, the pairs of a list, scoring in mini-batches, and
:class:`ListwiseLoss`, which turns the trainer's call into ``compute(scores, targets, mask)``.

The trainer calls a loss as ``loss([queries, docs_lists], labels, prompt=None, task=None)`` where ``docs_lists[b]``
are the passages of query ``b`` and ``labels[b]`` a 1-D tensor of their targets (higher = better), as
``CrossEncoderDataCollator`` builds it from the columns ``query``, ``docs``, ``labels``. Lists may have different
lengths: they are scored flat, placed in a padded ``(batch, max_len)`` matrix, and a boolean ``mask`` marks the real
entries — the same scheme as sentence-transformers' own listwise losses (no ``-1`` label sentinels; a padded entry
never enters a sum or a mean). A set built with ``pairs="compared"`` gives each passage the label
``(target, first window, last window)`` instead, or ``(target, first, last, first, last, ...)`` when a fused list
gives passages one window range per candidate source (-1 pads): :meth:`ListwiseLoss.compute_compared` receives
the windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rankdistill.errors import RankdistillError

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


def pair_mask(targets: Tensor, mask: Tensor) -> Tensor:
    """(b, i, j) is True where both entries are real and t_i > t_j."""
    both = mask[:, :, None] & mask[:, None, :]
    return both & (targets[:, :, None] > targets[:, None, :])


def compared_mask(windows: Tensor) -> Tensor:
    """(b, i, j) is True where passages i and j shared a teacher window, or either has none (-1).

    ``windows[b, i] = (first, last)`` window of passage i (see :mod:`rankdistill.teacher.windows`); ranges that
    overlap met in a window. A passage without one (a cross negative, one below the teacher's depth) is ordered
    by its target against every other passage. ``windows[b, i] = (first, last, first, last, ...)``: several ranges
    (a fused list, one per candidate source, -1 for none); the passages met iff some range of i overlaps some
    range of j. :func:`rankdistill.teacher.windows.compared_matrix` is the same rule for one list.
    """
    b, n = windows.shape[:2]
    spans = windows.reshape(b, n, -1, 2)
    first, last = spans[..., 0], spans[..., 1]  # (b, n, r)
    real = first >= 0
    overlap = (first[:, :, None, :, None] <= last[:, None, :, None, :]) & (
        first[:, None, :, None, :] <= last[:, :, None, :, None]
    )
    met = (overlap & real[:, :, None, :, None] & real[:, None, :, None, :]).flatten(3).any(dim=3)
    free = ~real.any(dim=2)
    return met | free[:, :, None] | free[:, None, :]


def target_ranks(targets: Tensor, mask: Tensor) -> Tensor:
    """1-based rank of each entry by target within its list (1 + the number of real entries above it)."""
    above = (targets[:, None, :] > targets[:, :, None]) & mask[:, None, :]
    return 1.0 + above.sum(dim=2).to(targets.dtype)


# --- nn.Module losses for CrossEncoderTrainer -----------------------------------------------------------


def check_model(loss: nn.Module, model) -> None:
    """A ranking loss needs one score per pair."""
    if getattr(model, "num_labels", 1) != 1:
        raise RankdistillError(f"{type(loss).__name__} needs a model with 1 output label, got {model.num_labels}")


def check_listwise(name: str, inputs, labels) -> None:
    """The trainer's listwise call: two inputs (queries, passage lists) and one label tensor per query.

    A mismatch is a bug in the data pipeline, not a user's argument, so it is a ``ValueError``.
    """
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
    """Scores every (query, passage) of a batch of lists, pads, and applies ``compute(scores, targets, mask)``.

    A subclass writes ``compute`` (and ``compute_compared`` if it can restrict itself to the pairs the teacher
    compared); its ``__init__`` takes its own arguments and passes ``**kwargs`` on to this one.

    Args:
        model: a sentence-transformers ``CrossEncoder`` with one output label.
        activation_fn: applied to the raw scores before the loss; None = identity.
        mini_batch_size: (query, passage) pairs per forward pass; None = :data:`MINI_BATCH_SIZE`.

    Raises:
        RankdistillError: the model has more than one output label.
    """

    def __init__(self, model, activation_fn: nn.Module | None = None, mini_batch_size: int | None = None) -> None:
        super().__init__()
        check_model(self, model)
        self.model = model
        self.activation_fn = activation_fn or nn.Identity()
        self.mini_batch_size = mini_batch_size

    def compute(self, scores: Tensor, targets: Tensor, mask: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute_compared(self, scores: Tensor, targets: Tensor, mask: Tensor, windows: Tensor) -> Tensor:
        raise RankdistillError(
            # wording held by tests/teacher/test_teacher_windows.py (not this package's): see the lead's note
            f"{type(self).__name__} cannot learn from a set built with --pairs compared (it has no pairs to restrict); "
            "use the ranknet loss, or rebuild the set with --pairs all"
        )

    def forward(self, inputs: list, labels: list[Tensor], prompt: str | None = None, task: str | None = None) -> Tensor:
        check_listwise(type(self).__name__, inputs, labels)
        queries, docs_lists = inputs
        pairs = [(q, d) for q, docs in zip(queries, docs_lists) for d in docs]
        flat = self.activation_fn(score_pairs(self.model, pairs, prompt, task, self.mini_batch_size))
        sizes = [len(d) for d in docs_lists]
        scores, mask = pad_lists(list(torch.split(flat, sizes)))
        labels = [torch.as_tensor(lbl, dtype=torch.float32, device=flat.device) for lbl in labels]
        if labels[0].ndim == 2:  # (target, first, last[, first, last ...]) per passage: a set built with pairs='compared'
            targets, _ = pad_lists([lbl[:, 0] for lbl in labels])
            columns = [pad_lists([lbl[:, c] for lbl in labels], fill=-1.0)[0] for c in range(1, labels[0].shape[1])]
            windows = torch.stack(columns, dim=-1).to(scores.device)
            return self.compute_compared(scores, targets.to(scores.device), mask, windows)
        targets, _ = pad_lists(labels)
        return self.compute(scores, targets.to(scores.device), mask)

    def get_config_dict(self) -> dict[str, Any]:
        return {"mini_batch_size": self.mini_batch_size}
