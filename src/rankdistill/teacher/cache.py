"""The teacher's resumable cache: one SQLite file in the output folder.

Every answered window is committed the moment it arrives (WAL journal, one transaction per window), so a
Ctrl-C, SIGKILL or crash loses at most the windows still in flight, and a rerun pays for none twice.
Windows are keyed by (model, template, mode, SHA-256 of the prompt text): the same prompt under the same
model is never asked again, even from another run configuration. Finished queries are stored too, with the
configuration and candidate list they were ranked from, so a rerun skips them outright.

A window is marked *asked* (committed) before its request leaves and unmarked in the transaction that stores its
answer, so the marks left after a kill are exactly the windows that were in flight: a rerun that asks one again
counts it as re-asked after a resume (``stats.json``), the only windows a kill makes anyone pay for twice.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from pathlib import Path

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Generation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS windows (
    model TEXT NOT NULL, template TEXT NOT NULL, mode TEXT NOT NULL, prompt_hash TEXT NOT NULL,
    response TEXT NOT NULL, ranking TEXT, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    saved_tokens INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (model, template, mode, prompt_hash)
);
CREATE TABLE IF NOT EXISTS queries (
    config TEXT NOT NULL, qid TEXT NOT NULL, candidates TEXT NOT NULL,
    ranking TEXT NOT NULL, repairs TEXT NOT NULL, windows INTEGER NOT NULL, created REAL NOT NULL,
    PRIMARY KEY (config, qid, candidates)
);
CREATE TABLE IF NOT EXISTS asked (
    model TEXT NOT NULL, template TEXT NOT NULL, mode TEXT NOT NULL, prompt_hash TEXT NOT NULL, asked REAL NOT NULL,
    PRIMARY KEY (model, template, mode, prompt_hash)
);
"""


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class TeacherCache:
    """Append-only store of window answers and finished queries (thread-safe: backends may call back from threads)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed window survives a process kill
            self._db.executescript(_SCHEMA)
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise RankdistillError(f"{self.path}: not a usable teacher cache ({exc}); delete it to start afresh") from None
        self._lock = threading.Lock()

    # windows -------------------------------------------------------------------------------------------
    def get_window(self, model: str, template: str, mode: str, prompt_text: str) -> Generation | None:
        with self._lock:
            row = self._db.execute(
                "SELECT response, ranking, prompt_tokens, completion_tokens, saved_tokens FROM windows "
                "WHERE model=? AND template=? AND mode=? AND prompt_hash=?",
                (model, template, mode, text_hash(prompt_text)),
            ).fetchone()
        if row is None:
            return None
        response, ranking, prompt_tokens, completion_tokens, saved = row
        return Generation(
            text=response,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ranking=json.loads(ranking) if ranking is not None else None,
            saved_tokens=saved,
        )

    def put_window(self, model: str, template: str, mode: str, prompt_text: str, generation: Generation) -> None:
        ranking = json.dumps(generation.ranking) if generation.ranking is not None else None
        key = (model, template, mode, text_hash(prompt_text))
        with self._lock, self._db:  # one transaction per window, committed on exit
            self._db.execute(
                "INSERT OR REPLACE INTO windows VALUES (?,?,?,?,?,?,?,?,?,?)",
                (*key, generation.text, ranking, generation.prompt_tokens, generation.completion_tokens,
                 generation.saved_tokens, time.time()),
            )
            self._db.execute("DELETE FROM asked WHERE model=? AND template=? AND mode=? AND prompt_hash=?", key)

    def mark_asked(self, model: str, template: str, mode: str, prompt_texts: list[str]) -> int:
        """Mark windows as sent (one transaction, before the requests leave); returns how many an earlier run had
        already sent without committing an answer (in flight when it stopped): they are being re-asked."""
        keys = [(model, template, mode, text_hash(text)) for text in prompt_texts]
        with self._lock, self._db:
            again = sum(
                self._db.execute(
                    "SELECT 1 FROM asked WHERE model=? AND template=? AND mode=? AND prompt_hash=?", key
                ).fetchone() is not None
                for key in keys
            )
            now = time.time()
            self._db.executemany("INSERT OR REPLACE INTO asked VALUES (?,?,?,?,?)", [(*key, now) for key in keys])
        return again

    def in_flight(self) -> int:
        """Windows sent by some run whose answer never got committed (a kill or failure came first)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM asked").fetchone()[0]

    # queries -------------------------------------------------------------------------------------------
    def get_query(self, config: str, qid: str, candidates: list[str]) -> tuple[list[str], Counter, int] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT ranking, repairs, windows FROM queries WHERE config=? AND qid=? AND candidates=?",
                (config, qid, text_hash("\n".join(candidates))),
            ).fetchone()
        if row is None:
            return None
        return json.loads(row[0]), Counter(json.loads(row[1])), row[2]

    def put_query(self, config: str, qid: str, candidates: list[str], ranking: list[str], repairs: Counter, windows: int) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT OR REPLACE INTO queries VALUES (?,?,?,?,?,?,?)",
                (config, qid, text_hash("\n".join(candidates)), json.dumps(ranking), json.dumps(dict(repairs)),
                 windows, time.time()),
            )

    def counts(self) -> tuple[int, int]:
        with self._lock:
            windows = self._db.execute("SELECT COUNT(*) FROM windows").fetchone()[0]
            queries = self._db.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
        return windows, queries

    def close(self) -> None:
        with self._lock:
            self._db.close()
