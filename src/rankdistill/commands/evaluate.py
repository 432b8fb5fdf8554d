"""``rankdistill evaluate RUN...``: ir-measures table, per-query values, tests against a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.commands._common import DatasetOpt, QrelsOpt, SplitOpt

BINARY_HINT = "RR", "R", "AP", "P", "SetP", "SetR", "SetF", "Success", "infAP", "Rprec", "NumRel", "NumRelRet"


def evaluate_command(
    runs: Annotated[list[Path], typer.Argument(help="TREC run files.", show_default=False)],
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
) -> None:
    """Evaluate runs on the qrels' queries (missing queries count 0, as trec_eval -c)."""
    from rankdistill.evaluation.metrics import DEFAULT_MEASURES, evaluate, rich_table

    result = evaluate(
        runs, dataset=dataset, qrels=qrels, measures=tuple(measure) if measure else DEFAULT_MEASURES, rel=rel,
        baseline=baseline, test=test, alpha=alpha, per_query=per_query, output=output, split=split,
        zero_shot=zero_shot, candidates=candidates, depth=depth, zero_shot_max_length=zero_shot_max_length,
    )
    out = Console()
    err = Console(stderr=True)
    table = rich_table(result.to_dict())
    out.print(table)
    if per_query:
        for m in result.measures:
            pq = Table(title=f"{m} per query")
            pq.add_column("query")
            for run in result.runs:
                pq.add_column(run, justify="right")
            for qid in result.queries:
                pq.add_row(qid, *(f"{result.per_query[run][m][qid]:.4f}" for run in result.runs))
            out.print(pq)
    for run, missing in result.missing.items():
        if missing:
            err.print(f"[yellow]note:[/] {run} has no results for {len(missing)} of {len(result.queries)} qrels "
                      f"queries (counted 0), e.g. {', '.join(missing[:5])}", highlight=False, soft_wrap=True)
    if rel is None and result.graded and any(m.split("(")[0].split("@")[0] in BINARY_HINT and "rel=" not in m for m in result.measures):
        err.print("[dim]note: the qrels are graded and binary measures count grade >= 1 as relevant; TREC DL uses --rel 2[/]",
                  highlight=False)
    if output is not None:
        err.print(f"written to [bold]{output}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate_command)
