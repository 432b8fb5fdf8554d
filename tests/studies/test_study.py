"""A study of variants on a tiny model and six DL20 queries: the steps two variants share run once (counted by
wrapping build and train), the table's p-values equal a paired t-test and Holm correction done by hand, a study
SIGKILLed after its first variant resumes without retraining it, and bad studies fail with one line naming the key."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.data import write_tiny_dl20
from helpers.tiny import tiny_encoder_dir
from scipy import stats

from rankdistill.cli import main
from rankdistill.distillation.schema import read_set
from rankdistill.errors import RankdistillError
from rankdistill.studies import load_study, study

N_QUERIES, DEPTH = 6, 10


@pytest.fixture(scope="module")
def setup(dl20, tmp_path_factory):
    """Six DL20 queries, their BM25 top-10, RankVicuna's order of those, a tiny encoder, and a base pipeline."""
    root = tmp_path_factory.mktemp("tiny-study")
    write_tiny_dl20(dl20, root, N_QUERIES, DEPTH)
    tiny_encoder_dir(root / "tiny-model")
    base = {
        "name": "tiny",
        "train": {
            "dataset": "data",  # relative paths are taken from the base file's folder
            "first_stage": {"run": "bm25.run"},
            "teacher": {"run": "teacher.run"},
            "model": "tiny-model",
            "stages": [{"name": "distill", "loss": "ranknet", "sample_size": DEPTH, "depth": DEPTH, "epochs": 1,
                        "learning_rate": 1e-3, "max_passage_length": 48}],
        },
        "evaluate": {"cross_validation": 2, "depth": DEPTH, "measures": ["nDCG@10", "RR(rel=2)@10"]},
    }
    (root / "base.yaml").write_text(yaml.safe_dump(base))
    return root


def write_study(root: Path, name: str, **fields) -> Path:
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "output": f"out-{name}", "base": "base.yaml", **fields}, sort_keys=False))
    return path


VARIANTS = {"base": {}, "kl": {"train.stages.0.loss": "kl"}, "q2": {"train.queries": 2}, "q1": {"train.queries": 1}}


@pytest.fixture(scope="module")
def finished(setup):
    """The three-variant study, run once with build and train counted."""
    import rankdistill.distillation.builder as builder
    import rankdistill.training.trainer as trainer

    calls = {"build": 0, "train": 0}
    real_build, real_train = builder.build, trainer.train

    def counted(name, real):
        def wrapper(*args, **kwargs):
            calls[name] += 1
            return real(*args, **kwargs)
        return wrapper

    mp = pytest.MonkeyPatch()
    mp.setattr(builder, "build", counted("build", real_build))
    mp.setattr(trainer, "train", counted("train", real_train))
    try:
        path = write_study(setup, "three", variants=VARIANTS, grid={"train.stages.0.learning_rate": [1e-3, 1e-2]},
                           reference="base")
        result = study(path)
    finally:
        mp.undo()
    return path, result, calls


def test_shared_steps_run_once_counted(finished, setup):
    path, result, calls = finished
    names = ["base", "kl", "q2", "q1", "learning_rate=0.001", "learning_rate=0.01"]
    assert result.ran == names and result.done_earlier == []
    # base and kl read the same distillation sets (one per fold): built twice in all, not four times; q2 trains on
    # 2 and 1 queries per fold (two more sets each); the grid's first point is the base itself, the second shares
    # its sets
    assert calls == {"build": 6, "train": 2 + 2 + 2 + 2 + 0 + 2}
    # 2 builds, 2 trains, 2 re-rankings, the zero-shot baseline, the evaluation
    assert result.steps["base"] == {"ran": 8, "reused": 0, "up to date": 0}
    assert result.steps["kl"] == {"ran": 5, "reused": 3, "up to date": 0}  # 2 builds + zero-shot taken from base
    assert result.steps["learning_rate=0.001"] == {"ran": 1, "reused": 7, "up to date": 0}  # only its report
    out = setup / "out-three"
    kl_build = json.loads((out / "variants/kl/manifests/build__fold1__distill.json").read_text())
    assert kl_build["reused"] is True
    for fold in ("fold1", "fold2"):  # train.queries: 2 of the fold's 3 training queries
        table = read_set(out / f"variants/q2/students/{fold}/distill.parquet", columns=["qid"])
        assert len(set(table.column("qid").to_pylist())) == 2
        base_set = read_set(out / f"variants/base/students/{fold}/distill.parquet", columns=["qid"])
        assert set(table.column("qid").to_pylist()) < set(base_set.column("qid").to_pylist())


