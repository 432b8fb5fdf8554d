"""What every teacher leaves in its output folder, named once: the run, the stats, the cache, and the result type.

The listwise LLM teacher and the embedding teacher write the same two files, so everything downstream (the
pipeline's manifests, ``build``) reads one layout whichever teacher ran.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.trec import Run
from rankdistill.util.files import atomic_write

RUN_NAME = "teacher.run"
STATS_NAME = "stats.json"
CACHE_NAME = "cache.sqlite"


@dataclass
class TeachResult:
    """Where the teacher's outputs are, plus the run and stats themselves for notebook use."""

    run_path: Path
    stats_path: Path
    run: Run = field(repr=False)
    stats: dict[str, Any] = field(repr=False)


def write_stats(stats: dict[str, Any], output: Path) -> Path:
    """``stats.json`` in ``output``, indented, written atomically; returns its path."""
    path = output / STATS_NAME
    with atomic_write(path) as handle:
        json.dump(stats, handle, indent=2)
        handle.write("\n")
    return path
