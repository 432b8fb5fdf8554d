"""Terminal tables (rich) of what the library returns: built here, in the command layer, the only one that prints."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.table import Table


def rich_table(summary: Mapping[str, Any], title: str = "Evaluation") -> Table:
    """The metrics table from ``EvaluationResult.to_dict()`` (also what the pipeline saves as metrics.json):
    significantly better runs in green, worse in red."""
    from rankdistill.evaluation.metrics import MARK_BETTER, MARK_WORSE

    table = Table(title=title, caption=summary.get("legend"), caption_justify="left")
    table.add_column("run", style="bold", overflow="fold")
    for m in summary["measures"]:
        table.add_column(m, justify="right")
    for run, entry in summary["runs"].items():
        cells = []
        for m in summary["measures"]:
            item = entry["measures"][m]
            text = f"{item['mean']:.4f}"
            if "p_corrected" in item:
                mark = (MARK_BETTER if item["delta"] > 0 else MARK_WORSE) if item["significant"] else ""
                text += f"{mark} (p={item['p_corrected']:.3g})"
                style = "green" if mark == MARK_BETTER else "red" if mark else ""
                text = f"[{style}]{text}[/]" if style else text
            cells.append(text)
        table.add_row(f"{run} (baseline)" if run == summary.get("baseline") else run, *cells)
    return table


def per_query_tables(result) -> list[Table]:
    """One table per measure of an ``EvaluationResult``: each qrels query's value in every run."""
    tables = []
    for m in result.measures:
        table = Table(title=f"{m} per query")
        table.add_column("query")
        for run in result.runs:
            table.add_column(run, justify="right")
        for qid in result.queries:
            table.add_row(qid, *(f"{result.per_query[run][m][qid]:.4f}" for run in result.runs))
        tables.append(table)
    return tables


def distillation_set_table(path: str | Path, counts: Mapping[str, Any]) -> Table:
    """A set's counts (the ``counts`` of its metadata), with a warning when a loss has nothing to learn."""
    table = Table(title=f"distillation set {path}", show_header=False)
    for key, text in _count_lines(counts):
        table.add_row(key, text)
    return table


def _count_lines(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    ll, tg = stats["list_length"], stats["target"]
    lines = [
        ("queries", f"{stats['queries']} of {stats['queries_asked']}"
         + (f" ({stats['skipped_no_relevant']} skipped: no relevant passage)" if stats["skipped_no_relevant"] else "")),
        *([("lists", str(stats["lists"]))] if "lists" in stats else []),
        ("rows", str(stats["rows"])),
        *([("training pairs", str(stats["pairs"]))] if "pairs" in stats else []),
        *((f"source {name}", f"{c['lists']} lists, {c['rows']} rows, {c['pairs']} pairs")
          for name, c in (stats.get("per_source") or {}).items()),
        ("list length", f"min {ll['min']}  mean {ll['mean']:.1f}  max {ll['max']}"),
        ("target", f"min {tg['min']:g}  mean {tg['mean']:.3g}  max {tg['max']:g}  ({tg['distinct']} distinct)"),
    ]
    if stats.get("target_counts"):
        lines.append(("target counts", ", ".join(f"{k}: {v}" for k, v in stats["target_counts"].items())))
    lines.append(("relevance", ", ".join(f"{k}: {v}" for k, v in stats["relevance_counts"].items())))
    lines.append(("teacher-ranked", str(stats["with_teacher_rank"])))
    lines.append(("first-stage-ranked", str(stats["with_first_stage_rank"])))
    if not math.isfinite(tg["mean"]):
        lines.append(("warning", "non-finite targets"))
    elif tg["distinct"] == 1:
        lines.append(("warning", "every target is the same: a ranking loss has nothing to learn from this set"))
    return lines
