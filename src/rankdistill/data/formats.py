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


def _fixer():
    """ir_datasets' own MS MARCO repair (FixEncoding), its per-stream progress lines silenced."""
    import logging

    from ir_datasets.datasets.msmarco_passage import FixEncoding

    logging.getLogger("ir_datasets").setLevel(logging.WARNING)
    return FixEncoding


def _fixed_lines(streamer: _FileStreamer) -> Iterator[str]:
    """MS MARCO mojibake repaired exactly as ir_datasets repairs collection.tsv (its own FixEncoding)."""
    for raw in _fixer()(streamer):
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


def open_input(path: Path, kind: str):
    """``path`` opened for binary reading, or an error that says what is wrong with it (missing, a folder, unreadable)."""
    if not path.exists():
        raise RankdistillError(f"{path}: no such {kind} file")
    if path.is_dir():
        raise RankdistillError(f"{path}: is a folder, expected a {kind} file")
    try:
        return path.open("rb")
    except OSError as exc:
        raise RankdistillError(f"{path}: cannot read the {kind} file ({exc.strerror})") from None


def read_lines(path: str | Path, kind: str, fix_encoding: bool = False) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of each line of a UTF-8 text file, line ending removed.

    Lines are split on ``\\n`` only (a stray carriage return or form feed inside a passage is text, not a line
    break), and every line is decoded alone, so bad UTF-8 and NUL bytes (a binary file) name their line.
    """
    path = Path(path)
    handle = open_input(path, kind)
    lineno = 0
    with handle:
        lines = iter(_fixer()(_FileStreamer(path)) if fix_encoding else handle)
        while True:
            try:
                raw = next(lines)
            except StopIteration:
                return
            except UnicodeDecodeError as exc:  # FixEncoding decodes before it yields: the bad line is the next one
                raise InputFormatError(path, lineno + 1, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            lineno += 1
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputFormatError(path, lineno, f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
            if "\0" in text:
                raise InputFormatError(path, lineno, f"a NUL byte, so this is not a text {kind} file")
            yield lineno, text.rstrip("\n").rstrip("\r")


_ID_KEYS = ("_id", "id", "docid", "doc_id", "qid", "query_id")
_TEXT_KEYS = ("text", "contents", "body", "query")


def _check_id(path: Path, lineno: int, rid: object) -> str:
    """An id as text: a string or an integer, not empty, without white space (TREC runs separate columns by it)."""
    if isinstance(rid, bool) or not isinstance(rid, (str, int)):
        raise InputFormatError(path, lineno, f"the id must be a string or an integer, found {type(rid).__name__}")
    rid = str(rid)
    if not rid:
        raise InputFormatError(path, lineno, "empty id")
    if any(c.isspace() for c in rid):
        raise InputFormatError(path, lineno, f"id {rid!r} contains white space, which TREC runs cannot hold")
    return rid


def _jsonl_record(path: Path, lineno: int, line: str) -> tuple[str, str]:
    """``(id, text)`` of one JSONL line: BEIR's ``_id``/``title``/``text`` and the common alternatives."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputFormatError(path, lineno, f"invalid JSON ({exc.msg})") from None
    except RecursionError:
        raise InputFormatError(path, lineno, "invalid JSON (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise InputFormatError(path, lineno, "expected a JSON object per line")
    key = next((k for k in _ID_KEYS if k in obj), None)
    if key is None:
        raise InputFormatError(path, lineno, 'no id field (expected "_id", "id", "docid" or "qid")')
    rid = _check_id(path, lineno, obj[key])
    field = next((k for k in _TEXT_KEYS if k in obj), None)
    if field is None:
        raise InputFormatError(path, lineno, 'no text field (expected "text" or "contents")')
    body, title = obj[field], obj.get("title")
    if not isinstance(body, str):
        raise InputFormatError(path, lineno, f'"{field}" must be a string, found {type(body).__name__}')
    if title is not None and not isinstance(title, str):
        raise InputFormatError(path, lineno, f'"title" must be a string, found {type(title).__name__}')
    text = f"{title} {body}".strip() if title else body
    try:
        (rid + text).encode("utf-8")
    except UnicodeEncodeError as exc:  # JSON can spell lone surrogates (\\ud800) that no UTF-8 file or store holds
        raise InputFormatError(path, lineno, f"a lone surrogate {exc.object[exc.start]!r} is not text") from None
    return rid, text


def read_records(path: Path, kind: str, fix_encoding: bool = False) -> Iterator[tuple[int, str, str]]:
    """Yield ``(line, id, text)`` from a TSV (id<TAB>text) or JSONL file; a file without records is an error."""
    path = Path(path)
    jsonl = path.suffix == ".jsonl"
    found = False
    for lineno, line in read_lines(path, kind, fix_encoding):
        if not line.strip():
            continue
        if jsonl:
            rid, text = _jsonl_record(path, lineno, line)
        else:
            if "\t" not in line:
                raise InputFormatError(path, lineno, "expected 'id<TAB>text', found no tab")
            rid, text = line.split("\t", 1)
            rid, text = _check_id(path, lineno, rid.strip()), _unquote_csv(text)
        found = True
        yield lineno, rid, text
    if not found:
        raise InputFormatError(path, None, f"no {kind}: the file is empty (expected {'JSON objects' if jsonl else 'id<TAB>text lines'})")


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
