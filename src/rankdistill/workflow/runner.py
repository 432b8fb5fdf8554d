"""``rankdistill pipeline``: every stage from first-stage run to report, each skipped when up to date.

Each stage writes into the run folder and records a manifest (config hash, input hashes, output
hashes, package versions). A stage whose config and inputs are unchanged, and whose outputs are
still there, is skipped; so changing only the loss re-runs train, rerank and evaluate. This module holds their
order; the steps live in ``input_steps``, ``train_steps`` and ``eval_steps``, the step runner in ``steps``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from rankdistill.data.trec import read_run
from rankdistill.errors import RankdistillError
from rankdistill.util.files import atomic_write
from rankdistill.util.lock import output_lock
from rankdistill.workflow.cache import StepCache
from rankdistill.workflow.config import PipelineConfig, load_config
from rankdistill.workflow.eval_steps import (
    candidate_systems,
    cv_candidates,
    eval_set_qids,
    evaluate_and_report,
    evaluate_set,
    merge_runs,
    rerank_step,
    zero_shot_step,
)
from rankdistill.workflow.input_steps import first_stage_name, first_stage_run, teacher_run
from rankdistill.workflow.launch import refuse_launcher
from rankdistill.workflow.manifest import Stage
from rankdistill.workflow.steps import STAGE_KINDS, EventHandler, PipelineResult, StepRunner
from rankdistill.workflow.train_steps import train_shared, train_sources, train_student

# the public names of the former ``rankdistill.workflow`` module (``rankdistill.workflow.X`` still finds them here)
__all__ = ["STAGE_KINDS", "EventHandler", "PipelineResult", "first_stage_name", "fold_means", "folds_of", "pipeline",
           "run_pipeline"]


def folds_of(qids: list[str], k: int, seed: int) -> list[list[str]]:
    """Deterministic k-fold split of query ids (seeded shuffle of the sorted ids, then round-robin)."""
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


def run_pipeline(config: PipelineConfig, *, from_stage: str | None = None, dry_run: bool = False,
                 on_event: EventHandler | None = None, cache: StepCache | None = None) -> PipelineResult:
    """:func:`pipeline` on a validated config; ``cache`` (a study's) supplies steps another variant finished."""
    if from_stage is not None and from_stage not in STAGE_KINDS:
        raise RankdistillError(f"from_stage {from_stage!r}: allowed stages are {', '.join(STAGE_KINDS)}")
    refuse_launcher()
    r = StepRunner(config, from_stage, dry_run, on_event, cache)
    if dry_run:  # plans only: nothing is written, so no lock is needed
        return _run_stages(r)
    with output_lock(r.root, "pipeline"):  # two pipelines on one folder would overwrite each other's stages
        return _run_stages(r)


def _run_stages(r: StepRunner) -> PipelineResult:
    """Every stage of ``r.config`` in order (``run_pipeline`` holds the output folder's lock, except for a plan)."""
    config, dry_run = r.config, r.dry_run
    if not dry_run:
        with atomic_write(r.root / "config.json") as handle:
            handle.write(json.dumps(config.model_dump(mode="json"), indent=2))
    tcfg = config.train
    if dry_run:
        _check_dataset(r, "train.dataset", tcfg.dataset)
        for s in config.evaluate.sets:
            _check_dataset(r, f"evaluate.sets.{s.name}.dataset", s.dataset)
    sources = train_sources(r, tcfg)
    if sources:  # the first source's runs give the query ids; every source is a candidate set (cv_candidates)
        train_fs, train_teacher = sources[0].first_stage, sources[0].teacher
    else:
        train_fs = first_stage_run(r, "train", tcfg.dataset, tcfg.first_stage)
        train_teacher = teacher_run(r, "train", tcfg.dataset, train_fs, tcfg.teacher)

    ev = config.evaluate
    own_data = any(s.data is not None for s in tcfg.stages)
    if ev.cross_validation:
        qids = sorted(read_run(train_teacher or train_fs)) if not dry_run else []
        excluded = set(qids)  # every CV query is evaluated in some fold
    else:
        excluded = eval_set_qids(r) if own_data and not dry_run else set()
    if own_data and dry_run:
        for s in tcfg.stages:
            if s.data is not None:
                _check_dataset(r, f"train.stages.{s.name}.data.dataset", s.data.dataset)
    shared = train_shared(r, excluded)
    if ev.cross_validation:
        splits = folds_of(qids, ev.cross_validation, config.seed) if not dry_run else [[]] * ev.cross_validation
        candidates = cv_candidates(r, train_fs, train_teacher, qids, sources)
        fold_runs: dict[str, list[Path]] = {c.name: [] for c in candidates}  # candidate set -> each fold's run
        fold_qids: dict[str, list[str]] = {}
        for i, test_qids in enumerate(splits, 1):
            fold = f"fold{i}"
            train_qids = sorted(set(qids) - set(test_qids))
            model = train_student(r, fold, train_qids if not dry_run else None, train_fs, train_teacher, shared,
                                  excluded, sources)
            test = test_qids if not dry_run else None
            for c in candidates:  # each candidate set, re-ranked by this fold's student on this fold's test queries
                fold_runs[c.name].append(rerank_step(r, fold, c, tcfg.dataset, test, model))
            fold_qids[fold] = test_qids
        zero_shots = {c.name: zero_shot_step(r, "cv", c, tcfg.dataset, qids) for c in candidates}
        if dry_run:
            r.run(Stage("evaluate:cv", "evaluate", {}, [], []), lambda: None)
            return r.result
        sets = {}
        for c in candidates:
            student = merge_runs(fold_runs[c.name], r.root / "eval" / "cv" / c.name / "student.run", "student")
            sets[c.name] = candidate_systems(r, "cv", c, zero_shots[c.name], student)
        r.result.metrics["cv"] = evaluate_and_report(r, "cv", tcfg.dataset, sets, fold_qids)
        r.result.folds = fold_qids
    else:
        model = train_student(r, "all", None, train_fs, train_teacher, shared, excluded, sources)
        for s in ev.sets:
            r.result.metrics[s.name] = evaluate_set(r, s, model)
    return r.result


def _check_dataset(r: StepRunner, key: str, dataset: str) -> None:
    """Dry runs check ir_datasets ids against its registry (no download) and folders for existence."""
    if dataset.startswith("irds:"):
        import ir_datasets

        if dataset[5:] not in ir_datasets.registry:
            raise RankdistillError(f"{key}: unknown ir_datasets id {dataset[5:]!r}")
    elif not Path(dataset).is_dir():
        raise RankdistillError(f"{key}: {dataset} is neither irds:<id> nor a folder")


def pipeline(config: str | Path | PipelineConfig, *, from_stage: str | None = None, dry_run: bool = False,
             on_event: EventHandler | None = None) -> PipelineResult:
    """Run every stage of a pipeline config, skipping those whose outputs are up to date.

    Args:
        config: a pipeline YAML file (relative paths in it are taken relative to the file) or a validated
            :class:`~rankdistill.workflow.config.PipelineConfig`.
        from_stage: re-run this stage kind and every later one (``retrieve``, ``teach``, ``build``, ``train``,
            ``rerank``, ``evaluate``) even when up to date.
        dry_run: validate the config, check inputs and plan the stages without running any.
        on_event: called with ``(event, text)`` as stages are planned, skipped and run (also logged at DEBUG).

    Returns:
        A :class:`PipelineResult`: stages run and skipped, metrics per evaluation set, folds, the report's path.

    Raises:
        RankdistillError: a bad config key, a missing input, or a stage's own user-facing error.
    """
    cfg = config if isinstance(config, PipelineConfig) else load_config(config)
    return run_pipeline(cfg, from_stage=from_stage, dry_run=dry_run, on_event=on_event)


def fold_means(summary: dict[str, Any], folds: dict[str, list[str]], measure: str) -> dict[str, dict[str, float]]:
    """run -> fold -> mean of ``measure`` over the fold's test queries (from metrics.json's per-query values)."""
    out: dict[str, dict[str, float]] = {}
    for run, entry in summary["runs"].items():
        per_query = entry.get("per_query", {}).get(measure, {})
        out[run] = {fold: sum(per_query.get(q, 0.0) for q in qids) / max(1, len(qids)) for fold, qids in folds.items()}
    return out
