"""``rankdistill pipeline``: every stage from first-stage run to report, each skipped when up to date.

Each stage writes into the run folder and records a manifest (config hash, input hashes, output
hashes, package versions). A stage whose config and inputs are unchanged, and whose outputs are
still there, is skipped; so changing only the loss re-runs train, rerank and evaluate.
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.trec import append_tail, read_run, write_qrels, write_run
from rankdistill.errors import RankdistillError
from rankdistill.modeling.truncation import TruncationOptions
from rankdistill.teacher.outputs import describe_spend, spend_figures
from rankdistill.training.options import LearningOptions
from rankdistill.util.files import atomic_write
from rankdistill.util.lock import output_lock
from rankdistill.workflow.config import (
    RERANKED_SYSTEMS,
    CandidateSetConfig,
    EvalSetConfig,
    FirstStageConfig,
    PipelineConfig,
    TeacherConfig,
    TrainConfig,
    TrainStageConfig,
    load_config,
)
from rankdistill.workflow.cache import StepCache
from rankdistill.workflow.launch import refuse_launcher
from rankdistill.workflow.manifest import Stage

STAGE_KINDS = ("retrieve", "teach", "build", "train", "rerank", "evaluate")
log = logging.getLogger(__name__)

# What the runner reports as it goes: (event, text); events are "plan", "up to date", "running", "missing", "note".
# The command layer shows them in the terminal; the library logs them (DEBUG) and passes them to ``on_event``.
EventHandler = Callable[[str, str], None]


@dataclass
class PipelineResult:
    output: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    # eval set -> candidate set -> EvaluationResult.to_dict(per_query=True) (its metrics.json)
    metrics: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    folds: dict[str, list[str]] = field(default_factory=dict)  # cross-validation: fold -> its test query ids
    report: Path | None = None
    reused: list[str] = field(default_factory=list)  # steps whose outputs came from a study's step cache
    # step id -> {"seconds", "cpu_seconds"} of the work behind it (run now, earlier, or in another variant)
    costs: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class _Candidates:
    """A candidate set of an evaluation: the first-stage run whose top-k is re-ranked, and the teacher's ranking."""

    name: str
    first_stage: Path
    teacher: Path | None


def first_stage_name(cfg: FirstStageConfig) -> str:
    """What a first stage is, to name its report row and folders: the run file's name without its extensions,
    ``scoreddocs`` for the dataset's own run, and ``bm25`` only for the BM25 retrieved here."""
    if cfg.run is None:
        return "scoreddocs" if cfg.from_dataset else "bm25"
    name = cfg.run.name
    while (stem := re.sub(r"\.(gz|run|trec|txt|tsv|res)$", "", name, flags=re.I)) != name:
        name = stem
    name = re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-.") or "first-stage"
    return f"first-stage-{name}" if name in RERANKED_SYSTEMS else name


def folds_of(qids: list[str], k: int, seed: int) -> list[list[str]]:
    """Deterministic k-fold split of query ids (seeded shuffle of the sorted ids, then round-robin)."""
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return [sorted(order[i::k]) for i in range(k)]


