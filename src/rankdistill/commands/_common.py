"""Options shared by several verbs, so every command names data the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..collection import Collection, load_collection

DatasetOpt = Annotated[
    Optional[str],
    typer.Option("--dataset", "-d", help="irds:<ir_datasets id> or a folder (BEIR layout or TSV files)."),
]
QueriesOpt = Annotated[Optional[Path], typer.Option("--queries", help="Queries file (TSV qid<TAB>text or JSONL); overrides the dataset's.")]
CorpusOpt = Annotated[Optional[Path], typer.Option("--corpus", help="Corpus file (TSV id<TAB>text or JSONL); overrides the dataset's.")]
QrelsOpt = Annotated[Optional[Path], typer.Option("--qrels", help="TREC qrels file; overrides the dataset's.")]
SplitOpt = Annotated[str, typer.Option("--split", help="BEIR qrels split (qrels/<split>.tsv).")]
FixEncodingOpt = Annotated[
    bool, typer.Option("--fix-encoding/--no-fix-encoding", help="Repair MS MARCO mojibake in file corpora as ir_datasets does.")
]


def collection_from_options(
    dataset: str | None,
    queries: Path | None = None,
    corpus: Path | None = None,
    qrels: Path | None = None,
    split: str = "test",
    fix_encoding: bool = False,
) -> Collection:
    return load_collection(dataset, queries=queries, corpus=corpus, qrels=qrels, split=split, fix_encoding=fix_encoding)


def warnings_to_stderr() -> None:
    """Show Python warnings (e.g. an untrained scoring head) as one yellow line each on stderr."""
    import warnings

    from rich.console import Console

    err = Console(stderr=True)

    def show(message, category, filename, lineno, file=None, line=None):
        err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    warnings.showwarning = show
