"""Where passages live: random access by id without holding a corpus in memory.

File corpora are copied once into an indexed SQLite table in the cache folder (:class:`SqliteCorpus`);
ir_datasets corpora use ir_datasets' own docstore (:class:`IrdsCorpus`). Both answer the :class:`Corpus` protocol.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Iterable, Iterator
from functools import cached_property
from pathlib import Path
from typing import Protocol

from rankdistill.data.formats import read_records
from rankdistill.errors import InputFormatError, RankdistillError
from rankdistill.util.files import atomic_path

IRDS_PREFIX = "irds:"


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
            try:
                conn.execute("CREATE TABLE docs (id TEXT PRIMARY KEY, text TEXT NOT NULL)")
                first_line: dict[str, int] = {}
                batch: list[tuple[str, str]] = []
                for lineno, docid, text in read_records(self.source, "corpus", self.fix_encoding):
                    if docid in first_line:
                        raise InputFormatError(self.source, lineno, f"document {docid!r} repeats line {first_line[docid]}")
                    first_line[docid] = lineno
                    batch.append((docid, text))
                    if len(batch) >= 10_000:
                        conn.executemany("INSERT INTO docs VALUES (?, ?)", batch)
                        batch.clear()
                conn.executemany("INSERT INTO docs VALUES (?, ?)", batch)
                conn.commit()
            finally:  # a malformed line leaves no open handle on the removed temporary store
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
        "data (e.g. a copy of ../shared/data/ir_datasets), or give local files: dataset FOLDER (BEIR layout) "
        "or queries/corpus/qrels files."
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
