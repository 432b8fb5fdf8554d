"""``rankdistill evaluate RUN...``: ir-measures table, per-query values, tests against a baseline.

``--zero-shot MODEL`` makes one more run here, before measuring: the model used untrained as a bi-encoder (the
embedding teacher's cosines) over the baseline's candidates; ``evaluate()`` itself only measures the runs it
is given.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer

from rankdistill.commands._common import ConfigOpt, DatasetOpt, QrelsOpt, SplitOpt, merge_config

BINARY_HINT = "RR", "R", "AP", "P", "SetP", "SetR", "SetF", "Success", "infAP", "Rprec", "NumRel", "NumRelRet"
PATH_KEYS = ("runs", "qrels", "output", "candidates")


def evaluate_command(
    ctx: typer.Context,
    runs: Annotated[
        Optional[list[Path]], typer.Argument(help="TREC run files (required, here or as 'runs:' in --config).", show_default=False)
    ] = None,
    config: ConfigOpt = None,
    dataset: DatasetOpt = None,
    qrels: QrelsOpt = None,
    split: SplitOpt = "test",
    measure: Annotated[
        Optional[list[str]],
        typer.Option("--measure", "-m", help="ir-measures measure, repeatable (default nDCG@10, RR@10, R@100, AP)."),
    ] = None,
    rel: Annotated[
        Optional[int], typer.Option("--rel", help="Relevance level of binary measures that name none (TREC DL: 2).")
    ] = None,
    baseline: Annotated[Optional[Path], typer.Option("--baseline", help="Run the others are tested against.")] = None,
    test: Annotated[str, typer.Option("--test", help="Paired test: ttest or wilcoxon.")] = "ttest",
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level (after Holm correction).")] = 0.05,
    per_query: Annotated[bool, typer.Option("--per-query", help="Show and write per-query values.")] = False,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write .csv, .json or .md.")] = None,
    zero_shot: Annotated[
        Optional[str],
        typer.Option("--zero-shot", help="Also evaluate this model (e.g. the student's backbone, minilm-l6) used untrained "
                     "as a bi-encoder over the same candidates: the bar distillation must clear. Needs --dataset."),
    ] = None,
    candidates: Annotated[
        Optional[Path], typer.Option("--candidates", help="Run whose top --depth the --zero-shot model re-ranks (default: the baseline, else the first run).")
    ] = None,
    depth: Annotated[int, typer.Option("--depth", "-k", help="Candidates per query for --zero-shot.")] = 100,
    zero_shot_max_length: Annotated[
        Optional[int], typer.Option("--zero-shot-max-length", help="Tokens of each text the --zero-shot model reads "
                                    "(give the student's passage budget; default: the model's own limit).")
    ] = None,
    zero_shot_dtype: Annotated[
        Literal["auto", "float32", "bfloat16", "float16"],
        typer.Option("--zero-shot-dtype", help="Precision of the --zero-shot forward: auto is bf16 on GPUs and on CPUs "
                     "with native bf16, as the re-ranker's; float32 for the exact cosines."),
    ] = "auto",
) -> None:
    """Evaluate runs on the qrels' queries (missing queries count 0, as trec_eval -c).

    In a --config file the keys are these options' names ('runs:' for the run files); flags win over the file.
    """
    from rich.console import Console

    from rankdistill.commands._tables import per_query_tables, rich_table
    from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate

    v = _settings(ctx, config)
    measures = tuple(v["measure"]) if v["measure"] else DEFAULT_MEASURES
    runs_, baseline_, qrels_ = v["runs"], v["baseline"], v["qrels"]
    if v["zero_shot"] is not None:
        runs_, baseline_, qrels_ = _with_zero_shot(v, measures)
    result = evaluate(
        runs_, dataset=v["dataset"], qrels=qrels_, measures=measures, rel=v["rel"], baseline=baseline_,
        test=v["test"], alpha=v["alpha"], per_query=v["per_query"], output=v["output"], split=v["split"],
    )
    out = Console()
    err = Console(stderr=True)
    out.print(rich_table(result.to_dict()))
    if v["per_query"]:
        for table in per_query_tables(result):
            out.print(table)
    for run, missing in result.missing.items():
        if missing:
            err.print(f"[yellow]note:[/] {run} has no results for {len(missing)} of {len(result.queries)} qrels "
                      f"queries (counted 0), e.g. {', '.join(missing[:5])}", highlight=False, soft_wrap=True)
    if v["rel"] is None and result.graded and any(m.split("(")[0].split("@")[0] in BINARY_HINT and "rel=" not in m
                                                  for m in result.measures):
        err.print("[dim]note: the qrels are graded and binary measures count grade >= 1 as relevant; TREC DL uses --rel 2[/]",
                  highlight=False)
    if v["output"] is not None:
        err.print(f"written to [bold]{v['output']}[/]", highlight=False)


def _settings(ctx: typer.Context, config: Path | None) -> dict[str, Any]:
    """The flags merged over the --config file and checked; every option present (None when not given)."""
    from rankdistill.errors import RankdistillError
    from rankdistill.util.config import validate

    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    values = merge_config(ctx, config, flags, PATH_KEYS)
    _baseline_file_relative_to_config(ctx, config, values)
    values = validate(_config_model(), values, config).model_dump()
    if not values["runs"]:
        raise RankdistillError("name at least one run: give RUN files here or 'runs:' in a --config file")
    return values


def _baseline_file_relative_to_config(ctx: typer.Context, config: Path | None, values: dict[str, Any]) -> None:
    """``baseline`` from the file is a run's label or a run file: only a file is taken relative to the YAML file."""
    from rankdistill.util.config import resolve_path

    explicit = getattr(ctx.get_parameter_source("baseline"), "name", None) in ("COMMANDLINE", "ENVIRONMENT", "PROMPT")
    baseline = values.get("baseline")
    if config is not None and not explicit and isinstance(baseline, str):
        base = config.resolve().parent
        if (base / baseline).is_file():
            values["baseline"] = resolve_path(baseline, base)


