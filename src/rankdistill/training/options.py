"""The options of ``rankdistill train``: one schema for the learning knobs of a stage, used by ``train()``,
``rankdistill train [--config]`` and the pipeline's training stages.

:class:`LearningOptions` is how a student learns in one stage (loss, optimiser, schedule, seed, precision); it has
no data paths and no model, so a pipeline stage can extend it with its sampling options. :class:`StageOptions`
adds a stage's data, :class:`TrainOptions` the whole run (backbone, head, budgets, output, stages). A stage of
``train`` inherits every learning key it does not set from the top level (whose defaults are the fields'). A key
given as ``null`` (or ``None``) counts as not given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from rankdistill.errors import RankdistillError
from rankdistill.modeling import HeadName
from rankdistill.modeling.truncation import TruncationOptions
from rankdistill.training.losses import LossName

LOSS_KWARGS_ALIAS = "loss_options"  # the pipeline configs' spelling of loss_kwargs


class LearningOptions(BaseModel):
    """How the student learns in one stage: the loss and the optimiser's knobs (no data, no model)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    loss: LossName = Field("ranknet", description="The loss (rankdistill.training.losses.LOSSES); ranknet is the paper's distillation loss.")
    loss_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("loss_kwargs", LOSS_KWARGS_ALIAS),
        description=f"The loss's own arguments, e.g. {{temperature: 10}} for kl ('{LOSS_KWARGS_ALIAS}' is read the same).",
    )
    epochs: float = Field(1.0, gt=0, description="Passes over the queries.")
    max_steps: int | None = Field(None, gt=0, description="Stop after this many optimiser steps (overrides epochs).")
    # The paper uses 1e-5 for 10,000 queries x 3 epochs; with tens of queries that barely moves the weights,
    # so the default is the usual cross-encoder fine-tuning rate.
    learning_rate: float = Field(2e-5, gt=0, description="Peak AdamW learning rate (paper: 1e-5 on 10k queries).")
    # Adam moves a parameter by about the learning rate a step, so gates that start shut need a rate far above the
    # encoder's to open within a few dozen steps (benchmarks/RESULTS.md)
    gate_learning_rate: float = Field(1e-2, ge=0, description="head 'gated': the gates' learning rate (no weight decay).")
    batch_queries: int = Field(1, ge=1, description="Queries (whole lists) per device batch.")
    grad_accum: int = Field(1, ge=1, description="Gradient accumulation steps (paper: 32 for distillation).")
    warmup_ratio: float = Field(0.1, ge=0, lt=1, description="Fraction of steps with linear warm-up.")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay.")
    seed: int = Field(0, description="Seed for the head's init, data order and dropout.")
    save_steps: int = Field(500, ge=1, description="Checkpoint every N steps.")
    logging_steps: int = Field(10, ge=1, description="Log the loss every N steps.")
    bf16: bool | Literal["auto"] | None = Field(
        None,
        description="bf16 mixed precision (autocast): unset = on with a bf16 GPU, off on a CPU; auto = also on CPUs "
        "with native bf16; true = on, an error where a CPU would only emulate it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _null_is_unset(cls, values: Any) -> Any:
        """A key given as null is not given (a stage then inherits it), and loss_kwargs has one spelling at a time."""
        if not isinstance(values, dict):
            return values
        if "loss_kwargs" in values and LOSS_KWARGS_ALIAS in values:
            raise ValueError(f"give loss_kwargs or {LOSS_KWARGS_ALIAS} (the same key), not both")
        return {key: value for key, value in values.items() if value is not None}


class StageOptions(LearningOptions):
    """One stage of ``train``: its data and the learning keys it sets (the others come from the top level)."""

    data: list[Path] | None = Field(None, description="Parquet file(s) from `rankdistill build` (one list per query).")

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None or isinstance(value, (list, tuple)):
            return value
        return [value]


class TrainOptions(StageOptions, TruncationOptions):
    """All options of ``rankdistill train``; the same keys make up its YAML config."""

    model: str = Field("minilm-l6", description="Backbone: short name (minilm-l6, offline), model folder or hub id.")
    head: HeadName = Field(
        "cls",
        description="Scoring head: cls (the architecture's classification head on [CLS]), similarity (scaled cosine of "
        "the query's and the passage's mean tokens) or gated (that cosine over [CLS] q [SEP] [CLS] p [SEP] with "
        "cross-attention behind gates that start shut: the untrained model is the backbone's bi-encoder; for "
        "bi-encoder backbones and few training queries).",
    )
    output: Path | None = Field(None, description="Folder for the trained model (required).")
    resume: bool = Field(False, description="Continue from the last checkpoint in <output>.checkpoints (finished stages are kept).")
    overwrite: bool = Field(False, description="Replace an existing output folder.")
    keep_checkpoints: bool = Field(False, description="Keep <output>.checkpoints after success.")
    stages: list[StageOptions] | None = Field(
        None, description="Stages trained in turn, each from the previous one's weights: [{data, loss, ...}, ...]."
    )
    metrics: dict[str, Any] | None = Field(None, description="Figures for the model card, e.g. {nDCG@10: 0.62}.")


def parse_options(values: dict[str, Any], where: str | Path = "train options") -> TrainOptions:
    """Validate ``train``'s options.

    Args:
        values: option name -> value (YAML keys or ``train()``'s keyword arguments).
        where: names the source in an error (a config file, or ``train options``).

    Returns:
        The validated options.

    Raises:
        RankdistillError: one line naming each bad key and what is allowed.
    """
    from rankdistill.util.config import validate

    return validate(TrainOptions, values, where)


def resolve_stages(opts: TrainOptions) -> list[StageOptions]:
    """Each stage's full settings: the stage's own value of a learning key, else the top level's.

    Returns:
        One :class:`StageOptions` per stage (a single one when ``opts.stages`` is unset), every field set and
        ``data`` a non-empty list.

    Raises:
        RankdistillError: a stage without data, neither its own nor the top level's.
    """
    top = {key: getattr(opts, key) for key in LearningOptions.model_fields}
    resolved = []
    for i, stage in enumerate(opts.stages or [StageOptions()]):
        own = {key: getattr(stage, key) for key in stage.model_fields_set if key in LearningOptions.model_fields}
        data = stage.data if stage.data is not None else opts.data
        if not data:
            key = f"stages.{i}.data" if opts.stages else "data"
            raise RankdistillError(f"{key}: no training data given (a parquet file from `rankdistill build`)")
        resolved.append(StageOptions.model_validate({**top, **own, "data": [Path(p) for p in data]}))
    return resolved


def resolve_file_paths(values: dict[str, Any], base: Path) -> dict[str, Any]:
    """The paths of a ``train`` config that ``commands._common.merge_config`` leaves alone, relative to its file.

    A stage's keys may use ``-`` for ``_``; its ``data`` and a ``model`` given as a relative folder (``./…``) are
    taken relative to ``base``, the config file's folder. ``data`` and ``output`` at the top level are the caller's.
    """
    from rankdistill.util.config import resolve_path

    values = dict(values)
    if isinstance(values.get("model"), str) and values["model"].startswith("."):
        values["model"] = resolve_path(values["model"], base)
    if isinstance(values.get("stages"), list):
        values["stages"] = [_stage_paths(stage, base) for stage in values["stages"]]
    return values


def _stage_paths(stage: Any, base: Path) -> Any:
    from rankdistill.util.config import resolve_path

    if not isinstance(stage, dict):
        return stage  # validation names it
    stage = {str(key).replace("-", "_"): value for key, value in stage.items()}
    data = stage.get("data")
    if isinstance(data, (str, Path)):
        stage["data"] = resolve_path(data, base)
    elif isinstance(data, list):
        stage["data"] = [resolve_path(p, base) if isinstance(p, (str, Path)) else p for p in data]
    return stage


def load_config(path: str | Path) -> dict[str, Any]:
    """A ``train`` YAML config as option values; relative data, output, stage data and ``./model`` paths are taken
    relative to the file.

    Raises:
        RankdistillError: no such file, or invalid YAML (``file:line``).
    """
    from rankdistill.util.config import read_yaml_mapping, resolve_path

    path = Path(path)
    values = read_yaml_mapping(path)
    base = path.resolve().parent
    for key in ("data", "output"):
        value = values.get(key)
        if isinstance(value, (str, Path)):
            values[key] = resolve_path(value, base)
        elif isinstance(value, list):
            values[key] = [resolve_path(v, base) if isinstance(v, (str, Path)) else v for v in value]
    return resolve_file_paths(values, base)
