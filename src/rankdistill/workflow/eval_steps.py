"""The pipeline's evaluation steps: per candidate set, the student's re-ranking, the zero-shot backbone, the teacher
and the fused rows, evaluated with paired tests into one report."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rankdistill.data.trec import append_tail, read_run, write_qrels, write_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.outputs import spend_figures
from rankdistill.util.files import atomic_write
from rankdistill.workflow.config import CandidateSetConfig, EvalSetConfig
from rankdistill.workflow.input_steps import first_stage_name, first_stage_run, teacher_run
from rankdistill.workflow.manifest import Stage
from rankdistill.workflow.steps import StepRunner, check_file, subset_run

if TYPE_CHECKING:  # pragma: no cover - typing only
    from rankdistill.workflow.train_steps import Source


@dataclass
class Candidates:
    """A candidate set of an evaluation: the first-stage run whose top-k is re-ranked, and the teacher's ranking."""

    name: str
    first_stage: Path
    teacher: Path | None


def configured_candidates(r: StepRunner, key: str, configs: list[CandidateSetConfig]) -> list[Candidates]:
    """The candidate sets a config lists (recorded runs), each file checked."""
    for i, c in enumerate(configs):
        check_file(r, f"{key}.{i}.run", c.run)
        if c.teacher_run is not None:
            check_file(r, f"{key}.{i}.teacher_run", c.teacher_run)
    return [Candidates(c.name, c.run, c.teacher_run) for c in configs]


def cv_candidates(r: StepRunner, train_fs: Path, train_teacher: Path | None, qids: list[str],
                   sources: list[Source]) -> list[Candidates]:
    """``evaluate.candidates`` (each holding some of the training queries ``qids``), else each training source
    (``train.sources``) with its teacher, else the training first stage with the training teacher."""
    ev = r.config.evaluate
    if not ev.candidates:
        if sources:
            return [Candidates(s.name, s.first_stage, s.teacher) for s in sources]
        return [Candidates(first_stage_name(r.config.train.first_stage), train_fs, train_teacher)]
    candidates = configured_candidates(r, "evaluate.candidates", ev.candidates)
    for i, c in enumerate(candidates):
        if not r.dry_run and not set(read_run(c.first_stage)) & set(qids):
            raise RankdistillError(
                f"evaluate.candidates.{i}.run: {c.first_stage} holds none of the {len(qids)} training queries "
                f"(e.g. {qids[:3]}); under cross-validation each candidate set ranks the training queries"
            )
    return candidates


def _step_dtype(dtype: str) -> str:
    """The precision ``dtype`` runs in on this machine, for a step's key: ``auto`` means bfloat16 on a CPU with
    native bf16 and float32 on one without, so a cached run is reused only where it would be computed the same."""
    from rankdistill.util.device import resolve_device, resolve_dtype

    return resolve_dtype(dtype, resolve_device("auto"))


def rerank_step(r: StepRunner, where: str, c: Candidates, dataset: str, qids: list[str] | None, model: Path) -> Path:
    """The student's re-ranking of candidate set ``c`` on ``qids`` (all when None): its top ``evaluate.depth``
    scored, the rest of the first stage's list kept below; written under ``eval/<where>/<set>/``."""
    folder = r.root / "eval" / where / c.name
    fs_run = c.first_stage if r.dry_run else subset_run(c.first_stage, qids, folder / "first-stage.run")
    out = folder / "student.run"
    ev = r.config.evaluate
    last = r.config.train.stages[-1]
    stage = Stage(
        f"rerank:{where}:{c.name}",
        "rerank",
        {"dataset": dataset, "depth": ev.depth, "dtype": _step_dtype(ev.dtype), "tail": "first-stage",
         "max_query_length": last.max_query_length, "max_passage_length": last.max_passage_length},
        [model, fs_run],
        [out],
    )

    def action():
        from rankdistill.reranking.reranker import rerank

        start = time.perf_counter()
        rerank(
            model,
            fs_run,
            dataset=dataset,
            depth=ev.depth,
            output=out,
            dtype=ev.dtype,
            max_query_length=last.max_query_length,
            max_passage_length=last.max_passage_length,
        )
        seconds = time.perf_counter() - start
        run = read_run(out)
        pairs = sum(min(len(v), ev.depth) for v in run.values())  # the tail below the depth is not scored
        return {"queries": len(run), "pairs": pairs, "seconds": seconds,
                "pairs_per_s": pairs / seconds, "ms_per_query": 1000 * seconds / max(1, len(run))}

    r.run(stage, action)
    return out


