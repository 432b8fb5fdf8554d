"""A step cache shared by the pipelines of a study: a step is run once for every variant that needs it.

Two variants that differ only in the loss read the same first stage, teacher run and distillation set; their
retrieve, teach and build steps (and the zero-shot baseline) are the same work. A step's key is the content of
what it reads (the hashes of its input files, not their paths, which differ between variants' folders), its kind,
its options and the names of its outputs; a finished step's outputs are kept under ``<cache>/<key>/`` and copied
into the next variant's folder that asks for the same key. Evaluation steps are not cached: their reports hold the
variant's own config.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from rankdistill.util.files import atomic_write
from rankdistill.workflow.manifest import Stage, hash_config, hash_path

CACHED_KINDS = ("retrieve", "teach", "build", "train", "rerank")


def _copy(source: Path, target: Path) -> None:
    """A file or folder copied (hard-linked where the file system allows: a student is ~90 MB, linking is free).

    Safe to link: every writer of these outputs replaces whole files (atomic writes, folders rebuilt), never edits
    one in place, so a later write in one variant cannot change another's copy.
    """
    if target.is_dir():
        shutil.rmtree(target)
    elif target.exists():
        target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)

    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link)
    else:
        link(str(source), str(target))


class StepCache:
    """Finished steps' outputs under ``root``, keyed by content (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, stage: Stage) -> str:
        return hash_config({
            "kind": stage.kind,
            "config": stage.config,
            "inputs": [hash_path(p) for p in stage.inputs],
            "outputs": [p.name for p in stage.outputs],
        })

    def fetch(self, stage: Stage) -> dict[str, Any] | None:
        """Copy a cached step's outputs to ``stage.outputs`` and return its saved stats, or None when not cached."""
        if stage.kind not in CACHED_KINDS:
            return None
        folder = self.root / self.key(stage)
        done = folder / "step.json"
        if not done.is_file():
            return None
        for i, target in enumerate(stage.outputs):
            _copy(folder / f"out{i}" / target.name, target)
        return json.loads(done.read_text())["stats"]

    def store(self, stage: Stage, stats: dict[str, Any]) -> None:
        """Keep a finished step's outputs; a kill while storing leaves a temporary folder that is never read."""
        if stage.kind not in CACHED_KINDS or not all(p.exists() for p in stage.outputs):
            return
        folder = self.root / self.key(stage)
        if (folder / "step.json").is_file():
            return
        tmp = self.root / f".{folder.name}.{os.getpid()}.tmp"
        if tmp.exists():
            shutil.rmtree(tmp)
        for i, source in enumerate(stage.outputs):
            _copy(source, tmp / f"out{i}" / source.name)
        with atomic_write(tmp / "step.json") as handle:
            json.dump({"stage": stage.id, "kind": stage.kind, "config": stage.config, "stats": stats}, handle,
                      indent=2, default=str)
        if folder.exists() and not (folder / "step.json").is_file():  # half-stored by a killed run
            shutil.rmtree(folder, ignore_errors=True)
        try:
            tmp.rename(folder)
        except OSError:
            if not (folder / "step.json").is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another study sharing this cache stored the same step meanwhile
