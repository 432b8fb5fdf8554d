"""The report: files exist and are self-contained, and every number in them is the right one.

Expected values are computed by hand (nDCG with gain = grade and discount log2(rank + 1), as trec_eval
does; Kendall's tau by counting pairs) or by ir-measures and scipy directly on the toy runs.
"""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import pytest
import yaml

from rankdistill.errors import RankdistillError
from rankdistill.evaluation.report import agreement, write_report

L2 = math.log2

QRELS = {
    "q1": {"d1": 2, "d2": 1, "d3": 0},
    "q2": {"d4": 1, "d5": 0},
    "q3": {"d6": 1, "d7": 0},
}


def _run(lists: dict[str, list[str]]) -> dict[str, list[tuple[str, float]]]:
    return {q: [(d, float(len(ids) - i)) for i, d in enumerate(ids)] for q, ids in lists.items()}


RUNS = {
    "bm25": _run({"q1": ["d3", "d1", "d2"], "q2": ["d5", "d4"], "q3": ["d6", "d7"]}),
    "teacher": _run({"q1": ["d1", "d2", "d3"], "q2": ["d4", "d5"], "q3": ["d7", "d6"]}),
    "student": _run({"q1": ["d2", "d1", "d3"], "q2": ["d4", "d5"], "q3": ["d6", "d7"]}),
}

# nDCG@10 by hand. q1's ideal DCG: 2/log2(2) + 1/log2(3).
IDCG1 = 2 + 1 / L2(3)
NDCG = {
    "bm25": {"q1": (2 / L2(3) + 1 / L2(4)) / IDCG1, "q2": 1 / L2(3), "q3": 1.0},
    "teacher": {"q1": 1.0, "q2": 1.0, "q3": 1 / L2(3)},
    "student": {"q1": (1 + 2 / L2(3)) / IDCG1, "q2": 1.0, "q3": 1.0},
}
# RR@10 by hand: rank of the first document with grade >= 1.
RR = {"bm25": [1 / 2, 1 / 2, 1.0], "teacher": [1.0, 1.0, 1 / 2], "student": [1.0, 1.0, 1.0]}

THROUGHPUT = {
    "student": {"pairs_per_s": 812.4, "ms_per_query": 123.1, "device": "cpu"},
    "teacher": {"ms_per_query": 41230.0},
    "student-folds": {"a": {"ms_per_query": 100.0}, "b": {"ms_per_query": 200.0}},
}
CONFIG = {"name": "toy", "dataset": Path("/data/toy"), "train": {"loss": "ranknet", "lr": 3e-5, "seeds": (1, 2)}}
FOLDS = {"a": ["q1", "q2"], "b": ["q3"]}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    md, page = write_report(out, runs=RUNS, qrels=QRELS, baseline="bm25", teacher="teacher", student="student",
                            throughput=THROUGHPUT, config=CONFIG, title="toy report", folds=FOLDS)
    return out, md, page, md.read_text(), page.read_text()


def _rows(markdown: str, section: str) -> dict[str, list[str]]:
    """The first table after a heading: first cell -> remaining cells."""
    text = markdown.split(section, 1)[1]
    lines = [ln for ln in text.split("\n\n") if ln.startswith("|")][0].splitlines()
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:])}


def _value(cell: str) -> float:
    return float(cell.split()[0])


def test_files_written_atomically(report):
    out, md, page, _, _ = report
    assert md == out / "report.md" and page == out / "report.html"
    assert sorted(p.name for p in (out / "report-plots").iterdir()) == [
        "agreement.png", "effectiveness.png", "folds.png", "query-deltas.png"]
    assert not [p for p in out.rglob("*.tmp")], "temporary files left behind"


def test_html_is_self_contained(report):
    _, _, _, markdown, page = report
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<script" not in page.lower() and "<link" not in page.lower()
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 4 == len(re.findall(r"<img ", page))
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG\r\n\x1a\n")
    # the Markdown links the same figures as files next to it
    assert markdown.count("](report-plots/") == 4
    assert "<table>" in page and "<h2>Effectiveness</h2>" in page


def test_effectiveness_table_matches_hand_computed_values(report):
    rows = _rows(report[3], "## Effectiveness")
    assert list(rows) == ["bm25", "teacher", "student"]
    assert [rows[s][0] for s in rows] == ["baseline", "teacher", "student"]
    for system, per_query in NDCG.items():
        assert _value(rows[system][1]) == pytest.approx(sum(per_query.values()) / 3, abs=5e-5)
        assert _value(rows[system][2]) == pytest.approx(sum(RR[system]) / 3, abs=5e-5)
    # W/T/L of nDCG@10 against bm25: teacher better on q1, q2, worse on q3; student better on q1, q2, equal on q3
    assert rows["teacher"][-1] == "2/0/1" and rows["student"][-1] == "2/1/0" and rows["bm25"][-1] == "–"


