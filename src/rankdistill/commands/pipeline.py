"""``rankdistill pipeline CONFIG.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def pipeline_command(
    config: Annotated[Path, typer.Argument(help="Pipeline YAML (see examples/).")],
    from_stage: Annotated[
        Optional[str],
        typer.Option("--from", help="Re-run this stage and every later one: retrieve, teach, build, train, rerank, evaluate."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the stages without running them.")] = False,
) -> None:
    """Run retrieve, teach, build, train, rerank and evaluate as configured; up-to-date stages are skipped."""
    from rankdistill.workflow.runner import pipeline, print_summary

    print_summary(pipeline(config, from_stage=from_stage, dry_run=dry_run))


def register(app: typer.Typer) -> None:
    app.command("pipeline")(pipeline_command)
