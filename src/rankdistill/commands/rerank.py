"""``rankdistill rerank``: score each query's top-k with a cross-encoder and write the re-ranked run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rankdistill.commands._common import (
    ConfigOpt,
    CorpusOpt,
    DatasetOpt,
    FixEncodingOpt,
    QueriesOpt,
    merge_config,
    warnings_to_stderr,
)

REQUIRED = ("model", "run", "output")
PATH_KEYS = ("run", "output", "queries", "corpus")


def rerank_command(
    ctx: typer.Context,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Cross-encoder folder, hub id or short name (minilm-l6). Required, here or in --config.")] = None,
    run: Annotated[Optional[Path], typer.Option("--run", "-r", help="TREC run whose candidates are re-ranked. Required, here or in --config.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Where the re-ranked TREC run is written. Required, here or in --config.")] = None,
    dataset: DatasetOpt = None,
    queries: QueriesOpt = None,
    corpus: CorpusOpt = None,
    fix_encoding: FixEncodingOpt = False,
    depth: Annotated[int, typer.Option("--depth", "-k", help="Candidates per query to score; the rest of the list follows in its order.")] = 100,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16 (auto: bf16 on GPU and on CPUs with native bf16).")] = "auto",
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", help="Padded tokens per batch (default 4096 on CPU, 65536 on GPU).")] = None,
    max_query_length: Annotated[Optional[int], typer.Option("--max-query-length", help="Query tokens kept (default: the model's, else 32).")] = None,
    max_passage_length: Annotated[Optional[int], typer.Option("--max-passage-length", help="Passage tokens kept (default: the model's, else 256).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    compile: Annotated[
        bool,
        typer.Option("--compile/--no-compile", help="torch.compile with frozen weights (inductor; needs g++): "
                     "costs 12-35 s per process; on CPU slower than the default for BERT-family models."),
    ] = False,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Run tag (default rankdistill-<model name>).")] = None,
    fuse_first_stage: Annotated[float, typer.Option("--fuse-first-stage", min=0.0, help="Rank by z(model) + W * z(run's score) per query; 0: the model alone.")] = 0.0,
    config: ConfigOpt = None,
) -> None:
    """Re-rank RUN's top-k with a cross-encoder. Shard with: torchrun --standalone --nproc-per-node N -m rankdistill -- rerank ..."""
    from rich.console import Console

    from rankdistill.reranking.reranker import rerank

    err = Console(stderr=True)
    warnings_to_stderr()
    flags = dict(
        model=model, run=run, output=output, dataset=dataset, queries=queries, corpus=corpus, fix_encoding=fix_encoding,
        depth=depth, dtype=dtype, batch_tokens=batch_tokens, max_query_length=max_query_length,
        max_passage_length=max_passage_length, device=device, compile=compile, tag=tag,
        fuse_first_stage=fuse_first_stage,
    )
    values = merge_config(ctx, config, flags, path_keys=PATH_KEYS)
    if config is not None and model is None:
        values["model"] = _model_beside(values.get("model"), config)
    path = rerank(**_checked(values, config))
    err.print(f"re-ranked run written to [bold]{path}[/]", highlight=False)


def _model_beside(value: Any, config: Path) -> Any:
    """A model named in the config file: a folder beside the file when there is one, else a hub id or short name."""
    if isinstance(value, str) and (config.resolve().parent / value).expanduser().is_dir():
        from rankdistill.util.config import resolve_path

        return resolve_path(value, config.resolve().parent)
    return value


def _checked(values: dict[str, Any], config: Path | None) -> dict[str, Any]:
    """The merged options, validated against this command's own signature: unknown keys and wrong types in the
    config file read as every config error does (``FILE: key: problem``)."""
    from rankdistill.errors import RankdistillError
    from rankdistill.util.config import validate

    missing = [name for name in REQUIRED if values.get(name) is None]
    if missing:
        raise RankdistillError(
            " and ".join(f"--{name}" for name in missing) + " " + ("is" if len(missing) == 1 else "are")
            + " required: give " + ("it" if len(missing) == 1 else "them") + " on the command line or in --config"
        )
    return dict(validate(_options_model(), values, where=config or "rerank options"))


def _options_model():
    """A pydantic model of this command's options, built from its signature (one list of options, not two)."""
    import inspect
    import typing

    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(rerank_command)
    fields = {
        name: (hints[name], ...) if name in REQUIRED else (hints[name], param.default)
        for name, param in inspect.signature(rerank_command).parameters.items()
        if name not in ("ctx", "config")
    }
    return create_model("RerankOptions", __config__=ConfigDict(extra="forbid"), **fields)


def register(app: typer.Typer) -> None:
    app.command("rerank")(rerank_command)
