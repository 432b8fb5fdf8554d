"""Distillation sets: sampling strategies (seeded), targets, the parquet contract, errors, the CLI and --config."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from rankdistill.cli import main
from rankdistill.distillation.builder import (
    NEGATIVES,
    PAIRS,
    SAMPLINGS,
    TARGETS,
    build,
    listwise_lists,
    query_rng,
    rank_target,
    read_metadata,
    read_set,
    sample_indices,
)
from rankdistill.errors import RankdistillError

# --- sampling -----------------------------------------------------------------------------------------


def test_top_is_the_first_k():
    assert sample_indices(10, 4, "top", query_rng(0, "q")) == [0, 1, 2, 3]
    assert sample_indices(3, 5, "top", query_rng(0, "q")) == [0, 1, 2]  # short list: all of it


def test_random_is_seeded_uniform_without_replacement():
    a = sample_indices(100, 10, "random", query_rng(0, "q1"))
    assert a == sample_indices(100, 10, "random", query_rng(0, "q1"))
    assert len(set(a)) == 10 and all(0 <= i < 100 for i in a) and a == sorted(a)
    assert a != sample_indices(100, 10, "random", query_rng(1, "q1"))  # another seed
    assert a != sample_indices(100, 10, "random", query_rng(0, "q2"))  # another query
    # uniform: over many draws every rank is picked about k/n of the time
    counts = Counter(i for s in range(400) for i in sample_indices(20, 5, "random", query_rng(s, "q")))
    assert len(counts) == 20 and max(counts.values()) < 2 * min(counts.values())


def test_log_random_prefers_top_ranks():
    draws = [sample_indices(100, 10, "log-random", query_rng(s, "q")) for s in range(500)]
    assert all(len(set(d)) == 10 for d in draws)
    counts = Counter(i for d in draws for i in d)
    top, bottom = sum(counts[i] for i in range(10)), sum(counts[i] for i in range(90, 100))
    # weight 1/ln(1+rank): rank 1 weighs 1/ln 2 = 1.44, rank 100 weighs 1/ln 101 = 0.22
    assert top > 2 * bottom
    assert draws[0] != sample_indices(100, 10, "random", query_rng(0, "q"))


def test_top_and_random_is_half_top_half_random():
    idx = sample_indices(50, 9, "top-and-random", query_rng(3, "q"))
    assert idx[:4] == [0, 1, 2, 3]
    assert len(idx) == 9 and len(set(idx)) == 9 and all(4 <= i < 50 for i in idx[4:])
    assert idx != sample_indices(50, 9, "top-and-random", query_rng(4, "q"))


def test_single_relevant_is_one_relevant_and_non_relevant_rest():
    relevant = [False, True, False, True, False, False, False, False]
    seen_first = set()
    for seed in range(30):
        idx = sample_indices(8, 4, "single-relevant", query_rng(seed, "q"), relevant)
        assert len(idx) == 4 and relevant[idx[0]] and not any(relevant[i] for i in idx[1:])
        seen_first.add(idx[0])
    assert seen_first == {1, 3}  # the relevant one is drawn uniformly among the relevant ones
    assert sample_indices(3, 4, "single-relevant", query_rng(0, "q"), [False, False, False]) is None
    # fewer negatives than k - 1: all of them
    assert sorted(sample_indices(3, 8, "single-relevant", query_rng(0, "q"), [True, False, False])) == [0, 1, 2]


def test_rank_target_conversion():
    assert [rank_target(r, 100) for r in (1, 2, 100)] == [100.0, 99.0, 1.0]
    assert rank_target(None, 100) == 0.0 and rank_target(150, 100) == 0.0


# --- a tiny collection on disk -------------------------------------------------------------------------


def write_collection(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.tsv").write_text("q1\twhat is a river\nq2\thotel phone\nq3\t   \n", encoding="utf-8")
    (folder / "passages.tsv").write_text("".join(f"p{i}\tpassage {i}\n" for i in range(1, 10)), encoding="utf-8")
    teacher = folder / "teacher.run"
    teacher.write_text(
        "".join(f"q1 Q0 {d} {r} {7 - r} llm\n" for r, d in enumerate(["p3", "p1", "p2", "p4", "p5", "p6"], 1))
        + "".join(f"q2 Q0 {d} {r} {0.5 - r / 10} llm\n" for r, d in enumerate(["p7", "p8", "p1"], 1)),
        encoding="utf-8",
    )
    first = folder / "bm25.run"
    first.write_text(
        "".join(f"q1 Q0 {d} {r} {20 - r} bm25\n" for r, d in enumerate(["p1", "p2", "p3", "p9", "p4", "p5", "p6"], 1))
        + "".join(f"q2 Q0 {d} {r} {10 - r} bm25\n" for r, d in enumerate(["p8", "p7", "p1"], 1)),
        encoding="utf-8",
    )
    qrels = folder / "qrels.txt"
    qrels.write_text("q1 0 p3 2\nq1 0 p2 0\nq1 0 p5 1\nq2 0 p8 1\n", encoding="utf-8")
    return {"folder": folder, "teacher": teacher, "first": first, "qrels": qrels}


@pytest.fixture()
def coll(tmp_path):
    return write_collection(tmp_path / "coll")


def rows_by_qid(path):
    out: dict[str, list[dict]] = {}
    for row in read_set(path).to_pylist():
        out.setdefault(row["qid"], []).append(row)
    return out


def test_top_rank_targets_and_schema(coll, tmp_path):
    import pyarrow.parquet as pq

    out = build(teacher_run=coll["teacher"], first_stage_run=coll["first"], qrels=coll["qrels"],
                dataset=str(coll["folder"]), output=tmp_path / "set.parquet", depth=5, sample_size=4, progress=False)
    schema = pq.read_schema(out)
    assert [(f.name, str(f.type)) for f in schema] == [
        ("qid", "string"), ("query", "string"), ("docid", "string"), ("passage", "string"), ("target", "double"),
        ("teacher_rank", "int32"), ("teacher_score", "double"), ("first_stage_rank", "int32"),
        ("first_stage_score", "double"), ("relevance", "int32"), ("position", "int32"),
        ("window_first", "int32"), ("window_last", "int32"), ("window_ranges", "list<element: int32>"),
        ("source", "string"),
    ]
    rows = rows_by_qid(out)
    assert list(rows) == ["q1", "q2"]  # grouped, in run order
    q1 = rows["q1"]
    assert [r["docid"] for r in q1] == ["p3", "p1", "p2", "p4"]  # the teacher's first 4
    assert [r["target"] for r in q1] == [5.0, 4.0, 3.0, 2.0]  # depth - rank + 1
    assert [r["position"] for r in q1] == [0, 1, 2, 3]
    assert q1[0] == {"qid": "q1", "query": "what is a river", "docid": "p3", "passage": "passage 3", "target": 5.0,
                     "teacher_rank": 1, "teacher_score": 6.0, "first_stage_rank": 3, "first_stage_score": 17.0,
                     "relevance": 2, "position": 0, "window_first": None, "window_last": None,  # --pairs all
                     "window_ranges": None, "source": None}  # one source
    assert q1[1]["relevance"] is None and q1[2]["relevance"] == 0  # unjudged is null in the column
    assert [r["docid"] for r in rows["q2"]] == ["p7", "p8", "p1"]  # short list keeps all 3
    meta = read_metadata(out)
    assert meta["config"]["sampling"] == "top" and meta["counts"]["rows"] == 7
    assert meta["counts"]["list_length"] == {"min": 3, "mean": 3.5, "max": 4}
    # one list per query; distinct targets: 4*3/2 + 3*2/2 ordered pairs with t_i > t_j
    assert meta["counts"]["lists"] == 2 and meta["counts"]["pairs"] == 6 + 3
    lists = listwise_lists(out, qids=["q2"])
    assert lists == {"query": ["hotel phone"], "docs": [["passage 7", "passage 8", "passage 1"]], "labels": [[5.0, 4.0, 3.0]]}


def test_score_and_relevance_targets(coll, tmp_path):
    common = dict(teacher_run=coll["teacher"], qrels=coll["qrels"], dataset=str(coll["folder"]), depth=6,
                  sample_size=6, progress=False)
    scored = rows_by_qid(build(output=tmp_path / "s.parquet", targets="score", **common))
    assert [r["target"] for r in scored["q2"]] == pytest.approx([0.4, 0.3, 0.2])
    rel = rows_by_qid(build(output=tmp_path / "r.parquet", targets="relevance", **common))
    # sorted by grade, ties in the teacher's order: p3 (2), p5 (1), then p1 p2 p4 p6 (unjudged / 0 -> 0)
    assert [(r["docid"], r["target"]) for r in rel["q1"]] == [
        ("p3", 2.0), ("p5", 1.0), ("p1", 0.0), ("p2", 0.0), ("p4", 0.0), ("p6", 0.0)]
    assert [r["position"] for r in rel["q1"]] == list(range(6))


def test_single_relevant_from_first_stage(coll, tmp_path):
    out = build(teacher_run=coll["teacher"], first_stage_run=coll["first"], qrels=coll["qrels"],
                dataset=str(coll["folder"]), output=tmp_path / "sr.parquet", sampling="single-relevant",
                targets="relevance", depth=7, sample_size=3, seed=5, progress=False)
    rows = rows_by_qid(out)
    for qid, relevant in (("q1", {"p3", "p5"}), ("q2", {"p8"})):
        assert rows[qid][0]["docid"] in relevant and rows[qid][0]["target"] >= 1
        assert all(r["docid"] not in relevant and r["target"] == 0 for r in rows[qid][1:])
        assert len(rows[qid]) == 3
    # rank targets when a negative (p9) is not in the teacher run: target 0, teacher columns null
    out2 = build(teacher_run=coll["teacher"], first_stage_run=coll["first"], qrels=coll["qrels"],
                 dataset=str(coll["folder"]), output=tmp_path / "sr2.parquet", sampling="single-relevant",
                 qids=["q1"], depth=7, sample_size=7, progress=False)
    p9 = [r for r in read_set(out2).to_pylist() if r["docid"] == "p9"]
    assert p9 and p9[0]["target"] == 0.0 and p9[0]["teacher_rank"] is None and p9[0]["first_stage_rank"] == 4


def test_single_relevant_skips_queries_without_relevant(coll, tmp_path):
    out = build(first_stage_run=coll["first"], qrels=coll["qrels"], dataset=str(coll["folder"]),
                output=tmp_path / "g2.parquet", sampling="single-relevant", targets="relevance", relevant_grade=2,
                sample_size=3, progress=False)
    counts = read_metadata(out)["counts"]
    assert counts["queries"] == 1 and counts["skipped_no_relevant"] == 1 and counts["skipped_qids"] == ["q2"]


def test_seeded_per_query_independent_of_order(coll, tmp_path):
    common = dict(teacher_run=coll["teacher"], dataset=str(coll["folder"]), sampling="random", depth=6,
                  sample_size=3, progress=False)
    a = rows_by_qid(build(output=tmp_path / "a.parquet", seed=1, qids=["q1", "q2"], **common))
    b = rows_by_qid(build(output=tmp_path / "b.parquet", seed=1, qids=["q2", "q1"], **common))
    assert a == b
    many = {tuple(r["docid"] for r in rows_by_qid(build(output=tmp_path / f"s{s}.parquet", seed=s, qids=["q1"],
                                                        **common))["q1"]) for s in range(6)}
    assert len(many) > 1  # another seed, another list


# --- errors --------------------------------------------------------------------------------------------


def test_missing_passage_names_id_and_file(coll, tmp_path):
    (coll["folder"] / "passages.tsv").write_text("p1\tx\np2\ty\n", encoding="utf-8")
    with pytest.raises(RankdistillError) as err:
        build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), output=tmp_path / "x.parquet", progress=False)
    msg = str(err.value)
    assert "p3" in msg and "passages.tsv" in msg and "teacher.run" in msg
    assert not (tmp_path / "x.parquet").exists()


def test_no_targets_source(coll, tmp_path):
    with pytest.raises(RankdistillError, match="targets .rank. needs a ranking"):
        build(qrels=coll["qrels"], dataset=str(coll["folder"]), output=tmp_path / "x.parquet", progress=False)
    (coll["folder"] / "qrels.txt").unlink()
    with pytest.raises(RankdistillError, match="needs qrels"):
        build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), targets="relevance",
              output=tmp_path / "x.parquet", progress=False)


def test_bad_sampling_lists_allowed_values(coll, tmp_path):
    with pytest.raises(RankdistillError) as err:
        build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), output=tmp_path / "x.parquet", sampling="deep")
    assert "sampling" in str(err.value) and all(s in str(err.value) for s in SAMPLINGS)
    assert build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), output=tmp_path / "y.parquet",
                 sampling="log_random", progress=False).exists()  # lightning-ir spelling accepted


def test_queries_without_text_or_candidates(coll, tmp_path):
    with pytest.raises(RankdistillError, match=r"no text.*'q3'"):
        build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), qids=["q1", "q3"],
              output=tmp_path / "x.parquet", progress=False)
    (coll["folder"] / "queries.tsv").write_text("q1\ta\nq2\tb\nq4\tc\n", encoding="utf-8")
    with pytest.raises(RankdistillError, match=r"no candidates in .*teacher.run.*'q4'"):
        build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), qids="q1,q4",
              output=tmp_path / "x.parquet", progress=False)


# --- CLI and --config ----------------------------------------------------------------------------------


def run_cli(args, capsys) -> tuple[int, str]:
    try:
        main(["build", *map(str, args)])
        code = 0
    except SystemExit as exc:
        code = exc.code
    cap = capsys.readouterr()
    return code, cap.out + cap.err


def test_cli_bad_sampling_is_one_line(coll, tmp_path, capsys):
    code, text = run_cli(["--teacher-run", coll["teacher"], "-d", coll["folder"], "-o", tmp_path / "x.parquet",
                          "--sampling", "deep"], capsys)
    assert code == 2 and "Traceback" not in text
    assert "'deep'" in text and all(s in text for s in SAMPLINGS)


def test_cli_config_yaml_replaces_flags_and_flags_win(coll, tmp_path, capsys):
    cfg = tmp_path / "build.yaml"
    cfg.write_text(
        f"teacher-run: {coll['teacher']}\n"
        "dataset: coll\n"  # relative to the YAML file
        "output: from-config.parquet\n"
        "sampling: random\nsample_size: 2\ndepth: 6\nseed: 7\n",
        encoding="utf-8",
    )
    code, text = run_cli(["--config", cfg], capsys)
    assert code == 0, text
    out = tmp_path / "from-config.parquet"
    meta = read_metadata(out)["config"]
    assert (meta["sampling"], meta["sample_size"], meta["depth"], meta["seed"]) == ("random", 2, 6, 7)
    assert "queries" in text and "list length" in text  # the summary
    code, text = run_cli(["--config", cfg, "--sample-size", "3", "-o", tmp_path / "flag.parquet"], capsys)
    assert code == 0, text
    meta = read_metadata(tmp_path / "flag.parquet")["config"]
    assert (meta["sampling"], meta["sample_size"], meta["seed"]) == ("random", 3, 7)
    cfg.write_text("sampling: top\nsample-sise: 3\n", encoding="utf-8")
    code, text = run_cli(["--config", cfg], capsys)
    assert code == 2 and "sample_sise" in text and "unknown key" in text


def test_cli_config_qids_file_is_relative_to_the_yaml(coll, tmp_path, capsys):
    (tmp_path / "ids.txt").write_text("q2\n", encoding="utf-8")
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"teacher-run: {coll['teacher']}\ndataset: coll\noutput: ids.parquet\nqids: ids.txt\n", encoding="utf-8")
    code, text = run_cli(["--config", cfg], capsys)
    assert code == 0, text
    assert read_metadata(tmp_path / "ids.parquet")["config"]["qids"] == ["q2"]
    cfg.write_text(f"teacher-run: {coll['teacher']}\ndataset: coll\noutput: ids.parquet\nqids: q2,q1\n", encoding="utf-8")
    code, text = run_cli(["--config", cfg], capsys)
    assert code == 0, text
    assert read_metadata(tmp_path / "ids.parquet")["config"]["qids"] == ["q2", "q1"]


def test_help_documents_every_knob(capsys):
    code, text = run_cli(["--help"], capsys)
    assert code == 0
    for flag in ("--teacher-run", "--first-stage-run", "--qrels", "--depth", "--sample-size", "--sampling",
                 "--targets", "--negatives", "--seed", "--qids", "--config", "--relevant-grade", "--pairs",
                 "--cross-negatives", *SAMPLINGS, *TARGETS, *NEGATIVES, *PAIRS):
        assert flag in text, flag


# --- the real DL20 data ----------------------------------------------------------------------------------


def test_dl20_rankvicuna_top100(dl20, tmp_path):
    out = build(teacher_run=dl20 / "rankvicuna-7b.run", first_stage_run=dl20 / "bm25-top100.run",
                qrels=dl20 / "qrels.txt", dataset=str(dl20), output=tmp_path / "dl20.parquet", progress=False)
    table = read_set(out)
    assert table.num_rows == 5400
    counts = read_metadata(out)["counts"]
    assert counts["queries"] == 54 and counts["relevance_counts"]["unjudged"] == 5400 - 2859  # README: 2,859 judged
    first = table.slice(0, 100).to_pylist()
    assert [r["teacher_rank"] for r in first] == list(range(1, 101))
    assert np.allclose([r["target"] for r in first], np.arange(100, 0, -1))
    assert counts["list_length"] == {"min": 100, "mean": 100.0, "max": 100}


def test_cross_negatives_come_from_other_queries_below_every_own_passage(coll, tmp_path):
    out = build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), output=tmp_path / "x.parquet",
                depth=5, sample_size=2, cross_negatives=2, seed=3, progress=False)
    rows = rows_by_qid(out)
    q1, q2 = rows["q1"], rows["q2"]
    # q1 keeps its own top 2, then 2 passages that only q2's ranking holds (p7, p8; p1 is q1's own)
    assert [r["docid"] for r in q1[:2]] == ["p3", "p1"]
    assert sorted(r["docid"] for r in q1[2:]) == ["p7", "p8"]
    assert [r["target"] for r in q1] == [5.0, 4.0, 3.0, 3.0]  # min own target - 1
    assert all(r["teacher_rank"] is None and r["relevance"] is None for r in q1[2:])
    # q2's cross negatives are q1's passages that q2 does not rank
    own_q2 = {"p7", "p8", "p1"}
    assert len(q2) == 4 and all(r["docid"] not in own_q2 for r in q2[2:])
    assert {r["docid"] for r in q2[2:]} <= {"p3", "p2", "p4", "p5"}
    again = build(teacher_run=coll["teacher"], dataset=str(coll["folder"]), output=tmp_path / "y.parquet",
                  depth=5, sample_size=2, cross_negatives=2, seed=3, progress=False)
    assert read_set(again).equals(read_set(out))
