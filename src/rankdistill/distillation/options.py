"""The options of ``build``: the paper's sampling knobs (:class:`SamplingOptions`, which the pipeline's training
stages share) and what else one build needs (:class:`BuildConfig`: inputs, output, seed, the teacher's windows).

The CLI's flags, its ``--config`` YAML and the ``build()`` keyword arguments all end up in :class:`BuildConfig`,
so a name is checked, and its allowed values listed, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rankdistill.distillation.sampling import SAMPLINGS

TARGETS = ("rank", "score", "relevance")
NEGATIVES = ("first-stage", "teacher")
PAIRS = ("all", "compared")

# Literal[tuple] is Literal of its items: the names above stay the one list of allowed values
Sampling = Literal[SAMPLINGS]  # type: ignore[valid-type]
Target = Literal[TARGETS]  # type: ignore[valid-type]
Negatives = Literal[NEGATIVES]  # type: ignore[valid-type]
Pairs = Literal[PAIRS]  # type: ignore[valid-type]


def _hyphens(value: Any) -> Any:
    # lightning-ir spells them with underscores (log_random); accept both
    return value.replace("_", "-") if isinstance(value, str) else value


class SamplingOptions(BaseModel):
    """How a query's list is sampled and what the student learns from it: the knobs a training stage sets."""

    model_config = ConfigDict(extra="forbid")

    targets: Target = Field("rank", description="What the student learns (higher = better): rank, score or relevance.")
    sampling: Sampling = Field("top", description="How candidates are drawn from the top `depth` of the ranking.")
    depth: int = Field(100, gt=0, description="Candidates come from the top `depth` of the ranking.")
    sample_size: int = Field(100, gt=0, description="Passages per query (k).")
    cross_negatives: int = Field(
        0, ge=0, description="Passages of other queries added to each list below every own candidate (query-dependence)."
    )
    pairs: Pairs = Field(
        "all", description="Which pairs train a pairwise loss: every ordered pair, or only those the teacher compared."
    )

    _sampling_spelling = field_validator("sampling", mode="before")(_hyphens)


class BuildConfig(SamplingOptions):
    """Every knob of ``build``; the CLI's ``--config`` YAML and its flags both end up here."""

    output: Path = Field(..., description="Parquet file to write.")
    teacher_run: Path | None = Field(None, description="TREC run of the teacher (its rank column is the teacher's order).")
    first_stage_run: Path | None = Field(None, description="TREC run of the first stage (hard negatives).")
    qrels: Path | None = Field(None, description="TREC qrels (else the dataset's own).")
    dataset: str | None = Field(None, description="irds:<id> or a folder with queries and corpus.")
    queries: Path | None = None
    corpus: Path | None = None
    split: str = "test"
    fix_encoding: bool = False
    negatives: Negatives = Field("first-stage", description="The run single-relevant draws its hard negatives from.")
    relevant_grade: int = Field(1, description="Lowest qrels grade that counts as relevant (single-relevant).")
    teacher_window: int = Field(20, gt=1, description="pairs 'compared': the teacher's window size.")
    teacher_stride: int = Field(10, gt=0, description="pairs 'compared': the teacher's stride.")
    teacher_depth: int = Field(100, gt=0, description="pairs 'compared': how many first-stage candidates the teacher ranked.")
    seed: int = 0
    qids: list[str] | None = Field(None, description="Only these queries: a list, comma-separated ids, or a file of ids.")

    _negatives_spelling = field_validator("negatives", mode="before")(_hyphens)

    @field_validator("qids", mode="before")
    @classmethod
    def _qid_list(cls, value: Any) -> Any:
        if value is None or isinstance(value, list | tuple):
            return None if value is None else [str(v) for v in value]
        if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_file()):
            return [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]