class _Runner:
    def __init__(self, config: PipelineConfig, from_stage: str | None, dry_run: bool, on_event: EventHandler | None = None,
                 cache: StepCache | None = None):
        self.config = config
        self.cache = cache
        self.on_event = on_event
        self.root = Path(config.output)
        self.dry_run = dry_run
        self.force = set(STAGE_KINDS[STAGE_KINDS.index(from_stage) :]) if from_stage else set()
        self.result = PipelineResult(output=self.root)
        self.stats: dict[str, Any] = {}
        self.missing: list[str] = []
        self.resuming = False  # set per stage by run()
        self.stage_data: dict[str, Path] = {}  # stage name -> its own distillation set (built once, fold-free)

    def notify(self, event: str, text: str) -> None:
        log.debug("%s %s", event, text)
        if self.on_event is not None:
            self.on_event(event, text)

    def run(self, stage: Stage, action: Callable[[], dict[str, Any] | None]) -> None:
        if self.dry_run:
            self.notify("plan", f"{stage.id}: {', '.join(str(p) for p in stage.outputs)}")
            self.result.ran.append(stage.id)
            return
        if stage.kind not in self.force and stage.is_current(self.root):
            self.notify("up to date", stage.id)
            self.result.skipped.append(stage.id)
            saved = json.loads(stage.manifest_path(self.root).read_text())
            self.stats[stage.id] = saved.get("stats", {})
            self.result.costs[stage.id] = _cost(saved)
            return
        cached = self.cache.fetch(stage) if self.cache is not None and stage.kind not in self.force else None
        if cached is not None:  # the same step, on the same inputs, finished in another variant of a study
            self.notify("reused", stage.id)
            self.stats[stage.id] = cached["stats"]
            stage.record(self.root, cached["seconds"], {"stats": cached["stats"], "cpu_seconds": cached["cpu_seconds"],
                                                        "reused": True})
            self.result.reused.append(stage.id)
            self.result.costs[stage.id] = _cost(cached)
            return
        self.notify("running", stage.id)
        # an earlier run that began this stage with the same config and inputs and never finished it
        started = self._started_path(stage)
        fingerprint = stage.fingerprint()
        self.resuming = started.exists() and started.read_text() == json.dumps(fingerprint)
        with atomic_write(started) as handle:
            handle.write(json.dumps(fingerprint))
        start, cpu_start = time.perf_counter(), time.process_time()
        extra = action() or {}
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
        self.stats[stage.id] = {**extra, "seconds": seconds}
        stage.record(self.root, seconds, {"stats": extra, "cpu_seconds": round(cpu_seconds, 3)})
        if self.cache is not None:
            self.cache.store(stage, {"stats": extra, "seconds": seconds, "cpu_seconds": cpu_seconds})
        self._started_path(stage).unlink(missing_ok=True)
        self.result.ran.append(stage.id)
        self.result.costs[stage.id] = {"seconds": seconds, "cpu_seconds": cpu_seconds}

    def _started_path(self, stage: Stage) -> Path:
        return stage.manifest_path(self.root).with_suffix(".started")



def _cost(saved: dict[str, Any]) -> dict[str, float]:
    """A finished step's wall and CPU seconds (CPU: every thread of the process; older manifests have wall only)."""
    seconds = float(saved.get("seconds", 0.0))
    return {"seconds": seconds, "cpu_seconds": float(saved.get("cpu_seconds", seconds))}


def _dump(model) -> Any:
    return model.model_dump(mode="json") if model is not None else None


def _first_stage(r: _Runner, name: str, dataset: str, cfg: FirstStageConfig, folder: Path | None = None) -> Path:
    folder = folder or r.root / name
    if cfg.run is not None:
        _check_file(r, f"{name}.first_stage.run", cfg.run)
        return cfg.run
    if cfg.from_dataset:
        out = folder / "first-stage.run"
        stage = Stage(f"retrieve:{name}", "retrieve", {"dataset": dataset, "from_dataset": True}, [], [out])

        def copy_scoreddocs():
            from rankdistill.data.collection import load_collection

            run = load_collection(dataset).scoreddocs
            if not run:
                raise RankdistillError(f"{name}.first_stage.from_dataset: {dataset} has no scoreddocs (first-stage run)")
            write_run(run, out, tag="scoreddocs")

        r.run(stage, copy_scoreddocs)
        return out
    out = folder / "bm25.run"
    stage = Stage(f"retrieve:{name}", "retrieve", {"dataset": dataset, **_dump(cfg.bm25)}, [], [out])

    def action():
        from rankdistill.bm25 import retrieve

        retrieve(dataset, output=out, k=cfg.bm25.k, k1=cfg.bm25.k1, b=cfg.bm25.b)

    r.run(stage, action)
    return out


