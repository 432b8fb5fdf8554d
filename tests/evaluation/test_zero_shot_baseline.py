"""The zero-shot backbone baseline: the untrained backbone as a bi-encoder, in reports and in ``rankdistill evaluate``.

A distilled student is only worth training if it beats its own backbone used untrained; these tests check
that this baseline is computed from independent cosines and shown, with its paired test, where users look.
The command makes the zero-shot run (through the embedding teacher) and hands it to ``evaluate()``, which only
measures the runs it is given.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers.tiny import tiny_encoder_dir

from rankdistill.cli import main
from rankdistill.data.trec import write_qrels, write_run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.report import write_report

L2 = math.log2
QRELS = {"q1": {"d1": 2, "d2": 1, "d3": 0}, "q2": {"d4": 1, "d5": 0}, "q3": {"d6": 1, "d7": 0}}


def _run(lists):
    return {q: [(d, float(len(ids) - i)) for i, d in enumerate(ids)] for q, ids in lists.items()}


RUNS = {
    "bm25": _run({"q1": ["d3", "d1", "d2"], "q2": ["d5", "d4"], "q3": ["d6", "d7"]}),
    "zero-shot": _run({"q1": ["d3", "d2", "d1"], "q2": ["d4", "d5"], "q3": ["d7", "d6"]}),
    "teacher": _run({"q1": ["d1", "d2", "d3"], "q2": ["d4", "d5"], "q3": ["d7", "d6"]}),
    "student": _run({"q1": ["d2", "d1", "d3"], "q2": ["d4", "d5"], "q3": ["d6", "d7"]}),
}
IDCG1 = 2 + 1 / L2(3)
NDCG = {  # by hand: gain = grade, discount log2(rank + 1)
    "zero-shot": {"q1": (1 / L2(3) + 2 / L2(4)) / IDCG1, "q2": 1.0, "q3": 1 / L2(3)},
    "student": {"q1": (1 + 2 / L2(3)) / IDCG1, "q2": 1.0, "q3": 1.0},
}


def _table(markdown: str, first_header: str) -> dict[str, list[str]]:
    block = next(b for b in markdown.split("\n\n") if b.startswith(f"| {first_header} "))
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.splitlines()[2:]]
    return {r[0]: r[1:] for r in rows}


def test_report_shows_the_zero_shot_backbone_and_the_gain_over_it(tmp_path):
    from scipy import stats

    md, _ = write_report(tmp_path, runs=RUNS, qrels=QRELS, baseline="bm25", teacher="teacher", student="student",
                         zero_shot="zero-shot", measures=("nDCG@10",))
    text = md.read_text()
    rows = _table(text, "system")
    assert list(rows) == ["bm25", "zero-shot", "teacher", "student"]
    assert rows["zero-shot"][0] == "zero-shot backbone"
    assert float(rows["zero-shot"][1].split()[0]) == pytest.approx(sum(NDCG["zero-shot"].values()) / 3, abs=5e-5)
    diffs = _table(text, "difference")
    row = diffs["student − zero-shot"]
    qids = ("q1", "q2", "q3")
    deltas = [NDCG["student"][q] - NDCG["zero-shot"][q] for q in qids]
    assert float(row[0]) == pytest.approx(sum(deltas) / 3, abs=5e-5)
    assert row[1:4] == ["2", "1", "0"]  # better on q1 and q3, equal on q2
    expected_p = stats.ttest_rel([NDCG["student"][q] for q in qids], [NDCG["zero-shot"][q] for q in qids]).pvalue
    assert float(row[4]) == pytest.approx(expected_p, abs=5e-5)


def test_report_refuses_a_zero_shot_name_that_is_not_a_run(tmp_path):
    with pytest.raises(RankdistillError, match="zero_shot 'backbone' is not one of the runs"):
        write_report(tmp_path, runs=RUNS, qrels=QRELS, baseline="bm25", teacher=None, student="student",
                     zero_shot="backbone")


QUERIES = {"q1": "public records search", "q2": "hotel phone price"}
PASSAGES = {"d1": "the public records of the city court", "d2": "a hotel with a phone and a good price",
            "d3": "water of the river in the city", "d4": "naturalization records and data"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("zero-shot")
    data = root / "data"
    data.mkdir()
    (data / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (data / "corpus.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in PASSAGES.items()))
    qrels = {"q1": {"d1": 2, "d4": 1}, "q2": {"d2": 1}}
    write_qrels(qrels, data / "qrels.txt")
    write_run({q: [(d, 10.0 - i) for i, d in enumerate(["d3", "d4", "d2", "d1"])] for q in QUERIES}, root / "bm25.run")
    return root, data, tiny_encoder_dir(root / "tiny-model"), qrels


def _evaluate(tmp_path, *args) -> dict:
    """``rankdistill evaluate ARGS -o metrics.json --per-query``: the summary it writes."""
    out = tmp_path / "metrics.json"
    main(["evaluate", *map(str, args), "-o", str(out), "--per-query"])
    return json.loads(out.read_text())


def test_evaluate_adds_the_backbone_as_a_bi_encoder_over_the_baseline_candidates(toy, tmp_path):
    import ir_measures
    from sentence_transformers import SentenceTransformer

    root, data, model, qrels = toy
    result = _evaluate(tmp_path, root / "bm25.run", "--dataset", data, "-m", "nDCG@10", "--baseline", root / "bm25.run",
                       "--zero-shot", model, "--depth", 3, "--zero-shot-dtype", "float32")
    label = f"zero-shot:{model}"
    assert list(result["runs"]) == ["bm25.run", label]
    # independently: cosines of SentenceTransformer embeddings over the top 3, the 4th candidate kept last
    st = SentenceTransformer(str(model))
    q = st.encode(list(QUERIES.values()), normalize_embeddings=True)
    p = st.encode(list(PASSAGES.values()), normalize_embeddings=True)
    cos = {qid: dict(zip(PASSAGES, (p @ q[i]).tolist())) for i, qid in enumerate(QUERIES)}
    expected_run = {qid: {**{d: cos[qid][d] for d in ("d3", "d4", "d2")}, "d1": -10.0} for qid in QUERIES}
    expected = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, expected_run)}
    for qid in QUERIES:
        assert result["runs"][label]["per_query"]["nDCG@10"][qid] == pytest.approx(expected[qid], abs=1e-6)
    assert not np.isnan(result["runs"][label]["measures"]["nDCG@10"]["p_value"])


def test_zero_shot_needs_the_texts(toy, cli_error):
    root, data, model, _ = toy
    message = cli_error(["evaluate", str(root / "bm25.run"), "--qrels", str(data / "qrels.txt"),
                         "--zero-shot", str(model)])
    assert "--zero-shot needs --dataset" in message
    message = cli_error(["evaluate", str(root / "bm25.run"), "--dataset", str(data), "--zero-shot", str(model),
                         "--candidates", str(root / "missing.run")])
    assert "missing.run: no such run file" in message


def test_evaluate_only_measures_the_runs_it_is_given():
    """The zero-shot run is the caller's to make: ``evaluate()`` takes no model."""
    import inspect

    from rankdistill.evaluation.metrics import evaluate

    assert not {"zero_shot", "candidates", "depth", "zero_shot_max_length"} & set(inspect.signature(evaluate).parameters)


