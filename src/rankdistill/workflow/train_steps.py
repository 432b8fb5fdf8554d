"""The pipeline's training steps: each stage's distillation set (built per fold, or once from a stage's own data)
and the student trained on it, stage after stage; ``train.sources`` give one list per candidate source."""

from __future__ import annotations

import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankdistill.data.trec import read_run
from rankdistill.errors import RankdistillError
from rankdistill.modeling.truncation import TruncationOptions
from rankdistill.training.options import LearningOptions
from rankdistill.workflow.config import TeacherConfig, TrainConfig, TrainStageConfig
from rankdistill.workflow.input_steps import first_stage_run, teacher_run
from rankdistill.workflow.manifest import Stage
from rankdistill.workflow.steps import StepRunner, subset_run


@dataclass
class Source:
    """A candidate source of the training queries (``train.sources``): its name, runs and teacher settings."""

    name: str
    first_stage: Path
    teacher: Path
    config: TeacherConfig


def train_sources(r: StepRunner, tcfg: TrainConfig) -> list[Source]:
    """Each source's first-stage and teacher runs (retrieved or taught here when not recorded)."""
    out = []
    for s in tcfg.sources or []:
        name = f"train-{s.name}"
        fs = first_stage_run(r, name, tcfg.dataset, s.first_stage)
        out.append(Source(s.name, fs, teacher_run(r, name, tcfg.dataset, fs, s.teacher), s.teacher))
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


def _train_stage(r: StepRunner, tag: str, s: TrainStageConfig, data: Path, base: str | Path, out: Path) -> Path:
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


def _stage_data(r: StepRunner, s: TrainStageConfig, excluded: set[str]) -> Path:
    """A stage's own distillation set from ``s.data``, without the evaluated queries; built once per pipeline."""
    if s.name in r.stage_data:
        return r.stage_data[s.name]
    assert s.data is not None
    dcfg = s.data
    folder = r.root / "stages" / s.name
    fs = first_stage_run(r, s.name, dcfg.dataset, dcfg.first_stage, folder=folder)
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
        fs = subset_run(fs, kept, folder / "first-stage.kept.run")
    teacher = teacher_run(r, s.name, dcfg.dataset, fs, dcfg.teacher, folder=folder / "teacher")
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


def train_shared(r: StepRunner, excluded: set[str]) -> tuple[str | Path, int]:
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


def _sources_build(sources: list[Source], qids: list[str] | None, folder: Path, dry_run: bool) -> list[dict[str, Any]]:
    """``build(sources=...)``: each source's runs cut to ``qids``, with its teacher's window, stride and depth."""
    def cut(path: Path, kind: str, name: str) -> Path:
        return path if dry_run else subset_run(path, qids, folder / f"{kind}.{name}.train.run")

    return [
        {"name": s.name, "first_stage_run": cut(s.first_stage, "first-stage", s.name),
         "teacher_run": cut(s.teacher, "teacher", s.name),
         "teacher_window": s.config.window, "teacher_stride": s.config.stride, "teacher_depth": s.config.depth}
        for s in sources
    ]


def train_student(r: StepRunner, tag: str, qids: list[str] | None, first_stage: Path, teacher: Path | None,
                   start: tuple[str | Path, int] | None = None, excluded: set[str] = frozenset(),
                   sources: list[Source] | None = None) -> Path:
    """Build and train every configured stage in order; stage n+1 starts from stage n's weights.

    ``start`` is the shared stages' model and how many stages it covers (see ``train_shared``); ``sources``
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
    fs_run = first_stage if r.dry_run else subset_run(first_stage, qids, folder / "first-stage.train.run")
    teacher_run = None
    if teacher is not None:
        teacher_run = teacher if r.dry_run else subset_run(teacher, qids, folder / "teacher.train.run")
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
