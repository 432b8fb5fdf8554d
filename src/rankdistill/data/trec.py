"""TREC runs and qrels, read and written exactly.

A run maps each query id to its ranked list of ``(docid, score)``, best first. Reading sorts each
query by score (descending) and breaks ties by the file's rank column, then by file order, so
the order a file states is the order we keep; writing numbers ranks 1..n in list order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from rankdistill.data.formats import read_lines
from rankdistill.errors import InputFormatError, RankdistillError
from rankdistill.util.files import atomic_write

Run = dict[str, list[tuple[str, float]]]
Qrels = dict[str, dict[str, int]]


def _plain(number: str) -> str:
    """``number`` if written as trec_eval reads numbers: ASCII, no ``_`` (Python alone reads ``1_0`` and ``١``)."""
    if not number.isascii() or "_" in number:
        raise ValueError(number)
    return number


def read_run(path: str | Path, depth: int | None = None) -> Run:
    """Read a six-column TREC run (``qid Q0 docid rank score tag``); a file without a ranked document is an error."""
    path = Path(path)
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    seen: dict[str, dict[str, int]] = {}
    for lineno, line in read_lines(path, "run"):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 6:
            raise InputFormatError(
                path, lineno, f"expected 6 columns 'qid Q0 docid rank score tag', found {len(parts)}"
            )
        qid, _, docid, rank_s, score_s, _ = parts
        try:
            rank = int(_plain(rank_s))
        except ValueError:
            raise InputFormatError(path, lineno, f"rank {rank_s!r} is not an integer") from None
        try:
            score = float(_plain(score_s))
        except ValueError:
            raise InputFormatError(path, lineno, f"score {score_s!r} is not a number") from None
        if math.isnan(score):
            raise InputFormatError(path, lineno, "score is NaN")
        first = seen.setdefault(qid, {}).setdefault(docid, lineno)
        if first != lineno:
            raise InputFormatError(
                path, lineno, f"document {docid!r} appears twice for query {qid!r} (first on line {first})"
            )
        rows.setdefault(qid, []).append((-score, rank, lineno, docid))
    if not rows:
        raise InputFormatError(path, None, "the run is empty (expected lines 'qid Q0 docid rank score tag')")
    run: Run = {}
    for qid, items in rows.items():
        items.sort()
        ranked = [(docid, -neg) for neg, _, _, docid in items]
        run[qid] = ranked[:depth] if depth else ranked
    return run


def write_run(run: Mapping[str, Iterable[tuple[str, float]]], path: str | Path, tag: str = "rankdistill") -> Path:
    """Write a run atomically; ranks follow list order, scores are written so they round-trip."""
    path = Path(path)
    if any(c.isspace() for c in tag) or not tag:
        raise RankdistillError(f"run tag {tag!r} must be one word without spaces")
    with atomic_write(path) as handle:
        for qid, ranked in run.items():
            for rank, (docid, score) in enumerate(ranked, 1):
                handle.write(f"{qid} Q0 {docid} {rank} {float(score)!r} {tag}\n")
    return path


def top_k(run: Mapping[str, list[tuple[str, float]]], k: int | None) -> Run:
    """The first ``k`` documents of every query (all of them when ``k`` is None)."""
    return {qid: list(ranked[:k] if k else ranked) for qid, ranked in run.items()}


def append_tail(ranked: list[tuple[str, float]], first_stage: Iterable[str]) -> list[tuple[str, float]]:
    """``ranked``, then the first stage's documents it lacks, in first-stage order, scored below it.

    A run re-ranked to depth k keeps the rest of the first stage's list (as TREC re-ranking runs do), so its
    recall and AP are computed on the same list as the first stage's, not on a list cut at k. The tail's scores
    are lowest-1, lowest-2, ... so the run stays strictly ordered by score when read back.
    """
    ranked = list(ranked)
    seen = {docid for docid, _ in ranked}
    low = min((float(score) for _, score in ranked), default=0.0)
    tail = [docid for docid in first_stage if docid not in seen]
    return ranked + [(docid, low - 1.0 - i) for i, docid in enumerate(tail)]


def run_from_scores(scores: Mapping[str, Mapping[str, float] | Iterable[tuple[str, float]]]) -> Run:
    """Sort each query's scores, best first; ties keep their given order (Python's sort is stable)."""
    out: Run = {}
    for qid, docs in scores.items():
        items = list(docs.items()) if isinstance(docs, Mapping) else list(docs)
        out[qid] = sorted(items, key=lambda item: -float(item[1]))
    return out


BEIR_QRELS_HEADER = ("query-id", "corpus-id", "score")


def _grade(path: Path, lineno: int, grade_s: str) -> int:
    """A relevance grade: an integer (``2``, ``-1``), also when written as a float (``2.0``)."""
    try:
        return int(_plain(grade_s))
    except ValueError:
        pass
    try:
        as_float = float(_plain(grade_s))
    except ValueError:
        as_float = math.nan
    if not as_float.is_integer():
        raise InputFormatError(path, lineno, f"grade {grade_s!r} is not an integer")
    return int(as_float)


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iteration docid grade``) or BEIR's TSV (header ``query-id corpus-id score``).

    The first line decides the format and every line must follow it: a three-column line in a TREC file is an
    error, not a judgment silently read another way, and so is a second judgment of the same pair.
    """
    path = Path(path)
    qrels: Qrels = {}
    first_line: dict[tuple[str, str], int] = {}
    columns = 0
    for lineno, line in read_lines(path, "qrels"):
        parts = line.split()
        if not parts:
            continue
        if not columns:
            if len(parts) == 3 and parts[2].lower() == BEIR_QRELS_HEADER[2]:  # header names vary; "score" does not
                columns = 3
                continue
            columns = 4
        if len(parts) != columns:
            shape = "'query-id corpus-id score' (BEIR, as the header says)" if columns == 3 else (
                "'qid 0 docid grade' (a BEIR file starts with the header 'query-id corpus-id score')")
            raise InputFormatError(path, lineno, f"expected {columns} columns {shape}, found {len(parts)}")
        qid, docid, grade_s = (parts[0], parts[1], parts[2]) if columns == 3 else (parts[0], parts[2], parts[3])
        grade = _grade(path, lineno, grade_s)
        first = first_line.setdefault((qid, docid), lineno)
        if first != lineno:
            raise InputFormatError(path, lineno, f"query {qid!r}, document {docid!r} is judged twice (first on line {first})")
        qrels.setdefault(qid, {})[docid] = grade
    if not qrels:
        raise InputFormatError(path, None, "no judgments: the qrels file is empty (expected lines 'qid 0 docid grade')")
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    with atomic_write(path) as handle:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                handle.write(f"{qid} 0 {docid} {int(grade)}\n")
    return Path(path)
