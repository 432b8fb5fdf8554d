"""The sliding window of a listwise teacher, and which passages it actually compared.

A listwise LLM ranks a query's top-``depth`` candidates window by window from the bottom of the list to the
top. Two passages whose windows never met were never compared by the LLM: their order in the final ranking is
the first stage's order, carried along. With window 20 and stride 10 over 100 candidates only 1,350 of the
4,950 pairs share a window, and the recorded RankVicuna ranking of DL20 stays close to its BM25 input (Kendall
tau in ``benchmarks/RESULTS.md``). A student trained on every pair of the final ranking therefore mostly learns
the first stage; trained on the pairs that shared a window it learns what the LLM judged (``rankdistill build
--pairs compared``).

Which windows held a passage follows from the teacher's input order and its final order alone: replaying the
windows with the final order as each window's answer puts the same passages in each window's top part as the
real run did (a passage the LLM left in the bottom part of a window stays below every passage it carried up),
so each passage's windows are found exactly, and a run that was not made this way is recognised because the
replay does not end in its order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_spans(n: int, window: int, stride: int) -> list[tuple[int, int]]:
    """Half-open slices of a list of ``n`` candidates in processing order, bottom first (rank_llm's loop).

    The last (top) window may be shorter when ``n - window`` is not a multiple of ``stride``; a window that
    would only repeat the previous one's top part is not made. ``n <= window`` gives one window.
    """
    spans: list[tuple[int, int]] = []
    end, start = n, n - window
    while end > 0 and start + stride != 0:
        start = max(start, 0)
        spans.append((start, end))
        end -= stride
        start -= stride
    return spans


def replay_windows(
    candidates: Sequence[str], ranked: Sequence[str], window: int, stride: int
) -> dict[str, tuple[int, int]] | None:
    """Each candidate's first and last window (0 = the first, bottom one) in the teacher's run.

    ``candidates``: the teacher's input, best first (the first-stage top-``depth``); ``ranked``: the same
    passages in the teacher's final order. Two passages were compared iff their window ranges overlap. None
    when the replay does not give ``ranked``: not a sliding-window ranking of ``candidates`` with these settings.
    """
    if len(candidates) != len(ranked) or set(candidates) != set(ranked):
        return None
    final = {docid: i for i, docid in enumerate(ranked)}
    order = list(candidates)
    seen: dict[str, list[int]] = {}
    for index, (start, end) in enumerate(window_spans(len(order), window, stride)):
        order[start:end] = sorted(order[start:end], key=final.__getitem__)
        for docid in order[start:end]:
            seen.setdefault(docid, [index, index])[1] = index
    if order != list(ranked):
        return None
    return {docid: (first, last) for docid, (first, last) in seen.items()}


def compared_matrix(ranges: Sequence[Sequence[int]]) -> np.ndarray:
    """(i, j) is True where passages i and j met in a teacher window, or either has none.

    ``ranges[i]`` is passage i's window ranges, flat ``(first, last, first, last, ...)``: one range per source that
    ranked it, the sources' windows numbered apart (see :mod:`rankdistill.distillation.sources`), so two ranges
    overlap only within one source's run. The training loss applies the same rule to padded tensors
    (:func:`rankdistill.training.losses.listwise.compared_mask`); this one counts a set's pairs when it is built.
    """
    width = max((len(r) for r in ranges), default=0) // 2
    spans = np.full((len(ranges), max(width, 1), 2), -1, dtype=np.int64)
    for i, flat in enumerate(ranges):
        if flat:
            spans[i, : len(flat) // 2] = np.asarray(flat, dtype=np.int64).reshape(-1, 2)
    first, last = spans[..., 0], spans[..., 1]
    real = first >= 0
    overlap = (first[:, None, :, None] <= last[None, :, None, :]) & (first[None, :, None, :] <= last[:, None, :, None])
    met = (overlap & real[:, None, :, None] & real[None, :, None, :]).any(axis=(2, 3))
    free = ~real.any(axis=1)
    return met | free[:, None] | free[None, :]


def ordered_pairs(targets: Sequence[float], ranges: Sequence[Sequence[int]] | None = None) -> int:
    """How many ordered pairs (i, j) with t_i > t_j a pairwise loss learns from one list; with ``ranges``
    (``pairs: compared``) only those whose passages met in a teacher window (:func:`compared_matrix`)."""
    t = np.asarray(targets, dtype=np.float64)
    above = t[:, None] > t[None, :]
    if ranges is not None:
        above &= compared_matrix(ranges)
    return int(above.sum())
