"""What the report shows of an evaluation, computed by ``rankdistill.evaluate`` so the two always agree."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from rankdistill.data.trec import Qrels, Run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.metrics import Comparison

ALPHA = 0.05


@dataclass
class Scores:
    """Means, per-query values, corrected p-values and marks of every system."""

    measures: list[str]
    qids: list[str]
    means: dict[str, dict[str, float]]  # system -> measure -> mean over qids
    per_query: dict[str, dict[str, dict[str, float]]]  # system -> measure -> qid -> value
    pvalues: dict[str, dict[str, float]]  # system -> measure -> Holm-corrected p against the baseline
    marks: dict[str, dict[str, str]]  # system -> measure -> significance mark ("" when not significant)

    def mark(self, system: str, measure: str) -> str:
        return self.marks.get(system, {}).get(measure, "")


def score(runs: Mapping[str, Run], qrels: Qrels, measures: Sequence[str], baseline: str, test: str = "ttest") -> Scores:
    """Metrics and tests from ``rankdistill.evaluate``, so the report and ``rankdistill evaluate`` agree.

    That means: every qrels query counts (a run lacking one scores 0 there, as ``trec_eval -c``), and
    each system is tested against ``baseline`` with Holm's correction across the compared systems.

    Raises:
        RankdistillError: No query of the runs is judged (runs and qrels from different collections).
    """
    from rankdistill.evaluation.metrics import evaluate

    answered = set().union(*(run.keys() for run in runs.values()))
    if not answered & set(qrels):
        raise RankdistillError(
            "no query of the runs is judged in the qrels: check that runs and qrels use the same query ids "
            f"(runs e.g. {sorted(answered)[:3]}, qrels e.g. {sorted(qrels)[:3]})"
        )
    result = evaluate(dict(runs), qrels=qrels, measures=measures, baseline=baseline, test=test, alpha=ALPHA)
    comps = result.comparisons
    return Scores(
        measures=list(result.measures),
        qids=list(result.queries),
        means=result.means,
        per_query=result.per_query,
        pvalues={s: {m: c.p_corrected for m, c in by_m.items()} for s, by_m in comps.items()},
        marks={s: {m: comps.get(s, {}).get(m).mark if m in comps.get(s, {}) else "" for m in result.measures}
               for s in result.runs},
    )


def ci95(values: Sequence[float]) -> float:
    """Half-width of the 95% confidence interval of the mean (Student's t); 0 for fewer than 2 values."""
    from scipy import stats

    if len(values) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def paired_comparisons(scores: Scores, system: str, references: Sequence[str], test: str = "ttest",
                 alpha: float = ALPHA) -> dict[str, dict[str, Comparison]]:
    """``system`` against each of ``references`` on every measure: reference -> measure -> test.

    The paired test of ``rankdistill.evaluate`` on the per-query values, Holm-corrected across the references per
    measure (the student is compared with the first stage, the zero-shot backbone and the teacher at once).
    """
    from rankdistill.evaluation.significance import holm, paired_p_value

    refs = [r for r in references if r != system]
    out: dict[str, dict[str, Comparison]] = {r: {} for r in refs}
    qids = scores.qids
    for m in scores.measures:
        values = [scores.per_query[system][m][q] for q in qids]
        p_values = [paired_p_value(values, [scores.per_query[r][m][q] for q in qids], test) for r in refs]
        for ref, p, p_corr in zip(refs, p_values, holm(p_values)):
            out[ref][m] = Comparison(scores.means[system][m] - scores.means[ref][m], p, p_corr, p_corr < alpha)
    return out
