"""The pipeline's YAML config, validated by pydantic; errors name the key and the allowed values."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankdistill.distillation.options import Merge, SamplingOptions
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.metrics import DEFAULT_MEASURES
from rankdistill.modeling import HeadName
from rankdistill.modeling.truncation import TruncationOptions
from rankdistill.training.options import LearningOptions
from rankdistill.teacher.backends import validate_backend_options
from rankdistill.modeling.backbones import SHORT_NAME_SOURCES
from rankdistill.util.config import read_yaml_mapping, resolve_dataset, resolve_path, resolve_paths, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BM25Config(_Strict):
    k: int = Field(100, gt=0, description="Depth of the BM25 run.")
    k1: float = 0.9
    b: float = 0.4


class FirstStageConfig(_Strict):
    """An existing run (e.g. ColBERTv2, the paper's candidates), the dataset's own run
    (ir_datasets scoreddocs, e.g. the official BM25 top-1000 of TREC DL), or BM25 computed here."""

    run: Path | None = None
    from_dataset: bool = False
    bm25: BM25Config | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if sum([self.run is not None, self.from_dataset, self.bm25 is not None]) != 1:
            raise ValueError(
                "give exactly one of 'run' (a TREC run file), 'from_dataset: true' (the dataset's scoreddocs) "
                "or 'bm25' (retrieve here)"
            )
        return self


class TeacherConfig(_Strict):
    """Either a recorded teacher run (e.g. the published Rank-DistiLLM runs), an LLM ranked here, or a
    bi-encoder's cosines (``backend: embedding``, pointwise: the listwise keys do not apply)."""

    run: Path | None = None
    backend: Literal["hf", "vllm", "openai", "replay", "embedding"] | None = None
    model: str | None = None
    prompt: Literal["rankgpt", "rankvicuna", "rankzephyr"] = "rankzephyr"
    depth: int = Field(100, gt=0)
    window: int = Field(20, gt=1)
    stride: int = Field(10, gt=0)
    first_token: bool = False
    max_passage_words: int | None = None
    replay_file: Path | None = None
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options, e.g. base_url, concurrency.")

    @model_validator(mode="after")
    def _one_source(self):
        if (self.run is None) == (self.backend is None):
            raise ValueError(
                "give exactly one of 'run' (a recorded teacher run) or 'backend' (hf, vllm, openai, replay, embedding)"
            )
        if self.backend == "embedding":
            if self.model is None:
                raise ValueError("backend 'embedding' needs 'model' (a sentence-transformers model, e.g. minilm-l6)")
            listwise = sorted(self.model_fields_set & {"prompt", "window", "stride", "first_token", "max_passage_words",
                                                       "replay_file"})
            if listwise:
                raise ValueError(f"backend 'embedding' is pointwise: {', '.join(listwise)} only apply to the LLM backends")
        if self.stride > self.window:
            raise ValueError(f"stride ({self.stride}) must not exceed window ({self.window})")
        if self.backend is not None:  # each backend declares its options (teacher/backends): unknown keys fail here
            try:
                validate_backend_options(self.backend, self.options, where="options")
            except RankdistillError as exc:
                raise ValueError(str(exc)) from None
        return self


class StageDataConfig(_Strict):
    """A stage's own distillation data: e.g. unjudged topics with a bi-encoder teacher, before the LLM stage."""

    dataset: str = Field(..., description="irds:<id> or a folder with the stage's queries and passages.")
    first_stage: FirstStageConfig
    teacher: TeacherConfig | None = None


class TrainStageConfig(_Strict, SamplingOptions, LearningOptions, TruncationOptions):
    """One training stage: how its distillation set is sampled (the build options) and how the student learns from
    it (the training options); both schemas are the ones ``rankdistill build`` and ``rankdistill train`` read."""

    name: str = "distill"
    sample_size: int = Field(100, gt=1, description="Passages per query (a list needs two to order).")
    data: StageDataConfig | None = Field(
        None, description="Build this stage's set from another dataset's queries (evaluated queries removed)."
    )


class TrainSourceConfig(_Strict):
    """One candidate source of the training queries: a first stage and the teacher's re-ranking of it."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", description="Names the source's lists and files.")
    first_stage: FirstStageConfig
    teacher: TeacherConfig


class TrainConfig(_Strict):
    dataset: str = Field(..., description="irds:<id> or a folder with the training queries, corpus and qrels.")
    first_stage: FirstStageConfig | None = None
    teacher: TeacherConfig | None = None
    sources: list[TrainSourceConfig] | None = Field(
        None, min_length=1, description="Several (first_stage, teacher) pairs instead of first_stage and teacher; "
        "under cross-validation every source is a candidate set of the evaluation (unless evaluate.candidates)."
    )
    merge: Merge = Field("none", description="With sources: none = one list per source and query; rrf = one fused "
                                             "list per query (reciprocal rank fusion of the teacher runs).")
    queries: int | None = Field(
        None, gt=0, description="Train on only this many of the training queries (per fold under cross-validation; "
        "a seeded sample, each smaller sample inside the larger): how many LLM-ranked queries a student needs."
    )
    model: str = Field("minilm-l6", description="Student backbone: short name, hub id or local folder.")
    head: HeadName = Field("cls", description="The student's scoring head on the backbone.")
    stages: list[TrainStageConfig] = Field(default_factory=lambda: [TrainStageConfig()], min_length=1)
    processes: int = Field(
        1, ge=1, description="Train in this many processes on this machine (torchrun: one per GPU, or CPU processes "
        "over gloo); they share each step's batch_queries x grad_accum lists, so the student stays the same."
    )

    @model_validator(mode="after")
    def _step_splits(self):
        from rankdistill.workflow.launch import split_step

        for i, stage in enumerate(self.stages):
            try:
                split_step(stage.batch_queries, stage.grad_accum, self.processes)
            except ValueError as exc:
                raise ValueError(f"stages.{i} ({stage.name}): {exc}, or change processes") from None
        return self

    @model_validator(mode="after")
    def _one_form(self):
        if self.sources is None:
            if self.first_stage is None:
                raise ValueError("give 'first_stage' (with an optional 'teacher') or 'sources' (a list of first_stage/"
                                 "teacher pairs)")
            if self.merge != "none":
                raise ValueError(f"merge {self.merge!r} fuses several sources: give 'sources' or leave merge 'none'")
            return self
        if self.first_stage is not None or self.teacher is not None:
            raise ValueError("give either 'sources' or a single 'first_stage'/'teacher', not both")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            raise ValueError(f"sources: names must be unique, got {names}")
        return self

    @model_validator(mode="after")
    def _targets_available(self):
        for i, stage in enumerate(self.stages):
            if stage.data is None and self.sources is not None:
                self._check_sources(i, stage)
                continue
            teacher = stage.data.teacher if stage.data is not None else self.teacher
            key = f"stages.{i}.data.teacher" if stage.data is not None else "teacher"
            if stage.targets in ("rank", "score") and teacher is None:
                raise ValueError(f"stage {stage.name!r} learns from the teacher ({stage.targets}) but {key!r} is not set")
            if stage.pairs == "compared" and (teacher is None or teacher.backend == "embedding" or stage.targets == "relevance"):
                raise ValueError(
                    f"stages.{i}.pairs: 'compared' learns the pairs a sliding-window teacher compared: it needs a listwise "
                    f"{key!r} (a recorded run or an LLM backend, not embedding) and targets rank or score; use pairs: all"
                )
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        return self

    def _check_sources(self, i: int, stage: TrainStageConfig) -> None:
        """``pairs: compared`` replays every source's teacher: each must be listwise, the targets the teacher's."""
        if stage.pairs != "compared":
            return
        pointwise = [s.name for s in self.sources if s.teacher.backend == "embedding"]
        if pointwise or stage.targets == "relevance":
            raise ValueError(
                f"stages.{i}.pairs: 'compared' learns the pairs a sliding-window teacher compared: every source needs "
                f"a listwise teacher (not embedding: {', '.join(pointwise) or 'none'}) and targets rank or score; use "
                "pairs: all"
            )


# Names of the systems a candidate set's report rows add to its first stage; a candidate set may not take one.
RERANKED_SYSTEMS = ("zero-shot", "teacher", "student", "student+first-stage")
_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$"


class CandidateSetConfig(_Strict):
    """A first-stage run whose top ``evaluate.depth`` is re-ranked and evaluated (e.g. the BM25 and SPLADE++ lists
    of the same queries), with the teacher's ranking of it when one was recorded: its report rows are the first
    stage, the zero-shot backbone, the teacher and the student, all over this run's candidates."""

    name: str = Field(..., pattern=_NAME, description="Names the first stage's row, the folders and the report section.")
    run: Path = Field(..., description="The first-stage TREC run (e.g. SPLADE++ top-1000).")
    teacher_run: Path | None = Field(None, description="The teacher's ranking of this run (recorded), for its row.")

    @field_validator("name")
    @classmethod
    def _not_a_system(cls, name: str) -> str:
        if name in RERANKED_SYSTEMS:
            raise ValueError(f"{name!r} names a re-ranked row of every candidate set ({', '.join(RERANKED_SYSTEMS)}); "
                             "name the set after its first stage, e.g. bm25 or splade-pp-ed")
        return name


def _unique_candidates(candidates: list[CandidateSetConfig]) -> None:
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"candidate set names must be unique, got {names}")


