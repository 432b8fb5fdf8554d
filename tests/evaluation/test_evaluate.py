"""Evaluation: metric values computed by hand, p-values against scipy, Holm by hand, DL20 reference, errors."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from scipy import stats

from rankdistill.cli import main
from rankdistill.data.trec import write_qrels, write_run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.metrics import evaluate, parse_measures
from rankdistill.evaluation.significance import holm, paired_p_value

# q1 graded, q2 one relevant doc, q3 judged but absent from the run, q4 in the run but not judged.
QRELS = {
    "q1": {"d1": 3, "d2": 2, "d3": 0, "d4": 1},
    "q2": {"d6": 1},
    "q3": {"d9": 2, "d10": 0},
}
RUN = {
    "q1": [("d4", 4.0), ("d1", 3.0), ("d3", 2.0), ("d2", 1.0)],
    "q2": [("d7", 3.0), ("d8", 2.0), ("d6", 1.0)],
    "q4": [("d1", 1.0)],
}


@pytest.fixture()
def toy(tmp_path) -> tuple[Path, Path]:
    return write_run(RUN, tmp_path / "toy.run"), write_qrels(QRELS, tmp_path / "toy.qrels")


def test_ndcg_rr_ap_match_hand_computation(toy):
    run, qrels = toy
    result = evaluate([run], qrels=qrels, measures=["nDCG@10", "RR@10", "AP"])
    pq = result.per_query["toy.run"]
    # q1: gains 1, 3, 0, 2 at ranks 1-4; ideal order 3, 2, 1, 0
    dcg = 1 / math.log2(2) + 3 / math.log2(3) + 0 + 2 / math.log2(5)
    idcg = 3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4)
    assert pq["nDCG@10"]["q1"] == pytest.approx(dcg / idcg, abs=1e-6)
    assert pq["nDCG@10"]["q2"] == pytest.approx(1 / math.log2(4), abs=1e-6)  # d6 at rank 3, ideal rank 1
    assert pq["RR@10"]["q1"] == 1.0 and pq["RR@10"]["q2"] == pytest.approx(1 / 3)
    # AP q1: relevant d4, d1, d2 at ranks 1, 2, 4 -> (1/1 + 2/2 + 3/4) / 3
    assert pq["AP"]["q1"] == pytest.approx((1 + 1 + 3 / 4) / 3, abs=1e-6)
    assert pq["AP"]["q2"] == pytest.approx(1 / 3, abs=1e-6)
    # q3 is missing from the run: counts 0 (trec_eval -c); q4 is not judged: ignored
    assert result.queries == ["q1", "q2", "q3"]
    assert pq["AP"]["q3"] == 0.0 and "q4" not in pq["AP"]
    assert result.mean("toy.run", "nDCG@10") == pytest.approx((dcg / idcg + 0.5 + 0) / 3, abs=1e-6)
    assert result.missing["toy.run"] == ["q3"]


def test_rel_sets_the_level_of_binary_measures_only(toy):
    run, qrels = toy
    result = evaluate([run], qrels=qrels, measures=["RR@10", "AP", "nDCG@10", "P(rel=1)@2"], rel=2)
    assert result.measures == ["RR(rel=2)@10", "AP(rel=2)", "nDCG@10", "P@2"]
    pq = result.per_query["toy.run"]
    assert pq["RR(rel=2)@10"]["q1"] == 0.5  # d4 (grade 1) no longer counts; d1 (3) at rank 2
    assert pq["AP(rel=2)"]["q1"] == pytest.approx((1 / 2 + 2 / 4) / 2)  # d1, d2 at ranks 2, 4
    assert pq["RR(rel=2)@10"]["q2"] == 0.0  # its only relevant doc has grade 1
    assert pq["P@2"]["q1"] == 1.0  # an explicit rel=1 is kept (and prints as the default)


@pytest.mark.parametrize("bad", ["nDCG@ten", "Foo@10", "P(foo=1)@10", "AP(rel=x)"])
def test_invalid_measure_is_named(bad):
    with pytest.raises(RankdistillError, match=__import__("re").escape(repr(bad))):
        parse_measures([bad])


def _ranks_run(ranks: list[int | None]) -> dict:
    """One query per entry; the relevant doc 'rel' at the given rank (None: query left out)."""
    run = {}
    for i, rank in enumerate(ranks):
        if rank is not None:
            docs = [f"n{j}" for j in range(rank - 1)] + ["rel"]
            run[f"q{i}"] = [(d, float(100 - j)) for j, d in enumerate(docs)]
    return run


def test_p_values_equal_scipy_on_the_per_query_vectors_and_holm_corrects_them(tmp_path):
    qrels = {f"q{i}": {"rel": 1} for i in range(8)}
    base_ranks = [1, 2, 3, 4, 2, 5, 1, 3]
    a_ranks = [1, 1, 2, 1, 1, 2, 1, None]  # q7 missing: counts 0
    b_ranks = [2, 2, 3, 5, 2, 4, 1, 3]
    runs = {name: _ranks_run(r) for name, r in (("base", base_ranks), ("a", a_ranks), ("b", b_ranks))}
    result = evaluate(runs, qrels=qrels, measures=["RR"], baseline="base")
    rr = {name: [1 / r if r else 0.0 for r in ranks] for name, ranks in (("base", base_ranks), ("a", a_ranks), ("b", b_ranks))}
    assert [result.per_query["a"]["RR"][f"q{i}"] for i in range(8)] == pytest.approx(rr["a"])
    p_a = stats.ttest_rel(rr["a"], rr["base"]).pvalue
    p_b = stats.ttest_rel(rr["b"], rr["base"]).pvalue
    comp_a, comp_b = result.comparisons["a"]["RR"], result.comparisons["b"]["RR"]
    assert comp_a.p_value == pytest.approx(p_a, rel=1e-9) and comp_b.p_value == pytest.approx(p_b, rel=1e-9)
    # Holm with m = 2: the smaller p times 2, the larger times 1 but never below the smaller's corrected value
    lo, hi = sorted([p_a, p_b])
    expected_lo, expected_hi = min(1.0, 2 * lo), max(min(1.0, 2 * lo), hi)
    assert sorted([comp_a.p_corrected, comp_b.p_corrected]) == pytest.approx([expected_lo, expected_hi])
    assert (comp_a.p_corrected <= comp_b.p_corrected) == (p_a <= p_b)
    assert comp_a.delta == pytest.approx(sum(rr["a"]) / 8 - sum(rr["base"]) / 8)
    assert comp_a.mark == ("*" if comp_a.p_corrected < 0.05 else "")

    wil = evaluate(runs, qrels=qrels, measures=["RR"], baseline="base", test="wilcoxon")
    diffs = [x - y for x, y in zip(rr["a"], rr["base"])]
    assert wil.comparisons["a"]["RR"].p_value == pytest.approx(stats.wilcoxon(diffs).pvalue, rel=1e-9)


def test_names_label_runs_and_an_unknown_baseline_is_refused(toy, tmp_path):
    run, qrels = toy
    other = write_run({"q1": [("d3", 4.0), ("d2", 3.0)]}, tmp_path / "other.run")
    result = evaluate([run, other], qrels=qrels, measures=["RR@10"], names=["fwd", "rev"], baseline=run)
    assert result.runs == ["fwd", "rev"] and result.baseline == "fwd"
    assert result.per_query["rev"]["RR@10"] == {"q1": 0.5, "q2": 0.0, "q3": 0.0}  # d3 is judged 0, d2 is 2
    with pytest.raises(RankdistillError, match="neither one of the runs"):
        evaluate([run], qrels=qrels, baseline="bm25")


def test_holm_against_hand_computation():
    # sorted: 0.01 * 4 = 0.04, 0.02 * 3 = 0.06, 0.03 * 2 = 0.06, 0.5 * 1 = 0.5 -> back in input order
    assert holm([0.03, 0.5, 0.01, 0.02]) == pytest.approx([0.06, 0.5, 0.04, 0.06])
    # running maximum: 0.035 * 3 = 0.105, then 0.04 * 2 = 0.08 is raised to 0.105, 0.9 * 1 = 0.9
    assert holm([0.9, 0.035, 0.04]) == pytest.approx([0.9, 0.105, 0.105])
    assert holm([0.6, 0.7]) == [1.0, 1.0]
    assert holm([]) == []


def test_identical_runs_give_p_one():
    assert paired_p_value([0.1, 0.5, 0.3], [0.1, 0.5, 0.3], "ttest") == 1.0
    assert paired_p_value([0.1, 0.5, 0.3], [0.1, 0.5, 0.3], "wilcoxon") == 1.0


def test_outputs_csv_json_markdown(toy, tmp_path):
    run, qrels = toy
    other = tmp_path / "sub" / "toy.run"  # same file name: labels fall back to the paths
    other.parent.mkdir()
    other.write_text(run.read_text())
    result = evaluate([run, other], qrels=qrels, measures=["nDCG@10"])
    assert result.runs == [str(run), str(other)]
    run_label = str(run)
    for suffix in ("csv", "json", "md"):
        result.write(tmp_path / f"out.{suffix}", per_query=True)
    rows = list(csv.DictReader((tmp_path / "out.csv").open()))
    assert rows[0]["query"] == "all" and float(rows[0]["value"]) == pytest.approx(result.mean(run_label, "nDCG@10"))
    assert {r["query"] for r in rows} == {"all", "q1", "q2", "q3"}
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["runs"][run_label]["per_query"]["nDCG@10"]["q3"] == 0.0
    assert f"| {other} |" in (tmp_path / "out.md").read_text()
    with pytest.raises(RankdistillError, match="csv, .json or .md"):
        result.write(tmp_path / "out.xlsx")


def test_malformed_run_line_exits_2_naming_file_and_line(toy, cli_error):
    run, qrels = toy
    run.write_text(run.read_text() + "q9 Q0 d1 1\n")
    err = cli_error(["evaluate", str(run), "--qrels", str(qrels)])
    assert f"{run}:{len(RUN['q1']) + len(RUN['q2']) + len(RUN['q4']) + 1}:" in err and "6 columns" in err


def test_malformed_qrels_line_exits_2(toy, cli_error):
    run, qrels = toy
    qrels.write_text("q1 0 d1 1\nq1 0 d2 high\n")
    err = cli_error(["evaluate", str(run), "--qrels", str(qrels)])
    assert f"{qrels}:2:" in err


def test_invalid_measure_through_cli(toy, cli_error):
    run, qrels = toy
    err = cli_error(["evaluate", str(run), "--qrels", str(qrels), "-m", "nDCG@ten"])
    assert "'nDCG@ten'" in err


def test_unknown_irds_id_through_evaluate(toy, cli_error):
    run, _ = toy
    err = cli_error(["evaluate", str(run), "--dataset", "irds:does-not-exist"])
    assert "IR_DATASETS_HOME" in err


def test_dl20_bm25_reference_through_the_cli(dl20, irds_home):
    """The issue's acceptance figure, in a fresh process like a user would run it."""
    proc = subprocess.run(
        [sys.executable, "-m", "rankdistill", "evaluate", str(dl20 / "bm25-top100.run"),
         "--dataset", "irds:msmarco-passage/trec-dl-2020/judged", "-m", "nDCG@10", "-m", "RR@10", "--rel", "2"],
        env=dict(os.environ, COLUMNS="200"), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "bm25-top100.run" in line)
    ndcg, rr = (float(x) for x in row.replace("│", " ").split()[1:3])
    assert ndcg == pytest.approx(0.4796, abs=0.0005)
    assert rr == pytest.approx(0.6533, abs=0.0005)  # data README, RR@10 with rel=2