def _teacher(r: _Runner, name: str, dataset: str, first_stage: Path, cfg: TeacherConfig | None,
             folder: Path | None = None) -> Path | None:
    if cfg is None:
        return None
    if cfg.run is not None:
        _check_file(r, f"{name}.teacher.run", cfg.run)
        return cfg.run
    folder = folder or r.root / name / "teacher"
    out = folder / "teacher.run"
    inputs = [first_stage] + ([cfg.replay_file] if cfg.replay_file else [])
    stage = Stage(f"teach:{name}", "teach", {"dataset": dataset, **_dump(cfg)}, inputs, [out])

    def action():
        from rankdistill.teacher.teach import teach

        if cfg.backend == "embedding":  # pointwise: the listwise options do not apply
            result = teach(first_stage, dataset=dataset, output=folder, backend="embedding", model=cfg.model,
                           depth=cfg.depth, backend_options=cfg.options)
            return dict(result.stats)
        result = teach(
            first_stage,
            dataset=dataset,
            output=folder,
            backend=cfg.backend,
            model=cfg.model,
            prompt=cfg.prompt,
            depth=cfg.depth,
            window=cfg.window,
            stride=cfg.stride,
            first_token=cfg.first_token,
            max_passage_words=cfg.max_passage_words,
            replay_file=cfg.replay_file,
            backend_options=cfg.options,
        )
        r.notify("note", f"{name}: {describe_spend(result.stats)}")
        return json.loads(result.stats_path.read_text())

    r.run(stage, action)
    return out


def _check_file(r: _Runner, key: str, path: Path) -> None:
    if path.is_file():
        return
    if r.dry_run:
        r.notify("missing", f"{key}: {path} (download it before the real run)")
        r.missing.append(str(path))
        return
    raise RankdistillError(f"{key}: {path} does not exist")


def _check_dataset(r: _Runner, key: str, dataset: str) -> None:
    """Dry runs check ir_datasets ids against its registry (no download) and folders for existence."""
    if dataset.startswith("irds:"):
        import ir_datasets

        if dataset[5:] not in ir_datasets.registry:
            raise RankdistillError(f"{key}: unknown ir_datasets id {dataset[5:]!r}")
    elif not Path(dataset).is_dir():
        raise RankdistillError(f"{key}: {dataset} is neither irds:<id> nor a folder")


def _subset_run(path: Path, qids: list[str] | None, out: Path) -> Path:
    """The run restricted to ``qids`` (written once per fold so stages read plain files)."""
    if qids is None:
        return path
    keep = set(qids)
    run = {qid: docs for qid, docs in read_run(path).items() if qid in keep}
    if not out.exists() or read_run(out) != run:
        write_run(run, out, tag=path.stem.replace(" ", "_") or "run")
    return out


def _train_cfg(s: TrainStageConfig) -> dict[str, Any]:
    """The stage's ``train()`` keyword arguments (also its fingerprint: keys new since 0.1 only when set)."""
    keys = set(LearningOptions.model_fields) | set(TruncationOptions.model_fields)
    later = {"gate_learning_rate", "bf16", "weight_decay", "seed", "save_steps", "logging_steps"}
    cfg = {k: v for k, v in s.model_dump().items() if k in keys and (k not in later or k in s.model_fields_set)}
    if not cfg["loss_kwargs"]:
        del cfg["loss_kwargs"]
    return cfg


def _train_key(train_cfg: dict[str, Any]) -> dict[str, Any]:
    """A stage's ``train()`` options as its step key, ``bf16: auto`` as what it means on this machine (true or false),
    so a student trained in bf16 is not reused where the same config would train in float32."""
    from rankdistill.util.device import resolve_bf16

    if train_cfg.get("bf16") != "auto":
        return train_cfg
    return {**train_cfg, "bf16": resolve_bf16("auto")}


def _train_stage(r: _Runner, tag: str, s: TrainStageConfig, data: Path, base: str | Path, out: Path) -> Path:
    """Train one stage on ``data``; a stage starting from the backbone gets the configured head."""
    train_cfg = _train_cfg(s)
    head = r.config.train.head
    if not isinstance(base, Path) and head != "cls":  # a previous stage's folder already has its head
        train_cfg["head"] = head
    base_inputs = [base] if isinstance(base, Path) else []
    train_stage = Stage(
        f"train:{tag}:{s.name}",
        "train",
        {"model": str(base) if not isinstance(base, Path) else "previous-stage", "seed": r.config.seed,
         **_train_key(train_cfg)},
        [data, *base_inputs],
        [out],
    )

    def do_train():
        from rankdistill.workflow import launch

        # an interrupted run of this very stage continues from its checkpoints; any other leftovers go
        checkpoints = out.parent / f"{out.name}.checkpoints"
        resume = checkpoints.is_dir() and r.resuming
        if checkpoints.is_dir() and not resume:
            shutil.rmtree(checkpoints)
        # train.processes > 1: a torchrun job (workflow/launch.py); the step's lists are shared, the model the same
        launch.train(r.config.train.processes, data, model=str(base), output=out, overwrite=True, resume=resume,
                     **{"seed": r.config.seed, **train_cfg})

    r.run(train_stage, do_train)
    return out


