"""Collections: queries, a random-access corpus and qrels, named one way everywhere.

A collection is named by ``irds:<ir_datasets id>``, by a folder (BEIR layout: corpus.jsonl,
queries.jsonl, qrels/<split>.tsv; or TSV files), or by separate files. Corpora from files are
copied once into an SQLite store in the cache folder, so lookups by id are random access without
holding millions of passages in memory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

from rankdistill.errors import InputFormatError, RankdistillError
from rankdistill.util.files import atomic_path
from rankdistill.data.trec import Qrels, Run, read_qrels

IRDS_PREFIX = "irds:"
CORPUS_NAMES = ("corpus.jsonl", "corpus.tsv", "collection.tsv", "passages.tsv", "docs.jsonl", "docs.tsv")
QUERY_NAMES = ("queries.jsonl", "queries.tsv", "topics.tsv")
QRELS_NAMES = ("qrels.txt", "qrels.tsv", "qrels")


class MissingDocumentError(RankdistillError):
    pass


class Corpus(Protocol):
    """Random access to passage text by id, plus a full scan for indexing."""

    name: str

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[str, str]]: ...

    def get_many(self, docids: Iterable[str]) -> dict[str, str]:
        """Text for the given ids; ids not in the corpus are absent from the result."""
        ...


def cache_dir() -> Path:
    """Where derived stores and indexes live; ``RANKDISTILL_CACHE`` overrides ``~/.cache/rankdistill``."""
    root = os.environ.get("RANKDISTILL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rankdistill"
    return Path(root)


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


def _read_records(path: Path, kind: str, fix_encoding: bool = False) -> Iterator[tuple[int, str, str]]:
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
    for lineno, qid, text in _read_records(path, "queries"):
        if qid in lines:
            raise InputFormatError(path, lineno, f"query {qid!r} repeats line {lines[qid]}")
        lines[qid] = lineno
        queries[qid] = text
    return queries


class SqliteCorpus:
    """A TSV/JSONL corpus copied once into an SQLite table keyed by id (stdlib, indexed, on disk)."""

    def __init__(self, source: Path, fix_encoding: bool = False):
        self.source = Path(source)
        self.name = str(self.source)
        self.fix_encoding = fix_encoding
        self.db_path = self._ensure_store()
        self._conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, check_same_thread=False)

    def _ensure_store(self) -> Path:
        if not self.source.exists():
            raise RankdistillError(f"{self.source}: no such corpus file")
        stat = self.source.stat()
        key = f"{self.source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self.fix_encoding}|v1"
        db = cache_dir() / "corpora" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.sqlite"
        if db.exists():
            return db
        with atomic_path(db) as tmp:
            conn = sqlite3.connect(tmp)
            conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, text TEXT NOT NULL)")
            first_line: dict[str, int] = {}
            batch: list[tuple[str, str]] = []
            for lineno, docid, text in _read_records(self.source, "corpus", self.fix_encoding):
                if docid in first_line:
                    raise InputFormatError(self.source, lineno, f"document {docid!r} repeats line {first_line[docid]}")
                first_line[docid] = lineno
                batch.append((docid, text))
                if len(batch) >= 10_000:
                    conn.executemany("INSERT INTO docs VALUES (?, ?)", batch)
                    batch.clear()
            conn.executemany("INSERT INTO docs VALUES (?, ?)", batch)
            conn.commit()
            conn.close()
        return db

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        yield from self._conn.execute("SELECT id, text FROM docs ORDER BY rowid")

    def get_many(self, docids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(docids))
        out: dict[str, str] = {}
        for start in range(0, len(ids), 900):  # SQLite caps bound parameters per statement
            chunk = ids[start : start + 900]
            marks = ",".join("?" * len(chunk))
            out.update(self._conn.execute(f"SELECT id, text FROM docs WHERE id IN ({marks})", chunk))
        return out


def _irds_error(dataset_id: str, exc: BaseException) -> RankdistillError:
    home = os.environ.get("IR_DATASETS_HOME", "~/.ir_datasets")
    detail = str(exc).splitlines()[0] if str(exc) else ""
    detail = detail if len(detail) <= 120 else detail[:117] + "..."
    return RankdistillError(
        f"ir_datasets could not provide {dataset_id!r} ({type(exc).__name__}: {detail}); it looked in "
        f"IR_DATASETS_HOME={home}. With no network, point IR_DATASETS_HOME at a folder that already holds the "
        "data (e.g. a copy of ../shared/data/ir_datasets), or pass local files: --dataset FOLDER (BEIR layout) "
        "or --queries/--corpus/--qrels."
    )


class IrdsCorpus:
    """ir_datasets' own docstore: random access without loading the corpus (and encoding already repaired)."""

    def __init__(self, dataset, dataset_id: str):
        self._dataset = dataset
        self.name = f"{IRDS_PREFIX}{dataset_id}"
        self._id = dataset_id

    @cached_property
    def _store(self):
        try:
            return self._dataset.docs_store()
        except Exception as exc:  # ir_datasets raises plain exceptions when it must download
            raise _irds_error(self._id, exc) from None

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        try:
            for doc in self._dataset.docs_iter():
                yield doc.doc_id, doc.default_text()
        except RankdistillError:
            raise
        except Exception as exc:
            raise _irds_error(self._id, exc) from None

    def get_many(self, docids: Iterable[str]) -> dict[str, str]:
        ids = list(dict.fromkeys(docids))
        try:
            found = self._store.get_many(ids)
        except KeyError:
            found = {}
            for docid in ids:  # some docstores raise on the first unknown id; fall back to one by one
                try:
                    found[docid] = self._store.get(docid)
                except KeyError:
                    pass
        except Exception as exc:
            raise _irds_error(self._id, exc) from None
        return {docid: doc.default_text() for docid, doc in found.items()}


