"""Several candidate sources per query: exact lists, pairs and compared windows for two hand-made sources, merged
and not, the trainer's lists, the CLI and --config, and errors that name the source."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pytest
import torch

from rankdistill.cli import main
from rankdistill.distillation.builder import build, listwise_lists, read_metadata, read_set
from rankdistill.distillation.sources import fuse_rrf
from rankdistill.errors import RankdistillError
from rankdistill.teacher.windows import compared_matrix, ordered_pairs
from rankdistill.training.losses import compared_mask

# Source "bm25", window 4 / stride 2 over 6 candidates: windows (bottom first) w0 = ranks 3-6, w1 = ranks 1-4.
#   q1 first stage p1..p6; the LLM prefers p5 > p2 > p6 > p1 > p3 > p4:
#   w0 sorts [p3 p4 p5 p6] -> [p5 p6 p3 p4]; w1 sorts [p1 p2 p5 p6] -> [p5 p2 p6 p1]; final p5 p2 p6 p1 p3 p4.
#   p3, p4 met only w0; p1, p2 only w1; p5, p6 both: compared = 6 (w0) + 6 (w1) - 1 (p5-p6 twice) = 11 of 15.
# Source "dense", window 3 / stride 3 over 6 candidates: w0 = ranks 4-6, w1 = ranks 1-3 (disjoint).
#   q1 first stage p4 p7 p8 | p1 p9 p10 -> final p7 p4 p8 | p9 p1 p10: compared = 3 + 3 = 6 of 15.
# q2 has 3 candidates per source: one window each, every pair compared.
WINDOWS_A = {"p3": (0, 0), "p4": (0, 0), "p5": (0, 1), "p6": (0, 1), "p1": (1, 1), "p2": (1, 1)}
WINDOWS_B = {"p1": (0, 0), "p9": (0, 0), "p10": (0, 0), "p4": (1, 1), "p7": (1, 1), "p8": (1, 1)}


def _run(lists: dict[str, list[str]], tag: str) -> str:
    return "".join(f"{q} Q0 {d} {r} {100 - r} {tag}\n" for q, docs in lists.items() for r, d in enumerate(docs, 1))


def write_sources(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.tsv").write_text("q1\twhat is a river\nq2\thotel phone\n", encoding="utf-8")
    (folder / "passages.tsv").write_text("".join(f"p{i}\tpassage {i}\n" for i in range(1, 13)), encoding="utf-8")
    files = {
        "bm25": {"q1": ["p1", "p2", "p3", "p4", "p5", "p6"], "q2": ["p7", "p8", "p9"]},
        "llm-bm25": {"q1": ["p5", "p2", "p6", "p1", "p3", "p4"], "q2": ["p9", "p7", "p8"]},
        "dense": {"q1": ["p4", "p7", "p8", "p1", "p9", "p10"], "q2": ["p9", "p11", "p12"]},
        "llm-dense": {"q1": ["p7", "p4", "p8", "p9", "p1", "p10"], "q2": ["p11", "p9", "p12"]},
    }
    out = {"folder": folder}
    for name, lists in files.items():
        out[name] = folder / f"{name}.run"
        out[name].write_text(_run(lists, name), encoding="utf-8")
    return out


@pytest.fixture()
def two(tmp_path):
    return write_sources(tmp_path / "coll")


def sources_of(two, **extra_b) -> list[dict]:
    return [
        {"name": "bm25", "first_stage_run": two["bm25"], "teacher_run": two["llm-bm25"], "teacher_window": 4,
         "teacher_stride": 2, "teacher_depth": 6},
        {"name": "dense", "first_stage_run": two["dense"], "teacher_run": two["llm-dense"], "teacher_window": 3,
         "teacher_stride": 3, "teacher_depth": 6, **extra_b},
    ]


def lists_of(path) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for row in read_set(path).to_pylist():
        out.setdefault((row["qid"], row["source"]), []).append(row)
    return out


def pairs_met(rows: list[dict]) -> set[frozenset[str]]:
    """The unordered pairs a set marks as compared, by the stored ranges (the rule of compared_matrix)."""
    ranges = [tuple(r["window_ranges"] or ((r["window_first"], r["window_last"]) if r["window_first"] is not None else ()))
              for r in rows]
    met = compared_matrix(ranges)
    return {frozenset((rows[i]["docid"], rows[j]["docid"])) for i, j in combinations(range(len(rows)), 2) if met[i, j]}


def hand_pairs(windows: dict[str, tuple[int, int]]) -> set[frozenset[str]]:
    """Pairs whose window ranges overlap, from the hand-computed windows above."""
    return {frozenset((a, b)) for a, b in combinations(windows, 2)
            if windows[a][0] <= windows[b][1] and windows[b][0] <= windows[a][1]}


def test_one_list_per_source_and_query(two, tmp_path):
    out = build(sources=sources_of(two), dataset=str(two["folder"]), output=tmp_path / "s.parquet", depth=6,
                sample_size=6, progress=False)
    lists = lists_of(out)
    assert list(lists) == [("q1", "bm25"), ("q2", "bm25"), ("q1", "dense"), ("q2", "dense")]
    assert [r["docid"] for r in lists[("q1", "bm25")]] == ["p5", "p2", "p6", "p1", "p3", "p4"]
    assert [r["docid"] for r in lists[("q1", "dense")]] == ["p7", "p4", "p8", "p9", "p1", "p10"]
    assert [r["target"] for r in lists[("q2", "dense")]] == [6.0, 5.0, 4.0]  # depth - rank + 1, per source
    assert [r["position"] for r in lists[("q1", "dense")]] == [0, 1, 2, 3, 4, 5]  # restarts in each list
    p1 = next(r for r in lists[("q1", "dense")] if r["docid"] == "p1")
    assert (p1["teacher_rank"], p1["first_stage_rank"]) == (5, 4)  # this source's runs, not the other's
    counts = read_metadata(out)["counts"]
    assert (counts["queries"], counts["lists"], counts["rows"]) == (2, 4, 18)
    assert counts["pairs"] == 15 + 3 + 15 + 3  # every ordered pair of distinct targets
    assert {k: (c["lists"], c["rows"]) for k, c in counts["per_source"].items()} == {"bm25": (2, 9), "dense": (2, 9)}
    # the listwise reader and the trainer see four lists, not two queries
    assert len(listwise_lists(out)["query"]) == 4


def test_compared_pairs_replay_each_sources_own_window(two, tmp_path):
    out = build(sources=sources_of(two), dataset=str(two["folder"]), output=tmp_path / "c.parquet", depth=6,
                sample_size=6, pairs="compared", progress=False)
    lists = lists_of(out)
    for (qid, source), windows in ((("q1", "bm25"), WINDOWS_A), (("q1", "dense"), WINDOWS_B)):
        rows = lists[(qid, source)]
        assert {r["docid"]: (r["window_first"], r["window_last"]) for r in rows} == windows
        assert pairs_met(rows) == hand_pairs(windows)
    assert len(hand_pairs(WINDOWS_A)) == 11 and len(hand_pairs(WINDOWS_B)) == 6
    assert all(len(pairs_met(lists[("q2", s)])) == 3 for s in ("bm25", "dense"))  # one window each
    assert read_metadata(out)["counts"]["pairs"] == 11 + 6 + 3 + 3
    assert read_set(out)["window_ranges"].null_count == 18  # one source per list: one range per passage


def test_rrf_merge_is_one_fused_list_per_query(two, tmp_path):
    out = build(sources=sources_of(two), merge="rrf", dataset=str(two["folder"]), output=tmp_path / "m.parquet",
                depth=10, sample_size=10, progress=False)
    lists = lists_of(out)
    assert list(lists) == [("q1", "bm25+dense"), ("q2", "bm25+dense")]
    # q1: p4 = 1/62 + 1/66 > p1 = 1/64 + 1/65 > p5 = p7 = 1/61 (tie: first seen, bm25's) > p2 > p6 = p8 > p9 > p3 > p10
    q1 = lists[("q1", "bm25+dense")]
    assert [r["docid"] for r in q1] == ["p4", "p1", "p5", "p7", "p2", "p6", "p8", "p9", "p3", "p10"]
    assert q1[0]["teacher_score"] == pytest.approx(1 / 62 + 1 / 66) and q1[0]["teacher_rank"] == 1
    assert [r["target"] for r in q1] == [float(10 - i) for i in range(10)]
    assert [r["docid"] for r in lists[("q2", "bm25+dense")]] == ["p9", "p11", "p7", "p8", "p12"]
    counts = read_metadata(out)["counts"]
    assert (counts["queries"], counts["lists"], counts["rows"], counts["pairs"]) == (2, 2, 15, 45 + 10)


def test_rrf_compared_keeps_the_union_of_each_sources_pairs(two, tmp_path):
    out = build(sources=sources_of(two), merge="rrf", pairs="compared", dataset=str(two["folder"]),
                output=tmp_path / "mc.parquet", depth=10, sample_size=10, progress=False)
    q1 = lists_of(out)[("q1", "bm25+dense")]
    by_doc = {r["docid"]: r for r in q1}
    # bm25's 2 windows are 0-1, dense's are numbered after them: 2-3
    assert by_doc["p1"]["window_ranges"] == [1, 1, 2, 2] and by_doc["p4"]["window_ranges"] == [0, 0, 3, 3]
    assert (by_doc["p1"]["window_first"], by_doc["p1"]["window_last"]) == (1, 1)
    assert by_doc["p5"]["window_ranges"] is None and (by_doc["p5"]["window_first"], by_doc["p5"]["window_last"]) == (0, 1)
    assert (by_doc["p7"]["window_first"], by_doc["p7"]["window_last"]) == (3, 3)
    union = hand_pairs(WINDOWS_A) | hand_pairs(WINDOWS_B)
    assert frozenset(("p1", "p4")) not in union  # neither teacher saw p1 and p4 in one window
    assert pairs_met(q1) == union and len(union) == 17
    assert read_metadata(out)["counts"]["pairs"] == 17 + 6  # q2: 3 pairs of each source, none shared


def test_the_trainer_and_the_loss_see_the_same_lists_and_pairs(two, tmp_path):
    from helpers.tiny import tiny_bert_tokenizer

    from rankdistill.training.trainer import load_listwise

    tok = tiny_bert_tokenizer(tmp_path / "tok")
    merged = build(sources=sources_of(two), merge="rrf", pairs="compared", dataset=str(two["folder"]),
                   output=tmp_path / "mc.parquet", depth=10, sample_size=10, progress=False)
    apart = build(sources=sources_of(two), pairs="compared", dataset=str(two["folder"]),
                  output=tmp_path / "c.parquet", depth=6, sample_size=6, progress=False)
    ds, stats = load_listwise([merged], tok, 16, 16)
    assert (stats["queries"], stats["lists"], stats["teacher_pairs"]) == (2, 2, "compared")
    labels = torch.tensor(ds[0]["labels"])  # (target, first, last, first, last) per passage, -1 pads
    assert labels.shape == (10, 5) and labels[1].tolist() == [9.0, 1.0, 1.0, 2.0, 2.0]  # p1
    mask = compared_mask(labels[None, :, 1:])[0]
    targets = labels[:, 0]
    assert int(((targets[:, None] > targets[None, :]) & mask).sum()) == 17
    ds, stats = load_listwise([apart], tok, 16, 16)
    assert (stats["queries"], stats["lists"]) == (2, 4) and len(ds[0]["labels"][0]) == 3  # (target, first, last)
    total = 0
    for row in ds:
        labels = torch.tensor(row["labels"])
        total += int(((labels[:, 0, None] > labels[None, :, 0]) & compared_mask(labels[None, :, 1:])[0]).sum())
    assert total == 11 + 6 + 3 + 3


def test_compared_rules_agree_between_build_and_loss():
    ranges = [(0, 1), (2, 2), (), (1, 1, 5, 5), (4, 6)]
    windows = torch.tensor([[*r, *([-1] * (4 - len(r)))] for r in ranges], dtype=torch.float32)
    assert compared_matrix(ranges).tolist() == compared_mask(windows[None])[0].tolist()
    assert ordered_pairs([3, 2, 1]) == 3 and ordered_pairs([1, 1, 0]) == 2  # ties form no pair
    assert ordered_pairs([3, 2, 1], [(0, 0), (1, 1), (0, 1)]) == 2  # the first two never met


def test_fuse_rrf():
    fused = fuse_rrf([{"q": [("a", 9.0), ("b", 8.0)]}, {"q": [("b", 1.0), ("c", 0.5)], "r": [("x", 1.0)]}], k=60)
    assert [d for d, _ in fused["q"]] == ["b", "a", "c"] and fused["q"][0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["r"] == [("x", pytest.approx(1 / 61))]


# --- errors name the source ------------------------------------------------------------------------------


def test_teacher_not_a_permutation_of_its_first_stage(two, tmp_path):
    wrong = sources_of(two)
    wrong[1]["teacher_run"] = two["llm-bm25"]  # bm25's teacher paired with the dense first stage
    with pytest.raises(RankdistillError, match=r"sources\[1\] \(dense\): .*llm-bm25\.run is not a permutation of the top 6 "
                                               r"of .*dense\.run for query 'q1'"):
        build(sources=wrong, dataset=str(two["folder"]), output=tmp_path / "x.parquet", progress=False)
    short = sources_of(two, teacher_depth=4)  # dense's teacher ranked 6: its top 4 (p7 p4 p8 p9) is not p4 p7 p8 p1
    with pytest.raises(RankdistillError, match=r"sources\[1\] \(dense\): .* top 4 .* teacher_depth"):
        build(sources=short, dataset=str(two["folder"]), output=tmp_path / "x.parquet", progress=False)
    assert not (tmp_path / "x.parquet").exists()


def test_missing_passage_and_missing_query_name_the_source(two, tmp_path):
    (two["folder"] / "passages.tsv").write_text("".join(f"p{i}\tpassage {i}\n" for i in range(1, 11)), encoding="utf-8")
    with pytest.raises(RankdistillError, match=r"sources\[1\] \(dense\): 2 candidate id\(s\) .* not in the corpus .*\['p11', 'p12'\]"):
        build(sources=sources_of(two), dataset=str(two["folder"]), output=tmp_path / "x.parquet", progress=False)
    only_q1 = two["folder"] / "dense-q1.run"
    only_q1.write_text(two["dense"].read_text().split("q2")[0], encoding="utf-8")
    with pytest.raises(RankdistillError, match=r"sources\[1\] \(dense\): 1 of 2 queries have no candidates .*\['q2'\]"):
        build(sources=sources_of(two, first_stage_run=only_q1), dataset=str(two["folder"]),
              output=tmp_path / "x.parquet", progress=False)
    with pytest.raises(RankdistillError, match=r"sources\[0\] \(bm25\)\.teacher_run: .*nothing\.run does not exist"):
        build(sources=[{**sources_of(two)[0], "teacher_run": two["folder"] / "nothing.run"}],
              dataset=str(two["folder"]), output=tmp_path / "x.parquet", progress=False)


def test_option_errors(two, tmp_path):
    common = {"dataset": str(two["folder"]), "output": tmp_path / "x.parquet", "progress": False}
    with pytest.raises(RankdistillError, match="either 'sources'.* or a single first_stage_run/teacher_run, not both"):
        build(sources=sources_of(two), teacher_run=two["llm-bm25"], **common)
    with pytest.raises(RankdistillError, match=r"merge: got 'concat'; allowed: 'none' or 'rrf'"):
        build(sources=sources_of(two), merge="concat", **common)
    with pytest.raises(RankdistillError, match="merge 'rrf' fuses several sources: give 'sources'"):
        build(teacher_run=two["llm-bm25"], merge="rrf", **common)
    with pytest.raises(RankdistillError, match=r"names must differ, 'bm25' repeats"):
        build(sources=[sources_of(two)[0], {**sources_of(two)[1], "name": "bm25"}], **common)
    with pytest.raises(RankdistillError, match=r"sources\.0\.teacher_run: required key is missing"):
        build(sources=[{"first_stage_run": two["bm25"]}], **common)
    # unnamed sources take the first-stage run's file name
    out = build(sources=[{k: v for k, v in s.items() if k != "name"} for s in sources_of(two)], depth=6, **common)
    assert {s for _, s in lists_of(out)} == {"bm25", "dense"}


# --- the CLI -----------------------------------------------------------------------------------------------


def test_cli_repeated_source_flags_and_merge(two, tmp_path, capsys):
    spec = "name={name},first_stage_run={first_stage_run},teacher_run={teacher_run},teacher-window={teacher_window}," \
           "teacher_stride={teacher_stride},teacher_depth={teacher_depth}"
    argv = ["build", "-d", str(two["folder"]), "-o", str(tmp_path / "cli.parquet"), "--depth", "10", "-k", "10",
            "--pairs", "compared", "--merge", "rrf"]
    for s in sources_of(two):
        argv += ["--source", spec.format(**s)]
    main(argv)
    printed = capsys.readouterr().out
    assert "lists" in printed and "training pairs" in printed and "23" in printed
    assert read_metadata(tmp_path / "cli.parquet")["counts"]["pairs"] == 23


def test_cli_config_sources_are_relative_to_the_yaml(two, tmp_path, cli_error, capsys):
    cfg = two["folder"] / "build.yaml"
    cfg.write_text(
        "dataset: .\noutput: ../from-config.parquet\ndepth: 6\nsample-size: 6\nsources:\n"
        "  - {name: bm25, first-stage-run: bm25.run, teacher-run: llm-bm25.run, teacher_window: 4, teacher_stride: 2,"
        " teacher_depth: 6}\n"
        "  - {name: dense, first_stage_run: dense.run, teacher_run: llm-dense.run, teacher_window: 3, teacher_stride: 3,"
        " teacher_depth: 6}\n",
        encoding="utf-8",
    )
    main(["build", "--config", str(cfg)])
    assert read_metadata(tmp_path / "from-config.parquet")["counts"]["lists"] == 4
    message = cli_error(["build", "-d", str(two["folder"]), "-o", str(tmp_path / "x.parquet"), "--source", "bm25.run"])
    assert "--source #1 'bm25.run': 'bm25.run' is not key=value" in message
    message = cli_error(["build", "-d", str(two["folder"]), "-o", str(tmp_path / "x.parquet"),
                         "--source", f"first_stage_run={two['bm25']}"])
    assert "sources.0.teacher_run: required key is missing (give it in --source" in message