def test_zero_shot_uses_a_baseline_named_by_its_label(toy, tmp_path):
    root, data, model, _ = toy
    common = ("--dataset", data, "-m", "nDCG@10", "--zero-shot", model, "--depth", 3)
    by_path = _evaluate(tmp_path, root / "bm25.run", "--baseline", root / "bm25.run", *common)
    by_label = _evaluate(tmp_path, root / "bm25.run", "--baseline", "bm25.run", *common)
    label = f"zero-shot:{model}"
    assert by_label["runs"][label]["per_query"] == by_path["runs"][label]["per_query"]


def test_zero_shot_dtype_is_passed_on_and_named(toy, tmp_path, capsys, cli_error):
    """``--zero-shot-dtype`` reaches the forward (the precision it ran in is printed, since ``auto`` differs between
    machines), and a dtype that is not one is refused naming the option."""
    root, data, model, _ = toy
    common = (root / "bm25.run", "--dataset", data, "-m", "nDCG@10", "--zero-shot", model, "--depth", 3)
    capsys.readouterr()
    _evaluate(tmp_path, *common, "--zero-shot-dtype", "bfloat16")
    assert "bfloat16 forward" in capsys.readouterr().err
    _evaluate(tmp_path, *common, "--zero-shot-dtype", "float32")
    assert "float32 forward" in capsys.readouterr().err
    message = cli_error(["evaluate", *map(str, common), "--zero-shot-dtype", "fp8"])
    assert "--zero-shot-dtype" in message and "fp8" in message