def test_table_p_values_equal_a_paired_test_and_holm_by_hand(finished, setup):
    path, result, _ = finished
    out = setup / "out-three"
    table = json.loads((out / "table.json").read_text())
    rows = {r["name"]: r for r in table["rows"]}
    assert [r["kind"] for r in table["rows"]] == ["reference"] + ["variant"] * 5 + ["baseline"] * 3

    def per_query(variant: str, run: str = "student", measure: str = "nDCG@10") -> dict[str, float]:
        metrics = json.loads((out / f"variants/{variant}/eval/cv/bm25/metrics.json").read_text())
        return metrics["runs"][run]["per_query"][measure]

    ref = per_query("base")
    qids = sorted(ref)
    assert len(qids) == N_QUERIES
    others = ["kl", "q2", "q1", "learning_rate=0.001", "learning_rate=0.01"]
    raw = {}
    for name in others:
        a, b = np.array([per_query(name)[q] for q in qids]), np.array([ref[q] for q in qids])
        p = 1.0 if np.array_equal(a, b) else float(stats.ttest_rel(a, b).pvalue)
        raw[name] = p
        cell = rows[name]["cells"]["bm25 nDCG@10"]
        assert cell["p"] == pytest.approx(p, abs=1e-12)
        assert cell["mean"] == pytest.approx(a.mean()) and cell["delta"] == pytest.approx(a.mean() - b.mean())
    # Holm by hand: the i-th smallest of m p-values times (m - i), a running maximum, capped at 1
    order = sorted(others, key=raw.get)
    running, holm = 0.0, {}
    for i, name in enumerate(order):
        running = max(running, min(1.0, (len(others) - i) * raw[name]))
        holm[name] = running
    for name in others:
        assert rows[name]["cells"]["bm25 nDCG@10"]["p_holm"] == pytest.approx(holm[name], abs=1e-12)
    assert rows["learning_rate=0.001"]["cells"]["bm25 nDCG@10"]["p"] == 1.0  # the base itself, again
    assert rows["zero-shot"]["cells"]["bm25 nDCG@10"]["mean"] == pytest.approx(
        np.mean([per_query("base", "zero-shot")[q] for q in qids]))
    assert rows["first stage"]["cells"]["bm25 RR(rel=2)@10"]["mean"] == pytest.approx(
        np.mean([per_query("base", "bm25", "RR(rel=2)@10")[q] for q in qids]))
    md = (out / "table.md").read_text()
    assert "| **base** (reference) |" in md and "learning_rate=0.01" in md
    assert (out / "table.png").read_bytes()[:4] == b"\x89PNG"
    # train.queries changed alone by q1 and q2, with the reference's 3 training queries per fold: a learning curve
    assert (out / "curve-train.queries.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "curve-train.stages.0.learning_rate.png").exists()  # two points only
    assert rows["kl"]["cpu_seconds"] > 0 and rows["kl"]["steps_reused"] == 3


def test_study_killed_after_its_first_variant_resumes_without_retraining_it(setup):
    path = write_study(setup, "killed", variants={"base": {}, "kl": {"train.stages.0.loss": "kl"}})
    out = setup / "out-killed"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rankdistill", "study", str(path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        state = out / "study.json"
        if state.exists() and "base" in json.loads(state.read_text())["variants"]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the study finished (or failed) before the kill landed"
    manifest = out / "variants/base/manifests/train__fold1__distill.json"
    before = manifest.read_text()
    result = study(path)
    assert result.done_earlier == ["base"] and result.ran == ["kl"]
    assert manifest.read_text() == before  # base's students were not trained again
    assert (out / "table.md").exists()
    again = study(path)
    assert again.ran == [] and again.done_earlier == ["base", "kl"]


@pytest.mark.parametrize(("fields", "named"), [
    ({"variants": {"base": {}, "typo": {"train.stages.0.los": "kl"}}}, "variants.typo: train.stages.0.los: unknown key"),
    ({"variants": {"base": {}, "x": {"train.stagez.0.loss": "kl"}}}, "variants.x: train.stagez: unknown key"),
    ({"variants": {"base": {}, "x": {"train.stages.4.loss": "kl"}}}, "train.stages.4: train.stages has 1 item(s)"),
    ({"grid": {"train.stages.0.loss": ["kl"]}}, "grid.train.stages.0.loss: an axis needs at least two values"),
    ({"variants": {"base": {}}, "reference": "best"}, "reference: 'best' is not a variant"),
    ({"variants": {"base": {}, "s": {"seed": 3}}}, "variants.s: seed: fixed by the study"),
    ({"variants": {"base": {}, "x": {"train.stages.0.loss": "nope"}}}, "train.stages.0.loss: got 'nope'; allowed"),
    ({"variants": {"base": {}}, "colour": "red"}, "colour: unknown key"),
    ({}, "no variants"),
])
def test_bad_studies_fail_with_one_line_naming_the_key(setup, capsys, fields, named):
    path = write_study(setup, "bad", **fields)
    with pytest.raises(RankdistillError) as err:
        load_study(path)
    assert named in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SystemExit) as exit_:
        main(["study", str(path)])
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0]


