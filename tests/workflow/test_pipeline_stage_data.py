"""A training stage with its own data (other queries, BM25 here, the embedding teacher): the evaluated
queries never reach it, it is trained once for all folds, the next stage starts from it, reruns skip."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.tiny import tiny_encoder_dir

from rankdistill.workflow.config import load_config
from rankdistill.errors import RankdistillError
from rankdistill.data.trec import read_qrels, read_run, write_qrels, write_run
from rankdistill.workflow.runner import pipeline

N_CV, N_EXTRA, DEPTH, DATA_K = 6, 4, 10, 6


@pytest.fixture(scope="module")
def setup(dl20, tmp_path_factory):
    """CV folder: 6 judged DL20 queries; data folder: those 6 plus 4 more (treated as unjudged), no qrels."""
    root = tmp_path_factory.mktemp("stage-data")
    bm25 = read_run(dl20 / "bm25-top100.run", depth=DEPTH)
    qids = sorted(bm25)[: N_CV + N_EXTRA]
    cv, extra = qids[:N_CV], qids[N_CV:]
    queries = dict(line.split("\t", 1) for line in (dl20 / "queries.tsv").read_text().splitlines())
    passages = dict(line.split("\t", 1) for line in (dl20 / "passages.tsv").read_text().splitlines())
    teacher_full = read_run(dl20 / "rankvicuna-7b.run")
    qrels = read_qrels(dl20 / "qrels.txt")

    def folder(name: str, qs: list[str]) -> Path:
        path = root / name
        path.mkdir()
        (path / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in qs))
        docids = sorted({d for q in qs for d, _ in bm25[q]})
        (path / "corpus.tsv").write_text("".join(f"{d}\t{passages[d]}\n" for d in docids))
        return path

    cv_data = folder("cv-data", cv)
    write_qrels({q: qrels[q] for q in cv}, cv_data / "qrels.txt")
    other = folder("other-data", cv + extra)
    write_run({q: bm25[q] for q in cv}, root / "bm25.run", tag="bm25")
    keep = {q: {d for d, _ in bm25[q]} for q in cv}
    write_run({q: [(d, s) for d, s in teacher_full[q] if d in keep[q]] for q in cv}, root / "teacher.run", tag="t")
    model = tiny_encoder_dir(root / "tiny-model")
    return root, cv_data, other, model, cv, extra


def config(root: Path, cv_data: Path, other: Path, model: Path, **changes) -> dict:
    cfg = {
        "name": "stage-data",
        "output": str(root / "out"),
        "seed": 0,
        "train": {
            "dataset": str(cv_data),
            "first_stage": {"run": str(root / "bm25.run")},
            "teacher": {"run": str(root / "teacher.run")},
            "model": str(model),
            "head": "similarity",
            "stages": [
                {"name": "bi", "targets": "score", "loss": "kl", "loss_options": {"temperature": 0.05},
                 "depth": DATA_K, "sample_size": DATA_K, "learning_rate": 1e-3, "max_passage_length": 32, "max_steps": 1,
                 "data": {"dataset": str(other), "first_stage": {"bm25": {"k": DATA_K}},
                          "teacher": {"backend": "embedding", "model": str(model), "depth": DATA_K}}},
                {"name": "distill", "loss": "ranknet", "sample_size": 8, "depth": DEPTH, "learning_rate": 1e-3,
                 "max_passage_length": 32, "max_steps": 1},
            ],
        },
        "evaluate": {"cross_validation": 2, "depth": DEPTH, "measures": ["nDCG@10"]},
    }
    cfg["train"].update(changes)
    return cfg


def write(root: Path, cfg: dict, name: str = "c.yaml") -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_own_data_stage_excludes_evaluated_queries_trains_once_and_feeds_every_fold(setup):
    root, cv_data, other, model, cv, extra = setup
    path = write(root, config(root, cv_data, other, model))
    events: list[tuple[str, str]] = []
    first = pipeline(path, on_event=lambda event, text: events.append((event, text)))
    assert first.skipped == []
    for sid in ("retrieve:bi", "teach:bi", "build:bi", "train:shared:bi", "train:fold1:distill", "train:fold2:distill"):
        assert first.ran.count(sid) == 1, sid
    assert not [s for s in first.ran if s.startswith(("train:fold1:bi", "train:fold2:bi", "build:fold"))
                and s.endswith(":bi")]
    assert any(event == "note" and "removed 6 evaluated queries" in text for event, text in events)
    assert ("running", "train:fold1:distill") in events

    out = root / "out"
    data = pq.read_table(out / "stages" / "bi" / "data.parquet").to_pandas()
    assert set(data["qid"]) == set(extra)  # none of the CV queries, every other one
    assert set(read_run(out / "stages" / "bi" / "teacher" / "teacher.run")) == set(extra)
    assert sorted(read_run(out / "stages" / "bi" / "bm25.run")) == sorted(cv + extra)  # retrieval saw all

    shared = out / "students" / "shared" / "model-bi"
    assert json.loads((shared / "config.json").read_text())  # a saved model
    for fold in ("fold1", "fold2"):
        manifest = json.loads((out / "manifests" / f"train__{fold}__distill.json").read_text())
        assert str(shared) in manifest["fingerprint"]["inputs"]  # the fold's stage starts from the shared one
        assert manifest["config"]["model"] == "previous-stage" and "head" not in manifest["config"]
    shared_manifest = json.loads((out / "manifests" / "train__shared__bi.json").read_text())
    assert shared_manifest["config"]["head"] == "similarity"
    assert shared_manifest["config"]["loss_kwargs"] == {"temperature": 0.05}

    again = pipeline(path)
    assert again.ran == [] and sorted(again.skipped) == sorted(first.ran)


def test_dry_run_plans_the_stage_data(setup, tmp_path):
    root, cv_data, other, model, _, _ = setup
    cfg = config(root, cv_data, other, model)
    cfg["output"] = str(tmp_path / "dry")
    result = pipeline(write(tmp_path, cfg), dry_run=True)
    assert result.ran[:4] == ["retrieve:bi", "teach:bi", "build:bi", "train:shared:bi"]
    assert "train:fold1:distill" in result.ran and "train:fold2:distill" in result.ran
    assert not any(s.startswith("train:fold") and s.endswith(":bi") for s in result.ran)


def test_relative_data_paths_resolve_against_the_config(setup, tmp_path):
    root, cv_data, other, model, _, _ = setup
    cfg = config(root, cv_data, other, model)
    stage = cfg["train"]["stages"][0]
    stage["data"]["dataset"] = "other-data"
    stage["data"]["first_stage"] = {"run": "bm25.run"}
    loaded = load_config(write(root, cfg, "relative.yaml"))
    data = loaded.train.stages[0].data
    assert data.dataset == str(other.resolve()) and data.first_stage.run == (root / "bm25.run").resolve()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["data"]["teacher"].pop("model"), r"backend 'embedding' needs 'model'"),
        (lambda s: s["data"]["teacher"].update(window=5), r"embedding' is pointwise: window"),
        (lambda s: s["data"]["teacher"].update(backend="bert"), r"train\.stages\.0\.data\.teacher\.backend: got 'bert'; allowed: .*'embedding'"),
        (lambda s: s["data"].pop("teacher"), r"'stages\.0\.data\.teacher' is not set"),
        (lambda s: s["data"].update(corpus="x"), r"train\.stages\.0\.data\.corpus: unknown key"),
        (lambda s: s.update(name="cv"), r"train\.stages\.0\.name: 'cv' has its own data"),
        (lambda s: s["data"].pop("dataset"), r"train\.stages\.0\.data\.dataset: required key is missing"),
    ],
)
def test_config_errors_name_the_key(setup, tmp_path, change, expected):
    root, cv_data, other, model, _, _ = setup
    cfg = config(root, cv_data, other, model)
    change(cfg["train"]["stages"][0])
    with pytest.raises(RankdistillError, match=expected):
        load_config(write(tmp_path, cfg))


def test_head_must_be_known(setup, tmp_path):
    root, cv_data, other, model, _, _ = setup
    with pytest.raises(RankdistillError, match=r"train\.head: got 'mean'; allowed: 'cls', 'similarity' or 'gated'"):
        load_config(write(tmp_path, config(root, cv_data, other, model, head="mean")))


def test_with_eval_sets_every_set_query_is_excluded(setup, tmp_path):
    """With ``sets`` the evaluated queries are all queries of every eval set's dataset."""
    from rankdistill.workflow.eval_steps import eval_set_qids
    from rankdistill.workflow.steps import StepRunner

    root, cv_data, other, model, cv, extra = setup
    cfg = config(root, cv_data, other, model)
    cfg["evaluate"] = {"sets": [{"name": "judged", "dataset": str(cv_data), "first_stage": {"run": str(root / "bm25.run")}}]}
    loaded = load_config(write(tmp_path, cfg))
    assert eval_set_qids(StepRunner(loaded, None, dry_run=True)) == set(cv)
    cfg["evaluate"]["sets"].append({"name": "all", "dataset": str(other), "first_stage": {"run": str(root / "bm25.run")}})
    assert eval_set_qids(StepRunner(load_config(write(tmp_path, cfg)), None, dry_run=True)) == set(cv + extra)
    cfg["evaluate"]["sets"][0]["name"] = "bi"  # an eval set may not share a name with a stage that has data
    with pytest.raises(RankdistillError, match=r"train\.stages\.0\.name: 'bi' has its own data"):
        load_config(write(tmp_path, cfg))
