"""Fuzz targets for every reader: random and mutated bytes in, either a valid result or a RankdistillError out.

Shared by ``tests/data/test_fuzz_readers.py`` (a few thousand examples in ``make test``) and ``benchmarks/fuzz.py``
(100,000 and more), so both fuzz exactly the same readers with the same strategies and the same checks.

Each :class:`Target` writes one example to a file (or a BEIR folder), calls the reader and checks what comes back:
a result must satisfy the reader's contract (non-empty, ids without white space, runs sorted best first, ...),
and an error must be a :class:`~rankdistill.errors.RankdistillError` whose message is one line naming the file.
Anything else (a ``KeyError``, ``UnicodeDecodeError``, ``RecursionError``, a multi-line message) fails the example.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

from rankdistill.errors import RankdistillError

# Tokens a mutation may splice in: separators, numbers that are not quite numbers, JSON and YAML syntax, bad UTF-8.
TOKENS = [
    b"\t", b" ", b"\n", b"\r", b"\r\n", b"\x00", b"\xff", b"\xc3", b"\xe2\x80\xa8", b"\xef\xbb\xbf", b"\x0b", b"\x1c",
    b"nan", b"NaN", b"inf", b"-inf", b"1e999", b"-1", b"0", b"1.5", b"2.0", b"9" * 40, b"0x10", b"1_000", b"\xd9\xa3",
    b"Q0", b"score", b"query-id", b"corpus-id", b'"', b"'", b"{", b"}", b"[", b"]", b",", b":", b"- ", b"? ", b"&a",
    b"*a", b"!!python/object:os.system", b"null", b"true", b"[" * 200, b"{" * 200, b'{"_id": 1}', b'"text": null',
    b'"prompt"', b'"response"', b"[1] > [2]", b"> [", b"\\u0000", b"\\ud800", b"---", b"...", b"#", b"%YAML 1.1",
]

SEEDS: dict[str, list[bytes]] = {
    "run": [
        b"q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 2.25 bm25\nq2 Q0 d1 1 -0.5 bm25\n",
        b"23849 Q0 8182161 1 14.2 Anserini\n23849 Q0 3308778 2 13.9 Anserini\n23849 Q0 2 3 13.9 Anserini\n",
    ],
    "qrels": [
        b"q1 0 d1 2\nq1 0 d2 0\nq2 0 d1 1\n",
        b"23849 0 1020327 2\n23849 Q0 1034183 3\n42255 0 1000 -1\n",
        b"query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\n",
    ],
    "tsv": [
        b"q1\twhat is the price of water\nq2\t\"quoted, \"\"text\"\"\"\nq3\tcaf\xc3\xa9 \xc3\xa2\xe2\x82\xac\xe2\x84\xa2s\n",
        b"d1\tThe price of water rose.\r\nd2\tRecords of the court.\r\n",
    ],
    "jsonl": [
        b'{"_id": "d1", "title": "Water", "text": "The price of water."}\n{"_id": "d2", "text": "Records."}\n',
        b'{"qid": 1, "query": "what is water"}\n{"id": "q2", "contents": "records", "extra": [1, 2]}\n',
    ],
    "yaml": [
        b"name: fuzz\noutput: out\nseed: 0\ntrain:\n  dataset: irds:x\n  first_stage:\n    run: a.run\n  teacher:\n"
        b"    run: b.run\n  model: minilm-l6\n  stages:\n    - name: distill\n      loss: ranknet\n      depth: 10\n"
        b"evaluate:\n  cross_validation: 2\n  measures: [nDCG@10, AP(rel=2)]\n",
        b"output: set.parquet\nteacher_run: t.run\nsample_size: 8\nsampling: top\ntargets: rank\nqids: [q1, q2]\n",
    ],
    "recording": [
        b'[{"prompt": "rank [1] a [2] b", "response": "[2] > [1]"},\n {"prompt": "x", "response": "[1]"}]\n',
        b'{"prompt": [{"role": "user", "content": "hi"}], "response": "[1] > [2]", "model": "m"}\n'
        b'{"prompt": "p", "response": "r"}\n',
        b'{"prompt": "a", "response": "[1]"}, {"prompt": "b", "response": "[2] > [1]"}, ',
    ],
}

_OPS = ("flip", "insert", "delete", "token", "duplicate-line", "swap-lines", "truncate")


def _mutate(seed: bytes, ops: list[tuple[str, int, int, bytes]]) -> bytes:
    """``seed`` edited by each operation in turn; positions wrap around the current length."""
    data = bytearray(seed)
    for op, a, b, payload in ops:
        n = len(data)
        if op == "flip" and n:
            data[a % n] = b % 256
        elif op == "insert":
            data[a % (n + 1) : a % (n + 1)] = payload
        elif op == "delete" and n:
            start = a % n
            del data[start : start + 1 + b % 16]
        elif op == "token":
            data[a % (n + 1) : a % (n + 1)] = TOKENS[b % len(TOKENS)]
        elif op in ("duplicate-line", "swap-lines"):
            lines = bytes(data).split(b"\n")
            i, j = a % len(lines), b % len(lines)
            if op == "duplicate-line":
                lines.insert(j, lines[i])
            else:
                lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\n".join(lines))
        elif op == "truncate":
            del data[a % (n + 1) :]
    return bytes(data)


_op = st.tuples(st.sampled_from(_OPS), st.integers(0, 1 << 16), st.integers(0, 1 << 16), st.binary(max_size=6))


def inputs(kind: str) -> st.SearchStrategy[bytes]:
    """Bytes for a reader of ``kind``: mutated valid files (most examples), random text, random bytes."""
    mutated = st.builds(_mutate, st.sampled_from(SEEDS[kind]), st.lists(_op, min_size=1, max_size=6))
    texty = st.text(alphabet=st.sampled_from(list("qd0123456789 \t\n.-eE:[]{}\",#Q_")) | st.characters(), max_size=200)
    return st.one_of(mutated, mutated, mutated, texty.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.binary(max_size=300))


@dataclass
class Target:
    """One reader under fuzzing: the input kind, the file name it reads, and how to call and check it."""

    name: str
    kind: str
    filename: str
    call: Callable[[Path], object]
    check: Callable[[object], None]


def _check_run(run) -> None:
    assert run and all(run.values())
    for qid, ranked in run.items():
        assert qid and not any(c.isspace() for c in qid)
        scores = [s for _, s in ranked]
        assert all(not math.isnan(s) for s in scores) and scores == sorted(scores, reverse=True)
        assert len({d for d, _ in ranked}) == len(ranked)


def _check_qrels(qrels) -> None:
    assert qrels and all(qrels.values())
    assert all(type(g) is int for docs in qrels.values() for g in docs.values())


def _check_records(records) -> None:
    assert records
    for rid, text in records.items():
        assert isinstance(rid, str) and rid and not any(c.isspace() for c in rid) and isinstance(text, str)


def _read_corpus(path: Path, fix_encoding: bool = False) -> dict[str, str]:
    """Every passage of a file corpus through its SQLite store, which is then removed (fuzzing makes thousands)."""
    from rankdistill.data.corpus import SqliteCorpus

    corpus = SqliteCorpus(path, fix_encoding)
    try:
        docs = dict(corpus)
        assert len(docs) == len(corpus)
        return docs
    finally:
        corpus._conn.close()
        os.unlink(corpus.db_path)


def _write_beir(folder: Path, data: bytes, which: int) -> None:
    """A BEIR folder whose ``which``-th file (corpus, queries, qrels) holds the fuzzed bytes, the others valid."""
    files = [folder / "corpus.jsonl", folder / "queries.jsonl", folder / "qrels" / "test.tsv"]
    valid = [SEEDS["jsonl"][0], b'{"_id": "q1", "text": "water"}\n', b"query-id\tcorpus-id\tscore\nq1\td1\t1\n"]
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    for i, (path, content) in enumerate(zip(files, valid)):
        path.write_bytes(data if i == which else content)


def _load_beir(folder: Path):
    from rankdistill.data.collection import load_collection

    collection = load_collection(folder)
    try:
        return collection.queries, collection.qrels, dict(collection.corpus)
    finally:
        collection.corpus._conn.close()
        os.unlink(collection.corpus.db_path)


def _check_beir(result) -> None:
    queries, qrels, docs = result
    _check_records(queries), _check_qrels(qrels), _check_records(docs)


def _load_pipeline(path: Path):
    from rankdistill.workflow.config import load_config

    return load_config(path)


def _load_build(path: Path):
    from rankdistill.distillation.options import BuildConfig
    from rankdistill.util.config import read_yaml_mapping, validate

    return validate(BuildConfig, read_yaml_mapping(path), path)


def _check_recording(records) -> None:
    assert all(isinstance(r["prompt"], str) and isinstance(r["response"], str) for r in records)


def _targets() -> list[Target]:
    from rankdistill.data.formats import read_queries
    from rankdistill.data.trec import read_qrels, read_run
    from rankdistill.teacher.backends.replay import read_recording

    return [
        Target("run", "run", "fuzz.run", read_run, _check_run),
        Target("qrels", "qrels", "fuzz.qrels", read_qrels, _check_qrels),
        Target("queries-tsv", "tsv", "queries.tsv", read_queries, _check_records),
        Target("queries-jsonl", "jsonl", "queries.jsonl", read_queries, _check_records),
        Target("corpus-tsv", "tsv", "corpus.tsv", _read_corpus, _check_records),
        Target("corpus-tsv-fix-encoding", "tsv", "corpus.tsv", lambda p: _read_corpus(p, True), _check_records),
        Target("corpus-jsonl", "jsonl", "corpus.jsonl", _read_corpus, _check_records),
        Target("beir-corpus", "jsonl", "beir0", _load_beir, _check_beir),
        Target("beir-queries", "jsonl", "beir1", _load_beir, _check_beir),
        Target("beir-qrels", "qrels", "beir2", _load_beir, _check_beir),
        Target("yaml-pipeline", "yaml", "pipeline.yaml", _load_pipeline, lambda cfg: None),
        Target("yaml-build", "yaml", "build.yaml", _load_build, lambda cfg: None),
        Target("replay-recording", "recording", "rec.json", read_recording, _check_recording),
    ]


TARGETS: dict[str, Target] = {}


def targets() -> dict[str, Target]:
    """Every fuzz target by name (built on first use: the readers import lazily)."""
    if not TARGETS:
        TARGETS.update((t.name, t) for t in _targets())
    return TARGETS


def run_example(target: Target, data: bytes, folder: Path) -> str:
    """Write ``data`` where ``target`` reads it, read it, check the outcome; returns "ok" or "error"."""
    if target.filename.startswith("beir"):
        path = folder / "beir"
        _write_beir(path, data, int(target.filename[-1]))
        named = [path / "corpus.jsonl", path / "queries.jsonl", path / "qrels" / "test.tsv"][int(target.filename[-1])]
    else:
        path = named = folder / target.filename
        path.write_bytes(data)
    # a new modification time every example: the corpus store is keyed by path, size and mtime
    os.utime(named, ns=(0, run_example.clock))
    run_example.clock += 1
    try:
        result = target.call(path)
    except RankdistillError as exc:
        message = str(exc)
        assert "\n" not in message, f"a multi-line error: {message!r}"
        assert str(named) in message or str(path) in message, f"the error does not name the file: {message!r}"
        return "error"
    except sqlite3.Error as exc:  # pragma: no cover - a failure, reported with its input
        raise AssertionError(f"sqlite error escaped: {exc}") from exc
    target.check(result)
    return "ok"


run_example.clock = 1_000_000_000


def permutation_inputs() -> st.SearchStrategy[tuple[str, int]]:
    """LLM answers (random text, mutated well-formed answers) and window sizes."""
    good = st.integers(1, 30).flatmap(
        lambda n: st.permutations(range(1, n + 1)).map(lambda p: " > ".join(f"[{i}]" for i in p)))
    mutated = st.builds(lambda text, ops: _mutate(text.encode(), ops).decode("utf-8", "replace"), good,
                        st.lists(_op, max_size=4))
    text = st.one_of(mutated, mutated, st.text(max_size=300),
                     st.text(alphabet=st.sampled_from(list("[]>0123456789 ,\n-")), max_size=120))
    return st.tuples(text, st.integers(0, 40))


def check_permutation(text: str, n: int) -> None:
    """Whatever the answer, the parse is a permutation of the window and well-formed answers need no repair."""
    from rankdistill.teacher.parse import format_permutation, parse_permutation

    order, repairs = parse_permutation(text, n)
    assert sorted(order) == list(range(n)), (text, n, order)
    assert all(v >= 0 for v in repairs.values())
    if n:
        again, clean = parse_permutation(format_permutation(order), n)
        assert again == order and not any(clean.values())


def dump(data: bytes) -> str:
    """An input as it would be pasted into a regression test."""
    return json.dumps(data.decode("latin-1"))