def _config_model() -> type:
    """The --config file's keys: every option of this command, typed as the option is."""
    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(evaluate_command)
    fields = {name: (hint, None) for name, hint in hints.items() if name not in ("ctx", "config", "return")}
    return create_model("EvaluateConfig", __config__=ConfigDict(extra="forbid"), **fields)


def _with_zero_shot(v: dict[str, Any], measures: tuple[str, ...]):
    """The runs with the zero-shot backbone's added (labelled ``zero-shot:<model>``), the baseline's label and the
    qrels; everything ``evaluate`` checks is checked first, so a typo fails before the model runs."""
    from rankdistill.evaluation.metrics import check_test, load_qrels, parse_measures, resolve_runs

    check_test(v["test"], v["alpha"])
    parse_measures(measures, v["rel"])
    qrels = load_qrels(v["dataset"], v["qrels"], v["split"])
    sources, baseline = resolve_runs(v["runs"], baseline=v["baseline"])
    # over the baseline's candidates (it may be named by label), else the first run's
    pool = v["candidates"] if v["candidates"] is not None else sources[baseline or next(iter(sources))]
    sources[f"zero-shot:{v['zero_shot']}"] = _zero_shot_run(v["zero_shot"], pool, v["dataset"], v["depth"],
                                                            v["zero_shot_max_length"], v["zero_shot_dtype"])
    return sources, baseline, qrels


def _zero_shot_run(model: str, candidates, dataset: str | None, depth: int, max_length: int | None, dtype: str = "auto"):
    """``model`` as an untrained bi-encoder over the top ``depth`` candidates (the embedding teacher's cosines), in
    ``dtype``; the precision it resolved to is printed, since ``auto`` differs between machines."""
    from rich.console import Console

    import tempfile

    from rankdistill.errors import RankdistillError
    from rankdistill.teacher.teach import teach

    if dataset is None:
        raise RankdistillError("--zero-shot needs --dataset: the bi-encoder reads the query and passage texts")
    if isinstance(candidates, (str, Path)) and not Path(candidates).is_file():
        raise RankdistillError(f"--candidates {candidates}: no such run file")
    with tempfile.TemporaryDirectory(prefix="rankdistill-zero-shot-") as folder:
        result = teach(candidates, dataset=dataset, output=Path(folder), backend="embedding", model=model, depth=depth,
                       tag=f"zero-shot-{Path(str(model)).name}",
                       backend_options={"dtype": dtype, **({"max_length": max_length} if max_length else {})})
        Console(stderr=True).print(f"[dim]zero-shot {model}: {result.stats.get('dtype', dtype)} forward[/]", highlight=False)
        return dict(result.run)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
