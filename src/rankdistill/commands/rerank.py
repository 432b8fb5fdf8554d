"""``rankdistill rerank``: score each query's top-k with a cross-encoder and write the re-ranked run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from rankdistill.commands._common import CorpusOpt, DatasetOpt, FixEncodingOpt, QueriesOpt, warnings_to_stderr


def rerank_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Cross-encoder folder, hub id or short name (minilm-l6).")],
    run: Annotated[Path, typer.Option("--run", "-r", help="TREC run whose candidates are re-ranked.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where the re-ranked TREC run is written.")],
    dataset: DatasetOpt = None,
    queries: QueriesOpt = None,
    corpus: CorpusOpt = None,
    fix_encoding: FixEncodingOpt = False,
    depth: Annotated[int, typer.Option("--depth", "-k", help="Candidates per query to score.")] = 100,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16 (auto: bf16 on GPU and on CPUs with native bf16).")] = "auto",
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", help="Padded tokens per batch (default 4096 on CPU, 65536 on GPU).")] = None,
    max_query_length: Annotated[Optional[int], typer.Option("--max-query-length", help="Query tokens kept (default: the model's, else 32).")] = None,
    max_passage_length: Annotated[Optional[int], typer.Option("--max-passage-length", help="Passage tokens kept (default: the model's, else 256).")] = None,
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    backend: Annotated[str, typer.Option("--backend", help="torch (onnx is not shipped, see benchmarks/RESULTS.md).")] = "torch",
    compile: Annotated[
        bool,
        typer.Option("--compile/--no-compile", help="torch.compile with frozen weights (inductor; needs g++): "
                     "costs 12-35 s per process; on CPU slower than the default for BERT-family models."),
    ] = False,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Run tag (default rankdistill-<model name>).")] = None,
) -> None:
    """Re-rank RUN's top-k with a cross-encoder. Shard with: torchrun --standalone --nproc-per-node N -m rankdistill -- rerank ..."""
    from rich.console import Console

    from rankdistill.reranking.reranker import rerank

    err = Console(stderr=True)
    warnings_to_stderr()
    path = rerank(
        model, run, dataset=dataset, queries=queries, corpus=corpus, depth=depth, output=output, dtype=dtype,
        batch_tokens=batch_tokens, max_query_length=max_query_length, max_passage_length=max_passage_length,
        device=device, backend=backend, compile=compile, tag=tag, fix_encoding=fix_encoding,
    )
    err.print(f"re-ranked run written to [bold]{path}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("rerank")(rerank_command)
