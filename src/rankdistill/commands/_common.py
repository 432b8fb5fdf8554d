"""Options shared by several verbs, so every command names data the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

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


def warnings_to_stderr() -> None:
    """Show Python warnings (e.g. an untrained scoring head) as one yellow line each on stderr."""
    import warnings

    from rich.console import Console

    err = Console(stderr=True)

    def show(message, category, filename, lineno, file=None, line=None):
        err.print(f"[yellow]warning:[/] {message}", highlight=False, soft_wrap=True)

    warnings.showwarning = show


ConfigOpt = Annotated[
    Optional[Path],
    typer.Option("--config", "-c", help="YAML file of these options (keys are the option names, '-' or '_'; paths relative to the file); flags given here win."),
]


def merge_config(ctx: typer.Context, config: Path | None, flags: dict[str, Any], path_keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """The one ``--config`` idiom: the YAML file's values, overridden by every flag given on the command line.

    A flag counts as given when click saw it on the command line (or in the environment), whatever its value;
    a flag left at its default never hides the file's value. Relative paths in the file (``path_keys``, and
    ``dataset`` unless it is an ``irds:`` id) are taken relative to the file.
    """
    from rankdistill.util.config import read_yaml_mapping, resolve_dataset, resolve_path

    values: dict[str, Any] = {}
    if config is not None:
        values = read_yaml_mapping(config)
        base = config.resolve().parent
        for key in path_keys:
            value = values.get(key)
            if isinstance(value, (str, Path)):
                values[key] = resolve_path(value, base)
            elif isinstance(value, list):
                values[key] = [resolve_path(v, base) if isinstance(v, (str, Path)) else v for v in value]
        if isinstance(values.get("dataset"), str):
            values["dataset"] = resolve_dataset(values["dataset"], base)
    for name, value in flags.items():
        # by name: typer vendors its own click, whose ParameterSource is not click's
        source = getattr(ctx.get_parameter_source(name), "name", None)
        explicit = source in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
        if explicit or (name not in values and value is not None):
            values[name] = value
    return values
