"""Score fusion: a re-ranker with the first stage it re-ranks, or several runs over the same candidates.

A small student re-ranking a strong first stage (SPLADE++, say) can rank worse than the first stage alone: the two
make different mistakes, and IR systems have long summed normalised scores of such rankers (CombSUM; Fox and Shaw,
1994). Scores are z-normalised per query over the re-ranked candidates, because a cross-encoder's logits and a
retriever's scores live on unrelated scales. Measured on DL20 in benchmarks/RESULTS.md (section 8; students of two
fold splits fused with each other: sections 14 and 17).

Written here rather than taken from a fusion library: it is a few lines over numpy, and the errors must name the
run file and query that cannot be fused.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from rankdistill.data.trec import Run, append_tail, read_run, write_run
from rankdistill.errors import RankdistillError


def check_weight(weight: float, what: str = "fuse_first_stage") -> float:
    """A fusion weight (``what`` names it in the error), refused before any scoring when negative or not finite."""
    if not math.isfinite(weight) or weight < 0:
        raise RankdistillError(f"{what} must be a finite number >= 0, got {weight}")
    return weight


def _z(values: Sequence[float]) -> np.ndarray:
    """(v - mean) / std over one query's scores (population std); all-equal scores become zeros."""
    v = np.asarray(values, dtype=float)
    std = v.std()
    return (v - v.mean()) / std if std > 0 else np.zeros_like(v)


def _z_sum(columns: Sequence[Sequence[float]], weights: Sequence[float]) -> np.ndarray:
    """sum_i weights[i] * z(columns[i]): the one fused score of both fusions below (columns aligned by document)."""
    return sum(w * _z(column) for w, column in zip(weights, columns))


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
    fused = _z_sum([[s for _, s in model], [first[docid] for docid, _ in model]], [1.0, weight])
    return [(docid, float(score)) for (docid, _), score in zip(model, fused)]


def fuse_ranking(top: list[tuple[str, float]], first_stage: list[tuple[str, float]], weight: float,
                 tail: Iterable[str] = ()) -> list[tuple[str, float]]:
    """One query's re-ranked ``top`` fused with the first stage, best first, then ``tail`` (see
    :func:`~rankdistill.data.trec.append_tail`): what ``rerank --fuse-first-stage`` and the pipeline's
    ``student+first-stage`` row write."""
    fused = fuse_with_first_stage(top, first_stage, weight)
    return append_tail(sorted(fused, key=lambda item: -item[1]), tail)


def fuse_runs(runs: Sequence[Mapping[str, list[tuple[str, float]]]], weights: Sequence[float] | None = None,
              depth: int | None = 100, names: Sequence[str] | None = None) -> Run:
    """Each query's top ``depth`` of the first run ranked by sum_i weights[i] * z(runs[i]), the rest of its list below.

    The runs must score the same candidates (e.g. students re-ranking one first stage): every run scores every
    document of the first run's top ``depth`` of every query; with equal weights this is the mean of z-scores.

    Args:
        runs: two or more runs, ``{qid: [(docid, score), ...]}`` best first.
        weights: one finite weight >= 0 per run (default: 1 each).
        depth: documents per query fused (None: the first run's whole list).
        names: the runs' names for errors (default ``run 1``, ``run 2``, ...).

    Raises:
        RankdistillError: fewer than two runs, weights that do not match them, or a query or a document of the
            first run's top that another run lacks (named with the run).
    """
    names = list(names) if names is not None else [f"run {i + 1}" for i in range(len(runs))]
    if len(runs) < 2:
        raise RankdistillError(f"fusion needs at least two runs, got {len(runs)}")
    weights = [1.0] * len(runs) if weights is None else [float(w) for w in weights]
    if len(weights) != len(runs):
        raise RankdistillError(f"fusion: {len(weights)} weights for {len(runs)} runs; give one weight per run")
    for w in weights:
        check_weight(w, "fusion: each weight")
    if depth is not None and depth < 1:
        raise RankdistillError(f"depth must be at least 1, got {depth}")
    first, others = runs[0], [_scores_of(run) for run in runs[1:]]
    fused: Run = {}
    for qid, ranked in first.items():
        top = ranked[:depth] if depth else ranked
        docs = [docid for docid, _ in top]
        columns = [[score for _, score in top]]
        for scores, name in zip(others, names[1:]):
            if qid not in scores:
                raise RankdistillError(f"fusion: {name} has no results for query {qid} of {names[0]}")
            missing = [docid for docid in docs if docid not in scores[qid]]
            if missing:
                raise RankdistillError(
                    f"fusion: {name} has no score for {len(missing)} of the {len(docs)} documents of query {qid} that "
                    f"{names[0]} ranks at the top, e.g. {missing[:3]}; fuse runs over the same candidates and depth")
            columns.append([scores[qid][docid] for docid in docs])
        order = sorted(zip(docs, _z_sum(columns, weights).tolist()), key=lambda item: -item[1])
        fused[qid] = append_tail(order, (docid for docid, _ in ranked[len(top):]))
    return fused


def _scores_of(run: Mapping[str, list[tuple[str, float]]]) -> dict[str, dict[str, float]]:
    return {qid: {docid: float(score) for docid, score in ranked} for qid, ranked in run.items()}


def fuse(runs: Sequence[str | Path], output: str | Path, *, weights: Sequence[float] | None = None,
         depth: int | None = 100, tag: str = "rankdistill-fused") -> Path:
    """``rankdistill fuse``: the run files fused by :func:`fuse_runs` (queries of the first run), written to ``output``.

    An ensemble of students over one candidate set (RESULTS sections 14 and 17), or a student with another re-ranker.
    """
    loaded = [read_run(path) for path in runs]
    return write_run(fuse_runs(loaded, weights, depth, names=[str(path) for path in runs]), output, tag)
