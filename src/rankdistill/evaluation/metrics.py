"""Evaluate TREC runs with ir-measures: means, per-query values, paired tests against a baseline.

Every run is evaluated on the qrels' queries. A query in the qrels that a run does not answer counts
0 for every measure, the way ``trec_eval -c`` averages (ir-measures alone would average only over the
queries the run contains); queries in a run but not in the qrels are ignored. That also aligns the
per-query vectors of all runs over the same queries, which the paired tests need.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rankdistill.data.trec import Qrels, Run, read_qrels, read_run
from rankdistill.errors import RankdistillError
from rankdistill.evaluation.significance import TESTS, holm, paired_p_value
from rankdistill.util.files import atomic_write

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100", "AP")
MARK_BETTER = "*"
MARK_WORSE = "†"


def parse_measures(measures: Sequence[str], rel: int | None = None) -> list:
    """ir-measures objects for measure strings; ``rel`` sets the relevance level of binary measures
    (RR, R, AP, P, ...) that do not name one themselves. An invalid string is an error naming it."""
    import ir_measures

    if isinstance(measures, str):
        measures = [measures]
    if rel is not None and rel < 1:  # rel=0 would count judged non-relevant passages as relevant
        raise RankdistillError(f"rel must be at least 1 (the lowest grade that counts as relevant; TREC DL: 2), got {rel}")
    parsed = []
    for text in measures:
        try:
            measure = ir_measures.parse_measure(text.strip())
            measure.validate_params()
        except (ValueError, NameError, AssertionError, KeyError, SyntaxError) as exc:
            raise RankdistillError(
                f"measure {text!r} is not a valid ir-measures measure ({exc}); "
                "examples: nDCG@10, RR(rel=2)@10, P(rel=2)@10, R@100, AP (see https://ir-measur.es)"
            ) from None
        if rel is not None and "rel" in measure.SUPPORTED_PARAMS and "rel" not in measure.params:
            measure = measure(rel=rel)
        if measure not in parsed:
            parsed.append(measure)
    if not parsed:
        raise RankdistillError("name at least one measure")
    return parsed


@dataclass
class Comparison:
    """One run against the baseline on one measure (``p_corrected``: Holm over the compared runs)."""

    delta: float
    p_value: float
    p_corrected: float
    significant: bool

    @property
    def mark(self) -> str:
        if not self.significant:
            return ""
        return MARK_BETTER if self.delta > 0 else MARK_WORSE


@dataclass
class EvaluationResult:
    """Means and per-query values of every run on every measure, and tests against the baseline."""

    runs: list[str]
    measures: list[str]
    queries: list[str]
    per_query: dict[str, dict[str, dict[str, float]]]  # run -> measure -> qid -> value
    paths: dict[str, str] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)  # run -> qrels queries it lacks
    baseline: str | None = None
    test: str = "ttest"
    alpha: float = 0.05
    comparisons: dict[str, dict[str, Comparison]] = field(default_factory=dict)  # run -> measure -> test
    graded: bool = False  # the qrels use grades above 1, so the relevance level of binary measures matters

    def mean(self, run: str, measure: str) -> float:
        values = self.per_query[run][measure]
        return sum(values.values()) / len(values) if values else 0.0

    @property
    def means(self) -> dict[str, dict[str, float]]:
        return {run: {m: self.mean(run, m) for m in self.measures} for run in self.runs}

    def legend(self) -> str:
        if self.baseline is None:
            return f"mean over the {len(self.queries)} qrels queries (a query missing from a run counts 0)"
        test = "paired t-test" if self.test == "ttest" else "Wilcoxon signed-rank test"
        compared = len(self.runs) - 1
        return (
            f"{MARK_BETTER} significantly better / {MARK_WORSE} significantly worse than {self.baseline} "
            f"({test}, Holm-Bonferroni over {compared} compared run{'s' if compared != 1 else ''} per measure, "
            f"alpha={self.alpha}); p = corrected p-value; {len(self.queries)} qrels queries, a query missing "
            "from a run counts 0"
        )

    def cell(self, run: str, measure: str) -> str:
        text = f"{self.mean(run, measure):.4f}"
        comp = self.comparisons.get(run, {}).get(measure)
        if comp is not None:
            text += f"{comp.mark} (p={comp.p_corrected:.3g})"
        return text

    # ------------------------------------------------------------------ export
    def to_dict(self, per_query: bool = False) -> dict:
        out: dict = {
            "measures": self.measures,
            "queries": len(self.queries),
            "baseline": self.baseline,
            "test": self.test if self.baseline else None,
            "alpha": self.alpha if self.baseline else None,
            "legend": self.legend(),
            "runs": {},
        }
        for run in self.runs:
            entry: dict = {"path": self.paths.get(run), "missing_queries": self.missing.get(run, []), "measures": {}}
            for m in self.measures:
                item: dict = {"mean": self.mean(run, m)}
                comp = self.comparisons.get(run, {}).get(m)
                if comp is not None:
                    item.update(delta=comp.delta, p_value=comp.p_value, p_corrected=comp.p_corrected, significant=comp.significant)
                entry["measures"][m] = item
            if per_query:
                entry["per_query"] = self.per_query[run]
            out["runs"][run] = entry
        return out

    def to_rows(self, per_query: bool = False) -> list[dict]:
        """Long format: one row per run and measure (query ``all``), then per-query rows if asked."""
        rows = []
        for run in self.runs:
            for m in self.measures:
                comp = self.comparisons.get(run, {}).get(m)
                rows.append({
                    "run": run, "measure": m, "query": "all", "value": self.mean(run, m),
                    "delta": comp.delta if comp else "", "p_value": comp.p_value if comp else "",
                    "p_corrected": comp.p_corrected if comp else "", "significant": comp.significant if comp else "",
                })
        if per_query:
            for run in self.runs:
                for m in self.measures:
                    for qid in self.queries:
                        rows.append({"run": run, "measure": m, "query": qid, "value": self.per_query[run][m][qid],
                                     "delta": "", "p_value": "", "p_corrected": "", "significant": ""})
        return rows

    def to_markdown(self, per_query: bool = False) -> str:
        lines = ["| run | " + " | ".join(self.measures) + " |", "|---|" + "---:|" * len(self.measures)]
        for run in self.runs:
            lines.append(f"| {run} | " + " | ".join(self.cell(run, m) for m in self.measures) + " |")
        lines += ["", self.legend(), ""]
        if per_query:
            for m in self.measures:
                lines += [f"### {m} per query", "", "| query | " + " | ".join(self.runs) + " |",
                          "|---|" + "---:|" * len(self.runs)]
                for qid in self.queries:
                    lines.append(f"| {qid} | " + " | ".join(f"{self.per_query[r][m][qid]:.4f}" for r in self.runs) + " |")
                lines.append("")
        return "\n".join(lines)

    def write(self, path: str | Path, per_query: bool = False) -> Path:
        """Write CSV, JSON or Markdown, chosen by the extension (atomically)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".csv":
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(self.to_rows()[0]), lineterminator="\n")
            writer.writeheader()
            writer.writerows(self.to_rows(per_query))
            text = buffer.getvalue()
        elif suffix == ".json":
            text = json.dumps(self.to_dict(per_query), indent=2) + "\n"
        elif suffix in (".md", ".markdown"):
            text = self.to_markdown(per_query) + "\n"
        else:
            raise RankdistillError(f"{path}: unknown output format {suffix or '(none)'}; use .csv, .json or .md")
        with atomic_write(path) as handle:
            handle.write(text)
        return path


