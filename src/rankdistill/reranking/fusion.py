"""Score fusion of a re-ranker with the first stage it re-ranks.

A small student re-ranking a strong first stage (SPLADE++, say) can rank worse than the first stage alone: the two
make different mistakes, and IR systems have long summed normalised scores of such rankers (CombSUM; Fox and Shaw,
1994). Scores are z-normalised per query over the re-ranked candidates, because a cross-encoder's logits and a
retriever's scores live on unrelated scales. Measured on DL20 in benchmarks/RESULTS.md (section 8). Written here
because it is a few lines over a query's scores, which no ranking library we depend on exposes for plain dicts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rankdistill.errors import RankdistillError


def zscores(values: Sequence[float]) -> list[float]:
    """(v - mean) / std over one query's scores (population std); all-equal scores become zeros."""
    n = len(values)
    if n == 0:
        return []
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / n)
    return [(v - mean) / std if std > 0 else 0.0 for v in values]


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
    if not math.isfinite(weight) or weight < 0:
        raise RankdistillError(f"fuse_first_stage must be a finite number >= 0, got {weight}")
    first = dict(first_stage)
    missing = [docid for docid, _ in model if docid not in first]
    if missing:
        raise RankdistillError(f"fusion: the first stage has no score for {missing[:3]}")
    z_model = zscores([float(s) for _, s in model])
    z_first = zscores([float(first[docid]) for docid, _ in model])
    return [(docid, zm + weight * zf) for (docid, _), zm, zf in zip(model, z_model, z_first)]
