"""The report's sections, in reading order, one function each: every one returns its blocks (Markdown text,
figures, fixed HTML; see :mod:`~rankdistill.evaluation.report.render`) from the figures it computes."""

from __future__ import annotations

import datetime as _dt
import math
import os
import platform
import statistics
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rankdistill.data.trec import Qrels, Run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.metrics import MARK_BETTER, MARK_WORSE
from rankdistill.evaluation.report.render import Block, Figure, Raw, number, plain, pvalue, table
from rankdistill.evaluation.report.scores import ALPHA, Scores, ci95, paired_comparisons, score

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


@dataclass
class Systems:
    """The systems of a report, their roles and colours, and their scores on the whole qrels."""

    runs: dict[str, Run]  # system -> run, in report order: baseline, zero-shot, teacher, student, others
    qrels: Qrels
    baseline: str
    teacher: str | None
    student: str | None
    zero_shot: str | None
    roles: dict[str, str]
    colour: dict[str, str]
    scores: Scores
    test: str

    @property
    def names(self) -> list[str]:
        return list(self.runs)

    @property
    def primary(self) -> str:
        """The first measure, as ir-measures spells it: plots, per-query deltas and W/T/L use it."""
        return self.scores.measures[0]


def systems(runs: Mapping[str, Run], qrels: Qrels, *, baseline: str, teacher: str | None, student: str | None,
            zero_shot: str | None, measures: Sequence[str], test: str, baseline_role: str = "baseline") -> Systems:
    """Order the systems (baseline, zero-shot, teacher, student, then the rest), give each a role and a colour,
    and score them. ``baseline_role`` is ``first stage`` when the baseline is the run the others re-rank."""
    from rankdistill.evaluation import plots

    roles = {baseline: baseline_role}
    if teacher:
        roles[teacher] = "teacher"
    if student:
        roles[student] = "student"
    if zero_shot:
        roles[zero_shot] = "zero-shot backbone"
    names = [baseline] + [s for s in (zero_shot, teacher, student) if s and s != baseline]
    names += [s for s in runs if s not in names]
    ordered = {s: runs[s] for s in names}
    return Systems(runs=ordered, qrels=qrels, baseline=baseline, teacher=teacher, student=student, zero_shot=zero_shot,
                   roles=roles, colour=plots.colours(names, roles), scores=score(ordered, qrels, measures, baseline, test),
                   test=test)


# ----------------------------------------------------------------------------------------------- header


def header(title: str, now: _dt.datetime) -> list[Block]:
    """Title, time, machine and package versions."""
    return [f"# {title}", f"Generated {now:%Y-%m-%d %H:%M} UTC  \nMachine: {_machine()}  \nPackages: {_packages()}"]


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


def _packages() -> str:
    from rankdistill.util.versions import versions

    found = versions()
    return ", ".join([f"Python {found.pop('python')}", *(f"{name} {version}" for name, version in found.items())])


# ----------------------------------------------------------------------------------------------- effectiveness


def effectiveness(s: Systems) -> list[Block]:
    """Means with significance marks and W/T/L against the baseline, the corrected p-values, a bar chart."""
    from rankdistill.evaluation import plots

    scores, primary = s.scores, s.primary
    compared = len(s.names) - 1
    blocks: list[Block] = [
        "## Effectiveness",
        (f"Mean over the {len(scores.qids)} judged queries (a query a run lacks counts 0). {MARK_BETTER} / {MARK_WORSE}: "
         f"significantly better / worse than the {s.roles[s.baseline]} `{s.baseline}` "
         f"({TEST_NAMES[s.test]}, Holm–Bonferroni correction across the {compared} compared system"
         f"{'s' if compared != 1 else ''} per measure, α = {ALPHA}). "
         f"W/T/L: queries where the system's {primary} is higher/equal/lower than the {s.roles[s.baseline]}'s."),
        _effectiveness_table(s, scores),
    ]
    if compared:
        rows = [[name, *(pvalue(scores.pvalues[name][m]) for m in scores.measures)] for name in s.names if name != s.baseline]
        blocks.append(f"Holm-corrected p-values against `{s.baseline}`:")
        blocks.append(table(["system", *scores.measures], rows))
    png = plots.system_bars(
        {n: scores.means[n][primary] for n in s.names},
        {n: ci95(list(scores.per_query[n][primary].values())) for n in s.names},
        {n: scores.mark(n, primary) for n in s.names}, s.colour, primary)
    blocks.append(Figure("effectiveness", f"{primary} per system", png))
    return blocks


