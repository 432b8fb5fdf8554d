"""How query and corpus files are read: TSV (``id<TAB>text``, CSV-quoted text allowed) and JSONL, line by line,
with every malformed line an error naming ``file:line``; MS MARCO's mojibake repaired as ir_datasets does.

Kept apart from :mod:`rankdistill.data.collection` (what a collection is) and :mod:`rankdistill.data.corpus`
(where passages are stored), as ir_datasets keeps ``formats/`` apart from ``datasets/`` and ``indices/``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

from rankdistill.errors import InputFormatError, RankdistillError


class _FileStreamer:
    """The minimal ir_datasets "streamer" (an object with ``stream()``) over a local file."""

    def __init__(self, path: Path | None = None, data: bytes | None = None):
        self.path, self.data = path, data

    def stream(self):
        return io.BytesIO(self.data) if self.data is not None else open(self.path, "rb")


def _fixed_lines(streamer: _FileStreamer) -> Iterator[str]:
    """MS MARCO mojibake repaired exactly as ir_datasets repairs collection.tsv (its own FixEncoding)."""
    import logging

    from ir_datasets.datasets.msmarco_passage import FixEncoding

    logging.getLogger("ir_datasets").setLevel(logging.WARNING)  # its per-stream progress lines are noise here
    for raw in FixEncoding(streamer):
        yield raw.decode("utf-8")


def fix_msmarco_encoding(text: str) -> str:
    """Repair one string (no newlines) the way ir_datasets repairs MS MARCO passages."""
    return "".join(_fixed_lines(_FileStreamer(data=text.encode("utf-8"))))


def _unquote_csv(text: str) -> str:
    """Undo CSV quoting (NovelEval's corpus.tsv) only where the field is cleanly quoted."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if '"' not in inner.replace('""', ""):
            return inner.replace('""', '"')
    return text


def read_records(path: Path, kind: str, fix_encoding: bool = False) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line, id, text)`` from a TSV (id<TAB>text) or JSONL file."""
    if not path.exists():
        raise RankdistillError(f"{path}: no such {kind} file")
    jsonl = path.suffix == ".jsonl"
    with path.open(encoding="utf-8") as handle:
        lines = _fixed_lines(_FileStreamer(path)) if fix_encoding else handle
        try:
            for lineno, line in enumerate(lines, 1):
                line = line.rstrip("\n").rstrip("\r")
                if not line.strip():
                    continue
                if jsonl:
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise InputFormatError(path, lineno, f"invalid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict):
                        raise InputFormatError(path, lineno, "expected a JSON object per line")
                    rid = next((obj[k] for k in ("_id", "id", "docid", "doc_id", "qid", "query_id") if k in obj), None)
                    if rid is None:
                        raise InputFormatError(path, lineno, 'no id field (expected "_id", "id", "docid" or "qid")')
                    body = next((obj[k] for k in ("text", "contents", "body", "query") if k in obj), None)
                    if body is None:
                        raise InputFormatError(path, lineno, 'no text field (expected "text" or "contents")')
                    title = obj.get("title") or ""
                    text = f"{title} {body}".strip() if title else str(body)
                    yield lineno, str(rid), text
                else:
                    if "\t" not in line:
                        raise InputFormatError(path, lineno, "expected 'id<TAB>text', found no tab")
                    rid, text = line.split("\t", 1)
                    if not rid.strip():
                        raise InputFormatError(path, lineno, "empty id before the tab")
                    yield lineno, rid.strip(), _unquote_csv(text)
        except UnicodeDecodeError as exc:
            raise InputFormatError(path, None, f"not UTF-8 text ({exc.reason})") from None


def read_queries(path: str | Path) -> dict[str, str]:
    """Queries from ``qid<TAB>text`` TSV or JSONL; duplicate ids are an error naming both lines."""
    path = Path(path)
    queries: dict[str, str] = {}
    lines: dict[str, int] = {}
    for lineno, qid, text in read_records(path, "queries"):
        if qid in lines:
            raise InputFormatError(path, lineno, f"query {qid!r} repeats line {lines[qid]}")
        lines[qid] = lineno
        queries[qid] = text
    return queries
