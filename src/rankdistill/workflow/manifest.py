"""Stage manifests: what a stage read and wrote, so an unchanged stage is skipped on the next run."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.util.files import atomic_write
from rankdistill.util.versions import versions

def hash_path(path: Path) -> str:
    """sha256 of a file, or of every file in a folder (names and contents, sorted)."""
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def hash_config(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Stage:
    """One unit of work: its identity, config, input files and output files."""

    id: str
    kind: str  # retrieve | teach | build | train | rerank | evaluate
    config: Any
    inputs: list[Path] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)

    def manifest_path(self, root: Path) -> Path:
        return root / "manifests" / f"{self.id.replace(':', '__').replace('/', '_')}.json"

    def fingerprint(self) -> dict[str, Any]:
        return {
            "config": hash_config(self.config),
            "inputs": {str(p): hash_path(p) for p in self.inputs},
        }

    def is_current(self, root: Path) -> bool:
        path = self.manifest_path(root)
        if not path.exists() or not all(p.exists() for p in self.outputs):
            return False
        try:
            saved = json.loads(path.read_text())
        except json.JSONDecodeError:
            return False
        if saved.get("fingerprint") != self.fingerprint():
            return False
        return saved.get("outputs") == {str(p): hash_path(p) for p in self.outputs}

    def record(self, root: Path, seconds: float, extra: dict[str, Any] | None = None) -> None:
        manifest = {
            "stage": self.id,
            "kind": self.kind,
            "config": self.config,
            "fingerprint": self.fingerprint(),
            "outputs": {str(p): hash_path(p) for p in self.outputs},
            "versions": versions(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "seconds": round(seconds, 3),
            **(extra or {}),
        }
        with atomic_write(self.manifest_path(root)) as handle:
            json.dump(manifest, handle, indent=2, default=str)