def _effectiveness_table(s: Systems, scores: Scores) -> str:
    """One row per system: role, each measure's mean (and mark), W/T/L of the primary measure."""
    primary = s.primary
    rows = []
    for system in s.names:
        row = [system, s.roles.get(system, "")]
        for m in scores.measures:
            mark = scores.mark(system, m)
            row.append(f"{scores.means[system][m]:.4f}" + (f" {mark}" if mark else ""))
        if system == s.baseline:
            row.append("–")
        else:
            a, b = scores.per_query[system][primary], scores.per_query[s.baseline][primary]
            wins = sum(a[q] > b[q] for q in scores.qids)
            losses = sum(a[q] < b[q] for q in scores.qids)
            row.append(f"{wins}/{len(scores.qids) - wins - losses}/{losses}")
        rows.append(row)
    header = ["system", "role", *scores.measures, f"W/T/L ({primary})"]
    return table(header, rows, "ll" + "r" * (len(header) - 2))


# ----------------------------------------------------------------------------------------------- paired tests


def student_references(s: Systems) -> list[str]:
    """What the student is tested against: the first stage (baseline), the zero-shot backbone, the teacher."""
    if not s.student:
        return []
    return [r for r in dict.fromkeys((s.baseline, s.zero_shot, s.teacher)) if r and r != s.student]


def paired_tests(s: Systems) -> list[Block]:
    """The student against each system it must beat, on every measure, Holm-corrected across those comparisons."""
    refs = student_references(s)
    if not refs:
        return []
    tests = paired_comparisons(s.scores, s.student, refs, s.test)
    return [
        "## Paired tests of the student",
        (f"Δ: the student's mean minus the other system's; p: {TEST_NAMES[s.test]} on the per-query values, "
         f"Holm–Bonferroni-corrected across the {len(refs)} comparison{'s' if len(refs) != 1 else ''} per measure; "
         f"{MARK_BETTER} / {MARK_WORSE}: the student is significantly better / worse (α = {ALPHA})."),
        table(["comparison", *s.scores.measures], [_paired_row(s, ref, tests[ref]) for ref in refs]),
    ]


def _paired_row(s: Systems, ref: str, by_measure: Mapping[str, Any], lead: Sequence[str] = ()) -> list[str]:
    return [*lead, f"{s.student} − {ref} ({s.roles.get(ref, '')})",
            *(f"{c.delta:+.4f}{c.mark} (p {pvalue(c.p_corrected)})" for c in (by_measure[m] for m in s.scores.measures))]


def candidate_overview(sets: Sequence[tuple[str, Systems]]) -> list[Block]:
    """Every candidate set's rows (first stage, zero-shot backbone, teacher, student) and the student's paired tests,
    side by side: what re-ranking each first stage gives."""
    measures = sets[0][1].scores.measures
    rows, paired = [], []
    for name, s in sets:
        for system in s.names:
            marks = [f"{s.scores.means[system][m]:.4f}" + (f" {mk}" if (mk := s.scores.mark(system, m)) else "")
                     for m in measures]
            rows.append([name, system, s.roles.get(system, ""), *marks])
        refs = student_references(s)
        tests = paired_comparisons(s.scores, s.student, refs, s.test) if refs else {}
        paired += [_paired_row(s, ref, tests[ref], lead=[name]) for ref in refs]
    blocks: list[Block] = [
        "## Candidate sets",
        (f"Each candidate set is a first-stage run whose top documents were re-ranked; every row of a set is over "
         f"that set's candidates, with the rest of its list kept below the re-ranked depth. {MARK_BETTER} / "
         f"{MARK_WORSE}: significantly better / worse than the set's first stage (Holm–Bonferroni across the set's "
         f"systems per measure, α = {ALPHA})."),
        table(["candidate set", "system", "role", *measures], rows, "lll" + "r" * len(measures)),
    ]
    if paired:
        blocks += [f"The student's paired tests in each set ({TEST_NAMES[sets[0][1].test]}, Holm–Bonferroni across "
                   "the set's comparisons per measure; Δ and corrected p):",
                   table(["candidate set", "comparison", *measures], paired, "ll" + "r" * len(measures))]
    return blocks