def test_a_dry_run_plans_only_the_chosen_variants_and_runs_nothing(setup):
    path = write_study(setup, "planned", reference="base", variants=VARIANTS)
    planned = study(path, only=["kl"], dry_run=True)
    assert planned.ran == ["base", "kl"]  # the reference comes with the chosen variant
    assert not (setup / "out-planned").exists()
    with pytest.raises(RankdistillError, match="only: no variant 'klx'"):
        study(path, only=["klx"], dry_run=True)


def test_a_study_borrowing_another_studys_cache_runs_only_its_report(finished, setup):
    path = write_study(setup, "borrower", variants={"base": {}}, cache="out-three/cache")
    result = study(path)
    assert result.steps["base"] == {"ran": 1, "reused": 7, "up to date": 0}  # builds, students, re-rankings, zero-shot
    mine = json.loads((setup / "out-borrower/variants/base/eval/cv/bm25/metrics.json").read_text())
    theirs = json.loads((setup / "out-three/variants/base/eval/cv/bm25/metrics.json").read_text())
    assert mine["runs"]["student"]["per_query"] == theirs["runs"]["student"]["per_query"]


def test_two_seeds_give_the_spread_of_their_fold_splits(finished, setup):
    path = write_study(setup, "seeds", variants={"base": {}}, seeds=[0, 1], cache="out-three/cache")
    result = study(path)
    assert result.ran == ["base@seed-0", "base@seed-1"]
    assert result.steps["base@seed-0"]["reused"] == 7  # seed 0 is the other study's base
    out = setup / "out-seeds"
    means = []
    values = {}
    for seed in (0, 1):
        metrics = json.loads((out / f"variants/base/seed-{seed}/eval/cv/bm25/metrics.json").read_text())
        per_query = metrics["runs"]["student"]["per_query"]["nDCG@10"]
        means.append(np.mean(list(per_query.values())))
        for q, v in per_query.items():
            values.setdefault(q, []).append(v)
    folds = [json.loads((out / f"variants/base/seed-{s}/config.json").read_text())["seed"] for s in (0, 1)]
    assert folds == [0, 1]
    cell = json.loads((out / "table.json").read_text())["rows"][0]["cells"]["bm25 nDCG@10"]
    assert cell["per_seed"] == pytest.approx(means)
    assert cell["mean"] == pytest.approx(np.mean([np.mean(v) for v in values.values()]))
    assert f"[{min(means):.4f}–{max(means):.4f}]" in (out / "table.md").read_text()


