"""Reports over several candidate sets: an overview of every first stage with its re-rankings, the student's paired
tests in each set, each set's own sections, and summary.json; numbers checked against scipy and by hand."""

from __future__ import annotations

import json
import math

import pytest

from rankdistill.errors import RankdistillError
from rankdistill.evaluation.report import CandidateSet, write_report

L2 = math.log2
QRELS = {"q1": {"d1": 1}, "q2": {"d2": 1}, "q3": {"d3": 1}, "q4": {"d4": 1}}


def _run(lists: dict[str, list[str]]) -> dict[str, list[tuple[str, float]]]:
    return {q: [(d, float(len(ids) - i)) for i, d in enumerate(ids)] for q, ids in lists.items()}


def _at(rank: int, n: int = 4) -> list[str]:
    """A list of n documents with the query's relevant one at ``rank`` (1-based)."""
    return [f"x{i}" for i in range(1, rank)] + ["REL"] + [f"y{i}" for i in range(n - rank)]


def _lists(ranks: dict[str, int]) -> dict[str, list[tuple[str, float]]]:
    return _run({q: [f"d{q[1]}" if d == "REL" else f"{q}{d}" for d in _at(r)] for q, r in ranks.items()})


# The relevant document's rank per query and system; RR@10 = 1 / rank, nDCG@10 = 1 / log2(rank + 1).
RANKS = {
    "bm25": {"bm25": {"q1": 3, "q2": 2, "q3": 4, "q4": 2}, "zero-shot": {"q1": 2, "q2": 2, "q3": 3, "q4": 4},
             "teacher": {"q1": 1, "q2": 1, "q3": 2, "q4": 1}, "student": {"q1": 1, "q2": 2, "q3": 1, "q4": 1}},
    "splade": {"splade": {"q1": 1, "q2": 3, "q3": 2, "q4": 1}, "zero-shot": {"q1": 2, "q2": 1, "q3": 2, "q4": 3},
               "student": {"q1": 1, "q2": 1, "q3": 1, "q4": 2}},
}
MEASURES = ["RR@10", "nDCG@10"]


def _sets() -> list[CandidateSet]:
    bm25 = {s: _lists(r) for s, r in RANKS["bm25"].items()}
    splade = {s: _lists(r) for s, r in RANKS["splade"].items()}
    return [CandidateSet("bm25", bm25, "bm25", teacher="teacher", student="student", zero_shot="zero-shot"),
            CandidateSet("splade", splade, "splade", student="student", zero_shot="zero-shot")]


def _value(measure: str, rank: int) -> float:
    return 1 / rank if measure == "RR@10" else 1 / L2(rank + 1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("candidates")
    md, _ = write_report(out, candidate_sets=_sets(), qrels=QRELS, measures=MEASURES, title="two sets")
    return out, md.read_text(), json.loads((out / "summary.json").read_text())


def test_overview_lists_every_set_with_its_first_stage_and_hand_computed_means(report):
    _, markdown, _ = report
    section = markdown.split("## Candidate sets", 1)[1].split("\n\n")
    table = next(block for block in section if block.startswith("| candidate set | system"))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("bm25", "bm25", "first stage"), ("bm25", "zero-shot", "zero-shot backbone"), ("bm25", "teacher", "teacher"),
        ("bm25", "student", "student"), ("splade", "splade", "first stage"),
        ("splade", "zero-shot", "zero-shot backbone"), ("splade", "student", "student")]
    for row in rows:
        ranks = RANKS[row[0]][row[1]]
        for column, measure in enumerate(MEASURES, start=3):
            expected = sum(_value(measure, r) for r in ranks.values()) / 4
            assert float(row[column].split()[0]) == pytest.approx(expected, abs=5e-5)


def test_paired_tests_are_holm_corrected_t_tests_of_the_student_against_each_reference(report):
    from scipy import stats

    _, markdown, summary = report
    for name, refs in (("bm25", ["bm25", "zero-shot", "teacher"]), ("splade", ["splade", "zero-shot"])):
        paired = summary["candidate_sets"][name]["paired"]
        assert list(paired) == [f"student vs {ref}" for ref in refs]
        for measure in MEASURES:
            student = [_value(measure, RANKS[name]["student"][q]) for q in sorted(QRELS)]
            raw = [stats.ttest_rel(student, [_value(measure, RANKS[name][ref][q]) for q in sorted(QRELS)]).pvalue
                   for ref in refs]
            order = sorted(range(len(raw)), key=raw.__getitem__)  # Holm by hand
            corrected, running = [0.0] * len(raw), 0.0
            for i, k in enumerate(order):
                running = max(running, min(1.0, (len(raw) - i) * raw[k]))
                corrected[k] = running
            for ref, p_raw, p in zip(refs, raw, corrected):
                entry = paired[f"student vs {ref}"]["measures"][measure]
                assert entry["p_value"] == pytest.approx(p_raw) and entry["p_corrected"] == pytest.approx(p)
                assert entry["significant"] == (p < 0.05)
                assert entry["delta"] == pytest.approx(
                    sum(student) / 4 - sum(_value(measure, RANKS[name][ref][q]) for q in QRELS) / 4)
                mark = ("*" if entry["delta"] > 0 else "†") if entry["significant"] else ""
                cell = f"{entry['delta']:+.4f}{mark} (p {p:.4f})"
                assert f"| {name} | student − {ref} (" in markdown and cell in markdown


def test_each_set_has_its_own_sections_and_figures(report):
    out, markdown, summary = report
    assert markdown.index("## Candidate sets") < markdown.index("## Candidate set `bm25`") \
        < markdown.index("## Candidate set `splade`") < markdown.index("## Throughput")
    assert markdown.count("### Effectiveness") == 2 and markdown.count("### Paired tests of the student") == 2
    assert "\n## Effectiveness" not in markdown
    assert sorted(p.name for p in (out / "report-plots").iterdir()) == [
        "bm25-agreement.png", "bm25-effectiveness.png", "bm25-query-deltas.png",
        "splade-effectiveness.png", "splade-query-deltas.png"]  # splade has no teacher: no agreement figure
    assert summary["candidate_sets"]["splade"]["systems"]["splade"]["role"] == "first stage"
    assert summary["candidate_sets"]["bm25"]["systems"]["student"]["means"]["RR@10"] == pytest.approx(
        sum(1 / r for r in RANKS["bm25"]["student"].values()) / 4)


def test_one_candidate_set_reads_as_a_plain_report_with_the_first_stage_named(tmp_path):
    md, _ = write_report(tmp_path, candidate_sets=_sets()[:1], qrels=QRELS, measures=MEASURES)
    text = md.read_text()
    assert "## Candidate set" not in text and "## Effectiveness" in text and "## Paired tests of the student" in text
    assert "| bm25 | first stage |" in text and "than the first stage `bm25`" in text


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"runs": {"a": {}}, "baseline": "a", "candidate_sets": []}, "give either runs"),
    ({}, "give either runs"),
    ({"candidate_sets": []}, "candidate_sets is empty"),
    ({"candidate_sets": [CandidateSet("a b", {"x": {}}, "x"), CandidateSet("a/b", {"x": {}}, "x")]}, "must differ"),
    ({"candidate_sets": [CandidateSet("a", {"x": {}}, "y")]}, "baseline 'y' is not one of the runs"),
])
def test_bad_candidate_sets_are_refused(tmp_path, kwargs, message):
    with pytest.raises(RankdistillError, match=message):
        write_report(tmp_path, qrels=QRELS, **kwargs)