# ----------------------------------------------------------------------------------------------- per-query


def query_differences(s: Systems) -> list[Block]:
    """Paired differences of the primary measure (student and teacher against the baseline, the student against
    the zero-shot backbone and the teacher), a sorted-bar figure and every query's values."""
    from rankdistill.evaluation import plots
    from rankdistill.evaluation.significance import paired_p_value

    primary, qids = s.primary, s.scores.qids
    blocks: list[Block] = [f"## Per-query differences ({primary})"]
    pairs = _differences(s)
    if not pairs:
        return blocks + ["Not shown: name a teacher or a student run to compare with the baseline."]
    pq = {name: s.scores.per_query[name][primary] for name in s.names}
    rows = []
    for a, b in pairs:
        deltas = [pq[a][q] - pq[b][q] for q in qids]
        p_value = paired_p_value([pq[a][q] for q in qids], [pq[b][q] for q in qids], s.test)
        rows.append([f"{a} − {b}", f"{statistics.fmean(deltas):+.4f}", sum(d > 0 for d in deltas),
                     sum(d == 0 for d in deltas), sum(d < 0 for d in deltas), pvalue(p_value)])
    blocks.append(f"p: {TEST_NAMES[s.test]} on the per-query {primary} of each pair, uncorrected.")
    blocks.append(table(["difference", "mean Δ", "better", "equal", "worse", "p"], rows))
    blocks.append(Figure("query-deltas", f"per-query {primary} differences", plots.query_deltas(_panels(s, pq), primary)))
    lead = s.student or s.teacher
    shown = [name for name in s.names if name in s.roles]
    per_rows = []
    for q in sorted(qids, key=lambda q: (-(pq[lead][q] - pq[s.baseline][q]), q)):
        per_rows.append([q, *(f"{pq[name][q]:.4f}" for name in shown), *(f"{pq[a][q] - pq[b][q]:+.4f}" for a, b in pairs)])
    blocks.append(Raw("<details><summary>Per-query values</summary>"))
    blocks.append(table(["query", *shown, *(f"{a} − {b}" for a, b in pairs)], per_rows))
    blocks.append(Raw("</details>"))
    return blocks


def _differences(s: Systems) -> list[tuple[str, str]]:
    """The (system, reference) pairs whose per-query differences the report shows."""
    pairs = [(name, s.baseline) for name in (s.student, s.teacher) if name and name != s.baseline]
    if s.student and s.zero_shot and s.student != s.zero_shot:  # what distillation added over the untrained backbone
        pairs.append((s.student, s.zero_shot))
    if s.student and s.teacher and s.student != s.teacher:
        pairs.append((s.student, s.teacher))
    return pairs


def _panels(s: Systems, pq: Mapping[str, Mapping[str, float]]) -> list[tuple]:
    """The figure's panels: the student (else the teacher) against the baseline, with the teacher's gain as dots;
    the student against the teacher."""
    from rankdistill.evaluation import plots

    qids, baseline, teacher, student = s.scores.qids, s.baseline, s.teacher, s.student
    lead = student or teacher
    main = {q: pq[lead][q] - pq[baseline][q] for q in qids}
    overlay = {q: pq[teacher][q] - pq[baseline][q] for q in qids} if student and teacher and lead != teacher else None
    panels = [(f"{lead} − {baseline}: queries sorted by this difference", main, overlay, s.colour[lead],
               f"{teacher} − {baseline}" if overlay else "")]
    if student and teacher and student != teacher:
        panels.append((f"{student} − {teacher}: queries sorted by this difference",
                       {q: pq[student][q] - pq[teacher][q] for q in qids}, None, plots.CONTRAST, ""))
    return panels


# ----------------------------------------------------------------------------------------------- agreement


