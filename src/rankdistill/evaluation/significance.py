"""Paired significance tests on per-query values, with Holm-Bonferroni correction."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

TESTS = ("ttest", "wilcoxon")


def paired_p_value(values: Sequence[float], baseline: Sequence[float], test: str = "ttest") -> float:
    """Two-sided p-value of a paired test between two aligned per-query vectors.

    ``ttest`` is scipy's ``ttest_rel``; ``wilcoxon`` is scipy's ``wilcoxon`` on the differences
    (zero differences dropped, scipy's default). Identical vectors give p = 1, where scipy would
    return NaN (t-test) or raise (Wilcoxon): there is no evidence of a difference.
    """
    from scipy import stats

    a = np.asarray(values, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"per-query vectors differ in length ({a.shape[0]} vs {b.shape[0]}); align them first")
    if test not in TESTS:
        raise ValueError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if len(a) < 2 or np.allclose(a, b, rtol=0, atol=0):
        return 1.0
    if test == "ttest":
        p = float(stats.ttest_rel(a, b).pvalue)
    else:
        p = float(stats.wilcoxon(a - b).pvalue)
    return 1.0 if math.isnan(p) else p


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Written here because scipy offers only Benjamini-Hochberg/Yekutieli (``false_discovery_control``)
    and statsmodels' ``multipletests`` would be a whole dependency for these few lines:
    sort ascending, multiply the i-th smallest (0-based) by (m - i), keep the running maximum, cap at 1.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted
