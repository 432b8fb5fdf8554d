"""The pipeline's input steps: a first-stage run (recorded, the dataset's own, or BM25 retrieved here) and the
teacher's ranking of it (recorded, or taught here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from rankdistill.data.trec import write_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.outputs import describe_spend
from rankdistill.workflow.config import RERANKED_SYSTEMS, FirstStageConfig, TeacherConfig
from rankdistill.workflow.manifest import Stage
from rankdistill.workflow.steps import StepRunner, check_file


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


def first_stage_run(r: StepRunner, name: str, dataset: str, cfg: FirstStageConfig, folder: Path | None = None) -> Path:
    folder = folder or r.root / name
    if cfg.run is not None:
        check_file(r, f"{name}.first_stage.run", cfg.run)
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
    stage = Stage(f"retrieve:{name}", "retrieve", {"dataset": dataset, **cfg.bm25.model_dump(mode="json")}, [], [out])

    def action():
        from rankdistill.bm25 import retrieve

        retrieve(dataset, output=out, k=cfg.bm25.k, k1=cfg.bm25.k1, b=cfg.bm25.b)

    r.run(stage, action)
    return out


def teacher_run(r: StepRunner, name: str, dataset: str, first_stage: Path, cfg: TeacherConfig | None,
             folder: Path | None = None) -> Path | None:
    if cfg is None:
        return None
    if cfg.run is not None:
        check_file(r, f"{name}.teacher.run", cfg.run)
        return cfg.run
    folder = folder or r.root / name / "teacher"
    out = folder / "teacher.run"
    inputs = [first_stage] + ([cfg.replay_file] if cfg.replay_file else [])
    stage = Stage(f"teach:{name}", "teach", {"dataset": dataset, **cfg.model_dump(mode="json")}, inputs, [out])

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
