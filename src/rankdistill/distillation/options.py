"""The options of ``build``: the paper's sampling knobs (:class:`SamplingOptions`, which the pipeline's training
stages share) and what else one build needs (:class:`BuildConfig`: inputs, output, seed, the teacher's windows,
or several candidate sources, each a :class:`SourceOptions`).

The CLI's flags, its ``--config`` YAML and the ``build()`` keyword arguments all end up in :class:`BuildConfig`,
so a name is checked, and its allowed values listed, in one place.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from rankdistill.distillation.sampling import SAMPLINGS

TARGETS = ("rank", "score", "relevance")
NEGATIVES = ("first-stage", "teacher")
PAIRS = ("all", "compared")
MERGES = ("none", "rrf")
RRF_K = 60  # reciprocal rank fusion's constant (Cormack et al., 2009), as Pyserini and ranx use it

# Literal[tuple] is Literal of its items: the names above stay the one list of allowed values
Sampling = Literal[SAMPLINGS]  # type: ignore[valid-type]
Target = Literal[TARGETS]  # type: ignore[valid-type]
Negatives = Literal[NEGATIVES]  # type: ignore[valid-type]
Pairs = Literal[PAIRS]  # type: ignore[valid-type]
Merge = Literal[MERGES]  # type: ignore[valid-type]


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


# the keys a source may set for itself; unset ones fall back to the build's own teacher_window/stride/depth
SOURCE_TEACHER_KEYS = ("teacher_window", "teacher_stride", "teacher_depth")


class SourceOptions(BaseModel):
    """One candidate source of a query: a first-stage run and the teacher's re-ranking of it.

    The teacher keys say how that teacher walked its list (``pairs: compared`` replays each source's own windows);
    a key left out takes the build's value.
    """

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="Names the source in the set's 'source' column and in errors "
                                               "(default: the first-stage run's file name without suffix).")
    first_stage_run: Path = Field(..., description="TREC run the teacher re-ranked.")
    teacher_run: Path = Field(..., description="The teacher's re-ranking of first_stage_run's top teacher_depth.")
    teacher_window: int | None = Field(None, gt=1, description="The teacher's window size (default: the build's).")
    teacher_stride: int | None = Field(None, gt=0, description="The teacher's stride (default: the build's).")
    teacher_depth: int | None = Field(None, gt=0, description="How many first-stage candidates the teacher ranked "
                                                              "(default: the build's).")

    @field_validator("first_stage_run", "teacher_run", mode="before")
    @classmethod
    def _path(cls, value: Any) -> Any:
        return Path(value) if isinstance(value, str) else value

    @property
    def label(self) -> str:
        """The source's name: its own, else the first-stage run's stem."""
        return self.name or Path(self.first_stage_run).stem


def _read_qids(path: Path) -> list[str]:
    """A file of query ids, one a line (blank lines skipped); a line with two ids is refused at its number."""
    from rankdistill.data.formats import read_lines
    from rankdistill.errors import InputFormatError

    qids = []
    for lineno, line in read_lines(path, "query id"):
        fields = line.split()
        if len(fields) > 1:
            raise InputFormatError(path, lineno, f"{len(fields)} fields ({line.strip()[:40]!r}); give one query id a line")
        qids.extend(fields)
    return qids


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
    sources: list[SourceOptions] | None = Field(
        None, min_length=1, description="Several (first-stage run, teacher run) pairs instead of first_stage_run and "
        "teacher_run: each query then gets one list per source (merge 'none') or one fused list (merge 'rrf')."
    )
    merge: Merge = Field("none", description="With sources: none = one list per source and query; rrf = one list per "
                                             f"query, the teacher runs fused by reciprocal rank (k={RRF_K}).")
    seed: int = 0
    qids: list[str] | None = Field(None, description="Only these queries: a list, comma-separated ids, or a file of ids.")

    _negatives_spelling = field_validator("negatives", mode="before")(_hyphens)

    @field_validator("qids", mode="before")
    @classmethod
    def _qid_list(cls, value: Any) -> Any:
        if value is None or isinstance(value, list | tuple):
            return None if value is None else [str(v) for v in value]
        if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_file()):
            return _read_qids(Path(value))
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]

    @model_validator(mode="after")
    def _one_form(self):
        if self.sources is None:
            if self.merge != "none":
                raise ValueError(f"merge {self.merge!r} fuses several sources: give 'sources' or leave merge 'none'")
            return self
        if self.teacher_run is not None or self.first_stage_run is not None:
            raise ValueError(
                "give either 'sources' (a list of first_stage_run/teacher_run pairs) or a single first_stage_run/"
                "teacher_run, not both"
            )
        labels = [s.label for s in self.sources]
        repeated = sorted({n for n in labels if labels.count(n) > 1})
        if repeated:
            raise ValueError(f"sources: names must differ, {', '.join(map(repr, repeated))} repeats (set each 'name')")
        for i, source in enumerate(self.sources):
            window = source.teacher_window or self.teacher_window
            stride = source.teacher_stride or self.teacher_stride
            if stride > window:
                raise ValueError(f"sources[{i}] ({source.label}): teacher_stride {stride} exceeds teacher_window {window}")
        return self

    def for_source(self, index: int) -> BuildConfig:
        """The single-source options of ``sources[index]``: its runs and teacher keys, everything else shared."""
        source = self.sources[index]
        own = {key: getattr(source, key) for key in SOURCE_TEACHER_KEYS if getattr(source, key) is not None}
        return self.model_copy(update={"sources": None, "merge": "none", "teacher_run": source.teacher_run,
                                       "first_stage_run": source.first_stage_run, **own})
