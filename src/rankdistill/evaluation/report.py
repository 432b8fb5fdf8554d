"""The run report: one Markdown file and one self-contained HTML page with the same content.

The report answers the questions a reader of a distillation run asks, in order: did the student beat
the baseline (and is it significant), on which queries did it win or lose against the teacher and
BM25, how closely does it copy the teacher's order, what does it cost per query, and with which
config. Markdown is written first; the HTML page is that Markdown rendered by markdown-it-py, with
the plots inlined as base64 PNG, so the two never disagree and the page opens with no network.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.evaluation.metrics import MARK_BETTER, MARK_WORSE
from rankdistill.util.files import atomic_write
from rankdistill.data.trec import Qrels, Run

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100", "AP")
ALPHA = 0.05
PLOTS_DIR = "report-plots"
# Packages whose versions decide the figures in a report.
VERSIONED = ("rankdistill", "torch", "transformers", "sentence-transformers", "ir-measures", "bm25s",
             "numpy", "scipy", "matplotlib")


# ----------------------------------------------------------------------------------------------- evaluation


@dataclass
class Scores:
    """What the report shows of an evaluation: means, per-query values, corrected p-values and marks."""

    measures: list[str]
    qids: list[str]
    means: dict[str, dict[str, float]]  # system -> measure -> mean over qids
    per_query: dict[str, dict[str, dict[str, float]]]  # system -> measure -> qid -> value
    pvalues: dict[str, dict[str, float]]  # system -> measure -> Holm-corrected p against the baseline
    marks: dict[str, dict[str, str]]  # system -> measure -> significance mark ("" when not significant)


def _score(runs: Mapping[str, Run], qrels: Qrels, measures: Sequence[str], baseline: str,
           test: str = "ttest") -> Scores:
    """Metrics and tests from ``rankdistill.evaluate``, so the report and ``rankdistill evaluate`` agree.

    That means: every qrels query counts (a run lacking one scores 0 there, as ``trec_eval -c``), and
    each system is tested against ``baseline`` with Holm's correction across the compared systems.
    """
    from rankdistill.evaluation.metrics import evaluate

    answered = set().union(*(run.keys() for run in runs.values()))
    if not answered & set(qrels):
        raise RankdistillError(
            "no query of the runs is judged in the qrels: check that runs and qrels use the same query ids "
            f"(runs e.g. {sorted(answered)[:3]}, qrels e.g. {sorted(qrels)[:3]})"
        )
    result = evaluate(dict(runs), qrels=qrels, measures=measures, baseline=baseline, test=test, alpha=ALPHA)
    comps = result.comparisons
    return Scores(
        measures=list(result.measures),
        qids=list(result.queries),
        means=result.means,
        per_query=result.per_query,
        pvalues={s: {m: c.p_corrected for m, c in by_m.items()} for s, by_m in comps.items()},
        marks={s: {m: comps.get(s, {}).get(m).mark if m in comps.get(s, {}) else "" for m in result.measures}
               for s in result.runs},
    )


# ----------------------------------------------------------------------------------------------- agreement


@dataclass(frozen=True)
class QueryAgreement:
    """How one query's student ranking agrees with the teacher's."""

    tau: float  # Kendall's tau-b over the documents both top-k lists hold; NaN when fewer than 2
    overlap: float  # |top-k(teacher) ∩ top-k(student)| / min(k, len(teacher), len(student))
    common: int  # documents in both top-k lists used for tau


def agreement(teacher: Run, student: Run, *, tau_k: int = 100, overlap_k: int = 10) -> dict[str, QueryAgreement]:
    """Teacher-student agreement for every query both runs answer."""
    from scipy import stats

    out: dict[str, QueryAgreement] = {}
    for qid in sorted(set(teacher) & set(student)):
        t_ids = [d for d, _ in teacher[qid][:tau_k]]
        s_ids = [d for d, _ in student[qid][:tau_k]]
        s_rank = {d: r for r, d in enumerate(s_ids)}
        common = [d for d in t_ids if d in s_rank]
        if len(common) >= 2:
            tau = float(stats.kendalltau(range(len(common)), [s_rank[d] for d in common]).statistic)
        else:
            tau = math.nan
        t_top, s_top = teacher[qid][:overlap_k], student[qid][:overlap_k]
        depth = min(overlap_k, len(t_top), len(s_top))
        shared = len({d for d, _ in t_top} & {d for d, _ in s_top})
        out[qid] = QueryAgreement(tau=tau, overlap=shared / depth if depth else math.nan, common=len(common))
    return out


# ----------------------------------------------------------------------------------------------- header


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    parts = [platform.node() or "unknown host", platform.platform(terse=True), f"{os.cpu_count()} × {cpu}"]
    torch = sys.modules.get("torch")  # only if the run already imported it; importing torch costs seconds
    if torch is not None and torch.cuda.is_available():
        parts.append(", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())))
    return " · ".join(parts)


def _versions() -> str:
    found = [f"Python {platform.python_version()}"]
    for name in VERSIONED:
        try:
            found.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            continue
    return ", ".join(found)


# ----------------------------------------------------------------------------------------------- formatting


def _cell(text: Any) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` gives 'l' or 'r' per column (first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and math.isnan(value):
        return "–"
    if isinstance(value, int):  # counts (queries, pairs) stay whole numbers
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}"


def _pvalue(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def _plain(obj: Any) -> Any:
    """Config values YAML can dump: Paths and other objects become strings, models become dicts."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


