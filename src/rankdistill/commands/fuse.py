"""``rankdistill fuse RUN RUN...``: runs over the same candidates fused by their per-query z-scores (CombSUM)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def fuse_command(
    runs: Annotated[list[Path], typer.Argument(help="Two or more TREC runs over the same candidates; the first run's "
                                               "top --depth is fused and its order below is kept.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the fused TREC run is written.")],
    weight: Annotated[
        Optional[list[float]],
        typer.Option("--weight", "-w", help="One weight per run, in order (default 1 each: the mean of z-scores)."),
    ] = None,
    depth: Annotated[int, typer.Option("--depth", "-k", min=1, help="Documents per query fused.")] = 100,
    tag: Annotated[str, typer.Option("--tag", help="Run tag.")] = "rankdistill-fused",
) -> None:
    """Fuse runs over the same candidates: each query's top-k ranked by the weighted sum of z-scores (CombSUM).

    E.g. students trained on other query splits or seeds re-ranking one first stage (benchmarks/RESULTS.md, section
    14 and 17), or a student with its first stage.
    """
    from rich.console import Console

    from rankdistill.errors import RankdistillError
    from rankdistill.reranking.fusion import fuse

    for path in runs:
        if not path.is_file():
            raise RankdistillError(f"{path}: no such run file")
    written = fuse(runs, output, weights=weight, depth=depth, tag=tag)
    Console(stderr=True).print(f"fused run of {len(runs)} runs written to [bold]{written}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("fuse")(fuse_command)
