"""Report figures, drawn with matplotlib and returned as PNG bytes.

Figures are built on ``matplotlib.figure.Figure`` with the Agg canvas directly, never through pyplot:
no global backend switch, no open-figure registry, so a notebook or another thread is left alone.
"""

from __future__ import annotations

import io
import math
import textwrap
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# Colour per role, so a system keeps its colour across figures (the Okabe-Ito palette reads in grey too).
ROLE_COLOURS = {"baseline": "#999999", "first stage": "#999999", "zero-shot backbone": "#56B4E9", "teacher": "#E69F00",
                "student": "#0072B2"}
OTHER_COLOURS = ("#CC79A7", "#D55E00", "#F0E442", "#000000")
CONTRAST = "#009E73"  # bars of a student-minus-teacher difference
DPI = 100


def to_png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    # No "Software"/date metadata: the same data gives the same bytes.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return buffer.getvalue()


def _wrap(label: str, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(label, width, break_on_hyphens=False)) or label


def colours(systems: Sequence[str], roles: Mapping[str, str]) -> dict[str, str]:
    """A stable colour for every system: by role (baseline/teacher/student), else from a fixed cycle."""
    out: dict[str, str] = {}
    others = iter(OTHER_COLOURS * (len(systems) // len(OTHER_COLOURS) + 1))
    for name in systems:
        role = roles.get(name)
        out[name] = ROLE_COLOURS[role] if role in ROLE_COLOURS else next(others)
    return out


def system_bars(
    means: Mapping[str, float],
    errors: Mapping[str, float],
    marks: Mapping[str, str],
    colour: Mapping[str, str],
    measure: str,
) -> bytes:
    """Mean of ``measure`` per system, with a 95% confidence bar and the significance mark on top."""
    names = list(means)
    fig = Figure(figsize=(max(4.5, 1.6 * len(names) + 1.5), 3.8))
    ax = fig.add_subplot()
    xs = range(len(names))
    values = [means[n] for n in names]
    ax.bar(xs, values, color=[colour[n] for n in names], yerr=[errors.get(n, 0.0) for n in names],
           capsize=4, edgecolor="black", linewidth=0.5)
    for x, name, value in zip(xs, names, values, strict=True):
        label = f"{value:.4f}{(' ' + marks[name]) if marks.get(name) else ''}"
        ax.text(x, value + errors.get(name, 0.0) + 0.01, label, ha="center", va="bottom", fontsize=9)
    ax.set_xticks(list(xs), [_wrap(n) for n in names], fontsize=8)
    top = max((v + errors.get(n, 0.0) for n, v in zip(names, values, strict=True)), default=1.0)
    ax.set_ylim(0, max(top * 1.15, 0.1))
    ax.set_ylabel(measure)
    ax.set_title(f"{measure} per system (whiskers: 95% CI of the mean)", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return to_png(fig)


def query_deltas(
    panels: Sequence[tuple[str, Mapping[str, float], Mapping[str, float] | None, str, str]],
    measure: str,
) -> bytes:
    """Per-query differences as sorted bars, one panel per comparison.

    Each panel is ``(title, main, overlay, main_colour, overlay_label)``: bars for ``main`` (qid -> delta),
    sorted from best to worst; ``overlay`` (same qids, may be None) is drawn as dots on the same order so
    a reader sees whether the teacher gained on the queries where the student did.
    """
    fig = Figure(figsize=(12, 3.2 * len(panels)))
    for i, (title, main, overlay, colour, overlay_label) in enumerate(panels):
        ax = fig.add_subplot(len(panels), 1, i + 1)
        order = sorted(main, key=lambda q: (-main[q], q))
        xs = range(len(order))
        ax.bar(xs, [main[q] for q in order], color=colour, width=0.8, label=title.split(":")[0])
        if overlay:
            ax.scatter(xs, [overlay.get(q, math.nan) for q in order], color="black", s=10, zorder=3,
                       label=overlay_label)
            ax.legend(fontsize=8, loc="upper right", frameon=False)
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set_xticks(list(xs), order, rotation=90, fontsize=6 if len(order) > 40 else 8)
        ax.set_xlim(-0.7, len(order) - 0.3)
        ax.set_ylabel(f"Δ {measure}")
        ax.set_title(title, fontsize=10)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return to_png(fig)


def agreement_histograms(taus: Sequence[float], overlaps: Sequence[float], tau_k: int, overlap_k: int) -> bytes:
    """Distribution over queries of Kendall's tau and of top-k overlap between teacher and student."""
    fig = Figure(figsize=(10, 3.2))
    left, right = fig.subplots(1, 2)
    finite = [t for t in taus if not math.isnan(t)]
    # Bins of 0.05 on [-1, 1]; the axis starts just below the lowest tau so a tight cluster stays readable.
    left.hist(finite, bins=[i / 20 for i in range(-20, 21)], color=ROLE_COLOURS["student"], edgecolor="black",
              linewidth=0.5)
    low = math.floor(min(finite, default=-1.0) * 10) / 10 - 0.05
    left.set_xlim(max(-1.0, low), 1.0)
    left.set_xlabel(f"Kendall's τ (common docs of the top-{tau_k})")
    left.set_ylabel("queries")
    if finite:
        mean = sum(finite) / len(finite)
        left.axvline(mean, color="black", linestyle="--", linewidth=1)
        left.set_title(f"mean τ = {mean:.3f} over {len(finite)} queries", fontsize=10)
    right.hist(list(overlaps), bins=[(i - 0.5) / overlap_k for i in range(overlap_k + 2)],
               color=ROLE_COLOURS["teacher"], edgecolor="black", linewidth=0.5)
    right.set_xlim(-0.05, 1.05)
    right.set_xlabel(f"top-{overlap_k} overlap (shared docs / {overlap_k})")
    if overlaps:
        mean = sum(overlaps) / len(overlaps)
        right.axvline(mean, color="black", linestyle="--", linewidth=1)
        right.set_title(f"mean overlap = {mean:.3f}", fontsize=10)
    for ax in (left, right):
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return to_png(fig)


def fold_bars(table: Mapping[str, Mapping[str, float]], colour: Mapping[str, str], measure: str) -> bytes:
    """Grouped bars: one group per fold, one bar per system (``table[fold][system]`` = mean)."""
    folds = list(table)
    systems = list(dict.fromkeys(s for fold in folds for s in table[fold]))
    fig = Figure(figsize=(max(5.0, 1.6 * len(folds) + 2), 3.4))
    ax = fig.add_subplot()
    width = 0.8 / max(len(systems), 1)
    for j, system in enumerate(systems):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(folds))]
        ys = [table[f].get(system, math.nan) for f in folds]
        ax.bar(xs, ys, width=width, color=colour[system], edgecolor="black", linewidth=0.5, label=system)
        for x, y in zip(xs, ys, strict=True):
            if not math.isnan(y):
                ax.text(x, y + 0.01, f"{y:.3f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(folds)), folds)
    ax.set_ylabel(measure)
    ax.set_ylim(0, max([v for f in folds for v in table[f].values() if not math.isnan(v)] + [0.1]) * 1.12)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set_title(f"{measure} per fold", fontsize=10)
    ax.spines[["top", "right"]].set_visible(False)
    return to_png(fig)
