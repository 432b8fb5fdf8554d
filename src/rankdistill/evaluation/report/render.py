"""The report's blocks and how they become text: Markdown tables and numbers, the Markdown file, the HTML page.

A report is a list of blocks: Markdown text, :class:`Figure` (a PNG) and :class:`Raw` (HTML the report writes
itself). Markdown is written first; the HTML page is that Markdown rendered by markdown-it-py, with the figures
inlined as base64 PNG, so the two never disagree and the page opens with no network.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PLOTS_DIR = "report-plots"


@dataclass
class Raw:
    """A block of HTML the report writes itself (never user text): kept as is in both outputs."""

    html: str


@dataclass
class Figure:
    name: str
    alt: str
    png: bytes


Block = str | Raw | Figure


# ----------------------------------------------------------------------------------------------- Markdown pieces


def _cell(text: Any) -> str:
    return str(text).replace("|", r"\|").replace("\n", " ")


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` gives 'l' or 'r' per column (first left, rest right)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: Any) -> str:
    """A figure for a table: counts whole, large values without decimals, small ones to 4 significant digits."""
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


def pvalue(p: float) -> str:
    return "<0.0001" if p < 1e-4 else f"{p:.4f}"


def plain(obj: Any) -> Any:
    """Config values YAML can dump: Paths and other objects become strings, models become dicts."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [plain(v) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    return str(obj)


# ----------------------------------------------------------------------------------------------- documents


def to_markdown(blocks: Sequence[Block]) -> str:
    """The Markdown file: figures as links to ``PLOTS_DIR/<name>.png``."""
    parts = []
    for block in blocks:
        if isinstance(block, Figure):
            parts.append(f"![{block.alt}]({PLOTS_DIR}/{block.name}.png)")
        elif isinstance(block, Raw):
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


def to_html(blocks: Sequence[Block], title: str) -> str:
    """Each Markdown block rendered with raw HTML off (system names, ids and config values are escaped,
    never markup); the report's own HTML and the figures, as base64 data URIs, go in between."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = []
    for block in blocks:
        if isinstance(block, Figure):
            data = base64.b64encode(block.png).decode("ascii")
            body.append(f'<p><img src="data:image/png;base64,{data}" alt="{html.escape(block.alt)}"></p>\n')
        elif isinstance(block, Raw):
            body.append(block.html + "\n")
        else:
            body.append(md.render(block))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{''.join(body)}</body>\n</html>\n"
    )
