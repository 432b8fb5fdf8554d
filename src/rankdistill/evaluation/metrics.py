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

from rankdistill.errors import RankdistillError
from rankdistill.util.files import atomic_write
from rankdistill.data.trec import Qrels, Run, read_qrels, read_run
from rankdistill.evaluation.significance import TESTS, holm, paired_p_value

DEFAULT_MEASURES = ("nDCG@10", "RR@10", "R@100", "AP")
MARK_BETTER = "*"
MARK_WORSE = "†"


def parse_measures(measures: Sequence[str], rel: int | None = None) -> list:
    """ir-measures objects for measure strings; ``rel`` sets the relevance level of binary measures
    (RR, R, AP, P, ...) that do not name one themselves. An invalid string is an error naming it."""
    import ir_measures

    if isinstance(measures, str):
        measures = [measures]
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


def _qrels_for(dataset: str | Path | None, qrels: str | Path | Qrels | None, split: str) -> Qrels:
    """Qrels from a file/mapping, else from the dataset (a folder's qrels file is read without its corpus)."""
    from rankdistill.data.collection import IRDS_PREFIX, QRELS_NAMES, load_collection

    if isinstance(qrels, Mapping):
        return {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
    if qrels is not None:
        return read_qrels(qrels)
    if dataset is None:
        raise RankdistillError("evaluation needs relevance judgments: pass --qrels FILE or --dataset irds:<id>/FOLDER")
    spec = str(dataset)
    if not spec.startswith(IRDS_PREFIX) and Path(spec).is_dir():
        folder = Path(spec)
        candidates = [folder / "qrels" / f"{split}.tsv", *(folder / name for name in QRELS_NAMES)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise RankdistillError(f"{folder}: no qrels (looked for qrels/{split}.tsv, {', '.join(QRELS_NAMES)}); pass --qrels FILE")
        return read_qrels(found)
    collection = load_collection(spec, split=split)
    if not collection.qrels:
        raise RankdistillError(f"{collection.name} has no relevance judgments; pass --qrels FILE")
    return collection.qrels


def _labels(paths: Sequence[Path]) -> list[str]:
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else str(p) for p in paths]


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
    zero_shot: str | None = None,
    candidates: str | Path | None = None,
    depth: int = 100,
    zero_shot_max_length: int | None = None,
) -> EvaluationResult:
    """Evaluate runs on the qrels' queries; with ``baseline``, test every other run against it.

    ``runs`` are TREC run files (labelled by file name, or by ``names`` in the same order) or a
    ``{label: Run or path}`` mapping.
    ``baseline`` is one of the runs (by path or label), or another run file, which is then added first.
    ``output`` writes CSV/JSON/Markdown by extension; ``per_query`` adds per-query values to it.
    ``zero_shot`` (a model name, folder or hub id) adds that model used untrained as a bi-encoder over the
    top ``depth`` of ``candidates`` (default: the baseline, else the first run), labelled
    ``zero-shot:<model>``: the bar a distilled student must clear. It needs ``dataset`` for the texts.
    ``zero_shot_max_length``: the tokens of each text it reads (give the student's passage budget).
    """
    import ir_measures

    if test not in TESTS:
        raise RankdistillError(f"unknown test {test!r}; choose one of {', '.join(TESTS)}")
    if not 0 < alpha < 1:
        raise RankdistillError(f"alpha must lie between 0 and 1, not {alpha}")
    parsed = parse_measures(measures, rel)
    measure_names = [str(m) for m in parsed]
    qrels_map = _qrels_for(dataset, qrels, split)
    if not qrels_map:
        raise RankdistillError("the qrels are empty; nothing to evaluate against")

    # runs: label -> (path or None, Run or path)
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
    baseline_label: str | None = None
    if baseline is not None:
        wanted = Path(baseline)
        for label, src in sources.items():
            if label == str(baseline) or (isinstance(src, (str, Path)) and Path(src).resolve() == wanted.resolve()):
                baseline_label = label
                break
        if baseline_label is None:
            if not wanted.is_file():
                raise RankdistillError(
                    f"baseline {str(baseline)!r} is neither one of the runs ({', '.join(sources)}) nor a run file"
                )
            label = wanted.name if wanted.name not in sources else str(wanted)
            sources = {label: wanted, **sources}
            baseline_label = label
    if zero_shot is not None:  # over the baseline's candidates (it may be named by label), else the first run's
        pool = candidates if candidates is not None else sources[baseline_label or next(iter(sources))]
        sources[f"zero-shot:{zero_shot}"] = _zero_shot_run(zero_shot, pool, dataset, depth, zero_shot_max_length)

    queries = sorted(qrels_map, key=_natural_key)
    result = EvaluationResult(runs=list(sources), measures=measure_names, queries=queries, per_query={},
                              baseline=baseline_label, test=test, alpha=alpha,
                              graded=any(g > 1 for docs in qrels_map.values() for g in docs.values()))
    for label, src in sources.items():
        run = read_run(src) if isinstance(src, (str, Path)) else src
        if isinstance(src, (str, Path)):
            result.paths[label] = str(src)
        scored = {qid: {docid: float(score) for docid, score in ranked} for qid, ranked in run.items() if qid in qrels_map and ranked}
        values: dict[str, dict[str, float]] = {name: {} for name in measure_names}
        for metric in ir_measures.iter_calc(parsed, qrels_map, scored):
            values[str(metric.measure)][metric.query_id] = float(metric.value)
        result.missing[label] = [q for q in queries if not scored.get(q)]
        # trec_eval -c: every qrels query counts, 0 where the run has no value
        result.per_query[label] = {name: {q: values[name].get(q, 0.0) for q in queries} for name in measure_names}

    if baseline_label is not None:
        others = [r for r in result.runs if r != baseline_label]
        base = result.per_query[baseline_label]
        for name in measure_names:
            base_vec = [base[name][q] for q in queries]
            p_values = [paired_p_value([result.per_query[r][name][q] for q in queries], base_vec, test) for r in others]
            for run_label, p, p_corr in zip(others, p_values, holm(p_values)):
                delta = result.mean(run_label, name) - result.mean(baseline_label, name)
                result.comparisons.setdefault(run_label, {})[name] = Comparison(delta, p, p_corr, p_corr < alpha)
    if output is not None:
        result.write(output, per_query=per_query)
    return result