def _build_cfg(s: TrainStageConfig, teacher: TeacherConfig | None) -> dict[str, Any]:
    """The stage's ``build()`` keyword arguments; ``pairs: compared`` replays the teacher's own windows."""
    cfg = {k: getattr(s, k) for k in ("targets", "sampling", "depth", "sample_size", "cross_negatives")}
    if s.pairs == "compared" and teacher is not None:  # (validated by the config; absent otherwise: old fingerprints hold)
        cfg.update(pairs="compared", teacher_window=teacher.window, teacher_stride=teacher.stride,
                   teacher_depth=teacher.depth)
    return cfg


def _stage_data(r: _Runner, s: TrainStageConfig, excluded: set[str]) -> Path:
    """A stage's own distillation set from ``s.data``, without the evaluated queries; built once per pipeline."""
    if s.name in r.stage_data:
        return r.stage_data[s.name]
    assert s.data is not None
    dcfg = s.data
    folder = r.root / "stages" / s.name
    fs = _first_stage(r, s.name, dcfg.dataset, dcfg.first_stage, folder=folder)
    kept: list[str] | None = None
    if not r.dry_run:
        run = read_run(fs)
        kept = [q for q in run if q not in excluded]
        r.notify("note", f"stage {s.name}: removed {len(run) - len(kept)} evaluated queries from {dcfg.dataset}, "
                         f"{len(kept)} left for distillation")
        if not kept:
            raise RankdistillError(
                f"train.stages.{s.name}.data: every query of {dcfg.dataset} is evaluated; give a dataset with other queries"
            )
        folder.mkdir(parents=True, exist_ok=True)
        fs = _subset_run(fs, kept, folder / "first-stage.kept.run")
    teacher = _teacher(r, s.name, dcfg.dataset, fs, dcfg.teacher, folder=folder / "teacher")
    data = folder / "data.parquet"
    build_cfg = _build_cfg(s, dcfg.teacher)
    inputs = [p for p in (fs, teacher) if p is not None]
    stage = Stage(f"build:{s.name}", "build", {"dataset": dcfg.dataset, "seed": r.config.seed, **build_cfg}, inputs, [data])

    def do_build():
        from rankdistill.distillation.builder import build

        build(teacher_run=teacher, first_stage_run=fs, dataset=dcfg.dataset, output=data, seed=r.config.seed,
              qids=kept, **build_cfg)

    r.run(stage, do_build)
    r.stage_data[s.name] = data
    return data


def _train_shared(r: _Runner, excluded: set[str]) -> tuple[str | Path, int]:
    """Train the leading stages that all have their own data once, under ``students/shared/``.

    They do not depend on the fold, so every fold's next stage starts from the result. Returns the model
    to start from and how many stages are done.
    """
    model: str | Path = r.config.train.model
    done = 0
    folder = r.root / "students" / "shared"
    for s in r.config.train.stages:
        if s.data is None:
            break
        data = _stage_data(r, s, excluded)
        if not r.dry_run:
            folder.mkdir(parents=True, exist_ok=True)
        model = _train_stage(r, "shared", s, data, model, folder / f"model-{s.name}")
        done += 1
    return model, done


@dataclass
class _Source:
    """A candidate source of the training queries (``train.sources``): its name, runs and teacher settings."""

    name: str
    first_stage: Path
    teacher: Path
    config: TeacherConfig


def _train_sources(r: _Runner, tcfg: TrainConfig) -> list[_Source]:
    """Each source's first-stage and teacher runs (retrieved or taught here when not recorded)."""
    out = []
    for s in tcfg.sources or []:
        name = f"train-{s.name}"
        fs = _first_stage(r, name, tcfg.dataset, s.first_stage)
        out.append(_Source(s.name, fs, _teacher(r, name, tcfg.dataset, fs, s.teacher), s.teacher))
    return out


