"""The study's table: one row per variant, one column per (candidate set, measure), tested against the reference.

A cell is the mean over every evaluated query (under cross-validation each query is a test query of exactly one
fold, so this is the mean over the folds' queries), a query's value first averaged over the study's seeds. Each
variant is compared with the reference variant by a paired test over the same queries, and the p-values of one
column are Holm-corrected over the variants compared. Below the variants, the baselines of the reference's own
runs (first stage, zero-shot backbone, teacher) measured in the same study.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rankdistill.evaluation.significance import holm, paired_p_value

BASELINES = ("first stage", "zero-shot", "teacher")


@dataclass
class Column:
    where: str  # evaluation set ("cv" under cross-validation)
    candidates: str  # candidate set
    system: str  # report row: student, student+first-stage
    measure: str

    @property
    def label(self) -> str:
        system = "" if self.system == "student" else f" {self.system}"
        return f"{self.candidates}{system} {self.measure}"


@dataclass
class Cell:
    mean: float
    low: float  # 95% confidence interval of the mean over queries (t distribution)
    high: float
    delta: float | None = None  # against the reference
    p: float | None = None
    p_holm: float | None = None
    per_seed: list[float] = field(default_factory=list)  # the mean under each seed (fold split), when several


@dataclass
class Row:
    name: str
    kind: str  # variant | reference | baseline
    cells: dict[str, Cell] = field(default_factory=dict)
    cpu_seconds: float | None = None
    steps_run: int | None = None
    steps_reused: int | None = None


def _ci(values: np.ndarray) -> tuple[float, float]:
    from scipy import stats

    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean
    half = float(stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean - half, mean + half


def read_metrics(folder: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """A variant's metrics.json files: evaluation set -> candidate set -> its content."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for path in sorted(Path(folder, "eval").glob("*/*/metrics.json")):
        out.setdefault(path.parent.parent.name, {})[path.parent.name] = json.loads(path.read_text())
    return out


def per_query(metrics_by_seed: list[dict], where: str, candidates: str, run: str, measure: str) -> dict[str, float]:
    """A run's per-query values, each averaged over the seeds that evaluated it."""
    sums: dict[str, list[float]] = {}
    for metrics in metrics_by_seed:
        entry = metrics.get(where, {}).get(candidates, {}).get("runs", {}).get(run)
        if entry is None:
            continue
        for qid, value in entry.get("per_query", {}).get(measure, {}).items():
            sums.setdefault(qid, []).append(float(value))
    return {qid: sum(v) / len(v) for qid, v in sums.items()}


def _per_seed(metrics_by_seed: list[dict], col: Column, qids: list[str]) -> list[float]:
    """The column's mean under each seed (each its own fold split): the spread a single split hides."""
    if len(metrics_by_seed) < 2:
        return []
    out = []
    for metrics in metrics_by_seed:
        values = per_query([metrics], col.where, col.candidates, col.system, col.measure)
        out.append(float(np.mean([values.get(q, 0.0) for q in qids])))
    return out


def columns_of(metrics: dict, systems: list[str], measures: list[str] | None) -> list[Column]:
    """Every (evaluation set, candidate set, system, measure) the reference's metrics hold, in report order."""
    out = []
    for where, sets in metrics.items():
        for candidates, summary in sets.items():
            for system in systems:
                if system not in summary["runs"]:
                    continue
                for measure in measures or summary["measures"]:
                    if measure in summary["measures"]:
                        out.append(Column(where, candidates, system, measure))
    return out


