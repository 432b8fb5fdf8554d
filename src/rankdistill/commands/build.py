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
    "relative to the YAML file); flags given on the command line win over the file.\n\n"
    "Several candidate sources per query (e.g. BM25 and SPLADE lists, each re-ranked by the LLM): instead of "
    "--teacher-run/--first-stage-run give --source once per source, "
    "'name=bm25,first_stage_run=bm25.run,teacher_run=llm-bm25.run[,teacher_window=20,teacher_stride=10,"
    "teacher_depth=100]', or a 'sources:' list of such mappings in --config. --merge none gives one list per source "
    "and query; --merge rrf one list per query, the teacher runs fused by reciprocal rank (k=60)."
)

SOURCE_PATH_KEYS = ("first_stage_run", "teacher_run")


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
    sources: Annotated[Optional[list[str]], typer.Option("--source", help="A candidate source, 'name=N,first_stage_run=F,teacher_run=T[,teacher_window=W,teacher_stride=S,teacher_depth=D]'; repeat for each (instead of --teacher-run/--first-stage-run).")] = None,
    merge: Annotated[str, typer.Option("--merge", help="none | rrf: with sources, one list per source and query, or one list per query fused by reciprocal rank.")] = "none",
    config: ConfigOpt = None,
) -> None:
    from rich.console import Console

    from rankdistill.commands._tables import distillation_set_table
    from rankdistill.distillation.builder import build_from_config, read_metadata

    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    flags["sources"] = _parse_sources(sources) if sources else None
    values = merge_config(ctx, config, flags, PATH_KEYS)
    _qids_file_relative_to_config(ctx, config, values)
    _source_paths_relative_to_config(ctx, config, values)
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
            if error["type"] == "missing" and error["loc"][0] == "sources":
                problem += " (give it in --source or in the --config file's sources list)"
            elif error["type"] == "missing":
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


def _parse_sources(specs: list[str]) -> list[dict[str, str]]:
    """``--source 'name=bm25,first_stage_run=a.run,teacher_run=b.run'`` -> one mapping per flag ('-' or '_' in keys)."""
    from rankdistill.errors import RankdistillError

    parsed = []
    for i, spec in enumerate(specs):
        entry: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise RankdistillError(
                    f"--source #{i + 1} {spec!r}: {part!r} is not key=value; write "
                    "'name=bm25,first_stage_run=bm25.run,teacher_run=teacher.run'"
                )
            entry[key.strip().replace("-", "_")] = value.strip()
        parsed.append(entry)
    return parsed


def _source_paths_relative_to_config(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> None:
    """Runs named in the file's ``sources:`` list are relative to the YAML file (those of --source to the cwd)."""
    from rankdistill.util.config import resolve_path

    explicit = getattr(ctx.get_parameter_source("sources"), "name", None) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    sources = values.get("sources")
    if not isinstance(sources, list):
        return
    base = config.resolve().parent if config is not None and not explicit else None
    for i, entry in enumerate(sources):
        if not isinstance(entry, dict):
            continue
        entry = sources[i] = {str(key).replace("-", "_"): value for key, value in entry.items()}
        for key in SOURCE_PATH_KEYS:
            if base is not None and isinstance(entry.get(key), str | Path):
                entry[key] = resolve_path(entry[key], base)


def register(app: typer.Typer) -> None:
    app.command("build", help=HELP)(build_command)