def test_effectiveness_table_matches_ir_measures(report):
    import ir_measures

    rows = _rows(report[3], "## Effectiveness")
    measures = [ir_measures.parse_measure(m) for m in ("nDCG@10", "RR@10", "R@100", "AP")]
    for system, run in RUNS.items():
        scores = {q: dict(docs) for q, docs in run.items()}
        expected = ir_measures.calc_aggregate(measures, QRELS, scores)
        for column, measure in enumerate(measures, start=1):
            assert _value(rows[system][column]) == pytest.approx(expected[measure], abs=5e-5), (system, measure)


def test_p_values_are_holm_corrected_paired_t_tests(report):
    from scipy import stats

    rows = _rows(report[3], "Holm-corrected p-values")
    base = [NDCG["bm25"][q] for q in ("q1", "q2", "q3")]
    raw = {s: stats.ttest_rel([NDCG[s][q] for q in ("q1", "q2", "q3")], base).pvalue for s in ("teacher", "student")}
    low, high = sorted(raw, key=raw.get)
    expected = {low: min(1, 2 * raw[low])}
    expected[high] = max(expected[low], min(1, raw[high]))
    for system, p in expected.items():
        assert float(rows[system][0]) == pytest.approx(p, abs=5e-5)


def test_significance_marks_follow_corrected_p_values(tmp_path):
    # 12 queries where "good" always wins and "same" equals the baseline: only "good" gets a mark.
    qrels = {f"q{i}": {"r": 1, "n": 0} for i in range(12)}
    base = {q: [("n", 2.0), ("r", 1.0)] for q in qrels}
    good = {q: [("r", 2.0), ("n", 1.0)] if i % 4 else [("n", 2.0), ("r", 1.0)] for i, q in enumerate(qrels)}
    md, _ = write_report(tmp_path, runs={"base": base, "good": good, "same": dict(base)}, qrels=qrels,
                         baseline="base", teacher=None, student=None, measures=("RR@10",))
    rows = _rows(md.read_text(), "## Effectiveness")
    assert rows["good"][1] == f"{(9 * 1 + 3 * 0.5) / 12:.4f} *"
    assert rows["same"][1] == "0.5000" and rows["base"][1] == "0.5000"


def test_per_query_deltas_table(report):
    rows = _rows(report[3], "## Per-query differences")
    mean = lambda a, b: sum(NDCG[a][q] - NDCG[b][q] for q in QRELS) / 3  # noqa: E731
    assert float(rows["student − bm25"][0]) == pytest.approx(mean("student", "bm25"), abs=5e-5)
    assert float(rows["teacher − bm25"][0]) == pytest.approx(mean("teacher", "bm25"), abs=5e-5)
    assert float(rows["student − teacher"][0]) == pytest.approx(mean("student", "teacher"), abs=5e-5)
    # student vs teacher: worse on q1, equal on q2, better on q3
    assert rows["student − teacher"][1:4] == ["1", "1", "1"]
    from scipy import stats  # the last column: the paired t-test of that difference, uncorrected

    qids = sorted(QRELS)
    expected = stats.ttest_rel([NDCG["student"][q] for q in qids], [NDCG["teacher"][q] for q in qids]).pvalue
    assert float(rows["student − teacher"][4]) == pytest.approx(expected, abs=5e-5)


def test_agreement_by_hand():
    teacher = _run({"q1": ["a", "b", "c", "d", "e"], "q2": ["a", "b"], "q3": ["a", "b"], "t-only": ["a"]})
    student = _run({"q1": ["b", "a", "c", "e", "x"], "q2": ["b", "a"], "q3": ["c", "a"]})
    got = agreement(teacher, student, tau_k=100, overlap_k=5)
    assert sorted(got) == ["q1", "q2", "q3"]
    # q1: common docs a, b, c, e; of their 6 pairs only (a, b) is swapped -> (5 - 1) / 6
    assert got["q1"].tau == pytest.approx(4 / 6) and got["q1"].common == 4
    assert got["q1"].overlap == pytest.approx(4 / 5)  # {a,b,c,d,e} ∩ {b,a,c,e,x}
    assert got["q2"].tau == pytest.approx(-1.0) and got["q2"].overlap == 1.0  # lists of 2: depth 2
    assert math.isnan(got["q3"].tau) and got["q3"].common == 1 and got["q3"].overlap == 0.5
    # cut at the top 3: common a, b, c with (a, b) swapped -> (2 - 1) / 3; top-3 sets are equal
    top3 = agreement(teacher, student, tau_k=3, overlap_k=3)["q1"]
    assert top3.tau == pytest.approx(1 / 3) and top3.overlap == 1.0


def test_agreement_section(report):
    rows = _rows(report[3], "## Teacher–student agreement")
    # toy: q1 teacher d1 d2 d3 vs student d2 d1 d3 -> 1/3; q2 same order -> 1; q3 reversed pair -> -1
    assert float(rows["Kendall's τ (top-100)"][0]) == pytest.approx((1 / 3 + 1 - 1) / 3, abs=5e-5)
    assert rows["Kendall's τ (top-100)"][-1] == "3"
    # top-10 overlap: every list is fully shared
    assert float(rows["top-10 overlap"][0]) == 1.0


