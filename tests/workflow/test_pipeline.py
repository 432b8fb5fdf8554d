"""A tiny pipeline end to end: tiny model, a few DL20 queries; skipping and selective re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers.data import write_tiny_dl20
from helpers.tiny import tiny_encoder_dir

from rankdistill.data.trec import read_run
from rankdistill.util.device import resolve_dtype
from rankdistill.workflow.runner import pipeline

N_QUERIES, DEPTH = 6, 12


@pytest.fixture(scope="module")
def tiny_setup(dl20, tmp_path_factory):
    """A folder collection with 6 DL20 queries and their BM25 top-12, the RankVicuna ranking of those."""
    root = tmp_path_factory.mktemp("tiny-pipeline")
    data, _, _ = write_tiny_dl20(dl20, root, N_QUERIES, DEPTH)
    model = tiny_encoder_dir(root / "tiny-model")
    return root, data, model


def config(root: Path, data: Path, model: Path, loss: str, dtype: str = "auto") -> Path:
    cfg = {
        "name": "tiny",
        "output": str(root / "out"),
        "seed": 0,
        "train": {
            "dataset": str(data),
            "first_stage": {"run": str(root / "bm25.run")},
            "teacher": {"run": str(root / "teacher.run")},
            "model": str(model),
            "stages": [{"name": "distill", "loss": loss, "sample_size": 8, "depth": DEPTH, "epochs": 1,
                        "learning_rate": 1e-3, "max_passage_length": 48}],
        },
        "evaluate": {"cross_validation": 2, "depth": DEPTH, "measures": ["nDCG@10", "AP(rel=2)"], "dtype": dtype},
    }
    path = root / f"config-{loss}-{dtype}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_tiny_pipeline_end_to_end_then_skips_then_reruns_only_what_changed(tiny_setup):
    root, data, model = tiny_setup
    first = pipeline(config(root, data, model, "ranknet"))
    assert first.skipped == []
    kinds = sorted({s.split(":")[0] for s in first.ran})
    assert kinds == ["build", "evaluate", "rerank", "teach", "train"]  # teach: the zero-shot backbone baseline
    student = read_run(root / "out" / "eval" / "cv" / "bm25" / "student.run")
    bm25 = read_run(root / "bm25.run")
    assert sorted(student) == sorted(bm25)
    for qid, docs in student.items():  # the student re-ranks exactly the candidates
        assert sorted(d for d, _ in docs) == sorted(d for d, _ in bm25[qid])
    metrics = json.loads((root / "out" / "eval" / "cv" / "bm25" / "metrics.json").read_text())
    assert list(metrics["runs"]) == ["bm25", "zero-shot", "teacher", "student"]  # the first stage named after its file
    assert first.metrics["cv"]["bm25"]["runs"]["student"]["measures"] == metrics["runs"]["student"]["measures"]
    zero_shot = read_run(root / "out" / "eval" / "cv" / "bm25" / "zero-shot" / "teacher.run")
    for qid, docs in zero_shot.items():  # the untrained backbone re-ranks the same candidates
        assert sorted(d for d, _ in docs) == sorted(d for d, _ in bm25[qid])
    assert "zero-shot backbone" in (root / "out" / "report" / "cv" / "report.md").read_text()
    report = root / "out" / "report" / "cv" / "report.html"
    assert report.exists() and "data:image/png;base64" in report.read_text()
    manifest = json.loads(next((root / "out" / "manifests").glob("train__fold1__distill.json")).read_text())
    assert manifest["versions"]["torch"] and manifest["fingerprint"]["inputs"]

    again = pipeline(config(root, data, model, "ranknet"))
    assert again.ran == [] and len(again.skipped) == len(first.ran)

    changed = pipeline(config(root, data, model, "kl"))
    assert sorted({s.split(":")[0] for s in changed.ran}) == ["evaluate", "rerank", "train"]
    assert sorted({s.split(":")[0] for s in changed.skipped}) == ["build", "teach"]

    forced = pipeline(config(root, data, model, "kl"), from_stage="rerank")
    assert sorted({s.split(":")[0] for s in forced.ran}) == ["evaluate", "rerank"]

    # the zero-shot row is computed in the student's precision (evaluate.dtype), so changing it recomputes both
    stats = root / "out" / "eval" / "cv" / "bm25" / "zero-shot" / "stats.json"
    assert json.loads(stats.read_text())["dtype"] == resolve_dtype("auto", "cpu")
    exact = pipeline(config(root, data, model, "kl", dtype="float32"))
    assert sorted({s.split(":")[0] for s in exact.ran}) == ["evaluate", "rerank", "teach"]
    assert json.loads(stats.read_text())["dtype"] == "float32"


def test_auto_precision_is_keyed_as_what_it_resolves_to_on_this_machine(tiny_setup, monkeypatch, tmp_path):
    """`auto` means bf16 on a CPU with native bf16 and float32 on one without: a step computed under one is reused
    by a config naming the same precision, and recomputed where `auto` would now mean another."""
    import rankdistill.util.device as device

    root, data, model = tiny_setup
    cfg = yaml.safe_load(config(root, data, model, "ranknet").read_text())
    cfg["output"] = str(tmp_path / "out")
    cfg["train"]["stages"][0]["bf16"] = "auto"

    def run(dtype: str, bf16: str):
        cfg["evaluate"]["dtype"], cfg["train"]["stages"][0]["bf16"] = dtype, bf16
        path = tmp_path / "config.yaml"
        path.write_text(yaml.safe_dump(cfg))
        result = pipeline(path)
        return sorted({s.split(":")[0] for s in result.ran}), sorted({s.split(":")[0] for s in result.skipped})

    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)
    assert run("auto", "auto")[0] == ["build", "evaluate", "rerank", "teach", "train"]
    stats = tmp_path / "out" / "eval" / "cv" / "bm25" / "zero-shot" / "stats.json"
    assert json.loads(stats.read_text())["dtype"] == "float32"
    # on this CPU `auto` is float32 and no bf16: naming them is the same work, so nothing is redone
    ran, skipped = run("float32", False)
    assert "rerank" not in ran and "teach" not in ran and "train" not in ran
    assert {"rerank", "teach", "train"} <= set(skipped)

    # the same config on a CPU with native bf16: `auto` now means bf16, so training, re-ranking and zero-shot rerun
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: True)
    ran, skipped = run("auto", "auto")
    assert {"rerank", "teach", "train"} <= set(ran) and "build" in skipped
    assert json.loads(stats.read_text())["dtype"] == "bfloat16"
