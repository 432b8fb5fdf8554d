"""The pipeline's step runner: what runs a step, skips it when up to date or takes it from a study's cache, and
the small checks and cuts every kind of step shares (the steps themselves: ``input_steps``, ``train_steps``,
``eval_steps``; their order: ``runner``)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.trec import read_run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.util.files import atomic_write
from rankdistill.workflow.cache import StepCache
from rankdistill.workflow.config import PipelineConfig
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


class StepRunner:
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


def check_file(r: StepRunner, key: str, path: Path) -> None:
    if path.is_file():
        return
    if r.dry_run:
        r.notify("missing", f"{key}: {path} (download it before the real run)")
        r.missing.append(str(path))
        return
    raise RankdistillError(f"{key}: {path} does not exist")


def subset_run(path: Path, qids: list[str] | None, out: Path) -> Path:
    """The run restricted to ``qids`` (written once per fold so stages read plain files)."""
    if qids is None:
        return path
    keep = set(qids)
    run = {qid: docs for qid, docs in read_run(path).items() if qid in keep}
    if not out.exists() or read_run(out) != run:
        write_run(run, out, tag=path.stem.replace(" ", "_") or "run")
    return out
