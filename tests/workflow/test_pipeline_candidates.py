"""Several candidate sets in one evaluation: each first stage re-ranked by every fold's student and the zero-shot
backbone, named after what it is, with the first stage's tail kept below the re-ranked depth in every run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.data import write_dl20_subset
from helpers.tiny import tiny_encoder_dir

from rankdistill.data.trec import read_run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.significance import holm, paired_p_value
from rankdistill.workflow.config import FirstStageConfig, load_config
from rankdistill.workflow.runner import first_stage_name, pipeline

N_QUERIES, LIST, DEPTH, TEACHER_DEPTH = 6, 12, 4, 6
MEASURES = ["nDCG@10", "R@100", "AP(rel=2)"]


@pytest.fixture(scope="module")
def setup(dl20, tmp_path_factory):
    """6 DL20 queries: their BM25 top-12, the same lists reversed (a second first stage), and RankVicuna's order of
    BM25's top 6 only (a teacher run recorded at a depth above the evaluation's, below the list's length)."""
    root = tmp_path_factory.mktemp("candidates")
    data = root / "data"
    data.mkdir()
    bm25 = read_run(dl20 / "bm25-top100.run", depth=LIST)
    qids = sorted(bm25)[:N_QUERIES]
    bm25 = {q: bm25[q] for q in qids}
    reversed_run = {q: [(d, float(i)) for i, (d, _) in enumerate(bm25[q])] for q in qids}  # BM25's worst first
    teacher_full = read_run(dl20 / "rankvicuna-7b.run")
    teacher = {}
    for q in qids:
        top = {d for d, _ in bm25[q][:TEACHER_DEPTH]}
        teacher[q] = [(d, s) for d, s in teacher_full[q] if d in top]
    docids = {d for q in qids for d, _ in bm25[q]}
    write_dl20_subset(dl20, data, qids, docids)
    write_run(bm25, root / "bm25-top12.run", tag="bm25")
    write_run(reversed_run, root / "reversed.run", tag="reversed")
    write_run(teacher, root / "rankvicuna.run", tag="teacher")
    return root, data, tiny_encoder_dir(root / "tiny-model")


