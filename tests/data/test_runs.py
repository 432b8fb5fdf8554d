"""TREC runs and qrels: exact round-trips, tie order, and errors that name file and line."""

from __future__ import annotations

import pytest

from rankdistill.errors import InputFormatError
from rankdistill.data.trec import read_qrels, read_run, run_from_scores, top_k, write_qrels, write_run


def test_run_round_trip_is_exact(tmp_path):
    run = {"q1": [("d3", 12.345600128173828), ("d1", 7.0), ("d2", -0.5)], "q2": [("d9", 1e-12)]}
    path = write_run(run, tmp_path / "a.run", tag="bm25")
    assert read_run(path) == run
    lines = path.read_text().splitlines()
    assert lines[0] == "q1 Q0 d3 1 12.345600128173828 bm25"
    assert [line.split()[3] for line in lines] == ["1", "2", "3", "1"]


def test_ties_keep_the_files_rank_order(tmp_path):
    path = tmp_path / "ties.run"
    # same score: the rank column (then file order) decides, never the docid
    path.write_text("q 0 zz 1 5.0 t\nq 0 aa 2 5.0 t\nq 0 mm 3 9.0 t\nq 0 bb 5 1.0 t\nq 0 cc 4 1.0 t\n")
    assert [d for d, _ in read_run(path)["q"]] == ["mm", "zz", "aa", "cc", "bb"]


def test_top_k_and_depth(tmp_path):
    run = {"q": [(f"d{i}", float(10 - i)) for i in range(10)]}
    assert [d for d, _ in top_k(run, 3)["q"]] == ["d0", "d1", "d2"]
    path = write_run(run, tmp_path / "r.run")
    assert len(read_run(path, depth=4)["q"]) == 4
    assert top_k(run, None) == run


def test_run_from_scores_is_stable():
    run = run_from_scores({"q": {"b": 1.0, "a": 1.0, "c": 2.0}})
    assert run["q"] == [("c", 2.0), ("b", 1.0), ("a", 1.0)]


@pytest.mark.parametrize(
    "content, line, fragment",
    [
        ("q Q0 d 1 1.0 t\nq Q0 e 2 1.0\n", 2, "expected 6 columns"),
        ("q Q0 d one 1.0 t\n", 1, "rank 'one' is not an integer"),
        ("q Q0 d 1 high t\n", 1, "score 'high' is not a number"),
        ("q Q0 d 1 1.0 t\n\nq Q0 d 2 0.5 t\n", 3, "appears twice"),
    ],
)
def test_malformed_run_lines_name_file_and_line(tmp_path, content, line, fragment):
    path = tmp_path / "bad.run"
    path.write_text(content)
    with pytest.raises(InputFormatError) as info:
        read_run(path)
    assert str(info.value).startswith(f"{path}:{line}: ")
    assert fragment in str(info.value)


def test_qrels_trec_and_beir_round_trip(tmp_path):
    trec = tmp_path / "qrels.txt"
    trec.write_text("1 0 a 2\n1 0 b 0\n2 0 c 1\n")
    qrels = read_qrels(trec)
    assert qrels == {"1": {"a": 2, "b": 0}, "2": {"c": 1}}
    assert read_qrels(write_qrels(qrels, tmp_path / "copy.txt")) == qrels
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\ta\t1\n")
    assert read_qrels(beir) == {"1": {"a": 1}}


def test_malformed_qrels_name_line(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text("1 0 a 2\n1 0 b two\n")
    with pytest.raises(InputFormatError, match=r"q.txt:2: grade 'two' is not an integer"):
        read_qrels(path)


def test_shared_bm25_run_reads_exactly(dl20):
    run = read_run(dl20 / "bm25-top100.run")
    assert len(run) == 54 and sum(map(len, run.values())) == 5400
    # query 42255 has ties at ranks 18/19: file order is kept
    raw = [line.split() for line in (dl20 / "bm25-top100.run").read_text().splitlines() if line.startswith("42255 ")]
    assert [d for d, _ in run["42255"]] == [parts[2] for parts in raw]