def zero_shot_step(r: StepRunner, where: str, c: Candidates, dataset: str, qids: list[str] | None) -> Path | None:
    """The untrained backbone as a bi-encoder over the set's candidates: what the student must beat."""
    ev = r.config.evaluate
    if not ev.zero_shot:
        return None
    folder = r.root / "eval" / where / c.name / "zero-shot"
    fs_run = c.first_stage if r.dry_run or qids is None else subset_run(c.first_stage, qids, folder / "first-stage.run")
    out = folder / "teacher.run"
    model = r.config.train.model
    # the student's passage budget: the baseline reads what the student reads (and the gated head's step 0 is it)
    max_length = r.config.train.stages[-1].max_passage_length
    stage = Stage(f"teach:zero-shot:{where}:{c.name}", "teach",
                  {"dataset": dataset, "model": model, "depth": ev.depth, "backend": "embedding",
                   "max_length": max_length, "dtype": _step_dtype(ev.dtype)}, [fs_run], [out])

    def action():
        from rankdistill.teacher.teach import teach

        # in the student's precision (evaluate.dtype), as the gated head's step 0 would be scored
        return dict(teach(fs_run, dataset=dataset, output=folder, backend="embedding", model=model, depth=ev.depth,
                          tag="zero-shot", backend_options={"max_length": max_length, "dtype": ev.dtype}).stats)

    r.run(stage, action)
    return out


def _teacher_with_tail(r: StepRunner, where: str, c: Candidates) -> Path | None:
    """The set's teacher run with the first stage's documents it lacks kept below its own, in first-stage order.

    A recorded teacher run of the top 100 of a 1000-deep first stage is then evaluated on the same list as the
    first stage and the student; a teacher run that already holds the whole list is used as it is.
    """
    if c.teacher is None or r.dry_run:
        return c.teacher
    first, teacher = read_run(c.first_stage), read_run(c.teacher)
    completed = {q: append_tail(ranked, (d for d, _ in first.get(q, []))) for q, ranked in teacher.items()}
    if completed == teacher:
        return c.teacher
    out = r.root / "eval" / where / c.name / "teacher.run"
    if not out.exists() or read_run(out) != completed:
        write_run(completed, out, tag="teacher")
    return out


def candidate_systems(r: StepRunner, where: str, c: Candidates, zero_shot: Path | None,
                      student: Path) -> dict[str, Path]:
    """A candidate set's rows: its first stage (named after it), the zero-shot backbone, the teacher, the student."""
    systems = {c.name: c.first_stage, "zero-shot": zero_shot, "teacher": _teacher_with_tail(r, where, c),
               "student": student, "student+first-stage": _fused(r, where, c, student)}
    return {k: v for k, v in systems.items() if v is not None}


def _fused(r: StepRunner, where: str, c: Candidates, student: Path) -> Path | None:
    """``evaluate.fuse_first_stage``: the student's top fused with the first stage's scores, the tail kept."""
    weight = r.config.evaluate.fuse_first_stage
    if weight is None or r.dry_run:
        return None
    out = r.root / "eval" / where / c.name / "student+first-stage.run"
    stage = Stage(f"fuse:{where}:{c.name}", "evaluate", {"weight": weight, "depth": r.config.evaluate.depth},
                  [student, c.first_stage], [out])

    def action():
        from rankdistill.reranking.fusion import fuse_ranking

        depth = r.config.evaluate.depth
        first = read_run(c.first_stage)
        fused = {qid: fuse_ranking(docs[:depth], first[qid], weight, (d for d, _ in docs[depth:]))
                 for qid, docs in read_run(student).items()}
        write_run(fused, out, tag="student+first-stage")
        return {"queries": len(fused), "weight": weight}

    r.run(stage, action)
    return out


def merge_runs(paths: list[Path], out: Path, tag: str) -> Path:
    merged: dict = {}
    for path in paths:
        merged.update(read_run(path))
    write_run(merged, out, tag=tag)
    return out


def _throughput(r: StepRunner, name: str, sets: list[str], folds: dict[str, list[str]] | None) -> dict[str, Any]:
    """The student's re-ranking speed per candidate set (per fold under cross-validation), the teacher's cost."""
    out: dict[str, Any] = {}
    for c in sets:
        label = "student" if len(sets) == 1 else f"student ({c})"
        if folds:
            out[label] = {fold: r.stats.get(f"rerank:{fold}:{c}") or {} for fold in folds}
        else:
            out[label] = r.stats.get(f"rerank:{name}:{c}") or {}
    teach_stats = r.stats.get(f"teach:{name}") or r.stats.get("teach:train")
    if teach_stats:
        out["teacher"] = spend_figures(teach_stats)
    return out


