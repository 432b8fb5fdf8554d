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
