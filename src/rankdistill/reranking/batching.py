"""Token-budget batches: pairs sorted by exact token length, cut where the next pair would pass the budget.

A batch costs its pair count times its longest pair, so sorting first keeps padding to a few tokens a batch
and lets short pairs go in big batches. The re-ranking scorer and the HTTP server's batcher both cut here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class Batch:
    """Indices into the pair list and the padded tensors for them."""

    index: np.ndarray
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray


def make_batches(ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]], batch_tokens: int, pad_id: int) -> list[Batch]:
    """Pairs sorted by token length (stable), cut into batches of at most ``batch_tokens`` padded tokens.

    Batches of one exact length, which need no attention mask, were slower overall: too many small batches
    and new shapes (benchmarks/RESULTS.md, "batches of one exact length").
    """
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    batches: list[Batch] = []
    start = 0
    while start < len(order):
        stop = start + 1
        # sorted ascending, so the last pair of a batch is its longest: n pairs cost n * len(last)
        while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= batch_tokens:
            stop += 1
        batches.append(_pad(order[start:stop], ids, types, lengths, pad_id))
        start = stop
    return batches


def _pad(index: np.ndarray, ids, types, lengths: np.ndarray, pad_id: int) -> Batch:
    """The pairs ``index`` right-padded to the longest of them."""
    width = int(lengths[index[-1]])
    input_ids = np.full((len(index), width), pad_id, dtype=np.int64)
    token_type_ids = np.zeros((len(index), width), dtype=np.int64)
    attention_mask = np.zeros((len(index), width), dtype=np.int64)
    for row, i in enumerate(index):
        n = lengths[i]
        input_ids[row, :n] = ids[i]
        token_type_ids[row, :n] = types[i]
        attention_mask[row, :n] = 1
    return Batch(index, input_ids, token_type_ids, attention_mask)