class EvalSetConfig(_Strict):
    """Queries the student is judged on, with one candidate set (``first_stage`` and ``teacher``) or several
    (``candidates``)."""

    name: str
    dataset: str
    first_stage: FirstStageConfig | None = None
    teacher: TeacherConfig | None = None
    candidates: list[CandidateSetConfig] = Field(
        default_factory=list, description="Several first-stage runs, each re-ranked and reported on its own."
    )

    @model_validator(mode="after")
    def _one_source(self):
        if (self.first_stage is None) == (not self.candidates):
            raise ValueError("give exactly one of 'first_stage' (one candidate set) or 'candidates' (several runs)")
        if self.candidates and self.teacher is not None:
            raise ValueError("'teacher' goes with 'first_stage'; with 'candidates' give each set its 'teacher_run'")
        _unique_candidates(self.candidates)
        return self


class EvaluateConfig(_Strict):
    cross_validation: int | None = Field(
        None, ge=2, description="k-fold cross-validation over the training queries instead of separate sets."
    )
    sets: list[EvalSetConfig] = Field(default_factory=list)
    candidates: list[CandidateSetConfig] = Field(
        default_factory=list,
        description="Cross-validation: the runs of the training queries whose top-k each fold's student re-ranks "
        "(default: the training first stage, with the training teacher).",
    )
    depth: int = Field(100, gt=0, description="Re-ranking depth of the first-stage run.")
    measures: list[str] = Field(default_factory=lambda: list(DEFAULT_MEASURES))
    test: Literal["ttest", "wilcoxon"] = "ttest"
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    zero_shot: bool = Field(
        True,
        description="Also re-rank the same candidates with the untrained backbone used as a bi-encoder (cosine of "
        "mean-pooled embeddings), in the student's precision (dtype): the baseline that shows what distillation added.",
    )
    fuse_first_stage: float | None = Field(
        None, ge=0,
        description="Also report the row student+first-stage: each query's top ranked by z(student) + this weight "
        "* z(first-stage score) (rankdistill.reranking.fusion); the student's own row stays.",
    )

    @field_validator("measures")
    @classmethod
    def _valid_measures(cls, measures: list[str]) -> list[str]:
        from rankdistill.evaluation.metrics import parse_measures

        try:
            parse_measures(measures)
        except RankdistillError as exc:
            raise ValueError(str(exc)) from None
        return measures

    @model_validator(mode="after")
    def _one_protocol(self):
        if (self.cross_validation is None) == (not self.sets):
            raise ValueError("give exactly one of 'cross_validation' (folds over the training queries) or 'sets'")
        if self.candidates and self.cross_validation is None:
            raise ValueError("'candidates' here are for cross-validation; give an evaluation set its own "
                             "'sets.<i>.candidates'")
        _unique_candidates(self.candidates)
        return self