def test_throughput_table(report):
    rows = _rows(report[3], "## Throughput and cost per query")
    assert rows["student"] == ["812", "123", "cpu", f"{41230 / 123.1:,.1f}×"]
    assert rows["teacher"] == ["–", "41,230", "–", "–"]
    assert rows["student-folds · b"] == ["–", "200", "–", f"{41230 / 200:,.1f}×"]
    header = report[3].split("## Throughput and cost per query", 1)[1].split("\n\n")[1].splitlines()[0]
    assert "pairs/s" in header and "ms/query" in header and "speed-up vs teacher" in header


def test_folds_use_only_their_queries(report):
    import ir_measures

    markdown = report[3]
    assert "### a (2 queries)" in markdown and "### b (1 query)" in markdown
    rows_b = _rows(markdown, "### b (1 query)")
    for system, per_query in NDCG.items():
        assert _value(rows_b[system][1]) == pytest.approx(per_query["q3"], abs=5e-5)
    rows_a = _rows(markdown, "### a (2 queries)")
    qrels_a = {q: QRELS[q] for q in FOLDS["a"]}
    ap = ir_measures.parse_measure("AP")
    for system, run in RUNS.items():
        expected = ir_measures.calc_aggregate([ap], qrels_a, {q: dict(run[q]) for q in FOLDS["a"]})[ap]
        assert _value(rows_a[system][4]) == pytest.approx(expected, abs=5e-5)


def test_config_round_trips_through_yaml(report):
    block = report[3].split("```yaml\n", 1)[1].split("\n```", 1)[0]
    assert yaml.safe_load(block) == {"name": "toy", "dataset": "/data/toy",
                                     "train": {"loss": "ranknet", "lr": 3e-5, "seeds": [1, 2]}}


def test_header_names_date_machine_and_versions(report):
    head = report[3].split("## Effectiveness", 1)[0]
    assert head.startswith("# toy report\n")
    assert re.search(r"Generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", head)
    assert "Machine: " in head and "rankdistill 0.1" in head and "ir-measures " in head and "scipy " in head


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"baseline": "bm26"},
         r"baseline 'bm26' is not one of the runs; choose one of \['bm25', 'student', 'teacher'\]"),
        ({"student": "nope"}, r"student 'nope' is not one of the runs"),
        ({"measures": ("nDCG@10", "nDGC@10")}, r"measure 'nDGC@10' is not a valid ir-measures measure"),
        ({"folds": {"x": ["q9"]}}, r"fold 'x': none of its 1 query ids is judged in the qrels"),
        ({"qrels": {"other": {"d1": 1}}}, r"no query of the runs is judged in the qrels"),
        ({"throughput": {"student": 5.0}}, r"throughput\['student'\] must map a figure name to its value"),
        ({"test": "sign"}, r"test 'sign' is unknown; choose one of ttest, wilcoxon"),
    ],
)
def test_user_mistakes_name_the_problem(tmp_path, kwargs, message):
    args = dict(runs=RUNS, qrels=QRELS, baseline="bm25", teacher="teacher", student="student")
    args.update(kwargs)
    with pytest.raises(RankdistillError, match=message):
        write_report(tmp_path, **args)
    assert not (tmp_path / "report.md").exists() and not (tmp_path / "report.html").exists()


def test_missing_query_counts_zero_and_test_is_named(tmp_path):
    runs = {"bm25": RUNS["bm25"], "student": {q: r for q, r in RUNS["student"].items() if q != "q3"}}
    md, _ = write_report(tmp_path, runs=runs, qrels=QRELS, baseline="bm25", teacher=None, student="student",
                         measures=("nDCG@10",), test="wilcoxon")
    text = md.read_text()
    rows = _rows(text, "## Effectiveness")
    assert _value(rows["student"][1]) == pytest.approx((NDCG["student"]["q1"] + NDCG["student"]["q2"]) / 3, abs=5e-5)
    assert "Wilcoxon signed-rank test" in text
    assert "Not shown: needs both a teacher and a student run." in text


def test_throughput_without_figures_says_not_measured(tmp_path):
    md, _ = write_report(tmp_path, runs=RUNS, qrels=QRELS, baseline="bm25", teacher="teacher", student="student",
                         measures=("nDCG@10",), throughput={"student": {}, "student-folds": {"a": {}}})
    assert "## Throughput and cost per query\n\nNot measured in this run." in md.read_text()


def test_user_text_is_escaped_in_html(tmp_path):
    evil = '<script>alert("x")</script>'
    runs = {"bm25": RUNS["bm25"], evil: RUNS["student"]}
    _, page = write_report(tmp_path, runs=runs, qrels=QRELS, baseline="bm25", teacher=None, student=evil,
                           measures=("nDCG@10",), title="<b>t</b>", config={"note": "<img src=http://x/y.png>"})
    text = page.read_text()
    assert "<script" not in text and "<b>t</b>" not in text and "<img src=http" not in text
    assert "&lt;script&gt;" in text and "&lt;img src=http" in text