def load_qrels(dataset: str | Path | None = None, qrels: str | Path | Qrels | None = None, split: str = "test") -> Qrels:
    """The judgements to evaluate against: a qrels file or mapping, else the dataset's.

    Args:
        dataset: ``irds:<id>`` or a folder (whose qrels file is read without its corpus).
        qrels: A TREC qrels file or a ``{qid: {docid: grade}}`` mapping; wins over ``dataset``.
        split: A BEIR folder's qrels split (``qrels/<split>.tsv``).

    Returns:
        ``{qid: {docid: grade}}``, not empty.

    Raises:
        RankdistillError: Neither is given, the dataset has no qrels, or they are empty.
    """
    from rankdistill.data.collection import IRDS_PREFIX, QRELS_NAMES, load_collection

    if isinstance(qrels, Mapping):
        found = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    elif qrels is not None:
        found = read_qrels(qrels)
    elif dataset is None:
        raise RankdistillError("evaluation needs relevance judgments: give qrels (a file) or dataset (irds:<id> or a folder)")
    elif not str(dataset).startswith(IRDS_PREFIX) and Path(str(dataset)).is_dir():
        folder = Path(str(dataset))
        candidates = [folder / "qrels" / f"{split}.tsv", *(folder / name for name in QRELS_NAMES)]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise RankdistillError(f"{folder}: no qrels (looked for qrels/{split}.tsv, {', '.join(QRELS_NAMES)}); give qrels (a file)")
        found = read_qrels(path)
    else:
        collection = load_collection(str(dataset), split=split)
        if not collection.qrels:
            raise RankdistillError(f"{collection.name} has no relevance judgments; give qrels (a file)")
        found = collection.qrels
    if not found:
        raise RankdistillError("the qrels are empty; nothing to evaluate against")
    return found