def _sources_build(sources: list[_Source], qids: list[str] | None, folder: Path, dry_run: bool) -> list[dict[str, Any]]:
    """``build(sources=...)``: each source's runs cut to ``qids``, with its teacher's window, stride and depth."""
    def cut(path: Path, kind: str, name: str) -> Path:
        return path if dry_run else _subset_run(path, qids, folder / f"{kind}.{name}.train.run")

    return [
        {"name": s.name, "first_stage_run": cut(s.first_stage, "first-stage", s.name),
         "teacher_run": cut(s.teacher, "teacher", s.name),
         "teacher_window": s.config.window, "teacher_stride": s.config.stride, "teacher_depth": s.config.depth}
        for s in sources
    ]


def _train_student(r: _Runner, tag: str, qids: list[str] | None, first_stage: Path, teacher: Path | None,
                   start: tuple[str | Path, int] | None = None, excluded: set[str] = frozenset(),
                   sources: list[_Source] | None = None) -> Path:
    """Build and train every configured stage in order; stage n+1 starts from stage n's weights.

    ``start`` is the shared stages' model and how many stages it covers (see ``_train_shared``); ``sources``
    (``train.sources``) replace ``first_stage`` and ``teacher`` in the builds.
    """
    cfg = r.config.train
    model, done = start or (cfg.model, 0)
    remaining = cfg.stages[done:]
    folder = r.root / "students" / tag
    if not remaining:
        return Path(model)
    if not r.dry_run:
        folder.mkdir(parents=True, exist_ok=True)
    if cfg.queries is not None and not r.dry_run:
        qids = _fewer_queries(qids if qids is not None else sorted(read_run(teacher or first_stage)), cfg.queries,
                              r.config.seed)
    fs_run = first_stage if r.dry_run else _subset_run(first_stage, qids, folder / "first-stage.train.run")
    teacher_run = None
    if teacher is not None:
        teacher_run = teacher if r.dry_run else _subset_run(teacher, qids, folder / "teacher.train.run")
    runs: dict[str, Any] = {"teacher_run": teacher_run, "first_stage_run": fs_run}
    inputs = [p for p in (fs_run, teacher_run) if p is not None]
    if sources:
        spec = _sources_build(sources, qids, folder, r.dry_run)
        runs = {"sources": spec, "merge": cfg.merge}
        inputs = [p for s in spec for p in (s["first_stage_run"], s["teacher_run"])]
    for s in remaining:
        if s.data is not None:  # its own (fold-free) data; trained per fold since a fold-dependent stage came first
            data = _stage_data(r, s, excluded)
        else:
            data = folder / f"{s.name}.parquet"
            build_cfg = _build_cfg(s, cfg.teacher)
            if sources:  # each source's windows travel in its entry; the fingerprint names them and the merge
                build_cfg = {**build_cfg, "pairs": s.pairs, "merge": cfg.merge,
                             "sources": [{k: v for k, v in e.items() if not k.endswith("_run")} for e in runs["sources"]]}
            build_stage = Stage(
                f"build:{tag}:{s.name}", "build", {"dataset": cfg.dataset, "seed": r.config.seed, **build_cfg}, inputs, [data]
            )

            def do_build(data=data, build_cfg=build_cfg):
                from rankdistill.distillation.builder import build

                build(dataset=cfg.dataset, output=data, seed=r.config.seed, qids=qids, **{**build_cfg, **runs})

            r.run(build_stage, do_build)
        model = _train_stage(r, tag, s, data, model, folder / f"model-{s.name}")
    return Path(model)


def _fewer_queries(qids: list[str], n: int, seed: int) -> list[str]:
    """``train.queries``: the first ``n`` of a seeded shuffle, so 7 queries are a subset of 14 (a learning curve)."""
    order = sorted(qids)
    random.Random(seed).shuffle(order)
    return sorted(order[:n])


def _configured_candidates(r: _Runner, key: str, configs: list[CandidateSetConfig]) -> list[_Candidates]:
    """The candidate sets a config lists (recorded runs), each file checked."""
    for i, c in enumerate(configs):
        _check_file(r, f"{key}.{i}.run", c.run)
        if c.teacher_run is not None:
            _check_file(r, f"{key}.{i}.teacher_run", c.teacher_run)
    return [_Candidates(c.name, c.run, c.teacher_run) for c in configs]


def _step_dtype(dtype: str) -> str:
    """The precision ``dtype`` runs in on this machine, for a step's key: ``auto`` means bfloat16 on a CPU with
    native bf16 and float32 on one without, so a cached run is reused only where it would be computed the same."""
    from rankdistill.util.device import resolve_device, resolve_dtype

    return resolve_dtype(dtype, resolve_device("auto"))


