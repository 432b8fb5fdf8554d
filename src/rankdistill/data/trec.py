"""TREC runs and qrels, read and written exactly.

A run maps each query id to its ranked list of ``(docid, score)``, best first. Reading sorts each
query by score (descending) and breaks ties by the file's rank column, then by file order, so
the order a file states is the order we keep; writing numbers ranks 1..n in list order.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from rankdistill.errors import InputFormatError, RankdistillError
from rankdistill.util.files import atomic_write

Run = dict[str, list[tuple[str, float]]]
Qrels = dict[str, dict[str, int]]


def _open_text(path: Path):
    if not path.exists():
        raise RankdistillError(f"{path}: no such file")
    if path.is_dir():
        raise RankdistillError(f"{path}: is a folder, expected a file")
    return path.open(encoding="utf-8", errors="strict")


def read_run(path: str | Path, depth: int | None = None) -> Run:
    """Read a six-column TREC run (``qid Q0 docid rank score tag``)."""
    path = Path(path)
    rows: dict[str, list[tuple[float, int, int, str]]] = {}
    seen: dict[str, dict[str, int]] = {}
    with _open_text(path) as handle:
        try:
            for lineno, line in enumerate(handle, 1):
                parts = line.split()
                if not parts:
                    continue
                if len(parts) != 6:
                    raise InputFormatError(
                        path, lineno,
                        f"expected 6 columns 'qid Q0 docid rank score tag', found {len(parts)}",
                    )
                qid, _, docid, rank_s, score_s, _ = parts
                try:
                    rank = int(rank_s)
                except ValueError:
                    raise InputFormatError(path, lineno, f"rank {rank_s!r} is not an integer") from None
                try:
                    score = float(score_s)
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
        except UnicodeDecodeError as exc:
            raise InputFormatError(path, None, f"not UTF-8 text ({exc.reason})") from None
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


def read_qrels(path: str | Path) -> Qrels:
    """Read TREC qrels (``qid iteration docid grade``); also accepts BEIR's ``query-id corpus-id score`` TSV."""
    path = Path(path)
    qrels: Qrels = {}
    with _open_text(path) as handle:
        for lineno, line in enumerate(handle, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) == 3:
                if lineno == 1 and parts[2].lower() == "score":
                    continue  # BEIR header: query-id corpus-id score
                qid, docid, grade_s = parts
            elif len(parts) == 4:
                qid, _, docid, grade_s = parts
            else:
                raise InputFormatError(
                    path, lineno, f"expected 4 columns 'qid 0 docid grade' (or BEIR's 3), found {len(parts)}"
                )
            try:
                grade = int(grade_s)
            except ValueError:
                try:
                    as_float = float(grade_s)
                except ValueError:
                    as_float = math.nan
                if not as_float.is_integer():
                    raise InputFormatError(path, lineno, f"grade {grade_s!r} is not an integer") from None
                grade = int(as_float)
            qrels.setdefault(qid, {})[docid] = grade
    return qrels


def write_qrels(qrels: Mapping[str, Mapping[str, int]], path: str | Path) -> Path:
    with atomic_write(path) as handle:
        for qid, docs in qrels.items():
            for docid, grade in docs.items():
                handle.write(f"{qid} 0 {docid} {int(grade)}\n")
    return Path(path)
