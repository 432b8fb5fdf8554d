"""Score fusion of a re-ranker with the first stage it re-ranks.

A small student re-ranking a strong first stage (SPLADE++, say) can rank worse than the first stage alone: the two
make different mistakes, and IR systems have long summed normalised scores of such rankers (CombSUM; Fox and Shaw,
1994). Scores are z-normalised per query over the re-ranked candidates, because a cross-encoder's logits and a
retriever's scores live on unrelated scales. Measured on DL20 in benchmarks/RESULTS.md (section 8).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from rankdistill.data.trec import append_tail
from rankdistill.errors import RankdistillError


def check_weight(weight: float) -> float:
    """The first stage's weight, refused before any scoring when it is negative or not finite."""
    if not math.isfinite(weight) or weight < 0:
        raise RankdistillError(f"fuse_first_stage must be a finite number >= 0, got {weight}")
    return weight


def _z(values: list[float]) -> np.ndarray:
    """(v - mean) / std over one query's scores (population std); all-equal scores become zeros."""
    v = np.asarray(values, dtype=float)
    std = v.std()
    return (v - v.mean()) / std if std > 0 else np.zeros_like(v)


def fuse_with_first_stage(model: list[tuple[str, float]], first_stage: list[tuple[str, float]],
                          weight: float) -> list[tuple[str, float]]:
    """``model``'s documents scored z(model) + weight * z(first stage), in ``model``'s order (sort afterwards).

    Args:
        model: one query's (docid, re-ranker score) pairs.
        first_stage: the same query's (docid, first-stage score) pairs; must hold every document of ``model``.
        weight: the first stage's weight; 0 leaves the re-ranker's order (scores become z-scores).

    Raises:
        RankdistillError: a negative or non-finite weight, or a document the first stage does not score.
    """
    check_weight(weight)
    first = dict(first_stage)
    missing = [docid for docid, _ in model if docid not in first]
    if missing:
        raise RankdistillError(f"fusion: the first stage has no score for {missing[:3]}")
    fused = _z([float(s) for _, s in model]) + weight * _z([float(first[docid]) for docid, _ in model])
    return [(docid, float(score)) for (docid, _), score in zip(model, fused)]


def fuse_ranking(top: list[tuple[str, float]], first_stage: list[tuple[str, float]], weight: float,
                 tail: Iterable[str] = ()) -> list[tuple[str, float]]:
    """One query's re-ranked ``top`` fused with the first stage, best first, then ``tail`` (see
    :func:`~rankdistill.data.trec.append_tail`): what ``rerank --fuse-first-stage`` and the pipeline's
    ``student+first-stage`` row write."""
    fused = fuse_with_first_stage(top, first_stage, weight)
    return append_tail(sorted(fused, key=lambda item: -item[1]), tail)
