"""Toy data in the formats the stages exchange: a distillation set, a few queries and passages."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = "water river city car price cost time year day people state court law data".split()


def write_set(path: Path, queries: int = 6, docs: int = 8, relevance: bool = False) -> Path:
    """A learnable toy set: passages with "good" rank above passages with "bad" (the contract's columns)."""
    rows = []
    for q in range(queries):
        for j in range(docs):
            good = j < docs // 2
            target = (1.0 if j == 0 else 0.0) if relevance else float(docs - j)
            rows.append(
                dict(
                    qid=f"q{q}", query=f"what is the {WORDS[q % len(WORDS)]}", docid=f"d{q}-{j}",
                    passage=" ".join(["good" if good else "bad", *WORDS[j : j + 3]]),
                    target=target, teacher_rank=j + 1, teacher_score=float(docs - j), first_stage_rank=j + 1,
                    first_stage_score=1.0 / (j + 1), relevance=None, position=j,
                )
            )
    schema = pa.schema(
        [("qid", pa.string()), ("query", pa.string()), ("docid", pa.string()), ("passage", pa.string()),
         ("target", pa.float64()), ("teacher_rank", pa.int32()), ("teacher_score", pa.float64()),
         ("first_stage_rank", pa.int32()), ("first_stage_score", pa.float64()), ("relevance", pa.int32()),
         ("position", pa.int32())]
    )
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


QUERIES = {
    "q1": "what is the price of water in the city",
    "q2": "who keeps public records of naturalization",
    "q3": "fast small model",
}
PASSAGES = {
    "d1": "The price of water in the city rose this year.",
    "d2": "Public records: the court keeps naturalization records for people of the state.",
    "d3": "A river runs by the city; the hotel phone is on the first floor.",
    "d4": "Student and teacher rank data; the best model is small and fast. " * 3,
    "d5": "Two, three, four, five: what a good day for a test.",
    "d6": "Law and court data for the state, one record a year.",
}


def write_dl20_subset(dl20: Path, data: Path, qids: list[str], docids: set[str]) -> Path:
    """``data``/queries.tsv, corpus.tsv and qrels.txt of the shared DL20 files, cut to ``qids`` and ``docids``:
    a dataset folder small enough for a pipeline test on real text."""
    from rankdistill.data.trec import read_qrels, write_qrels

    queries = dict(line.split("\t", 1) for line in (dl20 / "queries.tsv").read_text().splitlines())
    (data / "queries.tsv").write_text("".join(f"{q}\t{queries[q]}\n" for q in qids))
    with (data / "corpus.tsv").open("w") as handle:
        for line in (dl20 / "passages.tsv").read_text().splitlines():
            if line.split("\t", 1)[0] in docids:
                handle.write(line + "\n")
    qrels = read_qrels(dl20 / "qrels.txt")
    write_qrels({q: qrels[q] for q in qids}, data / "qrels.txt")
    return data


def write_tiny_dl20(dl20: Path, root: Path, queries: int, depth: int) -> tuple[Path, Path, Path]:
    """The first ``queries`` DL20 queries with their BM25 top-``depth`` (``root/bm25.run``), RankVicuna's order of
    exactly those passages (``root/teacher.run``) and their dataset folder (``root/data``): a pipeline's smallest
    real training data. Returns (data folder, BM25 run, teacher run)."""
    from rankdistill.data.trec import read_run, write_run

    data = root / "data"
    data.mkdir(parents=True, exist_ok=True)
    bm25 = read_run(dl20 / "bm25-top100.run", depth=depth)
    qids = sorted(bm25)[:queries]
    bm25 = {q: bm25[q] for q in qids}
    vicuna = read_run(dl20 / "rankvicuna-7b.run")
    teacher = {q: [(d, s) for d, s in vicuna[q] if d in {x for x, _ in bm25[q]}] for q in qids}
    write_dl20_subset(dl20, data, qids, {d for q in qids for d, _ in bm25[q]})
    write_run(bm25, root / "bm25.run", tag="bm25")
    write_run(teacher, root / "teacher.run", tag="teacher")
    return data, root / "bm25.run", root / "teacher.run"