def build_table(variants: dict[str, list[dict]], reference: str, systems: list[str], measures: list[str] | None,
                test: str, costs: dict[str, dict[str, float]]) -> tuple[list[Column], list[Row]]:
    """Rows for every variant (``variants``: name -> its metrics per seed, in study order) and the baselines."""
    columns = columns_of(variants[reference][0], systems, measures)
    rows = [Row(name, "reference" if name == reference else "variant", **costs.get(name, {})) for name in variants]
    for col in columns:
        ref = per_query(variants[reference], col.where, col.candidates, col.system, col.measure)
        qids = sorted(ref)
        p_values: dict[str, float] = {}
        for row in rows:
            values = per_query(variants[row.name], col.where, col.candidates, col.system, col.measure)
            if not values:
                continue
            vec = np.array([values.get(q, 0.0) for q in qids])
            low, high = _ci(vec)
            cell = Cell(float(vec.mean()), low, high, per_seed=_per_seed(variants[row.name], col, qids))
            if row.kind == "variant":
                base = np.array([ref[q] for q in qids])
                cell.delta = float(vec.mean() - base.mean())
                cell.p = paired_p_value(vec, base, test)
                p_values[row.name] = cell.p
            row.cells[col.label] = cell
        for name, p in zip(p_values, holm(list(p_values.values()))):
            next(r for r in rows if r.name == name).cells[col.label].p_holm = p
    for baseline in BASELINES:
        row = Row(baseline, "baseline")
        for col in columns:
            run = col.candidates if baseline == "first stage" else baseline
            values = per_query(variants[reference], col.where, col.candidates, run, col.measure)
            if values:
                vec = np.array([values[q] for q in sorted(values)])
                row.cells[col.label] = Cell(float(vec.mean()), *_ci(vec))
        if row.cells:
            rows.append(row)
    return columns, rows


def against_baselines(variants: dict[str, list[dict]], columns: list[Column], test: str) -> str:
    """Each variant against its own baselines, per column: the difference from the zero-shot backbone and from the
    first stage with the paired test's p, Holm-corrected over the variants of a column (the acceptance questions:
    did distillation add anything to the backbone, and does the re-ranker keep its first stage's quality?)."""
    head = ["variant", *(f"{c.label}: vs {b}" for c in columns for b in ("zero-shot", "first stage"))]
    cells: dict[str, list[str]] = {name: [] for name in variants}
    for col in columns:
        for baseline in ("zero-shot", col.candidates):
            found: dict[str, tuple[float, float]] = {}
            for name, metrics in variants.items():
                student = per_query(metrics, col.where, col.candidates, col.system, col.measure)
                base = per_query(metrics, col.where, col.candidates, baseline, col.measure)
                if student and base:
                    qids = sorted(base)
                    a, b = np.array([student.get(q, 0.0) for q in qids]), np.array([base[q] for q in qids])
                    found[name] = (float(a.mean() - b.mean()), paired_p_value(a, b, test))
            corrected = dict(zip(found, holm([p for _, p in found.values()])))
            for name in variants:
                if name in found:
                    delta, p = found[name][0], corrected[name]
                    cells[name].append(f"{delta:+.4f} (p={p:.3f}){' †' if p < 0.05 else ''}")
                else:
                    cells[name].append("–")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join([name, *cells[name]]) + " |" for name in variants]
    return "\n".join(lines) + "\n"