def check_test(test: str, alpha: float) -> None:
    """Raise a :class:`RankdistillError` unless ``test`` is a known paired test and ``0 < alpha < 1``."""
    if test not in TESTS:
        raise RankdistillError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if not 0 < alpha < 1:
        raise RankdistillError(f"alpha must lie between 0 and 1, not {alpha}")


def _labels(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else str(p) for p in paths]


def resolve_runs(
    runs: Sequence[str | Path] | Mapping[str, Run | str | Path] | str | Path,
    *,
    names: Sequence[str] | None = None,
    baseline: str | Path | None = None,
) -> tuple[dict[str, Run | str | Path], str | None]:
    """Label every run and find the baseline among them.

    Args:
        runs: TREC run files (labelled by file name, or by their path where two share a name) or a
            ``{label: Run or path}`` mapping.
        names: Labels for ``runs`` given as files, in the same order.
        baseline: One of the runs (by path or label), or another run file, which is then added first.

    Returns:
        ``{label: Run or path}`` in evaluation order, and the baseline's label (None without a baseline).

    Raises:
        RankdistillError: No run, ``names`` that do not match the runs, or a baseline that is neither a run
            nor a file.
    """
    if isinstance(runs, (str, Path)):
        runs = [runs]
    if isinstance(runs, Mapping):
        sources: dict[str, Run | str | Path] = dict(runs)
    else:
        paths = [Path(r) for r in runs]
        if names is not None and (len(names) != len(paths) or len(set(names)) != len(names)):
            raise RankdistillError(f"give one distinct name per run: {len(paths)} runs, names {list(names)}")
        sources = dict(zip(list(names) if names is not None else _labels(paths), paths))
    if not sources:
        raise RankdistillError("name at least one run to evaluate")
    if baseline is None:
        return sources, None
    wanted = Path(baseline)
    for label, src in sources.items():
        if label == str(baseline) or (isinstance(src, (str, Path)) and Path(src).resolve() == wanted.resolve()):
            return sources, label
    if not wanted.is_file():
        raise RankdistillError(f"baseline {str(baseline)!r} is neither one of the runs ({', '.join(sources)}) nor a run file")
    label = wanted.name if wanted.name not in sources else str(wanted)
    return {label: wanted, **sources}, label