def _config(root: Path, data: Path, model: Path, evaluate: dict) -> Path:
    cfg = {
        "name": "candidates",
        "output": str(root / "out"),
        "train": {
            "dataset": str(data),
            "first_stage": {"run": str(root / "bm25-top12.run")},
            "teacher": {"run": str(root / "rankvicuna.run")},
            "model": str(model),
            "stages": [{"name": "distill", "loss": "ranknet", "sample_size": 4, "depth": TEACHER_DEPTH, "epochs": 1,
                        "learning_rate": 1e-3, "max_passage_length": 48}],
        },
        "evaluate": {"depth": DEPTH, "measures": MEASURES, **evaluate},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cross_validation_reranks_every_candidate_set_and_reports_each(setup):
    root, data, model = setup
    candidates = [{"name": "bm25", "run": "bm25-top12.run", "teacher_run": "rankvicuna.run"},
                  {"name": "reversed", "run": "reversed.run"}]
    result = pipeline(_config(root, data, model, {"cross_validation": 2, "candidates": candidates}))
    out = root / "out"
    assert list(result.metrics["cv"]) == ["bm25", "reversed"]
    assert {s for s in result.ran if s.startswith("rerank:")} == {
        "rerank:fold1:bm25", "rerank:fold1:reversed", "rerank:fold2:bm25", "rerank:fold2:reversed"}
    firsts = {"bm25": read_run(root / "bm25-top12.run"), "reversed": read_run(root / "reversed.run")}
    for name, first in firsts.items():
        folder = out / "eval" / "cv" / name
        for run_name in ("student.run", "zero-shot/teacher.run"):
            run = read_run(folder / run_name)
            assert sorted(run) == sorted(first)
            for qid, docs in run.items():  # the top DEPTH re-ranked, the rest in the first stage's order below it
                assert len(docs) == LIST
                assert {d for d, _ in docs[:DEPTH]} == {d for d, _ in first[qid][:DEPTH]}
                assert [d for d, _ in docs[DEPTH:]] == [d for d, _ in first[qid][DEPTH:]]
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics == result.metrics["cv"][name]
        runs = metrics["runs"]
        assert list(runs) == [name, "zero-shot", "teacher", "student"] if name == "bm25" else [name, "zero-shot", "student"]
        for system in runs:  # only the top was permuted: recall over the whole list is the first stage's
            assert runs[system]["per_query"]["R@100"] == runs[name]["per_query"]["R@100"]
    # the recorded teacher ranked BM25's top 6: the rest of the list follows in BM25's order
    teacher = read_run(out / "eval" / "cv" / "bm25" / "teacher.run")
    for qid, docs in teacher.items():
        assert [d for d, _ in docs[TEACHER_DEPTH:]] == [d for d, _ in firsts["bm25"][qid][TEACHER_DEPTH:]]

    summary = json.loads((out / "report" / "cv" / "summary.json").read_text())
    bm25 = summary["candidate_sets"]["bm25"]
    assert bm25["systems"]["bm25"]["role"] == "first stage"
    assert list(bm25["paired"]) == ["student vs bm25", "student vs zero-shot", "student vs teacher"]
    assert list(summary["candidate_sets"]["reversed"]["paired"]) == ["student vs reversed", "student vs zero-shot"]
    per_query = result.metrics["cv"]["bm25"]["runs"]
    for m in MEASURES:  # the paired tests: the per-query values of metrics.json, t-tests, Holm across the three
        student = list(per_query["student"]["per_query"][m].values())
        raw = [paired_p_value(student, list(per_query[ref]["per_query"][m].values()))
               for ref in ("bm25", "zero-shot", "teacher")]
        got = [bm25["paired"][f"student vs {ref}"]["measures"][m]["p_corrected"] for ref in ("bm25", "zero-shot", "teacher")]
        assert got == pytest.approx(holm(raw))
        delta = bm25["paired"]["student vs teacher"]["measures"][m]["delta"]
        assert delta == pytest.approx(per_query["student"]["measures"][m]["mean"] - per_query["teacher"]["measures"][m]["mean"])
    report = (out / "report" / "cv" / "report.md").read_text()
    assert "## Candidate sets" in report and "## Candidate set `reversed`" in report
    assert "### Per fold" in report and "`bm25`" in report
    assert "| bm25 | bm25 | first stage |" in report and "| reversed | student | student |" in report

    again = pipeline(_config(root, data, model, {"cross_validation": 2, "candidates": candidates}))
    assert again.ran == []


@pytest.mark.parametrize(("cfg", "name"), [
    ({"run": "runs/splade-pp-ed.dl20.run.gz"}, "splade-pp-ed.dl20"),
    ({"run": "runs/teacher.run"}, "first-stage-teacher"),
    ({"bm25": {}}, "bm25"),
    ({"from_dataset": True}, "scoreddocs"),
])
def test_default_candidate_set_is_named_after_its_first_stage(cfg, name):
    assert first_stage_name(FirstStageConfig(**cfg)) == name


def test_default_candidate_set_is_the_training_first_stage(tmp_path):
    """No candidates: the training first stage, named after its file (never 'bm25' for another retriever's run)."""
    for f in ("splade.run", "teacher.run"):
        (tmp_path / f).write_text("")
    base = {"name": "x", "output": str(tmp_path / "out"), "train": {
        "dataset": str(tmp_path), "first_stage": {"run": "splade.run"}, "teacher": {"run": "teacher.run"}}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**base, "evaluate": {"cross_validation": 2}}))
    (tmp_path / "queries.tsv").write_text("q1\tone\n")
    (tmp_path / "corpus.tsv").write_text("d1\ttext\n")
    result = pipeline(path, dry_run=True)
    assert "rerank:fold1:splade" in result.ran and "teach:zero-shot:cv:splade" in result.ran