def _zero_shot_run(model: str, candidates: Run | str | Path, dataset: str | Path | None, depth: int,
                   max_length: int | None = None) -> Run:
    """``model`` as an untrained bi-encoder over the top ``depth`` candidates (the embedding teacher's cosines)."""
    import tempfile

    from rankdistill.teacher.teach import teach

    if dataset is None:
        raise RankdistillError("--zero-shot needs --dataset: the bi-encoder reads the query and passage texts")
    if isinstance(candidates, (str, Path)) and not Path(candidates).is_file():
        raise RankdistillError(f"--candidates {candidates}: no such run file")
    with tempfile.TemporaryDirectory(prefix="rankdistill-zero-shot-") as folder:
        result = teach(candidates, dataset=dataset, output=Path(folder), backend="embedding", model=model, depth=depth,
                       tag=f"zero-shot-{Path(str(model)).name}",
                       backend_options={"max_length": max_length} if max_length else None)
        return dict(result.run)


def _natural_key(qid: str):
    """Numeric ids in numeric order (2 before 10), others after them in text order."""
    return (0, int(qid), "") if qid.isdigit() else (1, 0, qid)


def rich_table(summary: dict, title: str = "Evaluation"):
    """A terminal table from ``EvaluationResult.to_dict()`` (also what the pipeline saves as metrics.json)."""
    from rich.table import Table

    table = Table(title=title, caption=summary.get("legend"), caption_justify="left")
    table.add_column("run", style="bold", overflow="fold")
    for m in summary["measures"]:
        table.add_column(m, justify="right")
    for run, entry in summary["runs"].items():
        cells = []
        for m in summary["measures"]:
            item = entry["measures"][m]
            text = f"{item['mean']:.4f}"
            if "p_corrected" in item:
                mark = (MARK_BETTER if item["delta"] > 0 else MARK_WORSE) if item["significant"] else ""
                text += f"{mark} (p={item['p_corrected']:.3g})"
                style = "green" if mark == MARK_BETTER else "red" if mark else ""
                text = f"[{style}]{text}[/]" if style else text
            cells.append(text)
        table.add_row(f"{run} (baseline)" if run == summary.get("baseline") else run, *cells)
    return table