def _rerank(r: _Runner, where: str, c: _Candidates, dataset: str, qids: list[str] | None, model: Path) -> Path:
    """The student's re-ranking of candidate set ``c`` on ``qids`` (all when None): its top ``evaluate.depth``
    scored, the rest of the first stage's list kept below; written under ``eval/<where>/<set>/``."""
    folder = r.root / "eval" / where / c.name
    fs_run = c.first_stage if r.dry_run else _subset_run(c.first_stage, qids, folder / "first-stage.run")
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


def _zero_shot(r: _Runner, where: str, c: _Candidates, dataset: str, qids: list[str] | None) -> Path | None:
    """The untrained backbone as a bi-encoder over the set's candidates: what the student must beat."""
    ev = r.config.evaluate
    if not ev.zero_shot:
        return None
    folder = r.root / "eval" / where / c.name / "zero-shot"
    fs_run = c.first_stage if r.dry_run or qids is None else _subset_run(c.first_stage, qids, folder / "first-stage.run")
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


def _teacher_with_tail(r: _Runner, where: str, c: _Candidates) -> Path | None:
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


def _systems(r: _Runner, where: str, c: _Candidates, zero_shot: Path | None, student: Path) -> dict[str, Path]:
    """A candidate set's rows: its first stage (named after it), the zero-shot backbone, the teacher, the student."""
    systems = {c.name: c.first_stage, "zero-shot": zero_shot, "teacher": _teacher_with_tail(r, where, c),
               "student": student, "student+first-stage": _fused(r, where, c, student)}
    return {k: v for k, v in systems.items() if v is not None}


def _fused(r: _Runner, where: str, c: _Candidates, student: Path) -> Path | None:
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


def _merge_runs(paths: list[Path], out: Path, tag: str) -> Path:
    merged: dict = {}
    for path in paths:
        merged.update(read_run(path))
    write_run(merged, out, tag=tag)
    return out


def _throughput(r: _Runner, name: str, sets: list[str], folds: dict[str, list[str]] | None) -> dict[str, Any]:
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


