"""``rankdistill fuse RUN RUN...``: runs over the same candidates fused by their per-query z-scores (CombSUM)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rankdistill.commands._common import ConfigOpt, merge_config

PATH_KEYS = ("runs", "output")


def fuse_command(
    ctx: typer.Context,
    runs: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Two or more TREC runs over the same candidates (or 'runs:' in --config); the first run's "
                       "top --depth is fused and its order below is kept.", show_default=False),
    ] = None,
    config: ConfigOpt = None,
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="Where the fused TREC run is written. Required, here or in --config.")
    ] = None,
    weight: Annotated[
        Optional[list[float]],
        typer.Option("--weight", "-w", help="One weight per run, in order (default 1 each: the mean of z-scores)."),
    ] = None,
    depth: Annotated[int, typer.Option("--depth", "-k", min=1, help="Documents per query fused.")] = 100,
    tag: Annotated[str, typer.Option("--tag", help="Run tag.")] = "rankdistill-fused",
) -> None:
    """Fuse runs over the same candidates: each query's top-k ranked by the weighted sum of z-scores (CombSUM).

    E.g. students trained on other query splits or seeds re-ranking one first stage (benchmarks/RESULTS.md, section
    14 and 17), or a student with its first stage. In a --config file the keys are these options' names ('runs:'
    for the run files, 'weight:' a list); flags win over the file.
    """
    from rich.console import Console

    from rankdistill.errors import RankdistillError
    from rankdistill.reranking.fusion import fuse

    v = _settings(ctx, config)
    for path in v["runs"]:
        if not path.is_file():
            raise RankdistillError(f"{path}: no such run file")
    written = fuse(v["runs"], v["output"], weights=v["weight"], depth=v["depth"], tag=v["tag"])
    Console(stderr=True).print(f"fused run of {len(v['runs'])} runs written to [bold]{written}[/]", highlight=False)


def _settings(ctx: typer.Context, config: Path | None) -> dict[str, Any]:
    """The flags merged over the --config file and checked, as ``evaluate``'s are."""
    from pydantic import ConfigDict, Field, create_model

    from rankdistill.errors import RankdistillError
    from rankdistill.util.config import validate

    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    values = merge_config(ctx, config, flags, PATH_KEYS)
    hints = typing.get_type_hints(fuse_command)
    fields: dict[str, Any] = {name: (hint, None) for name, hint in hints.items() if name not in ("ctx", "config", "return")}
    fields["depth"] = (int, Field(100, ge=1))  # the file's depth is held to the flag's min=1
    model = create_model("FuseConfig", __config__=ConfigDict(extra="forbid"), **fields)
    values = validate(model, values, config).model_dump()
    values["weight"] = values["weight"] or None  # typer gives [] for a list option not given: the default weights
    if not values["runs"]:
        raise RankdistillError(f"{config}: no 'runs:' and no RUN files given here; name two or more runs to fuse"
                               if config is not None else "name two or more RUN files to fuse (or 'runs:' in a --config file)")
    if values["output"] is None:
        raise RankdistillError(f"{config}: no 'output:' and no --output/-o given; name the fused run's file"
                               if config is not None else "name the fused run's file with --output/-o (or 'output:' in a --config file)")
    return values


def register(app: typer.Typer) -> None:
    app.command("fuse")(fuse_command)