def evaluate_and_report(r: StepRunner, name: str, dataset: str, sets: dict[str, dict[str, Path]],
                         folds: dict[str, list[str]] | None) -> dict[str, dict[str, Any]]:
    """Evaluate every candidate set's rows (``eval/<name>/<set>/metrics.json``, tested against the set's first
    stage) and write one report over all of them; returns candidate set -> its metrics.json."""
    from rankdistill.data.collection import load_collection
    from rankdistill.evaluation.report import SUMMARY_NAME

    ev = r.config.evaluate
    folder = r.root / "eval" / name
    report_dir = r.root / "report" / name
    qrels_path = folder / "qrels.txt"
    outputs = [folder / c / "metrics.json" for c in sets]
    outputs += [report_dir / "report.md", report_dir / "report.html", report_dir / SUMMARY_NAME]
    stage = Stage(
        f"evaluate:{name}", "evaluate",
        {"dataset": dataset, "measures": ev.measures, "test": ev.test,
         "candidate_sets": {c: sorted(systems) for c, systems in sets.items()}},
        [p for systems in sets.values() for p in systems.values()], outputs,
    )

    def action():
        from rankdistill.evaluation.metrics import evaluate
        from rankdistill.evaluation.report import CandidateSet, write_report

        coll = load_collection(dataset)
        if not coll.qrels:
            raise RankdistillError(f"{dataset} has no qrels: evaluation needs relevance judgments")
        write_qrels(coll.qrels, qrels_path)
        means, candidate_sets = {}, []
        for c, systems in sets.items():
            names = list(systems)
            result = evaluate([systems[n] for n in names], qrels=qrels_path, measures=ev.measures,
                              baseline=systems[c], test=ev.test, names=names)
            with atomic_write(folder / c / "metrics.json") as handle:
                json.dump(result.to_dict(per_query=True), handle, indent=2)
            means[c] = result.means
            candidate_sets.append(CandidateSet(
                c, {n: read_run(p) for n, p in systems.items()}, first_stage=c,
                teacher="teacher" if "teacher" in systems else None, student="student",
                zero_shot="zero-shot" if "zero-shot" in systems else None))
        write_report(
            report_dir,
            candidate_sets=candidate_sets,
            qrels=coll.qrels,
            measures=ev.measures,
            throughput=_throughput(r, name, list(sets), folds),
            config=r.config.model_dump(mode="json"),
            title=f"{r.config.name}: {name}",
            folds=folds,
            test=ev.test,
        )
        return {"metrics": means}

    r.run(stage, action)
    if not r.dry_run:
        r.result.report = report_dir / "report.html"
        return {c: json.loads((folder / c / "metrics.json").read_text()) for c in sets}
    return {}


def eval_set_qids(r: StepRunner) -> set[str]:
    """Every query of every evaluation set's dataset: a stage's own data must not contain them."""
    from rankdistill.data.collection import load_collection

    qids: set[str] = set()
    for s in r.config.evaluate.sets:
        qids |= set(load_collection(s.dataset).queries)
    return qids


def evaluate_set(r: StepRunner, s: EvalSetConfig, model: Path) -> dict[str, dict[str, Any]]:
    """Re-rank each candidate set of an evaluation set with the student (and the zero-shot backbone) and report."""
    if s.candidates:
        candidates = configured_candidates(r, f"evaluate.sets.{s.name}.candidates", s.candidates)
    else:
        assert s.first_stage is not None  # the config gives one of the two
        fs = first_stage_run(r, s.name, s.dataset, s.first_stage)
        candidates = [Candidates(first_stage_name(s.first_stage), fs, teacher_run(r, s.name, s.dataset, fs, s.teacher))]
    runs = {c.name: (rerank_step(r, s.name, c, s.dataset, None, model), zero_shot_step(r, s.name, c, s.dataset, None))
            for c in candidates}
    if r.dry_run:
        r.run(Stage(f"evaluate:{s.name}", "evaluate", {}, [], []), lambda: None)
        return {}
    sets = {c.name: candidate_systems(r, s.name, c, runs[c.name][1], runs[c.name][0]) for c in candidates}
    return evaluate_and_report(r, s.name, s.dataset, sets, None)
