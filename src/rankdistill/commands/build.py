"""``rankdistill build``: sample a distillation set (parquet) from teacher / first-stage runs and qrels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rankdistill.commands._common import CorpusOpt, DatasetOpt, FixEncodingOpt, QrelsOpt, QueriesOpt, SplitOpt

HELP = (
    "Write a distillation set (parquet): per query, candidates sampled from a ranking, with the student's targets.\n\n"
    "Give any of --teacher-run / --first-stage-run / --qrels, as long as one supplies the --targets. "
    "The teacher run is sampled if given, else the first stage, else the judged passages.\n\n"
    "Sampling (as lightning-ir's RunDataset): top = the first k of the top d; random = k uniformly from the top d; "
    "log-random = k from the top d with weight 1/ln(1+rank); top-and-random = the first k//2 plus k-k//2 random "
    "from the rest of the top d; single-relevant = one judged-relevant passage (grade >= --relevant-grade) plus "
    "k-1 hard negatives from the top d of the --negatives run that are not judged relevant (queries without a "
    "relevant passage there are skipped and counted).\n\n"
    "Targets (higher = better): rank = d - rank + 1 (0 when unranked); score = the ranking's score; "
    "relevance = qrels grade (unjudged = 0).\n\n"
    "Pairs: compared keeps, for a pairwise loss (ranknet), only the pairs the sliding-window teacher saw in one "
    "window (replayed from the first-stage run with --teacher-window/--teacher-stride/--teacher-depth); all = every "
    "ordered pair of the targets.\n\n"
    "--config FILE.yaml sets the same options (keys are the option names, with '-' or '_'; relative paths are "
    "relative to the YAML file); flags given on the command line win over the file."
)


def build_command(
    ctx: typer.Context,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Parquet file to write (required, here or in --config).")] = None,
    teacher_run: Annotated[Optional[Path], typer.Option("--teacher-run", help="Teacher's TREC run (rank column = teacher's order).")] = None,
    first_stage_run: Annotated[Optional[Path], typer.Option("--first-stage-run", help="First-stage TREC run: hard negatives; default: the dataset's scoreddocs, if any.")] = None,
    qrels: QrelsOpt = None,
    dataset: DatasetOpt = None,
    queries: QueriesOpt = None,
    corpus: CorpusOpt = None,
    split: SplitOpt = "test",
    fix_encoding: FixEncodingOpt = False,
    depth: Annotated[int, typer.Option("--depth", help="d: candidates come from the top d of the ranking.")] = 100,
    sample_size: Annotated[int, typer.Option("--sample-size", "-k", help="k: passages per query (shorter lists keep all they have).")] = 100,
    sampling: Annotated[str, typer.Option("--sampling", help="top | random | log-random | top-and-random | single-relevant.")] = "top",
    targets: Annotated[str, typer.Option("--targets", help="rank | score | relevance: what the student learns (higher = better).")] = "rank",
    negatives: Annotated[str, typer.Option("--negatives", help="first-stage | teacher: the run single-relevant draws its hard negatives from.")] = "first-stage",
    relevant_grade: Annotated[int, typer.Option("--relevant-grade", help="Lowest qrels grade counted as relevant by single-relevant.")] = 1,
    cross_negatives: Annotated[int, typer.Option("--cross-negatives", help="Add N passages of other queries to each list, below its own candidates, so the student must read the query.")] = 0,
    pairs: Annotated[str, typer.Option("--pairs", help="all | compared: every ordered pair, or only those the sliding-window teacher compared.")] = "all",
    teacher_window: Annotated[int, typer.Option("--teacher-window", help="--pairs compared: the teacher's window size.")] = 20,
    teacher_stride: Annotated[int, typer.Option("--teacher-stride", help="--pairs compared: the teacher's stride.")] = 10,
    teacher_depth: Annotated[int, typer.Option("--teacher-depth", help="--pairs compared: first-stage candidates the teacher ranked.")] = 100,
    seed: Annotated[int, typer.Option("--seed", help="Seed; each query's generator derives from it and the query id.")] = 0,
    qids: Annotated[Optional[str], typer.Option("--qids", help="Only these queries: comma-separated ids, or a file with one id a line.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML file of these options; explicit flags win.")] = None,
) -> None:
    from pydantic import ValidationError
    from rich.console import Console
    from rich.table import Table

    from rankdistill.distillation.builder import BuildConfig, build_from_config, describe_counts, describe_validation_error, read_metadata

    flags = dict(
        output=output, teacher_run=teacher_run, first_stage_run=first_stage_run, qrels=qrels, dataset=dataset,
        queries=queries, corpus=corpus, split=split, fix_encoding=fix_encoding, depth=depth, sample_size=sample_size,
        sampling=sampling, targets=targets, negatives=negatives, relevant_grade=relevant_grade,
        cross_negatives=cross_negatives, pairs=pairs, teacher_window=teacher_window, teacher_stride=teacher_stride,
        teacher_depth=teacher_depth, seed=seed, qids=qids,
    )
    values: dict[str, Any] = _read_yaml(config) if config else {}
    for name, value in flags.items():
        # by name: typer vendors its own click, whose ParameterSource is not click's
        explicit = getattr(ctx.get_parameter_source(name), "name", None) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
        if (explicit or name not in values) and value is not None:  # None = not given (every such default is None)
            values[name] = value
    try:
        cfg = BuildConfig.model_validate(values)
    except ValidationError as exc:
        raise describe_validation_error(exc, str(config) if config else "") from None
    path = build_from_config(cfg)
    counts = read_metadata(path)["counts"]
    table = Table(title=f"distillation set {path}", show_header=False)
    for key, text in describe_counts(counts):
        table.add_row(key, text)
    Console().print(table)


def _read_yaml(path: Path) -> dict[str, Any]:
    from rankdistill.util.config import read_yaml_mapping

    values = read_yaml_mapping(path)
    base = path.parent
    for key in ("output", "teacher_run", "first_stage_run", "qrels", "queries", "corpus"):
        if isinstance(values.get(key), str) and not Path(values[key]).is_absolute():
            values[key] = str(base / values[key])
    ds = values.get("dataset")
    if isinstance(ds, str) and not ds.startswith("irds:") and not Path(ds).is_absolute():
        values["dataset"] = str(base / ds)
    q = values.get("qids")
    if isinstance(q, str) and (base / q).is_file():
        values["qids"] = str(base / q)
    return values


def register(app: typer.Typer) -> None:
    app.command("build", help=HELP)(build_command)