def test_each_variant_against_its_zero_shot_and_first_stage_by_hand(finished, setup):
    from rankdistill.studies.table import Column, against_baselines, read_metrics

    out = setup / "out-three"
    metrics = {name: [read_metrics(out / "variants" / name)] for name in ("base", "kl")}
    text = against_baselines(metrics, [Column("cv", "bm25", "student", "nDCG@10")], "ttest")
    for baseline in ("zero-shot", "bm25"):
        deltas, ps = [], []
        for name in ("base", "kl"):
            runs = metrics[name][0]["cv"]["bm25"]["runs"]
            qids = sorted(runs[baseline]["per_query"]["nDCG@10"])
            a = np.array([runs["student"]["per_query"]["nDCG@10"][q] for q in qids])
            b = np.array([runs[baseline]["per_query"]["nDCG@10"][q] for q in qids])
            deltas.append(a.mean() - b.mean())
            ps.append(1.0 if np.array_equal(a, b) else float(stats.ttest_rel(a, b).pvalue))
        low = min(range(2), key=ps.__getitem__)  # Holm over the two variants
        holm = [0.0, 0.0]
        holm[low] = min(1.0, 2 * ps[low])
        holm[1 - low] = max(holm[low], min(1.0, ps[1 - low]))
        for delta, p in zip(deltas, holm):
            assert f"{delta:+.4f} (p={p:.3f})" in text


def test_a_variant_added_and_run_alone_joins_the_table_of_those_finished_earlier(finished, setup):
    """``--only NEW`` after a finished study: only NEW trains, and the table keeps every earlier row (the rows whose
    config changed since drop out). Last in the module: it adds a row to out-three's table."""
    grid = {"train.stages.0.learning_rate": [1e-3, 1e-2]}
    more = {**VARIANTS, "kl-q2": {"train.stages.0.loss": "kl", "train.queries": 2}}
    path = write_study(setup, "three-more", output="out-three", variants=more, grid=grid, reference="base")
    result = study(path, only=["kl-q2"])
    assert result.done_earlier == ["base"] and result.ran == ["kl-q2"]
    assert result.steps["kl-q2"]["reused"] >= 3  # q2's two distillation sets and base's zero-shot run
    rows = [r["name"] for r in json.loads((setup / "out-three/table.json").read_text())["rows"] if r["kind"] != "baseline"]
    assert rows == [*more, *[f"learning_rate={x}" for x in (0.001, 0.01)]]
    changed = write_study(setup, "three-changed", output="out-three", reference="base",
                          variants={**more, "kl": {"train.stages.0.loss": "kl", "train.stages.0.epochs": 2}})
    study(changed, only=["base"])  # nothing runs; kl's finished run no longer matches its config
    rows = [r["name"] for r in json.loads((setup / "out-three/table.json").read_text())["rows"]]
    assert "kl" not in rows and "kl-q2" in rows and "q1" in rows


def test_eta_leaves_out_the_first_variant_which_computed_the_shared_steps():
    from rankdistill.studies.runner import _eta

    assert _eta([600.0], 3) == "; ETA 30 min for 3 left"  # one variant run: its time is all there is
    assert _eta([600.0, 100.0, 140.0], 2) == "; ETA 4 min for 2 left"  # mean of 100 and 140 s, not of all three
    assert _eta([600.0, 20.0], 2) == "; ETA 40 s for 2 left"
    assert _eta([600.0, 100.0], 0) == ""
