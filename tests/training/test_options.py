"""The options schema: one set of learning knobs with the recipe's defaults, stages inheriting the top level,
the pipeline's spelling of loss_kwargs, names derived from the registries, flag spellings only in the CLI."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel, ConfigDict

from rankdistill.errors import RankdistillError
from rankdistill.modeling import HEADS
from rankdistill.modeling.truncation import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH, TruncationOptions
from rankdistill.training.losses import LOSSES
from rankdistill.training.options import LearningOptions, TrainOptions, load_config, parse_options, resolve_stages

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_are_the_measured_recipe():
    opts = LearningOptions()
    assert (opts.learning_rate, opts.warmup_ratio, opts.gate_learning_rate) == (2e-5, 0.1, 1e-2)
    assert (opts.loss, opts.loss_kwargs, opts.epochs, opts.max_steps, opts.seed) == ("ranknet", {}, 1.0, None, 0)
    top = TrainOptions()
    assert (top.max_query_length, top.max_passage_length) == (DEFAULT_MAX_QUERY_LENGTH, DEFAULT_MAX_PASSAGE_LENGTH) == (32, 256)


def test_names_come_from_the_registries():
    assert typing.get_args(LearningOptions.model_fields["loss"].annotation) == tuple(LOSSES)
    assert typing.get_args(TrainOptions.model_fields["head"].annotation) == HEADS


def test_loss_options_is_read_as_loss_kwargs():
    assert LearningOptions.model_validate({"loss_options": {"weighting": "discount"}}).loss_kwargs == {"weighting": "discount"}
    assert LearningOptions(loss_kwargs={"sigma": 2.0}).model_dump()["loss_kwargs"] == {"sigma": 2.0}
    with pytest.raises(RankdistillError, match="loss_kwargs or loss_options"):
        parse_options({"loss_kwargs": {}, "loss_options": {}})


def test_stages_inherit_the_top_level_and_null_means_unset(tmp_path):
    opts = parse_options({
        "data": "top.parquet", "learning_rate": 1e-3, "max_steps": 5, "loss_options": {"sigma": 2.0},
        "stages": [{"loss": "lce", "loss_kwargs": {}, "max_steps": None}, {"data": ["b.parquet"], "learning_rate": 1e-4}],
    })
    first, second = resolve_stages(opts)
    assert (first.loss, first.loss_kwargs, first.learning_rate, first.max_steps) == ("lce", {}, 1e-3, 5)
    assert first.data == [Path("top.parquet")] and second.data == [Path("b.parquet")]
    assert (second.loss, second.loss_kwargs, second.learning_rate, second.warmup_ratio) == ("ranknet", {"sigma": 2.0}, 1e-4, 0.1)
    (only,) = resolve_stages(parse_options({"data": "x.parquet", "bf16": None}))
    assert only.bf16 is None and only.learning_rate == 2e-5


def test_the_pipeline_stage_can_extend_the_learning_options():
    """What workflow/config.py's TrainStageConfig becomes: its own keys plus LearningOptions and TruncationOptions;
    the demo's stage validates through it unchanged."""

    class SamplingOptions(BaseModel):  # stand-in for the distillation stage's sampling keys
        model_config = ConfigDict(extra="forbid")
        name: str = "distill"
        targets: str = "rank"
        sampling: str = "top"
        depth: int = 100
        sample_size: int = 100
        pairs: str = "all"

    class TrainStageConfig(SamplingOptions, LearningOptions, TruncationOptions):
        pass

    demo = yaml.safe_load((ROOT / "examples" / "dl20-demo.yaml").read_text())["train"]["stages"][0]
    stage = TrainStageConfig.model_validate(demo)
    assert stage.loss_kwargs == {"weighting": "discount"} and stage.max_passage_length == 128 and stage.bf16 == "auto"
    assert set(LearningOptions.model_fields) <= set(stage.model_dump())


def test_config_paths_are_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    cfg = tmp_path / "sub" / "c.yaml"
    cfg.write_text("data: a.parquet\noutput: out\nmodel: ./enc\nstages:\n  - {data: b.parquet, max-steps: 2}\n")
    values = load_config(cfg)
    base = tmp_path.resolve() / "sub"
    assert values["data"] == str(base / "a.parquet") and values["output"] == str(base / "out")
    assert values["model"] == str(base / "enc")
    assert values["stages"] == [{"data": str(base / "b.parquet"), "max_steps": 2}]


def test_cli_names_flags_where_the_library_names_keys(tmp_path, capsys, monkeypatch):
    from helpers.data import write_set

    from rankdistill.cli import main

    data = write_set(tmp_path / "d.parquet")
    (tmp_path / "exists").mkdir()
    with pytest.raises(SystemExit):
        main(["train", str(data), "-o", str(tmp_path / "exists"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err
    with pytest.raises(SystemExit):
        main(["train", str(data)])
    assert "--output/-o: give the folder" in capsys.readouterr().err
    # the library's own words name the key
    from rankdistill.training.trainer import train

    with pytest.raises(RankdistillError, match=r"^output: give the folder"):
        train(data, output=None)
