"""The run report: one Markdown file and one self-contained HTML page with the same content.

The report answers the questions a reader of a distillation run asks, in order: did the student beat
the baseline (and is it significant), on which queries did it win or lose against the teacher and
BM25, how closely does it copy the teacher's order, what does it cost per query, and with which
config. :mod:`.sections` computes each section's blocks (one function per section), :mod:`.render` turns
them into Markdown and HTML, :mod:`rankdistill.evaluation.plots` draws the figures.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rankdistill.data.trec import Qrels, Run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.agreement import QueryAgreement, agreement
from rankdistill.evaluation.metrics import DEFAULT_MEASURES
from rankdistill.evaluation.report import sections
from rankdistill.evaluation.report.render import PLOTS_DIR, Figure, to_html, to_markdown
from rankdistill.evaluation.report.scores import ALPHA, Scores
from rankdistill.util.files import atomic_write

__all__ = ["ALPHA", "DEFAULT_MEASURES", "PLOTS_DIR", "QueryAgreement", "Scores", "agreement", "write_report"]


def write_report(
    output_dir: Path,
    *,
    runs: Mapping[str, Run],
    qrels: Qrels,
    baseline: str,
    teacher: str | None,
    student: str | None,
    zero_shot: str | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    throughput: Mapping[str, Mapping[str, Any]] | None = None,
    config: Any = None,
    title: str = "rankdistill report",
    folds: Mapping[str, Sequence[str]] | None = None,
    tau_k: int = 100,
    overlap_k: int = 10,
    test: str = "ttest",
) -> tuple[Path, Path]:
    """Write ``report.md`` and a self-contained ``report.html`` into ``output_dir``; return both paths.

    Args:
        output_dir: The folder; the PNG figures also go to ``output_dir/report-plots/`` for the Markdown
            file (the HTML page embeds them).
        runs: System name -> its run.
        qrels: The judgements.
        baseline, teacher, student, zero_shot: Names of entries of ``runs``; ``zero_shot`` is the untrained
            backbone as a bi-encoder, the bar distillation must clear.
        measures: ir-measures strings; the first is the primary one (plots, per-query deltas, W/T/L).
        throughput: System -> its figures (``pairs_per_s``, ``ms_per_query``, ``usd_per_query``, any other key
            is shown as named); a nested mapping (e.g. per fold) becomes one row per inner key.
        config: The run's config (a mapping or a pydantic model), shown as YAML.
        title: The page's title.
        folds: Fold name -> its query ids, for a per-fold section.
        tau_k, overlap_k: The depths of the agreement measures.
        test: ``ttest`` or ``wilcoxon``.

    Returns:
        The paths of ``report.md`` and ``report.html``.

    Raises:
        RankdistillError: A role names no run, empty qrels or measures, an unknown test, bad depths, or folds
            and runs that share no judged query.
    """
    measures = list(measures)
    _check(runs, qrels, baseline, teacher, student, zero_shot, measures, test, tau_k, overlap_k)
    blocks = _blocks(runs=runs, qrels=qrels, baseline=baseline, teacher=teacher, student=student, zero_shot=zero_shot,
                     measures=measures, throughput=throughput, config=config, title=title, folds=folds,
                     tau_k=tau_k, overlap_k=overlap_k, test=test, now=_dt.datetime.now(_dt.timezone.utc))
    output_dir = Path(output_dir)
    for fig in (b for b in blocks if isinstance(b, Figure)):
        with atomic_write(output_dir / PLOTS_DIR / f"{fig.name}.png", "wb") as handle:
            handle.write(fig.png)
    md_path, html_path = output_dir / "report.md", output_dir / "report.html"
    with atomic_write(md_path) as handle:
        handle.write(to_markdown(blocks))
    page = to_html(blocks, title)
    with atomic_write(html_path) as handle:
        handle.write(page)
    return md_path, html_path


def _check(runs, qrels, baseline, teacher, student, zero_shot, measures, test, tau_k, overlap_k) -> None:
    if not runs:
        raise RankdistillError("no runs to report on")
    for role, name in (("baseline", baseline), ("teacher", teacher), ("student", student), ("zero_shot", zero_shot)):
        if name is not None and name not in runs:
            raise RankdistillError(f"{role} {name!r} is not one of the runs; choose one of {sorted(runs)}")
    if not qrels:
        raise RankdistillError("the qrels are empty: a report needs relevance judgements")
    if not measures:
        raise RankdistillError("measures is empty; give at least one, e.g. nDCG@10")
    if test not in sections.TEST_NAMES:
        raise RankdistillError(f"test {test!r} is unknown; choose one of {', '.join(sections.TEST_NAMES)}")
    if tau_k < 2 or overlap_k < 1:
        raise RankdistillError(f"tau_k must be >= 2 and overlap_k >= 1 (got {tau_k}, {overlap_k})")


def _blocks(*, runs, qrels, baseline, teacher, student, zero_shot, measures, throughput, config, title, folds, tau_k,
            overlap_k, test, now) -> list:
    """The report's blocks, section by section, in reading order."""
    s = sections.systems(runs, qrels, baseline=baseline, teacher=teacher, student=student, zero_shot=zero_shot,
                         measures=measures, test=test)
    return [
        *sections.header(title, now),
        *sections.effectiveness(s),
        *sections.query_differences(s),
        *sections.agreement(s, tau_k, overlap_k),
        *sections.throughput(throughput, teacher),
        *sections.folds(s, folds),
        *sections.configuration(config),
    ]