def evaluate(
    runs: Sequence[str | Path] | Mapping[str, Run | str | Path] | str | Path,
    *,
    dataset: str | Path | None = None,
    qrels: str | Path | Qrels | None = None,
    measures: Sequence[str] = DEFAULT_MEASURES,
    rel: int | None = None,
    baseline: str | Path | None = None,
    test: str = "ttest",
    alpha: float = 0.05,
    per_query: bool = False,
    output: str | Path | None = None,
    split: str = "test",
    names: Sequence[str] | None = None,
) -> EvaluationResult:
    """Evaluate runs on the qrels' queries; with ``baseline``, test every other run against it.

    Only measures the runs it is given: a run made for the comparison (e.g. the zero-shot backbone, see
    ``rankdistill evaluate --zero-shot``) is one more entry of ``runs``.

    Args:
        runs: TREC run files or a ``{label: Run or path}`` mapping (see :func:`resolve_runs`).
        dataset, qrels, split: Where the judgements come from (see :func:`load_qrels`).
        measures: ir-measures measure strings (see :func:`parse_measures`).
        rel: The relevance level of binary measures that name none (TREC DL: 2).
        baseline: The run the others are tested against (see :func:`resolve_runs`).
        test: ``ttest`` or ``wilcoxon``, paired; p-values Holm-corrected over the compared runs.
        alpha: Significance level, after the correction.
        per_query: Add per-query values to ``output``.
        output: Write CSV, JSON or Markdown, chosen by the extension.
        names: Labels for ``runs`` given as files.

    Returns:
        Means, per-query values and tests of every run.

    Raises:
        RankdistillError: A bad measure, test or alpha, missing or empty judgements, a bad baseline or names,
            an unreadable run, or an unknown output format.
    """
    check_test(test, alpha)
    parsed = parse_measures(measures, rel)
    qrels_map = load_qrels(dataset, qrels, split)
    sources, baseline_label = resolve_runs(runs, names=names, baseline=baseline)
    queries = sorted(qrels_map, key=_natural_key)
    result = EvaluationResult(runs=list(sources), measures=[str(m) for m in parsed], queries=queries, per_query={},
                              baseline=baseline_label, test=test, alpha=alpha,
                              graded=any(g > 1 for docs in qrels_map.values() for g in docs.values()))
    for label, src in sources.items():
        if isinstance(src, (str, Path)):
            result.paths[label] = str(src)
        _measure(result, label, read_run(src) if isinstance(src, (str, Path)) else src, parsed, qrels_map)
    if baseline_label is not None:
        _compare(result)
    if output is not None:
        result.write(output, per_query=per_query)
    return result


def _measure(result: EvaluationResult, label: str, run: Run, parsed: list, qrels: Qrels) -> None:
    """One run's per-query values on every qrels query (0 where the run has none, as ``trec_eval -c``)."""
    import ir_measures

    scored = {qid: {docid: float(score) for docid, score in ranked} for qid, ranked in run.items() if qid in qrels and ranked}
    values: dict[str, dict[str, float]] = {name: {} for name in result.measures}
    for metric in ir_measures.iter_calc(parsed, qrels, scored):
        values[str(metric.measure)][metric.query_id] = float(metric.value)
    result.missing[label] = [q for q in result.queries if not scored.get(q)]
    result.per_query[label] = {name: {q: values[name].get(q, 0.0) for q in result.queries} for name in result.measures}


def _compare(result: EvaluationResult) -> None:
    """Every run against the baseline on every measure, Holm-corrected over the compared runs."""
    baseline, queries = result.baseline, result.queries
    others = [r for r in result.runs if r != baseline]
    base = result.per_query[baseline]
    for name in result.measures:
        base_vec = [base[name][q] for q in queries]
        p_values = [paired_p_value([result.per_query[r][name][q] for q in queries], base_vec, result.test) for r in others]
        for run_label, p, p_corr in zip(others, p_values, holm(p_values)):
            delta = result.mean(run_label, name) - result.mean(baseline, name)
            result.comparisons.setdefault(run_label, {})[name] = Comparison(delta, p, p_corr, p_corr < result.alpha)


def _natural_key(qid: str):
    """Numeric ids in numeric order (2 before 10), others after them in text order."""
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)
