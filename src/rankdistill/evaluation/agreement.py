"""Teacher-student agreement: how closely a student's ranking copies its teacher's, query by query."""

from __future__ import annotations

import math
from dataclasses import dataclass

from rankdistill.data.trec import Run


@dataclass(frozen=True)
class QueryAgreement:
    """How one query's student ranking agrees with the teacher's."""

    tau: float  # Kendall's tau-b over the documents both top-k lists hold; NaN when fewer than 2
    overlap: float  # |top-k(teacher) ∩ top-k(student)| / min(k, len(teacher), len(student))
    common: int  # documents in both top-k lists used for tau


def agreement(teacher: Run, student: Run, *, tau_k: int = 100, overlap_k: int = 10) -> dict[str, QueryAgreement]:
    """Teacher-student agreement for every query both runs answer.

    Args:
        teacher: The teacher's run.
        student: The student's run.
        tau_k: Kendall's tau compares the order of the documents both top-``tau_k`` lists hold.
        overlap_k: Overlap is the share of the teacher's top-``overlap_k`` also in the student's.

    Returns:
        qid -> :class:`QueryAgreement`, in qid order.
    """
    from scipy import stats

    out: dict[str, QueryAgreement] = {}
    for qid in sorted(set(teacher) & set(student)):
        t_ids = [d for d, _ in teacher[qid][:tau_k]]
        s_ids = [d for d, _ in student[qid][:tau_k]]
        s_rank = {d: r for r, d in enumerate(s_ids)}
        common = [d for d in t_ids if d in s_rank]
        if len(common) >= 2:
            tau = float(stats.kendalltau(range(len(common)), [s_rank[d] for d in common]).statistic)
        else:
            tau = math.nan
        t_top, s_top = teacher[qid][:overlap_k], student[qid][:overlap_k]
        depth = min(overlap_k, len(t_top), len(s_top))
        shared = len({d for d, _ in t_top} & {d for d, _ in s_top})
        out[qid] = QueryAgreement(tau=tau, overlap=shared / depth if depth else math.nan, common=len(common))
    return out