TEST_NAMES = {"ttest": "paired t-test", "wilcoxon": "Wilcoxon signed-rank test"}
THROUGHPUT_LABELS = {
    "pairs_per_s": "pairs/s",
    "ms_per_query": "ms/query",
    "queries_per_s": "queries/s",
    "usd_per_query": "USD/query",
    "usd_per_1k_queries": "USD/1k queries",
    "tokens_per_query": "tokens/query",
    "seconds": "stage time (s)",
    "device": "device",
}


# ----------------------------------------------------------------------------------------------- report


@dataclass
class _Raw:
    """A block of HTML the report writes itself (never user text): kept as is in both outputs."""

    html: str


@dataclass
class _Figure:
    name: str
    alt: str
    png: bytes


def _mark(scores: Scores, system: str, measure: str) -> str:
    return scores.marks.get(system, {}).get(measure, "")


def _throughput_table(throughput: Mapping[str, Any], teacher: str | None) -> str | None:
    """One row per system (nested mappings, e.g. per fold, give one row each); None when nothing was measured."""
    rows: list[tuple[str, Mapping[str, Any]]] = []
    for system, values in throughput.items():
        if not isinstance(values, Mapping):
            raise RankdistillError(
                f"throughput[{system!r}] must map a figure name to its value (e.g. "
                f"{{'pairs_per_s': 812.0, 'ms_per_query': 123.1}}), got {type(values).__name__}"
            )
        flat = {k: v for k, v in values.items() if not isinstance(v, Mapping)}
        if flat or not values:
            rows.append((system, flat))
        rows += [(f"{system} · {k}", v) for k, v in values.items() if isinstance(v, Mapping)]
    keys = list(dict.fromkeys(k for _, values in rows for k in values))
    if not keys:
        return None
    rows = [(name, values) for name, values in rows if values]
    reference = throughput.get(teacher, {}) if teacher else {}
    ref_ms = reference.get("ms_per_query") if isinstance(reference, Mapping) else None
    speedup = isinstance(ref_ms, (int, float)) and not isinstance(ref_ms, bool) and ref_ms > 0
    header = ["system", *(THROUGHPUT_LABELS.get(k, k) for k in keys)] + (["speed-up vs teacher"] if speedup else [])
    numeric = [all(isinstance(v.get(k), (int, float)) or k not in v for _, v in rows) for k in keys]
    align = "l" + "".join("r" if n else "l" for n in numeric) + ("r" if speedup else "")
    table = []
    for name, values in rows:
        row = [name, *(_number(values[k]) if k in values else "–" for k in keys)]
        if speedup:
            ms = values.get("ms_per_query")
            row.append(f"{ref_ms / ms:,.1f}×" if name != teacher and isinstance(ms, (int, float)) and ms > 0
                       else "–")
        table.append(row)
    return _table(header, table, align)


def _ci95(values: Sequence[float]) -> float:
    from scipy import stats

    if len(values) < 2:
        return 0.0
    return float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def _effectiveness_rows(scores: Scores, systems: Sequence[str], roles: Mapping[str, str], baseline: str,
                        primary: str) -> list[list[str]]:
    rows = []
    for system in systems:
        row = [system, roles.get(system, "")]
        for m in scores.measures:
            mark = _mark(scores, system, m)
            row.append(f"{scores.means[system][m]:.4f}" + (f" {mark}" if mark else ""))
        if system == baseline:
            row.append("–")
        else:
            a, b = scores.per_query[system][primary], scores.per_query[baseline][primary]
            wins = sum(a[q] > b[q] for q in scores.qids)
            losses = sum(a[q] < b[q] for q in scores.qids)
            row.append(f"{wins}/{len(scores.qids) - wins - losses}/{losses}")
        rows.append(row)
    return rows