class PipelineConfig(_Strict):
    name: str = "rankdistill"
    output: Path = Path("out")
    seed: int = 0
    train: TrainConfig
    evaluate: EvaluateConfig

    @model_validator(mode="after")
    def _stage_ids_free(self):
        """A stage with its own data gets the ids retrieve:<name>/teach:<name>: they must not clash."""
        taken = {"train", "cv", *(s.name for s in self.evaluate.sets)}
        for i, stage in enumerate(self.train.stages):
            if stage.data is not None and stage.name in taken:
                raise ValueError(
                    f"train.stages.{i}.name: {stage.name!r} has its own data, so it must differ from "
                    f"'train', 'cv' and the evaluation set names ({', '.join(sorted(taken))})"
                )
        return self


def load_config(path: str | Path) -> PipelineConfig:
    """Read and validate a pipeline YAML; relative paths in it are taken relative to the file."""
    path = Path(path)
    config = validate(PipelineConfig, read_yaml_mapping(path), path)
    return _resolve_paths(config, path.parent)


def _resolve_paths(config: PipelineConfig, base: Path) -> PipelineConfig:
    """Paths and dataset folders in the file are relative to the file; ``irds:`` ids and model names stay as they are."""
    resolve_paths(config, base)
    config.train.dataset = resolve_dataset(config.train.dataset, base)
    for stage in config.train.stages:
        if stage.data is not None:
            stage.data.dataset = resolve_dataset(stage.data.dataset, base)
    for s in config.evaluate.sets:
        s.dataset = resolve_dataset(s.dataset, base)
    if config.train.model not in SHORT_NAME_SOURCES and (base / config.train.model).exists():
        config.train.model = resolve_path(config.train.model, base)
    return config
