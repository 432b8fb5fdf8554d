"""The run report: one Markdown file and one self-contained HTML page with the same content.

The report answers the questions a reader of a distillation run asks, in order: did the student beat
the baseline (and is it significant), on which queries did it win or lose against the teacher and
BM25, how closely does it copy the teacher's order, what does it cost per query, and with which
config. :mod:`.sections` computes each section's blocks (one function per section), :mod:`.render` turns
them into Markdown and HTML, :mod:`rankdistill.evaluation.plots` draws the figures.

A pipeline re-ranks several first stages of the same queries (e.g. BM25 and SPLADE++): each is a
:class:`CandidateSet`, and the report gives an overview of all of them, then each set's sections.
``summary.json`` beside the report holds its figures for programs.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankdistill.data.trec import Qrels, Run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.agreement import QueryAgreement, agreement
from rankdistill.evaluation.metrics import DEFAULT_MEASURES
from rankdistill.evaluation.report import sections
from rankdistill.evaluation.report.render import PLOTS_DIR, Figure, to_html, to_markdown
from rankdistill.evaluation.report.scores import ALPHA, Scores, paired_comparisons
from rankdistill.util.files import atomic_write

__all__ = ["ALPHA", "DEFAULT_MEASURES", "PLOTS_DIR", "SUMMARY_NAME", "CandidateSet", "QueryAgreement", "Scores",
           "agreement", "write_report"]

SUMMARY_NAME = "summary.json"


@dataclass
class CandidateSet:
    """One first stage and the runs that re-rank its candidates: the rows of one part of the report.

    ``first_stage`` names the run the others re-rank (the set's baseline, shown as ``first stage``);
    ``teacher``, ``student`` and ``zero_shot`` name the re-rankings, each optional.
    """

    name: str
    runs: Mapping[str, Run]
    first_stage: str
    teacher: str | None = None
    student: str | None = None
    zero_shot: str | None = None


def write_report(
    output_dir: Path,
    *,
    runs: Mapping[str, Run] | None = None,
    qrels: Qrels,
    baseline: str | None = None,
    teacher: str | None = None,
    student: str | None = None,
    zero_shot: str | None = None,
    candidate_sets: Sequence[CandidateSet] | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    throughput: Mapping[str, Mapping[str, Any]] | None = None,
    config: Any = None,
    title: str = "rankdistill report",
    folds: Mapping[str, Sequence[str]] | None = None,
    tau_k: int = 100,
    overlap_k: int = 10,
    test: str = "ttest",
) -> tuple[Path, Path]:
    """Write ``report.md``, a self-contained ``report.html`` and ``summary.json`` into ``output_dir``; return the
    paths of the first two.

    Give either ``runs`` with their roles (one set of systems) or ``candidate_sets`` (each a first stage and its
    re-rankings; with more than one, the report opens with all sets side by side, then each set's sections).

    Args:
        output_dir: The folder; the PNG figures also go to ``output_dir/report-plots/`` for the Markdown
            file (the HTML page embeds them).
        runs: System name -> its run.
        qrels: The judgements.
        baseline, teacher, student, zero_shot: Names of entries of ``runs``; ``zero_shot`` is the untrained
            backbone as a bi-encoder, the bar distillation must clear.
        candidate_sets: Instead of ``runs`` and the roles: the first stages and their re-rankings.
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
        RankdistillError: Both or neither of ``runs`` and ``candidate_sets``, a role names no run, candidate sets
            without a name of their own, empty qrels or measures, an unknown test, bad depths, or folds and runs
            that share no judged query.
    """
    measures = list(measures)
    sets = _candidate_sets(runs, baseline, teacher, student, zero_shot, candidate_sets)
    for c in sets:
        _check(c.runs, qrels, c.first_stage, c.teacher, c.student, c.zero_shot, measures, test, tau_k, overlap_k)
    role = "baseline" if candidate_sets is None else "first stage"
    scored = [(c.name, sections.systems(c.runs, qrels, baseline=c.first_stage, teacher=c.teacher, student=c.student,
                                        zero_shot=c.zero_shot, measures=measures, test=test, baseline_role=role))
              for c in sets]
    blocks = _blocks(scored, throughput=throughput, config=config, title=title, folds=folds, tau_k=tau_k,
                     overlap_k=overlap_k, now=_dt.datetime.now(_dt.timezone.utc))
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
    with atomic_write(output_dir / SUMMARY_NAME) as handle:
        json.dump(_summary(scored, title, test), handle, indent=2)
    return md_path, html_path


def _candidate_sets(runs, baseline, teacher, student, zero_shot, candidate_sets) -> list[CandidateSet]:
    """The sets to report: the given ones, or ``runs`` with their roles as one set."""
    if (runs is None) == (candidate_sets is None):
        raise RankdistillError("give either runs (with baseline, teacher, student) or candidate_sets, not both")
    if candidate_sets is None:
        if baseline is None:
            raise RankdistillError("baseline is required with runs: name the run the others are tested against")
        return [CandidateSet(baseline, runs, baseline, teacher, student, zero_shot)]
    sets = list(candidate_sets)
    if not sets:
        raise RankdistillError("candidate_sets is empty; give at least one first stage and its re-rankings")
    slugs = [_slug(c.name) for c in sets]
    if len(set(slugs)) != len(slugs):
        raise RankdistillError(f"candidate set names {[c.name for c in sets]} must differ (also as file names)")
    return sets


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", name).strip("-") or "set"


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


def _blocks(scored: list[tuple[str, sections.Systems]], *, throughput, config, title, folds, tau_k, overlap_k,
            now) -> list:
    """The report's blocks, section by section, in reading order; with several candidate sets, an overview of all
    of them, then each set's own sections one heading level down."""
    teacher = "teacher" if any(s.teacher for _, s in scored) else None
    blocks = list(sections.header(title, now))
    if len(scored) == 1:
        s = scored[0][1]
        blocks += [*_set_blocks(s, tau_k, overlap_k), *sections.throughput(throughput, teacher),
                   *sections.folds(s, folds)]
    else:
        blocks += sections.candidate_overview(scored)
        for name, s in scored:
            blocks.append(f"## Candidate set `{name}`")
            blocks += _nested([*_set_blocks(s, tau_k, overlap_k), *sections.folds(s, folds)], _slug(name))
        blocks += sections.throughput(throughput, teacher)
    return [*blocks, *sections.configuration(config)]


def _set_blocks(s: sections.Systems, tau_k: int, overlap_k: int) -> list:
    """One candidate set's sections: effectiveness, the student's paired tests, per-query differences, agreement."""
    return [
        *sections.effectiveness(s),
        *sections.paired_tests(s),
        *sections.query_differences(s),
        *sections.agreement(s, tau_k, overlap_k),
    ]


def _nested(blocks: list, prefix: str) -> list:
    """A set's sections under its own heading: headings one level down, figures named after the set."""
    out = []
    for block in blocks:
        if isinstance(block, Figure):
            block = Figure(f"{prefix}-{block.name}", f"{prefix}: {block.alt}", block.png)
        elif isinstance(block, str) and block.startswith("#"):
            block = "#" + block
        out.append(block)
    return out


def _summary(scored: list[tuple[str, sections.Systems]], title: str, test: str) -> dict[str, Any]:
    """The report's figures for programs: per candidate set, each system's role and means (with the test against the
    first stage) and the student's paired tests against the first stage, the zero-shot backbone and the teacher."""
    first = scored[0][1].scores
    out: dict[str, Any] = {"title": title, "measures": first.measures, "test": test, "alpha": ALPHA,
                           "candidate_sets": {}}
    for name, s in scored:
        entry: dict[str, Any] = {"first_stage": s.baseline, "queries": len(s.scores.qids), "systems": {}, "paired": {}}
        for system in s.names:
            entry["systems"][system] = {
                "role": s.roles.get(system, ""),
                "means": s.scores.means[system],
                "p_corrected": s.scores.pvalues.get(system, {}),
            }
        refs = sections.student_references(s)
        for ref, by_measure in (paired_comparisons(s.scores, s.student, refs, s.test) if refs else {}).items():
            entry["paired"][f"{s.student} vs {ref}"] = {
                "student": s.student, "reference": ref, "role": s.roles.get(ref, ""),
                "measures": {m: {"delta": c.delta, "p_value": c.p_value, "p_corrected": c.p_corrected,
                                 "significant": c.significant} for m, c in by_measure.items()},
            }
        out["candidate_sets"][name] = entry
    return out
