"""Distillation sets: sample each query's candidates from a ranking and attach the student's targets.

The options are :mod:`rankdistill.distillation.options`, the sampling strategies
:mod:`rankdistill.distillation.sampling`, the parquet file :mod:`rankdistill.distillation.schema`; this module
reads the inputs, makes each query's list and writes the set, one step per function (the steps are
:mod:`rankdistill.distillation.lists`).

Which ranking is sampled:
- ``single-relevant``: the ranking named by ``negatives`` (the first-stage run by default, as in the
  paper's stage 1): one judged-relevant passage (grade >= ``relevant_grade``) from its top ``depth`` plus
  ``sample_size - 1`` passages from the same top ``depth`` that are not judged relevant.
- every other strategy: the teacher run if given, else the first-stage run (a file, or the dataset's
  own ``scoreddocs``), else the judged passages of the qrels ordered by grade.

Targets (higher = better): ``rank`` -> ``depth - rank + 1`` from the teacher run (else the first-stage
run), 0 for a passage the ranking does not hold within ``depth``; ``score`` -> the teacher's score (else
the first stage's), a passage without one is an error; ``relevance`` -> the qrels grade, unjudged = 0.
Each list is ordered by target, descending, ties in the sampled ranking's order.

Pairs: ``compared`` stores, for each passage the sliding-window teacher ranked, the first and last of its
windows (``window_first``/``window_last``, replayed from the first-stage run: see
:mod:`rankdistill.teacher.windows`); a pairwise loss then learns only the order of passages whose windows
met, i.e. what the LLM judged, not the first-stage order it carried along. Passages without windows (cross
negatives, passages below the teacher's depth) are ordered by their targets against every other passage.

Several candidate sources per query (``sources``, each a first-stage run and its teacher run) are
:mod:`rankdistill.distillation.sources`: it runs the steps once per source (or once on the fused runs).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from rankdistill.distillation.lists import attach_passages, read_inputs, sample, set_stats
from rankdistill.distillation.options import NEGATIVES, PAIRS, TARGETS, BuildConfig, SamplingOptions, SourceOptions
from rankdistill.distillation.sampling import SAMPLINGS, query_rng, rank_target, sample_indices
from rankdistill.distillation.schema import METADATA_KEY, listwise_lists, read_metadata, read_set, write_set
from rankdistill.distillation.sources import build_sources

# the names this module had before it was split (``rankdistill.distillset`` still imports them from here)
__all__ = [
    "METADATA_KEY", "NEGATIVES", "PAIRS", "SAMPLINGS", "TARGETS", "BuildConfig", "SamplingOptions", "SourceOptions", "build",
    "build_from_config", "listwise_lists", "query_rng", "rank_target", "read_metadata", "read_set", "sample_indices",
]

def build(
    *,
    teacher_run: str | Path | None = None,
    first_stage_run: str | Path | None = None,
    qrels: str | Path | None = None,
    dataset: str | None = None,
    queries: str | Path | None = None,
    corpus: str | Path | None = None,
    output: str | Path,
    depth: int = 100,
    sample_size: int = 100,
    sampling: str = "top",
    targets: str = "rank",
    negatives: str = "first-stage",
    seed: int = 0,
    qids: Iterable[str] | str | Path | None = None,
    relevant_grade: int = 1,
    cross_negatives: int = 0,
    pairs: str = "all",
    teacher_window: int = 20,
    teacher_stride: int = 10,
    teacher_depth: int = 100,
    sources: Sequence[Mapping[str, Any] | SourceOptions] | None = None,
    merge: str = "none",
    split: str = "test",
    fix_encoding: bool = False,
    progress: bool = True,
) -> Path:
    """Write a distillation set (parquet) and return its path; see the module docstring for the rules.

    Args:
        teacher_run, first_stage_run, qrels: The rankings and judgements to learn from; give at least one that
            supplies the ``targets``. ``first_stage_run`` defaults to the dataset's ``scoreddocs``, ``qrels`` to
            the dataset's.
        dataset, queries, corpus, split, fix_encoding: Where the query and passage texts come from
            (:func:`rankdistill.data.collection.load_collection`).
        output: The parquet file to write (atomically).
        depth, sample_size, sampling, targets, cross_negatives, pairs: The sampling knobs
            (:class:`~rankdistill.distillation.options.SamplingOptions`).
        negatives, relevant_grade: ``single-relevant``: the run hard negatives come from, the lowest relevant grade.
        teacher_window, teacher_stride, teacher_depth: ``pairs='compared'``: how the teacher run was made (with
            ``sources``: the default of each source that does not set its own).
        sources: Instead of ``teacher_run``/``first_stage_run``, several candidate sources, each a mapping (or
            :class:`~rankdistill.distillation.options.SourceOptions`) with ``first_stage_run``, ``teacher_run`` and
            optionally ``name``, ``teacher_window``, ``teacher_stride``, ``teacher_depth``
            (:mod:`rankdistill.distillation.sources`).
        merge: With ``sources``: ``none`` (one list per source and query) or ``rrf`` (one list per query, the
            teacher runs fused by reciprocal rank).
        seed: Each query's generator derives from it and the query id.
        qids: Only these queries (a list, a comma-separated string or a file with one id a line); default:
            every query of the sampled ranking, in its file order. Queries ``single-relevant`` cannot serve (no
            judged-relevant passage in the top ``depth``) are skipped and counted, as the paper's datasets do.
        progress: Show a progress bar.

    Returns:
        ``output``.

    Raises:
        RankdistillError: A bad option value (naming the parameter), an input that is missing or does not
            match the others (naming the file and the ids), or nothing left to sample.
    """
    from rankdistill.util.config import validation_error

    try:
        cfg = BuildConfig(
            teacher_run=teacher_run, first_stage_run=first_stage_run, qrels=qrels, dataset=dataset,
            queries=queries, corpus=corpus, output=output, depth=depth, sample_size=sample_size,
            sampling=sampling, targets=targets, negatives=negatives, seed=seed,
            qids=list(qids) if isinstance(qids, list | tuple | set) else qids,
            relevant_grade=relevant_grade, cross_negatives=cross_negatives, pairs=pairs, teacher_window=teacher_window,
            teacher_stride=teacher_stride, teacher_depth=teacher_depth, split=split, fix_encoding=fix_encoding,
            sources=[s.model_dump() if isinstance(s, SourceOptions) else dict(s) for s in sources]
            if sources is not None else None,
            merge=merge,
        )
    except ValidationError as exc:
        raise validation_error(exc, model=BuildConfig) from None
    return build_from_config(cfg, progress=progress)


def build_from_config(cfg: BuildConfig, progress: bool = True) -> Path:
    """:func:`build` from validated options (what the CLI calls after merging flags and ``--config``)."""
    if cfg.sources is not None:
        return build_sources(cfg, progress=progress)
    inputs = read_inputs(cfg)
    part = sample(cfg, inputs, progress=progress)
    attach_passages(part.rows, inputs, part.ranking_source)
    meta = {
        "config": json.loads(cfg.model_dump_json()),
        "sources": {"ranking": part.ranking_source, "targets": part.target_source, "teacher": inputs.teacher_source,
                    "first_stage": inputs.first_source, "qrels": inputs.qrels_source, "collection": inputs.collection.name},
        "counts": set_stats(part.rows, len(part.qids), part.skipped, cfg.pairs == "compared"),
    }
    return write_set(part.rows, cfg.output, meta)
