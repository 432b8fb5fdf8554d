"""``rankdistill retrieve``: BM25 first stage (index once, memory-map, write a TREC run)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rankdistill.commands._common import CorpusOpt, DatasetOpt, FixEncodingOpt, QueriesOpt, SplitOpt


def retrieve_command(
    output: Annotated[Path, typer.Option("--output", "-o", help="TREC run to write (atomically).")],
    dataset: DatasetOpt = None,
    queries: QueriesOpt = None,
    corpus: CorpusOpt = None,
    split: SplitOpt = "test",
    fix_encoding: FixEncodingOpt = False,
    index: Annotated[
        Optional[Path], typer.Option("--index", help="Index folder (default: the cache, keyed by corpus and parameters).")
    ] = None,
    k: Annotated[int, typer.Option("--k", "-k", help="Run depth: documents per query.")] = 1000,
    k1: Annotated[float, typer.Option("--k1", help="BM25 k1 (Anserini default 0.9).")] = 0.9,
    b: Annotated[float, typer.Option("--b", help="BM25 b (Anserini default 0.4).")] = 0.4,
    method: Annotated[str, typer.Option("--method", help="bm25s variant: lucene, robertson, atire, bm25l, bm25+.")] = "lucene",
    stemmer: Annotated[str, typer.Option("--stemmer", help="PyStemmer algorithm (porter = Lucene's English analyzer).")] = "porter",
    tag: Annotated[str, typer.Option("--tag", help="Run tag (last column).")] = "bm25",
) -> None:
    """BM25 retrieval: build the index once (then memory-map it) and write the top-k run."""
    from rankdistill.bm25 import retrieve

    err = Console(stderr=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = retrieve(
            dataset, queries=queries, corpus=corpus, index_dir=index, output=output, k=k, k1=k1, b=b,
            method=method, stemmer=stemmer, split=split, fix_encoding=fix_encoding, tag=tag,
        )
    for warning in caught:
        err.print(f"[yellow]warning:[/] {warning.message}", highlight=False, soft_wrap=True)
    err.print(f"run written to [bold]{path}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("retrieve")(retrieve_command)
