"""``rankdistill build``: sample a distillation set (parquet) from teacher / first-stage runs and qrels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from rankdistill.commands._common import (
    ConfigOpt,
    CorpusOpt,
    DatasetOpt,
    FixEncodingOpt,
    QrelsOpt,
    QueriesOpt,
    SplitOpt,
    merge_config,
)

PATH_KEYS = ("output", "teacher_run", "first_stage_run", "qrels", "queries", "corpus")

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
    config: ConfigOpt = None,
) -> None:
    from rich.console import Console

    from rankdistill.commands._tables import distillation_set_table
    from rankdistill.distillation.builder import build_from_config, read_metadata

    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    values = merge_config(ctx, config, flags, PATH_KEYS)
    _qids_file_relative_to_config(ctx, config, values)
    path = build_from_config(_validate(values, config))
    Console().print(distillation_set_table(path, read_metadata(path)["counts"]))


def _validate(values: dict[str, Any], config: Path | None):
    """The options checked, in one line naming every bad key; a missing one also names its flag."""
    from pydantic import ValidationError

    from rankdistill.distillation.options import BuildConfig
    from rankdistill.errors import RankdistillError
    from rankdistill.util.config import describe_error

    try:
        return BuildConfig.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            problem = describe_error(error, BuildConfig)
            if error["type"] == "missing":
                flag = "--" + str(error["loc"][0]).replace("_", "-")
                problem += f" (give {flag} or set '{error['loc'][0]}' in the --config file)"
            problems.append(problem)
        raise RankdistillError(f"{config}: {'; '.join(problems)}" if config else "; ".join(problems)) from None


def _qids_file_relative_to_config(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> None:
    """``qids`` from the file is a list of ids or a file of ids: only a file is taken relative to the YAML file."""
    from rankdistill.util.config import resolve_path

    explicit = getattr(ctx.get_parameter_source("qids"), "name", None) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    qids = values.get("qids")
    if config is not None and not explicit and isinstance(qids, str):
        base = config.resolve().parent
        if (base / qids).is_file():
            values["qids"] = resolve_path(qids, base)


def register(app: typer.Typer) -> None:
    app.command("build", help=HELP)(build_command)
