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


RETRY_LABELS = {"http_429": "429", "http_5xx": "5xx", "connection": "connection", "timeout": "timeout",
                "malformed": "malformed"}


def describe_spend(stats: dict[str, Any]) -> str:
    """The listwise teacher's spend from its ``stats.json`` as one line (what ``teach`` and ``pipeline`` print).

    Requests and tokens are this run's; windows answered from the cache cost nothing now, and windows re-asked
    after a resume are the only ones a kill made anyone pay for twice.
    """
    retries = stats.get("retries") or {}
    total = sum(retries.values())
    kinds = ", ".join(f"{RETRY_LABELS.get(k, k)} ×{n}" for k, n in retries.items() if n)
    retried = f"{total} retries: {kinds}" if total else "no retries"
    gave_up = f", {stats['malformed_gave_up']} malformed answers given up on" if stats.get("malformed_gave_up") else ""
    return (
        f"teacher spend: {stats['requests']} requests ({retried}{gave_up}), {stats['prompt_tokens']} prompt + "
        f"{stats['completion_tokens']} completion tokens; {stats['windows']} windows: {stats['llm_calls']} asked, "
        f"{stats['cache_hits']['windows']} from the cache, {stats.get('windows_reasked', 0)} re-asked after a resume"
    )


def spend_figures(stats: dict[str, Any]) -> dict[str, Any]:
    """The teacher's row of a report's throughput-and-cost table, from its ``stats.json``.

    The listwise teacher gives its spend (requests, retries, tokens, windows from the cache and re-asked); the
    embedding teacher, which pays nothing per call, gives its speed.
    """
    queries = max(1, stats.get("queries") or 0)
    ms_per_query = round(1000 * stats["wall_time_s"] / queries, 1) if "wall_time_s" in stats else None
    if "requests" not in stats:
        return {"pairs_per_s": stats.get("pairs_per_s"), "ms_per_query": ms_per_query}
    return {
        "requests": stats["requests"],
        "retries": sum((stats.get("retries") or {}).values()),
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": stats["completion_tokens"],
        "tokens_per_query": round((stats["prompt_tokens"] + stats["completion_tokens"]) / queries, 1),
        "windows_from_cache": stats["cache_hits"]["windows"],
        "windows_reasked": stats.get("windows_reasked", 0),
        "ms_per_query": ms_per_query,
    }
