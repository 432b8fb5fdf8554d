"""Sampling strategies: which of a query's ranked candidates go into its list, and the rank target.

The strategies re-implement lightning-ir's ``RunDataset``/``Sampler`` (the code behind the Rank-DistiLLM paper),
with a numpy ``Generator`` per query (:func:`query_rng`) so a set is reproducible from its seed and does not depend
on the order in which queries are processed. ``STRATEGIES`` is the registry: its keys are the names ``sampling``
accepts (``SAMPLINGS``), each value picks indices into the ranked candidate list (0 = best).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from rankdistill.errors import RankdistillError

# a strategy: (n candidates, k wanted, the query's generator, relevance of each candidate or None) -> indices
Strategy = Callable[[int, int, np.random.Generator, Sequence[bool] | None], list[int] | None]


def query_rng(seed: int, qid: str) -> np.random.Generator:
    """A generator for one query, from the set's seed and the query id (independent of query order)."""
    digest = int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, digest]))


def _top(n: int, k: int, rng: np.random.Generator, relevant: Sequence[bool] | None) -> list[int]:
    """The first k."""
    return list(range(min(k, n)))


def _random(n: int, k: int, rng: np.random.Generator, relevant: Sequence[bool] | None) -> list[int]:
    """k uniformly without replacement."""
    return sorted(rng.choice(n, size=min(k, n), replace=False).tolist())


def _log_random(n: int, k: int, rng: np.random.Generator, relevant: Sequence[bool] | None) -> list[int]:
    """k without replacement, weight 1/ln(1 + rank) (rank 1-based)."""
    weights = 1.0 / np.log1p(np.arange(1, n + 1, dtype=np.float64))
    return sorted(rng.choice(n, size=min(k, n), replace=False, p=weights / weights.sum()).tolist())


def _top_and_random(n: int, k: int, rng: np.random.Generator, relevant: Sequence[bool] | None) -> list[int]:
    """The first k//2, then k - k//2 uniformly from the rest."""
    k = min(k, n)
    top = k // 2
    rest = rng.choice(np.arange(top, n), size=k - top, replace=False).tolist()
    return list(range(top)) + sorted(rest)


def _single_relevant(n: int, k: int, rng: np.random.Generator, relevant: Sequence[bool] | None) -> list[int] | None:
    """One relevant candidate uniformly, then min(k-1, #non-relevant) non-relevant ones uniformly; None if none is."""
    if relevant is None:
        raise ValueError("single-relevant sampling needs the relevance of each candidate")
    pos = [i for i in range(n) if relevant[i]]
    neg = [i for i in range(n) if not relevant[i]]
    if not pos:
        return None
    chosen = int(rng.choice(pos))
    negatives = rng.choice(neg, size=min(k - 1, len(neg)), replace=False).tolist() if neg else []
    return [chosen, *sorted(int(i) for i in negatives)]


STRATEGIES: dict[str, Strategy] = {
    "top": _top,
    "random": _random,
    "log-random": _log_random,
    "top-and-random": _top_and_random,
    "single-relevant": _single_relevant,
}
SAMPLINGS = tuple(STRATEGIES)


def sample_indices(
    n: int,
    k: int,
    strategy: str,
    rng: np.random.Generator,
    relevant: Sequence[bool] | None = None,
) -> list[int] | None:
    """Pick up to ``k`` of ``n`` ranked candidates (0-based, best first) as lightning-ir's Sampler does.

    Args:
        n: How many ranked candidates there are.
        k: How many to pick; lists shorter than ``k`` give all their candidates (lightning-ir drops such
            queries instead).
        strategy: A name of ``STRATEGIES`` (see each strategy's docstring).
        rng: The query's generator (:func:`query_rng`).
        relevant: Per candidate, whether it is judged relevant (``single-relevant`` only).

    Returns:
        The chosen indices, or None when ``single-relevant`` finds no relevant candidate.

    Raises:
        RankdistillError: ``strategy`` is not a known name.
    """
    pick = STRATEGIES.get(strategy)
    if pick is None:
        raise RankdistillError(f"sampling: unknown strategy {strategy!r}; choose one of {', '.join(SAMPLINGS)}")
    return pick(n, k, rng, relevant)


def cross_negatives(pool: list[str], own: set[str], k: int, rng: np.random.Generator) -> list[str]:
    """Up to ``k`` distinct passages drawn uniformly from ``pool`` (other queries' candidates), none of ``own``."""
    picked: list[str] = []
    for idx in rng.permutation(len(pool)):
        docid = pool[idx]
        if docid not in own and docid not in picked:
            picked.append(docid)
            if len(picked) == k:
                break
    return picked


def rank_target(rank: int | None, depth: int) -> float:
    """Teacher rank -> target, higher is better: depth - rank + 1 (0 beyond depth or when unranked)."""
    if rank is None:
        return 0.0
    return float(max(depth - rank + 1, 0))