def agreement(s: Systems, tau_k: int, overlap_k: int) -> list[Block]:
    """Kendall's tau and top-k overlap of the student's ranking with the teacher's, and their histograms."""
    from rankdistill.evaluation import plots
    from rankdistill.evaluation.agreement import agreement as query_agreement

    teacher, student = s.teacher, s.student
    blocks: list[Block] = ["## Teacher–student agreement"]
    if not (teacher and student and teacher != student):
        return blocks + ["Not shown: needs both a teacher and a student run."]
    agree = query_agreement(s.runs[teacher], s.runs[student], tau_k=tau_k, overlap_k=overlap_k)
    if not agree:
        return blocks + [f"`{teacher}` and `{student}` share no query."]
    taus = [a.tau for a in agree.values() if not math.isnan(a.tau)]
    overlaps = [a.overlap for a in agree.values() if not math.isnan(a.overlap)]
    blocks.append(
        f"Over the {len(agree)} queries both `{teacher}` (teacher) and `{student}` (student) rank. "
        f"Kendall's τ compares the order of the documents both top-{tau_k} lists hold; "
        f"overlap is the share of the teacher's top-{overlap_k} that is also in the student's."
    )
    blocks.append(table(["statistic", "mean", "median", "min", "max", "queries"],
                        [[f"Kendall's τ (top-{tau_k})", *_describe(taus)],
                         [f"top-{overlap_k} overlap", *_describe(overlaps)]]))
    skipped = len(agree) - len(taus)
    if skipped:
        blocks.append(f"τ is undefined for {skipped} queries whose top-{tau_k} lists share fewer than 2 "
                      "documents; they are left out of its statistics.")
    blocks.append(Figure("agreement", "teacher-student agreement",
                         plots.agreement_histograms(taus, overlaps, tau_k, overlap_k)))
    return blocks


def _describe(values: Sequence[float]) -> list[str]:
    if not values:
        return ["–"] * 5
    return [f"{statistics.fmean(values):.4f}", f"{statistics.median(values):.4f}",
            f"{min(values):.4f}", f"{max(values):.4f}", str(len(values))]


# ----------------------------------------------------------------------------------------------- throughput


def throughput(figures: Mapping[str, Any] | None, teacher: str | None) -> list[Block]:
    """The measured speed and cost of each system, with the speed-up over the teacher."""
    found = _throughput_table(figures, teacher) if figures else None
    return ["## Throughput and cost per query", found or "Not measured in this run."]


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
    cells = []
    for name, values in rows:
        row = [name, *(number(values[k]) if k in values else "–" for k in keys)]
        if speedup:
            ms = values.get("ms_per_query")
            row.append(f"{ref_ms / ms:,.1f}×" if name != teacher and isinstance(ms, (int, float)) and ms > 0 else "–")
        cells.append(row)
    return table(header, cells, align)


# ----------------------------------------------------------------------------------------------- folds


def folds(s: Systems, fold_qids: Mapping[str, Sequence[str]] | None) -> list[Block]:
    """The effectiveness table within each cross-validation fold (tested within the fold), and a bar chart."""
    from rankdistill.evaluation import plots

    if not fold_qids:
        return []
    primary = s.primary
    blocks: list[Block] = ["## Per fold",
                           "Each fold's figures are over its judged queries; marks as above, tested within the fold."]
    fold_means: dict[str, dict[str, float]] = {}
    for name, qids in fold_qids.items():
        wanted = set(qids)
        fold_qrels = {q: d for q, d in s.qrels.items() if q in wanted}
        if not fold_qrels:
            raise RankdistillError(
                f"fold {name!r}: none of its {len(wanted)} query ids is judged in the qrels "
                f"(e.g. {sorted(wanted)[:3]}); folds must list evaluated query ids"
            )
        fold_runs = {system: {q: r for q, r in run.items() if q in wanted} for system, run in s.runs.items()}
        fs = score(fold_runs, fold_qrels, s.scores.measures, s.baseline, s.test)
        fold_means[name] = {system: fs.means[system][primary] for system in s.names}
        blocks.append(f"### {name} ({len(fs.qids)} quer{'y' if len(fs.qids) == 1 else 'ies'})")
        blocks.append(_effectiveness_table(s, fs))
    blocks.append(Figure("folds", f"{primary} per fold", plots.fold_bars(fold_means, s.colour, primary)))
    return blocks


# ----------------------------------------------------------------------------------------------- configuration


def configuration(config: Any) -> list[Block]:
    """The config the run was made with, as YAML."""
    if config is None:
        return ["## Configuration", "No configuration given."]
    import yaml

    dumped = yaml.safe_dump(plain(config), sort_keys=False, allow_unicode=True, default_flow_style=False)
    return ["## Configuration", "```yaml\n" + dumped.rstrip("\n") + "\n```"]
