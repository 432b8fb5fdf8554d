"""``rankdistill study STUDY.yaml``: the variants of a base pipeline on the same folds, and their table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rankdistill.commands.pipeline import EVENT_STYLES


def study_command(
    config: Annotated[Path, typer.Argument(help="Study YAML: a base pipeline, variants and/or a grid (see examples/).")],
    only: Annotated[
        Optional[list[str]], typer.Option("--only", help="Run only this variant (repeatable); the reference runs too.")
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate every variant and plan its steps, run nothing.")] = False,
    quiet_steps: Annotated[bool, typer.Option("--quiet-steps", help="Show variants only, not each step.")] = False,
) -> None:
    """Run every variant with the same folds (shared steps once; rerun to continue after a stop) and print the table."""
    from rankdistill.studies import study

    err = Console(stderr=True)

    def show(event: str, text: str) -> None:
        if quiet_steps and not text.startswith("variant "):
            return
        style = EVENT_STYLES.get(event, "")
        label = f"[{style}]{event}[/]" if style else ""
        err.print(f"{label} {text}".strip(), highlight=False, soft_wrap=True)

    result = study(config, only=only, dry_run=dry_run, on_event=show)
    out = Console()
    if dry_run:
        out.print(f"{len(result.ran)} variant run(s) planned under {result.output}")
        return
    out.print(f"ran {len(result.ran)} variant run(s), {len(result.done_earlier)} finished earlier")
    if result.table is not None:
        out.print(result.table.read_text(), markup=False, highlight=False, soft_wrap=True)
        out.print(f"table: {result.table}" + (f"\nplot: {result.plot}" if result.plot else ""))


def register(app: typer.Typer) -> None:
    app.command("study")(study_command)