def _build(
    *,
    runs: Mapping[str, Run],
    qrels: Qrels,
    baseline: str,
    teacher: str | None,
    student: str | None,
    zero_shot: str | None,
    measures: Sequence[str],
    throughput: Mapping[str, Mapping[str, Any]] | None,
    config: Any,
    title: str,
    folds: Mapping[str, Sequence[str]] | None,
    tau_k: int,
    overlap_k: int,
    test: str,
    now: _dt.datetime,
) -> tuple[list[Any], list[_Figure]]:
    """The report as a list of Markdown blocks, with figures (``_Figure``) and fixed HTML (``_Raw``) apart."""
    from rankdistill.evaluation import plots

    roles = {baseline: "baseline"}
    if teacher:
        roles[teacher] = "teacher"
    if student:
        roles[student] = "student"
    if zero_shot:
        roles[zero_shot] = "zero-shot backbone"
    systems = [baseline] + [s for s in (zero_shot, teacher, student) if s and s != baseline]
    systems += [s for s in runs if s not in systems]
    ordered = {s: runs[s] for s in systems}
    colour = plots.colours(systems, roles)
    scores = _score(ordered, qrels, measures, baseline, test)
    measures = scores.measures  # as ir-measures spells them
    primary = measures[0]
    n = len(scores.qids)
    blocks: list[Any] = []
    figures: list[_Figure] = []

    def figure(name: str, alt: str, png: bytes) -> None:
        fig = _Figure(name, alt, png)
        figures.append(fig)
        blocks.append(fig)

    blocks.append(f"# {title}")
    blocks.append(
        f"Generated {now:%Y-%m-%d %H:%M} UTC  \n"
        f"Machine: {_machine()}  \n"
        f"Packages: {_versions()}"
    )

    # --- effectiveness
    compared = len(systems) - 1
    blocks.append("## Effectiveness")
    blocks.append(
        f"Mean over the {n} judged queries (a query a run lacks counts 0). {MARK_BETTER} / {MARK_WORSE}: "
        f"significantly better / worse than the baseline `{baseline}` "
        f"({TEST_NAMES[test]}, Holm–Bonferroni correction across the {compared} compared system"
        f"{'s' if compared != 1 else ''} per measure, α = {ALPHA}). "
        f"W/T/L: queries where the system's {primary} is higher/equal/lower than the baseline's."
    )
    header = ["system", "role", *measures, f"W/T/L ({primary})"]
    blocks.append(_table(header, _effectiveness_rows(scores, systems, roles, baseline, primary),
                         "ll" + "r" * (len(header) - 2)))
    if compared:
        prow = [[s, *(_pvalue(scores.pvalues[s][m]) for m in measures)] for s in systems if s != baseline]
        blocks.append(f"Holm-corrected p-values against `{baseline}`:")
        blocks.append(_table(["system", *measures], prow))
    figure("effectiveness", f"{primary} per system",
           plots.system_bars({s: scores.means[s][primary] for s in systems},
                             {s: _ci95(list(scores.per_query[s][primary].values())) for s in systems},
                             {s: _mark(scores, s, primary) for s in systems}, colour, primary))

    # --- per-query deltas
    blocks.append(f"## Per-query differences ({primary})")
    pq = {s: scores.per_query[s][primary] for s in systems}
    comparisons = [(s, baseline) for s in (student, teacher) if s and s != baseline]
    if student and zero_shot and student != zero_shot:  # what distillation added over the untrained backbone
        comparisons.append((student, zero_shot))
    if student and teacher and student != teacher:
        comparisons.append((student, teacher))
    if comparisons:
        from rankdistill.evaluation.significance import paired_p_value

        rows = []
        for a, b in comparisons:
            deltas = [pq[a][q] - pq[b][q] for q in scores.qids]
            p_value = paired_p_value([pq[a][q] for q in scores.qids], [pq[b][q] for q in scores.qids], test)
            rows.append([f"{a} − {b}", f"{statistics.fmean(deltas):+.4f}", sum(d > 0 for d in deltas),
                         sum(d == 0 for d in deltas), sum(d < 0 for d in deltas), _pvalue(p_value)])
        blocks.append(f"p: {TEST_NAMES[test]} on the per-query {primary} of each pair, uncorrected.")
        blocks.append(_table(["difference", "mean Δ", "better", "equal", "worse", "p"], rows))
        panels = []
        lead = student or teacher
        main = {q: pq[lead][q] - pq[baseline][q] for q in scores.qids}
        overlay = ({q: pq[teacher][q] - pq[baseline][q] for q in scores.qids}
                   if student and teacher and lead != teacher else None)
        panels.append((f"{lead} − {baseline}: queries sorted by this difference", main, overlay,
                       colour[lead], f"{teacher} − {baseline}" if overlay else ""))
        if student and teacher and student != teacher:
            panels.append((f"{student} − {teacher}: queries sorted by this difference",
                           {q: pq[student][q] - pq[teacher][q] for q in scores.qids}, None,
                           plots.CONTRAST, ""))
        figure("query-deltas", f"per-query {primary} differences", plots.query_deltas(panels, primary))
        shown = [s for s in systems if s in roles]
        per_rows = []
        for q in sorted(scores.qids, key=lambda q: (-(pq[lead][q] - pq[baseline][q]), q)):
            per_rows.append([q, *(f"{pq[s][q]:.4f}" for s in shown),
                             *(f"{pq[a][q] - pq[b][q]:+.4f}" for a, b in comparisons)])
        blocks.append(_Raw("<details><summary>Per-query values</summary>"))
        blocks.append(_table(["query", *shown, *(f"{a} − {b}" for a, b in comparisons)], per_rows))
        blocks.append(_Raw("</details>"))
    else:
        blocks.append("Not shown: name a teacher or a student run to compare with the baseline.")

    # --- agreement
    blocks.append("## Teacher–student agreement")
    if teacher and student and teacher != student:
        agree = agreement(runs[teacher], runs[student], tau_k=tau_k, overlap_k=overlap_k)
        taus = [a.tau for a in agree.values() if not math.isnan(a.tau)]
        overlaps = [a.overlap for a in agree.values() if not math.isnan(a.overlap)]
        if agree:
            blocks.append(
                f"Over the {len(agree)} queries both `{teacher}` (teacher) and `{student}` (student) rank. "
                f"Kendall's τ compares the order of the documents both top-{tau_k} lists hold; "
                f"overlap is the share of the teacher's top-{overlap_k} that is also in the student's."
            )

            def describe(values: Sequence[float]) -> list[str]:
                if not values:
                    return ["–"] * 5
                return [f"{statistics.fmean(values):.4f}", f"{statistics.median(values):.4f}",
                        f"{min(values):.4f}", f"{max(values):.4f}", str(len(values))]

            blocks.append(_table(["statistic", "mean", "median", "min", "max", "queries"],
                                 [[f"Kendall's τ (top-{tau_k})", *describe(taus)],
                                  [f"top-{overlap_k} overlap", *describe(overlaps)]]))
            skipped = len(agree) - len(taus)
            if skipped:
                blocks.append(f"τ is undefined for {skipped} queries whose top-{tau_k} lists share fewer than 2 "
                              "documents; they are left out of its statistics.")
            figure("agreement", "teacher-student agreement", plots.agreement_histograms(taus, overlaps, tau_k,
                                                                                        overlap_k))
        else:
            blocks.append(f"`{teacher}` and `{student}` share no query.")
    else:
        blocks.append("Not shown: needs both a teacher and a student run.")

    # --- throughput
    blocks.append("## Throughput and cost per query")
    table = _throughput_table(throughput, teacher) if throughput else None
    if table:
        blocks.append(table)
    else:
        blocks.append("Not measured in this run.")

    # --- folds
    if folds:
        blocks.append("## Per fold")
        blocks.append("Each fold's figures are over its judged queries; marks as above, tested within the fold.")
        fold_means: dict[str, dict[str, float]] = {}
        for name, fold_qids in folds.items():
            wanted = set(fold_qids)
            fold_qrels = {q: d for q, d in qrels.items() if q in wanted}
            if not fold_qrels:
                raise RankdistillError(
                    f"fold {name!r}: none of its {len(wanted)} query ids is judged in the qrels "
                    f"(e.g. {sorted(wanted)[:3]}); folds must list evaluated query ids"
                )
            fold_runs = {s: {q: r for q, r in run.items() if q in wanted} for s, run in ordered.items()}
            fs = _score(fold_runs, fold_qrels, measures, baseline, test)
            fold_means[name] = {s: fs.means[s][primary] for s in systems}
            blocks.append(f"### {name} ({len(fs.qids)} quer{'y' if len(fs.qids) == 1 else 'ies'})")
            blocks.append(_table(header, _effectiveness_rows(fs, systems, roles, baseline, primary),
                                 "ll" + "r" * (len(header) - 2)))
        figure("folds", f"{primary} per fold", plots.fold_bars(fold_means, colour, primary))

    # --- config
    blocks.append("## Configuration")
    if config is not None:
        import yaml

        dumped = yaml.safe_dump(_plain(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
        blocks.append("```yaml\n" + dumped.rstrip("\n") + "\n```")
    else:
        blocks.append("No configuration given.")
    return blocks, figures


def _markdown(blocks: Sequence[Any]) -> str:
    parts = []
    for block in blocks:
        if isinstance(block, _Figure):
            parts.append(f"![{block.alt}]({PLOTS_DIR}/{block.name}.png)")
        elif isinstance(block, _Raw):
            parts.append(block.html)
        else:
            parts.append(block)
    return "\n\n".join(parts) + "\n"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #0072B2;padding-bottom:.2em}h2{margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.8em 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #ccc;padding:.25em .6em}th{background:#f0f4f8}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;height:auto;display:block;margin:.6em 0}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;border-radius:4px}code{font-size:.92em}
details{margin:.6em 0}summary{cursor:pointer;color:#0072B2}
"""


def _html(blocks: Sequence[Any], title: str) -> str:
    """Each Markdown block rendered with raw HTML off (system names, ids and config values are escaped,
    never markup); the report's own HTML and the figures, as base64 data URIs, go in between."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = []
    for block in blocks:
        if isinstance(block, _Figure):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></p>\n')
        elif isinstance(block, _Raw):
            body.append(block.html + "\n")
        else:
            body.append(md.render(block))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{''.join(body)}</body>\n</html>\n"
    )


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

    ``runs`` maps a system name to its run; ``baseline``, ``teacher``, ``student`` and ``zero_shot`` (the
    untrained backbone as a bi-encoder, the bar distillation must clear) name entries of it.
    The first measure is the primary one (plots, per-query deltas, W/T/L). The PNG figures are also
    written to ``output_dir/report-plots/`` for the Markdown file; the HTML page embeds them.
    ``throughput`` maps a system to its figures (``pairs_per_s``, ``ms_per_query``, ``usd_per_query``, any
    other key is shown as named); a nested mapping (e.g. per fold) becomes one row per inner key.
    ``tau_k``/``overlap_k`` set the depths of the agreement measures; ``test`` is ``ttest`` or ``wilcoxon``.
    """
    output_dir = Path(output_dir)
    if not runs:
        raise RankdistillError("no runs to report on")
    for role, name in (("baseline", baseline), ("teacher", teacher), ("student", student), ("zero_shot", zero_shot)):
        if name is not None and name not in runs:
            raise RankdistillError(f"{role} {name!r} is not one of the runs; choose one of {sorted(runs)}")
    if not qrels:
        raise RankdistillError("the qrels are empty: a report needs relevance judgements")
    measures = list(measures)
    if not measures:
        raise RankdistillError("measures is empty; give at least one, e.g. nDCG@10")
    if test not in TEST_NAMES:
        raise RankdistillError(f"test {test!r} is unknown; choose one of {', '.join(TEST_NAMES)}")
    if tau_k < 2 or overlap_k < 1:
        raise RankdistillError(f"tau_k must be >= 2 and overlap_k >= 1 (got {tau_k}, {overlap_k})")
    blocks, figures = _build(
        runs=runs, qrels=qrels, baseline=baseline, teacher=teacher, student=student, zero_shot=zero_shot,
        measures=measures,
        throughput=throughput, config=config, title=title, folds=folds, tau_k=tau_k, overlap_k=overlap_k,
        test=test, now=_dt.datetime.now(_dt.timezone.utc),
    )
    for fig in figures:
        with atomic_write(output_dir / PLOTS_DIR / f"{fig.name}.png", "wb") as handle:
            handle.write(fig.png)
    md_path, html_path = output_dir / "report.md", output_dir / "report.html"
    with atomic_write(md_path) as handle:
        handle.write(_markdown(blocks))
    page = _html(blocks, title)
    with atomic_write(html_path) as handle:
        handle.write(page)
    return md_path, html_path