@dataclass
class Collection:
    """What every stage reads: queries, corpus and (optionally) qrels and a first-stage run."""

    name: str
    queries: dict[str, str]
    corpus: Corpus | None = None
    qrels: Qrels | None = None
    scoreddocs: Run | None = field(default=None, repr=False)

    def texts(self, docids: Iterable[str], strict: bool = True) -> dict[str, str]:
        """Passage text for ``docids``; with ``strict``, a missing id is an error naming it."""
        if self.corpus is None:
            raise RankdistillError(f"collection {self.name} has no corpus; pass --corpus FILE or a dataset with documents")
        ids = list(dict.fromkeys(docids))
        found = self.corpus.get_many(ids)
        if strict and len(found) < len(ids):
            missing = [d for d in ids if d not in found]
            raise MissingDocumentError(
                f"{len(missing)} document id(s) are not in corpus {self.corpus.name}, e.g. {missing[:5]}; "
                "the run and the corpus must come from the same collection"
            )
        return found


def _load_irds(dataset_id: str) -> Collection:
    import ir_datasets

    try:
        dataset = ir_datasets.load(dataset_id)
    except KeyError:
        raise RankdistillError(
            f"unknown ir_datasets id {dataset_id!r}: see https://ir-datasets.com for the ids; offline, set "
            "IR_DATASETS_HOME to a folder that holds the data, or pass local files (--dataset FOLDER, --queries, "
            "--corpus, --qrels)"
        ) from None
    try:
        queries = {q.query_id: q.default_text() for q in dataset.queries_iter()} if dataset.has_queries() else {}
        qrels: Qrels | None = None
        if dataset.has_qrels():
            qrels = {}
            for qrel in dataset.qrels_iter():
                qrels.setdefault(qrel.query_id, {})[qrel.doc_id] = int(qrel.relevance)
        scoreddocs: Run | None = None
        if dataset.has_scoreddocs():
            grouped: dict[str, list[tuple[str, float]]] = {}
            for sd in dataset.scoreddocs_iter():
                grouped.setdefault(sd.query_id, []).append((sd.doc_id, float(sd.score)))
            scoreddocs = {qid: sorted(docs, key=lambda d: -d[1]) for qid, docs in grouped.items()}
    except RankdistillError:
        raise
    except Exception as exc:
        raise _irds_error(dataset_id, exc) from None
    corpus = IrdsCorpus(dataset, dataset_id) if dataset.has_docs() else None
    return Collection(f"{IRDS_PREFIX}{dataset_id}", queries, corpus, qrels, scoreddocs)


def _first_existing(folder: Path, names: Iterable[str]) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def load_collection(
    dataset: str | Path | None = None,
    *,
    queries: str | Path | None = None,
    corpus: str | Path | None = None,
    qrels: str | Path | None = None,
    split: str = "test",
    fix_encoding: bool = False,
) -> Collection:
    """Load a collection; explicit ``queries``/``corpus``/``qrels`` files override the dataset's own.

    ``fix_encoding`` repairs MS MARCO mojibake in file corpora the way ir_datasets does (ir_datasets ids
    are already repaired by ir_datasets itself).
    """
    if dataset is None and queries is None and corpus is None and qrels is None:
        raise RankdistillError("name a collection: --dataset irds:<id> or a folder, or --queries/--corpus/--qrels files")
    coll = Collection(name="files", queries={})
    if dataset is not None:
        spec = str(dataset)
        if spec.startswith(IRDS_PREFIX):
            coll = _load_irds(spec[len(IRDS_PREFIX) :])
        else:
            folder = Path(spec)
            if not folder.is_dir():
                raise RankdistillError(
                    f"{spec}: not a folder and not an ir_datasets id (write 'irds:{spec}' for ir_datasets)"
                )
            qfile = _first_existing(folder, QUERY_NAMES)
            cfile = _first_existing(folder, CORPUS_NAMES)
            rfile = _first_existing(folder / "qrels", (f"{split}.tsv",)) or _first_existing(folder, QRELS_NAMES)
            if qfile is None and queries is None:
                raise RankdistillError(f"{folder}: no queries file (looked for {', '.join(QUERY_NAMES)})")
            coll = Collection(
                name=str(folder),
                queries=read_queries(qfile) if qfile else {},
                corpus=SqliteCorpus(cfile, fix_encoding) if cfile else None,
                qrels=read_qrels(rfile) if rfile else None,
            )
    if queries is not None:
        coll.queries = read_queries(queries)
    if corpus is not None:
        coll.corpus = SqliteCorpus(Path(corpus), fix_encoding)
    if qrels is not None:
        coll.qrels = read_qrels(qrels)
    return coll


