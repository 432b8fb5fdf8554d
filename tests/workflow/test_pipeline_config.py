"""Pipeline configs: the shipped examples validate, and mistakes name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from rankdistill.workflow.config import load_config
from rankdistill.errors import RankdistillError
from rankdistill.workflow.runner import folds_of, pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize("name", ["dl20-demo.yaml", "paper-scale.yaml", "own-corpus.yaml", "heldback-dl20.yaml",
                                  "study-dl20-base.yaml"])
def test_examples_validate(name):
    config = load_config(EXAMPLES / name)
    assert config.train.stages and config.output.is_absolute()


@pytest.mark.parametrize("name", ["heldback-dl20.yaml", "study-dl20-base.yaml"])
def test_examples_that_judge_the_demo_recipe_train_it(name):
    """These examples copy the demo's training section (a pipeline config has no includes): they must not drift."""
    demo = load_config(EXAMPLES / "dl20-demo.yaml").train.model_dump()
    assert load_config(EXAMPLES / name).train.model_dump() == demo


@pytest.mark.parametrize(("name", "variants"), [("study-dl20.yaml", 19), ("study-dl20-seeds.yaml", 2)])
def test_example_studies_validate(name, variants):
    from rankdistill.studies import load_study

    study = load_study(EXAMPLES / name)
    assert len(study.variants) == variants and study.reference == "base"


def test_paper_scale_recipe_is_the_papers(tmp_path):
    config = load_config(EXAMPLES / "paper-scale.yaml")
    first, second = config.train.stages
    assert (first.loss, first.sampling, first.sample_size, first.depth, first.max_steps) == ("lce", "single-relevant", 8, 200, 20000)
    assert (first.batch_queries, first.grad_accum) == (16, 2)
    assert (second.loss, second.sampling, second.sample_size, second.targets, second.epochs) == ("ranknet", "top", 100, "rank", 3)
    assert (second.batch_queries, second.grad_accum, second.learning_rate) == (1, 32, 1e-5)


def test_paper_scale_dry_run_checks_ids_and_lists_stages(tmp_path, irds_home):
    text = (EXAMPLES / "paper-scale.yaml").read_text().replace("../out/", f"{tmp_path}/out/")
    path = tmp_path / "paper.yaml"
    path.write_text(text.replace("../data/", f"{EXAMPLES.parent}/data/"))
    result = pipeline(path, dry_run=True)
    kinds = [stage.split(":")[0] for stage in result.ran]
    assert kinds == ["build", "train", "build", "train", "retrieve", "rerank", "teach", "evaluate", "retrieve", "rerank",
                     "teach", "evaluate"]  # teach: the zero-shot backbone baseline of each evaluation set
    assert "train:all:hard-negatives" in result.ran and "train:all:distill" in result.ran
    assert not (tmp_path / "out").exists()  # a plan writes nothing: no config, lock or folders


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = """
train:
  dataset: irds:cranfield
  first_stage: {bm25: {k: 10}}
  stages: [{targets: relevance, loss: LOSS}]
evaluate: {cross_validation: 2}
"""


def test_bad_literal_names_key_and_allowed_values(tmp_path):
    with pytest.raises(RankdistillError) as info:
        load_config(write(tmp_path, BASE.replace("LOSS", "hinge")))
    message = str(info.value)
    assert "train.stages.0.loss" in message and "'hinge'" in message and "'ranknet'" in message


def test_unknown_key_and_missing_teacher(tmp_path):
    with pytest.raises(RankdistillError, match=r"train\.stages\.0\.lose: unknown key"):
        load_config(write(tmp_path, BASE.replace("loss: LOSS", "lose: ranknet")))
    text = BASE.replace("targets: relevance, loss: LOSS", "targets: rank")
    with pytest.raises(RankdistillError, match="'teacher' is not set"):
        load_config(write(tmp_path, text))


def test_compared_pairs_need_a_listwise_teacher(tmp_path):
    text = BASE.replace("targets: relevance, loss: LOSS", "targets: rank, pairs: compared")
    embedding = text.replace("first_stage: {bm25: {k: 10}}", "first_stage: {bm25: {k: 10}}\n  teacher: {backend: embedding, model: minilm-l6}")
    with pytest.raises(RankdistillError, match=r"stages\.0\.pairs: 'compared' .*not embedding"):
        load_config(write(tmp_path, embedding))
    recorded = text.replace("first_stage: {bm25: {k: 10}}", "first_stage: {bm25: {k: 10}}\n  teacher: {run: t.run, window: 6, stride: 3}")
    stage = load_config(write(tmp_path, recorded)).train.stages[0]
    assert stage.pairs == "compared"


def test_one_first_stage_source(tmp_path):
    text = BASE.replace("{bm25: {k: 10}}", "{bm25: {k: 10}, run: x.run}").replace("LOSS", "lce")
    with pytest.raises(RankdistillError, match="train.first_stage: .*exactly one of"):
        load_config(write(tmp_path, text))


def test_invalid_yaml_names_line(tmp_path):
    with pytest.raises(RankdistillError, match=r"c.yaml:3: invalid YAML"):
        load_config(write(tmp_path, "a: 1\nb:\n\t- tab-indented\n"))


def test_folds_partition_and_are_seeded():
    qids = [str(i) for i in range(11)]
    folds = folds_of(qids, 2, seed=0)
    assert sorted(sum(folds, [])) == sorted(qids) and not set(folds[0]) & set(folds[1])
    assert abs(len(folds[0]) - len(folds[1])) <= 1
    assert folds == folds_of(list(reversed(qids)), 2, seed=0)
    assert folds != folds_of(qids, 2, seed=1)


def test_bad_measure_is_caught_when_the_config_is_read(tmp_path):
    text = BASE.replace("LOSS", "lce").replace("{cross_validation: 2}", "{cross_validation: 2, measures: [nDCG@10, RR@10(rel=2)]}")
    with pytest.raises(RankdistillError, match=r"evaluate\.measures: .*'RR@10\(rel=2\)'"):
        load_config(write(tmp_path, text))


def test_the_best_recipes_held_back_judgment_trains_the_best_recipe():
    """benchmarks/results/heldback-mpnet-e3 copies the training section of the best recipe (RESULTS 14): no drift."""
    results = EXAMPLES.parent / "benchmarks" / "results"
    best = load_config(results / "mpnet-cv-e3" / "config.yaml")
    assert (best.train.head, best.train.stages[0].epochs, best.evaluate.cross_validation) == ("gated", 3, 2)
    assert load_config(results / "heldback-mpnet-e3" / "config.yaml").train.model_dump() == best.train.model_dump()
