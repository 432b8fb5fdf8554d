"""``rankdistill pipeline CONFIG.yaml``: the stages as configured, with their progress and the summary tables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

EVENT_STYLES = {"plan": "cyan", "up to date": "green", "reused": "green", "running": "bold cyan", "missing": "yellow", "note": ""}


def pipeline_command(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML (see examples/).")],
    from_stage: Annotated[
        Optional[str],
        typer.Option("--from", help="Re-run this stage and every later one: retrieve, teach, build, train, rerank, evaluate."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the stages without running them.")] = False,
) -> None:
    """Run retrieve, teach, build, train, rerank and evaluate as configured; up-to-date stages are skipped."""
    from rankdistill.errors import RankdistillError
    from rankdistill.workflow.runner import STAGE_KINDS, pipeline

    if from_stage is not None and from_stage not in STAGE_KINDS:
        raise RankdistillError(f"--from {from_stage!r}: allowed stages are {', '.join(STAGE_KINDS)}")

    err = Console(stderr=True)

    def show(event: str, text: str) -> None:
        style = EVENT_STYLES.get(event, "")
        label = f"[{style}]{event}[/]" if style else ""
        err.print(f"{label} {text}".strip(), highlight=False, soft_wrap=True)

    print_summary(pipeline(config, from_stage=from_stage, dry_run=dry_run, on_event=show))


def fold_table(summary: dict[str, Any], folds: dict[str, list[str]]):
    """The first measure per fold: each fold's student was trained on the other folds' queries."""
    from rich.table import Table

    from rankdistill.workflow.runner import fold_means

    measure = summary["measures"][0]
    means = fold_means(summary, folds, measure)
    table = Table(title=f"{measure} per fold (test queries of each fold)")
    table.add_column("run", style="bold")
    for fold, qids in folds.items():
        table.add_column(f"{fold} ({len(qids)} q)", justify="right")
    for run, values in means.items():
        table.add_row(run, *(f"{values[f]:.4f}" for f in folds))
    return table


_ROLES = {"zero-shot": "zero-shot backbone", "teacher": "teacher", "student": "student",
          "student+first-stage": "student fused with the first stage"}


def _rows(summary: dict) -> str:
    """The table's rows by role, naming only those this set has (an evaluation set without a teacher has no teacher)."""
    return " / ".join(["first stage", *(label for run, label in _ROLES.items() if run in summary.get("runs", {}))])


def print_summary(result) -> None:
    """Each evaluation set's tables, one per candidate set (and per-fold means under cross-validation), then what
    ran and the report."""
    from rankdistill.commands._tables import rich_table

    out = Console()
    for name, candidate_sets in result.metrics.items():
        for candidates, summary in candidate_sets.items():
            out.print(rich_table(summary, title=f"{name} · {candidates}: {_rows(summary)}"))
            if name == "cv" and result.folds:
                out.print(fold_table(summary, result.folds))
    out.print(f"ran {len(result.ran)} stage(s), skipped {len(result.skipped)} up-to-date stage(s)")
    if result.report:
        out.print(f"report: {result.report}")


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_command)