def markdown(columns: list[Column], rows: list[Row], reference: str, test: str) -> str:
    """The table as Markdown: mean, then (delta vs the reference, Holm-corrected p) for every other variant."""
    head = ["variant", *(c.label for c in columns), "CPU s", "steps run / reused"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = []
        for col in columns:
            cell = row.cells.get(col.label)
            if cell is None:
                cells.append("–")
                continue
            spread = f" [{min(cell.per_seed):.4f}–{max(cell.per_seed):.4f}]" if cell.per_seed else ""
            if cell.p_holm is None:
                cells.append(f"{cell.mean:.4f}{spread}")
            else:
                mark = " †" if cell.p_holm < 0.05 else ""
                cells.append(f"{cell.mean:.4f}{spread} ({cell.delta:+.4f}, p={cell.p_holm:.3f}){mark}")
        name = f"**{row.name}** (reference)" if row.kind == "reference" else row.name
        if row.kind == "baseline":
            name = f"_{row.name}_"
        cpu = f"{row.cpu_seconds:,.0f}" if row.cpu_seconds is not None else ""
        steps = f"{row.steps_run} / {row.steps_reused}" if row.steps_run is not None else ""
        lines.append("| " + " | ".join([name, *cells, cpu, steps]) + " |")
    lines.append("")
    lines.append(f"Mean over the evaluated queries (each a test query of one fold), averaged over seeds. In brackets: "
                 f"the difference from **{reference}** and the Holm-corrected p of a paired {test} over the same "
                 "queries (corrected over the variants of a column); † p < 0.05; [low–high]: the lowest and highest seed's "
                 "mean (each seed its own fold split), when the study has several. Baselines (italics) are the "
                 "reference's own runs. CPU s: the CPU time of every step the variant needs (all threads), including "
                 "steps shared with other variants; steps run / reused: run for this variant / taken from another "
                 "variant's identical step.")
    return "\n".join(lines) + "\n"


def to_json(columns: list[Column], rows: list[Row]) -> dict[str, Any]:
    return {
        "columns": [c.__dict__ | {"label": c.label} for c in columns],
        "rows": [{"name": r.name, "kind": r.kind, "cpu_seconds": r.cpu_seconds, "steps_run": r.steps_run,
                  "steps_reused": r.steps_reused, "cells": {k: v.__dict__ for k, v in r.cells.items()}} for r in rows],
    }


def plot(columns: list[Column], rows: list[Row]) -> bytes:
    """Each variant's mean with its 95% interval, one panel per candidate set (first measure), baselines as lines."""
    from matplotlib.figure import Figure

    from rankdistill.evaluation.plots import to_png

    panels = []
    for col in columns:
        if all(p.candidates != col.candidates or p.where != col.where for p in panels):
            panels.append(col)
    variants = [r for r in rows if r.kind != "baseline"]
    fig = Figure(figsize=(max(5.0, 0.5 * len(variants) + 2.5), 3.2 * len(panels)), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    styles = {"first stage": ":", "zero-shot": "--", "teacher": "-."}
    for ax, col in zip(axes, panels):
        xs = list(range(len(variants)))
        cells = [r.cells.get(col.label) for r in variants]
        for x, row, cell in zip(xs, variants, cells):
            if cell is None:
                continue
            colour = "tab:red" if row.kind == "reference" else "tab:blue"
            ax.errorbar([x], [cell.mean], yerr=[[cell.mean - cell.low], [cell.high - cell.mean]], fmt="o",
                        color=colour, capsize=3)
        for row in rows:
            if row.kind == "baseline" and col.label in row.cells:
                ax.axhline(row.cells[col.label].mean, color="grey", linestyle=styles.get(row.name, "-"), linewidth=1,
                           label=row.name)
        ax.set_xticks(xs, [r.name for r in variants], rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(col.measure)
        ax.set_title(f"{col.candidates} ({col.where}): mean and 95% interval over queries", fontsize=9)
        ax.legend(fontsize=7, loc="lower right")
    return to_png(fig)


def curve_plot(key: str, points: list[tuple[float, str]], columns: list[Column], rows: list[Row]) -> bytes:
    """One measure against one numeric key (e.g. LLM-ranked training queries per fold), one line per column of the
    table, each point with its 95% interval; the baselines of the first column as grey lines."""
    from matplotlib.figure import Figure

    from rankdistill.evaluation.plots import to_png

    by_name = {r.name: r for r in rows}
    fig = Figure(figsize=(5.5, 3.6), layout="constrained")
    ax = fig.subplots()
    for col in columns:
        xs, means, lows, highs = [], [], [], []
        for x, name in points:
            cell = by_name[name].cells.get(col.label) if name in by_name else None
            if cell is not None:
                xs.append(x), means.append(cell.mean), lows.append(cell.mean - cell.low), highs.append(cell.high - cell.mean)
        ax.errorbar(xs, means, yerr=[lows, highs], marker="o", capsize=3, label=col.label)
    styles = {"first stage": ":", "zero-shot": "--", "teacher": "-."}
    for row in rows:
        if row.kind == "baseline" and columns and columns[0].label in row.cells:
            ax.axhline(row.cells[columns[0].label].mean, color="grey", linestyle=styles.get(row.name, "-"), linewidth=1,
                       label=f"{row.name} ({columns[0].candidates})")
    ax.set_xlabel(key)
    ax.set_ylabel(columns[0].measure if columns else "")
    ax.set_title(f"{key}: mean and 95% interval over queries", fontsize=9)
    ax.legend(fontsize=7)
    return to_png(fig)
