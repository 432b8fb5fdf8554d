"""The terminal summary's per-fold table: fold means from metrics.json's per-query values."""

from __future__ import annotations

import pytest

from rankdistill.commands.pipeline import fold_table
from rankdistill.workflow.runner import fold_means


def test_fold_means_average_each_folds_test_queries():
    summary = {
        "measures": ["nDCG@10"],
        "runs": {
            "bm25": {"per_query": {"nDCG@10": {"a": 0.5, "b": 0.25, "c": 1.0}}},
            "student": {"per_query": {"nDCG@10": {"a": 0.75, "c": 0.5}}},  # b missing from the run: counts 0
        },
    }
    folds = {"fold1": ["a", "b"], "fold2": ["c"]}
    means = fold_means(summary, folds, "nDCG@10")
    assert means["bm25"] == {"fold1": pytest.approx(0.375), "fold2": pytest.approx(1.0)}
    assert means["student"] == {"fold1": pytest.approx(0.375), "fold2": pytest.approx(0.5)}
    table = fold_table(summary, folds)
    assert [c.header for c in table.columns] == ["run", "fold1 (2 q)", "fold2 (1 q)"]


def test_summary_prints_one_table_per_candidate_set(capsys):
    from rankdistill.commands.pipeline import print_summary
    from rankdistill.workflow.runner import PipelineResult

    def summary(first: str, mean: float) -> dict:
        runs = {first: mean, "student": mean + 0.1}
        return {"measures": ["nDCG@10"], "baseline": first,
                "runs": {r: {"measures": {"nDCG@10": {"mean": m}}, "per_query": {"nDCG@10": {"a": m}}}
                         for r, m in runs.items()}}

    result = PipelineResult(output=None, metrics={"cv": {"bm25": summary("bm25", 0.25), "splade": summary("splade", 0.5)}},
                            folds={"fold1": ["a"]})
    print_summary(result)
    out = capsys.readouterr().out
    flat = " ".join(out.split())  # rich wraps a title wider than its table
    assert "cv · bm25: first stage / student" in flat and "cv · splade: first stage / student" in flat
    assert "teacher" not in out and "zero-shot" not in out  # the title names only the rows the set has
    assert "splade (baseline)" in out and "0.6000" in out and "0.3500" in out
    assert out.count("nDCG@10 per fold") == 2