def test_evaluation_sets_take_candidate_sets(tmp_path):
    for f in ("bm25.run", "splade.run", "splade.zephyr.run", "teacher.run", "train.run"):
        (tmp_path / f).write_text("")
    (tmp_path / "queries.tsv").write_text("q1\tone\n")
    (tmp_path / "corpus.tsv").write_text("d1\ttext\n")
    cfg = {"name": "x", "output": str(tmp_path / "out"),
           "train": {"dataset": str(tmp_path), "first_stage": {"run": "train.run"}, "teacher": {"run": "teacher.run"}},
           "evaluate": {"zero_shot": False, "sets": [{"name": "dl20", "dataset": str(tmp_path), "candidates": [
               {"name": "bm25", "run": "bm25.run"},
               {"name": "splade-pp-ed", "run": "splade.run", "teacher_run": "splade.zephyr.run"}]}]}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    config = load_config(path)
    assert config.evaluate.sets[0].candidates[1].teacher_run == tmp_path / "splade.zephyr.run"
    result = pipeline(path, dry_run=True)
    assert [s for s in result.ran if s.startswith(("rerank", "evaluate"))] == [
        "rerank:dl20:bm25", "rerank:dl20:splade-pp-ed", "evaluate:dl20"]


@pytest.mark.parametrize(("evaluate", "message"), [
    ({"sets": [{"name": "a", "dataset": ".", "first_stage": {"run": "r.run"}}],
      "candidates": [{"name": "bm25", "run": "r.run"}]},
     "'candidates' here are for cross-validation; give an evaluation set its own 'sets.<i>.candidates'"),
    ({"cross_validation": 2, "candidates": [{"name": "bm25", "run": "a.run"}, {"name": "bm25", "run": "b.run"}]},
     "candidate set names must be unique"),
    ({"cross_validation": 2, "candidates": [{"name": "student", "run": "a.run"}]},
     "'student' names a re-ranked row of every candidate set"),
    ({"cross_validation": 2, "candidates": [{"name": "my run", "run": "a.run"}]}, "candidates.0.name"),
    ({"sets": [{"name": "a", "dataset": ".", "first_stage": {"run": "r.run"},
                "candidates": [{"name": "bm25", "run": "r.run"}]}]},
     "give exactly one of 'first_stage' (one candidate set) or 'candidates'"),
    ({"sets": [{"name": "a", "dataset": ".", "teacher": {"run": "t.run"},
                "candidates": [{"name": "bm25", "run": "r.run"}]}]},
     "with 'candidates' give each set its 'teacher_run'"),
])
def test_candidate_set_mistakes_name_the_key(tmp_path, evaluate, message):
    cfg = {"train": {"dataset": ".", "first_stage": {"run": "r.run"}}, "evaluate": evaluate}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RankdistillError) as info:
        load_config(path)
    assert message in str(info.value)


def test_missing_candidate_run_names_its_key(setup, tmp_path):
    root, data, model = setup
    path = _config(root, data, model, {"cross_validation": 2,
                                       "candidates": [{"name": "splade", "run": str(tmp_path / "nope.run")}]})
    events = []
    pipeline(path, dry_run=True, on_event=lambda event, text: events.append((event, text)))
    assert ("missing", f"evaluate.candidates.0.run: {tmp_path / 'nope.run'} (download it before the real run)") in events
    with pytest.raises(RankdistillError, match=r"evaluate.candidates.0.run: .*nope.run does not exist"):
        pipeline(path)


def test_candidate_run_of_other_queries_is_refused_before_training(setup, tmp_path):
    root, data, model = setup
    other = write_run({"nope": [("d1", 1.0)]}, tmp_path / "other.run")
    path = _config(root, data, model, {"cross_validation": 2, "candidates": [{"name": "other", "run": str(other)}]})
    with pytest.raises(RankdistillError, match=r"evaluate.candidates.0.run: .*other.run holds none of the 6 training "
                                               r"queries .*each candidate set ranks the training queries"):
        pipeline(path)


def test_fusion_row_ranks_the_students_top_by_summed_zscores_and_keeps_the_tail(setup):
    from rankdistill.reranking.fusion import fuse_with_first_stage

    root, data, model = setup
    result = pipeline(_config(root, data, model, {"cross_validation": 2, "fuse_first_stage": 0.5}))
    name = next(iter(result.metrics["cv"]))
    assert "student+first-stage" in result.metrics["cv"][name]["runs"]
    folder = root / "out" / "eval" / "cv" / name
    student, fused = read_run(folder / "student.run"), read_run(folder / "student+first-stage.run")
    first = read_run(root / "bm25-top12.run")
    for q, docs in student.items():
        expected = dict(fuse_with_first_stage(docs[:DEPTH], first[q], 0.5))
        assert dict(fused[q][:DEPTH]) == pytest.approx(expected)
        assert [d for d, _ in fused[q][:DEPTH]] == sorted(expected, key=lambda d: -expected[d])
        assert [d for d, _ in fused[q][DEPTH:]] == [d for d, _ in docs[DEPTH:]]  # the tail as the student's run has it