def test_teachers_beat_bm25_significantly_on_dl20(dl20, capsys):
    runs = [dl20 / "bm25-top100.run", dl20 / "rankvicuna-7b.run", dl20 / "rankgpt-gpt-3.5-turbo-run1.run"]
    result = evaluate(runs, qrels=dl20 / "qrels.txt", measures=["nDCG@10"], baseline=runs[0])
    assert result.mean("rankvicuna-7b.run", "nDCG@10") == pytest.approx(0.6549, abs=0.0005)
    for name in ("rankvicuna-7b.run", "rankgpt-gpt-3.5-turbo-run1.run"):
        comp = result.comparisons[name]["nDCG@10"]
        assert comp.significant and comp.mark == "*" and comp.p_value <= comp.p_corrected <= 2 * comp.p_value
    main(["evaluate", *map(str, runs), "--qrels", str(dl20 / "qrels.txt"), "--baseline", str(runs[0]), "-m", "nDCG@10"])
    out = " ".join(capsys.readouterr().out.split())
    assert "0.6549*" in out and "(p=" in out and "Holm" in out


def test_config_yaml_sets_the_options_and_flags_win(toy, tmp_path, cli_error):
    cfg = tmp_path / "eval.yaml"  # paths relative to the file; the baseline by its file
    cfg.write_text("runs: [toy.run]\nqrels: toy.qrels\nmeasure: [nDCG@10, RR@10]\nbaseline: toy.run\n"
                   "output: out.json\nper-query: true\n")
    main(["evaluate", "--config", str(cfg)])
    data = json.loads((tmp_path / "out.json").read_text())
    assert data["measures"] == ["nDCG@10", "RR@10"] and data["baseline"] == "toy.run"
    assert data["runs"]["toy.run"]["per_query"]["nDCG@10"]["q3"] == 0.0
    main(["evaluate", "--config", str(cfg), "-m", "AP", "-o", str(tmp_path / "flag.json")])
    assert json.loads((tmp_path / "flag.json").read_text())["measures"] == ["AP"]
    cfg.write_text("runs: [toy.run]\nqrels: toy.qrels\nmeasures: [AP]\n")
    err = cli_error(["evaluate", "--config", str(cfg)])
    assert f"{cfg}: measures: unknown key" in err and "measure," in err
    cfg.write_text("qrels: toy.qrels\n")
    assert "name at least one run" in cli_error(["evaluate", "--config", str(cfg)])


def test_help_names_the_default_measures():
    import typing

    from rankdistill.commands.evaluate import evaluate_command
    from rankdistill.evaluation.metrics import DEFAULT_MEASURES

    option = typing.get_type_hints(evaluate_command, include_extras=True)["measure"].__metadata__[0]
    assert f"(default {', '.join(DEFAULT_MEASURES)})" in option.help