def _evaluate_and_report(r: _Runner, name: str, dataset: str, sets: dict[str, dict[str, Path]],
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


def _cv_candidates(r: _Runner, train_fs: Path, train_teacher: Path | None, qids: list[str],
                   sources: list[_Source]) -> list[_Candidates]:
    """``evaluate.candidates`` (each holding some of the training queries ``qids``), else each training source
    (``train.sources``) with its teacher, else the training first stage with the training teacher."""
    ev = r.config.evaluate
    if not ev.candidates:
        if sources:
            return [_Candidates(s.name, s.first_stage, s.teacher) for s in sources]
        return [_Candidates(first_stage_name(r.config.train.first_stage), train_fs, train_teacher)]
    candidates = _configured_candidates(r, "evaluate.candidates", ev.candidates)
    for i, c in enumerate(candidates):
        if not r.dry_run and not set(read_run(c.first_stage)) & set(qids):
            raise RankdistillError(
                f"evaluate.candidates.{i}.run: {c.first_stage} holds none of the {len(qids)} training queries "
                f"(e.g. {qids[:3]}); under cross-validation each candidate set ranks the training queries"
            )
    return candidates


def run_pipeline(config: PipelineConfig, *, from_stage: str | None = None, dry_run: bool = False,
                 on_event: EventHandler | None = None, cache: StepCache | None = None) -> PipelineResult:
    """:func:`pipeline` on a validated config; ``cache`` (a study's) supplies steps another variant finished."""
    if from_stage is not None and from_stage not in STAGE_KINDS:
        raise RankdistillError(f"from_stage {from_stage!r}: allowed stages are {', '.join(STAGE_KINDS)}")
    refuse_launcher()
    r = _Runner(config, from_stage, dry_run, on_event, cache)
    if dry_run:  # plans only: nothing is written, so no lock is needed
        return _run_stages(r)
    with output_lock(r.root, "pipeline"):  # two pipelines on one folder would overwrite each other's stages
        return _run_stages(r)


def _run_stages(r: _Runner) -> PipelineResult:
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
    sources = _train_sources(r, tcfg)
    if sources:  # the first source's runs give the query ids; every source is a candidate set (_cv_candidates)
        train_fs, train_teacher = sources[0].first_stage, sources[0].teacher
    else:
        train_fs = _first_stage(r, "train", tcfg.dataset, tcfg.first_stage)
        train_teacher = _teacher(r, "train", tcfg.dataset, train_fs, tcfg.teacher)

    ev = config.evaluate
    own_data = any(s.data is not None for s in tcfg.stages)
    if ev.cross_validation:
        qids = sorted(read_run(train_teacher or train_fs)) if not dry_run else []
        excluded = set(qids)  # every CV query is evaluated in some fold
    else:
        excluded = _eval_set_qids(r) if own_data and not dry_run else set()
    if own_data and dry_run:
        for s in tcfg.stages:
            if s.data is not None:
                _check_dataset(r, f"train.stages.{s.name}.data.dataset", s.data.dataset)
    shared = _train_shared(r, excluded)
    if ev.cross_validation:
        splits = folds_of(qids, ev.cross_validation, config.seed) if not dry_run else [[]] * ev.cross_validation
        candidates = _cv_candidates(r, train_fs, train_teacher, qids, sources)
        fold_runs: dict[str, list[Path]] = {c.name: [] for c in candidates}  # candidate set -> each fold's run
        fold_qids: dict[str, list[str]] = {}
        for i, test_qids in enumerate(splits, 1):
            fold = f"fold{i}"
            train_qids = sorted(set(qids) - set(test_qids))
            model = _train_student(r, fold, train_qids if not dry_run else None, train_fs, train_teacher, shared, excluded,
                                   sources)
            for c in candidates:  # each candidate set, re-ranked by this fold's student on this fold's test queries
                fold_runs[c.name].append(_rerank(r, fold, c, tcfg.dataset, test_qids if not dry_run else None, model))
            fold_qids[fold] = test_qids
        zero_shots = {c.name: _zero_shot(r, "cv", c, tcfg.dataset, qids) for c in candidates}
        if dry_run:
            r.run(Stage("evaluate:cv", "evaluate", {}, [], []), lambda: None)
            return r.result
        sets = {}
        for c in candidates:
            student = _merge_runs(fold_runs[c.name], r.root / "eval" / "cv" / c.name / "student.run", "student")
            sets[c.name] = _systems(r, "cv", c, zero_shots[c.name], student)
        r.result.metrics["cv"] = _evaluate_and_report(r, "cv", tcfg.dataset, sets, fold_qids)
        r.result.folds = fold_qids
    else:
        model = _train_student(r, "all", None, train_fs, train_teacher, shared, excluded, sources)
        for s in ev.sets:
            r.result.metrics[s.name] = _evaluate_set(r, s, model)
    return r.result


def _eval_set_qids(r: _Runner) -> set[str]:
    """Every query of every evaluation set's dataset: a stage's own data must not contain them."""
    from rankdistill.data.collection import load_collection

    qids: set[str] = set()
    for s in r.config.evaluate.sets:
        qids |= set(load_collection(s.dataset).queries)
    return qids


def _evaluate_set(r: _Runner, s: EvalSetConfig, model: Path) -> dict[str, dict[str, Any]]:
    """Re-rank each candidate set of an evaluation set with the student (and the zero-shot backbone) and report."""
    if s.candidates:
        candidates = _configured_candidates(r, f"evaluate.sets.{s.name}.candidates", s.candidates)
    else:
        assert s.first_stage is not None  # the config gives one of the two
        fs = _first_stage(r, s.name, s.dataset, s.first_stage)
        candidates = [_Candidates(first_stage_name(s.first_stage), fs, _teacher(r, s.name, s.dataset, fs, s.teacher))]
    runs = {c.name: (_rerank(r, s.name, c, s.dataset, None, model), _zero_shot(r, s.name, c, s.dataset, None))
            for c in candidates}
    if r.dry_run:
        r.run(Stage(f"evaluate:{s.name}", "evaluate", {}, [], []), lambda: None)
        return {}
    sets = {c.name: _systems(r, s.name, c, runs[c.name][1], runs[c.name][0]) for c in candidates}
    return _evaluate_and_report(r, s.name, s.dataset, sets, None)


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
