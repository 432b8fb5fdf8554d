"""``train.processes``: the pipeline trains its student in a torchrun job of N processes that share each step."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers.data import write_tiny_dl20
from helpers.tiny import tiny_scoring_dir

from rankdistill.errors import RankdistillError
from rankdistill.workflow.config import load_config
from rankdistill.workflow.launch import split_step, torchrun_command
from rankdistill.workflow.runner import pipeline

N_QUERIES, DEPTH = 4, 8


@pytest.mark.parametrize("batch, accum, processes, expected", [
    (1, 32, 4, (1, 8)),  # the paper's 32 accumulation steps, shared by 4 GPUs
    (4, 1, 2, (2, 1)),  # no accumulation: the batch is split
    (4, 6, 2, (4, 3)),  # both divide: accumulation first (each process's micro-batch stays the configured one)
    (3, 5, 1, (3, 5)),
])
def test_a_step_is_shared_out(batch, accum, processes, expected):
    assert split_step(batch, accum, processes) == expected


def test_a_step_that_does_not_split_is_a_config_error(tmp_path):
    cfg = {"train": {"dataset": ".", "first_stage": {"run": "r.run"}, "processes": 2,
                     "stages": [{"name": "distill", "batch_queries": 3, "grad_accum": 5}]},
           "evaluate": {"cross_validation": 2}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RankdistillError) as info:
        load_config(path)
    assert "stages.0 (distill): 2 processes cannot share a step of batch_queries 3 x grad_accum 5 lists" in str(info.value)
    assert "make grad_accum or batch_queries a multiple of 2" in str(info.value)
    cfg["train"]["processes"] = 0
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RankdistillError, match="processes"):
        load_config(path)


def test_the_job_is_torchrun_of_the_train_command(tmp_path):
    command = torchrun_command(3, tmp_path / "m.launch.json")
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert command[3:] == ["--standalone", "--nproc-per-node", "3", "-m", "rankdistill", "--", "train", "--config",
                           str(tmp_path / "m.launch.json")]


def test_a_pipeline_under_torchrun_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    cfg = {"output": str(tmp_path / "out"),
           "train": {"dataset": ".", "first_stage": {"run": "r.run"}, "teacher": {"run": "t.run"}},
           "evaluate": {"cross_validation": 2}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(RankdistillError, match="start it without torchrun/accelerate and set train.processes: 2"):
        pipeline(path)
    assert not (tmp_path / "out").exists()


def _config(root: Path, data: Path, model: Path, processes: int) -> Path:
    cfg = {
        "name": "ddp", "output": str(root / "out"), "seed": 0,
        "train": {
            "dataset": str(data), "first_stage": {"run": str(root / "bm25.run")},
            "teacher": {"run": str(root / "teacher.run")}, "model": str(model), "processes": processes,
            # 4 lists a step, shared as 2 accumulation steps by each of 2 processes
            "stages": [{"name": "distill", "sample_size": DEPTH, "depth": DEPTH, "max_steps": 3, "learning_rate": 3e-3,
                        "warmup_ratio": 0.0, "batch_queries": 1, "grad_accum": 4, "max_passage_length": 32}],
        },
        "evaluate": {"sets": [{"name": "dl", "dataset": str(data), "first_stage": {"run": str(root / "bm25.run")}}],
                     "depth": DEPTH, "measures": ["nDCG@10"], "zero_shot": False},
    }
    path = root / f"config-{processes}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _scores(model: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    import torch
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model), device="cpu", activation_fn=torch.nn.Identity()).predict(pairs)


@pytest.mark.slow
def test_the_training_step_runs_in_two_processes_and_trains_the_one_process_student(dl20, tmp_path):
    data, _, _ = write_tiny_dl20(dl20, tmp_path, N_QUERIES, DEPTH)
    model = tiny_scoring_dir(tmp_path / "tiny-model")
    config = json.loads((model / "config.json").read_text())  # no dropout: each process would draw its own masks
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (model / "config.json").write_text(json.dumps(config))

    two = pipeline(_config(tmp_path, data, model, processes=2))
    assert "train:all:distill" in two.ran
    student = tmp_path / "out" / "students" / "all" / "model-distill"
    log = json.loads((student / "training_log.json").read_text())["stages"][0]
    assert (log["processes"], log["steps"], log["queries"]) == (2, 3, N_QUERIES)
    card = (student / "README.md").read_text()
    assert "grad_accum" in card and not list(student.parent.glob("*.launch.json"))
    assert (tmp_path / "out" / "eval" / "dl" / "bm25" / "student.run").exists()

    # how many processes train is not part of the step: the student is up to date with one
    again = pipeline(_config(tmp_path, data, model, processes=1))
    assert "train:all:distill" in again.skipped and again.ran == []

    # and one process, trained again, learns the same student (tolerance: tests/training/test_distributed.py)
    pairs = [("what is the water", "good water river city"), ("how many people", "bad law data court"),
             ("the city price", "the price of water in the city")]
    scores_two, base = _scores(student, pairs), _scores(model, pairs)
    one = pipeline(_config(tmp_path, data, model, processes=1), from_stage="train")
    assert "train:all:distill" in one.ran
    scores_one = _scores(student, pairs)
    assert json.loads((student / "training_log.json").read_text())["stages"][0]["processes"] == 1
    assert np.abs(scores_one - base).max() > 0.3  # trained far (0.7) beyond the tolerance
    assert np.abs(scores_two - scores_one).max() <= 0.02
