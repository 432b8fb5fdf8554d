"""BM25 retrieval: scores against the formula, index reuse, empty queries, error paths through the CLI."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rankdistill.cli import main
from rankdistill.errors import RankdistillError
from rankdistill.bm25 import BM25Index, EmptyQueryWarning, retrieve
from rankdistill.data.trec import read_run

DOCS = {
    "d1": "The cat sat on the mat while another cat slept",
    "d2": "Dogs are running in the park",
    "d3": "Quantum physics of elementary particles",
    "d4": "Dog training: teaching a dog to sit",
    "d5": "",
}
QUERIES = {"q1": "quantum particles", "q2": "dog training", "q3": "the of and", "q4": "zebra"}


@pytest.fixture()
def tiny(tmp_path) -> tuple[Path, Path]:
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{d}\t{t}\n" for d, t in DOCS.items()), encoding="utf-8")
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    return corpus, queries


def test_retrieve_ranks_the_obvious_document_first_and_writes_a_valid_run(tiny, tmp_path):
    corpus, queries = tiny
    out = tmp_path / "bm25.run"
    with pytest.warns(EmptyQueryWarning) as caught:
        path = retrieve(queries=queries, corpus=corpus, index_dir=tmp_path / "idx", output=out, k=3, show_progress=False)
    assert path == out
    run = read_run(out)
    assert run["q1"][0][0] == "d3" and len(run["q1"]) == 1  # only d3 contains a query term
    assert run["q2"][0][0] == "d4"  # "dog" twice + "training" beats d2's single "dogs"
    assert [d for d, _ in run["q2"]] == ["d4", "d2"]
    assert "q3" not in run and "q4" not in run  # stop words only / unknown word: empty, not a crash
    messages = " ".join(str(w.message) for w in caught)
    assert "q3" in messages and "q4" in messages
    for line in out.read_text().splitlines():
        qid, q0, docid, rank, score, tag = line.split()
        assert q0 == "Q0" and tag == "bm25" and float(score) > 0 and int(rank) >= 1


def test_scores_follow_the_lucene_bm25_formula(tiny, tmp_path):
    """Hand computation of Lucene's BM25 (since Lucene 8, without the constant (k1 + 1) factor):
    idf = ln(1 + (N - df + 0.5) / (df + 0.5)), tf part tf / (tf + k1 (1 - b + b dl / avgdl)), k1=0.9, b=0.4.

    Token counts after Lucene's 33 stop words and Porter stemming (bm25s drops 1-letter words):
    d1 cat sat mat while anoth cat slept = 7, d2 dog run park = 3, d3 quantum physic elementari particl = 4,
    d4 dog train teach dog sit = 5, d5 is empty and holds bm25s' empty token = 1.
    """
    corpus, _ = tiny
    index = BM25Index.build(
        ((d, t) for d, t in DOCS.items()), tmp_path / "idx", k1=0.9, b=0.4, show_progress=False
    )
    n, avgdl = 5, (7 + 3 + 4 + 5 + 1) / 5

    def term(tf: int, df: int, dl: int) -> float:
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        return idf * tf / (tf + 0.9 * (1 - 0.4 + 0.4 * dl / avgdl))

    hits = dict(index.search_one("dog training", k=10))
    assert hits["d4"] == pytest.approx(term(2, 2, 5) + term(1, 1, 5), rel=1e-5)
    assert hits["d2"] == pytest.approx(term(1, 2, 3), rel=1e-5)
    assert hits["d4"] > hits["d2"]


def test_index_is_built_once_and_reused(tiny, tmp_path, monkeypatch):
    corpus, queries = tiny
    index_dir = tmp_path / "idx"
    retrieve(queries={"q": "cat"}, corpus=corpus, index_dir=index_dir, output=tmp_path / "a.run", show_progress=False)
    stamp = (index_dir / "rankdistill-index.json").stat().st_mtime_ns

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the index was rebuilt")

    monkeypatch.setattr(BM25Index, "build", classmethod(no_rebuild))
    retrieve(queries={"q": "cat"}, corpus=corpus, index_dir=index_dir, output=tmp_path / "b.run", show_progress=False)
    assert (index_dir / "rankdistill-index.json").stat().st_mtime_ns == stamp
    assert (tmp_path / "a.run").read_text() == (tmp_path / "b.run").read_text()
    loaded = BM25Index.load(index_dir)
    assert type(loaded.model.scores["data"]).__name__ == "memmap"
    assert loaded.docids == list(DOCS)


def test_default_index_goes_to_the_cache_keyed_by_parameters(tiny, tmp_path):
    corpus, _ = tiny
    import json

    from rankdistill.data.corpus import SqliteCorpus, cache_dir
    from rankdistill.bm25 import corpus_identity, default_index_dir

    retrieve(queries={"q": "cat"}, corpus=corpus, output=tmp_path / "a.run", show_progress=False)
    retrieve(queries={"q": "cat"}, corpus=corpus, output=tmp_path / "b.run", k1=1.2, b=0.75, show_progress=False)
    identity = corpus_identity(SqliteCorpus(corpus))
    first = default_index_dir(identity, k1=0.9, b=0.4, method="lucene", stemmer="porter")
    second = default_index_dir(identity, k1=1.2, b=0.75, method="lucene", stemmer="porter")
    assert first != second and first.parent == second.parent == cache_dir() / "bm25"
    assert json.loads((first / "rankdistill-index.json").read_text())["k1"] == 0.9
    assert json.loads((second / "rankdistill-index.json").read_text())["k1"] == 1.2


@pytest.mark.filterwarnings("ignore::rankdistill.bm25.EmptyQueryWarning")
def test_index_built_with_other_parameters_is_refused(tiny, tmp_path):
    corpus, queries = tiny
    retrieve(queries=queries, corpus=corpus, index_dir=tmp_path / "idx", output=tmp_path / "a.run", show_progress=False)
    with pytest.raises(RankdistillError, match="k1"):
        retrieve(queries=queries, corpus=corpus, index_dir=tmp_path / "idx", output=tmp_path / "b.run", k1=2.0,
                 show_progress=False)


def test_cli_retrieve_writes_the_run(tiny, tmp_path, capsys):
    corpus, queries = tiny
    out = tmp_path / "cli.run"
    main(["retrieve", "--queries", str(queries), "--corpus", str(corpus), "--index", str(tmp_path / "idx"),
          "-o", str(out), "-k", "2"])
    run = read_run(out)
    assert run["q1"][0][0] == "d3" and all(len(r) <= 2 for r in run.values())
    assert "warning:" in capsys.readouterr().err


def test_malformed_corpus_line_is_one_line_with_file_and_line(tiny, tmp_path, cli_error):
    corpus, queries = tiny
    corpus.write_text("d1\tgood text\nd2 no tab here\n", encoding="utf-8")
    err = cli_error(["retrieve", "--queries", str(queries), "--corpus", str(corpus), "-o", str(tmp_path / "x.run")])
    assert f"{corpus}:2:" in err
    assert not (tmp_path / "x.run").exists()


def test_malformed_queries_line_is_reported(tiny, tmp_path, cli_error):
    corpus, queries = tiny
    queries.write_text("q1\tfine\nq2\n", encoding="utf-8")
    err = cli_error(["retrieve", "--queries", str(queries), "--corpus", str(corpus), "-o", str(tmp_path / "x.run")])
    assert f"{queries}:2:" in err


def test_unknown_irds_id_names_ir_datasets_home(tmp_path, cli_error):
    err = cli_error(["retrieve", "--dataset", "irds:does-not-exist", "-o", str(tmp_path / "x.run")])
    assert "does-not-exist" in err and "IR_DATASETS_HOME" in err


def test_offline_download_fails_fast_with_a_hint(shared_data, tmp_path):
    """An empty IR_DATASETS_HOME makes ir_datasets download; offline that must end quickly in one message."""
    env = dict(os.environ, IR_DATASETS_HOME=str(tmp_path / "empty"), IR_DATASETS_DL_TRIES="1",
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    (tmp_path / "empty").mkdir()
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "rankdistill", "retrieve", "--dataset", "irds:vaswani", "-o", str(tmp_path / "x.run")],
        env=env, capture_output=True, text=True, timeout=120,
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "IR_DATASETS_HOME" in error_lines[0]
    assert elapsed < 60


def test_vaswani_retrieval_is_sane(shared_data, tmp_path):
    """Real collection: every query gets k hits and the index takes seconds (the issue's acceptance)."""
    started = time.perf_counter()
    out = retrieve("irds:vaswani", output=tmp_path / "v.run", index_dir=tmp_path / "idx", k=100, show_progress=False)
    assert time.perf_counter() - started < 30
    run = read_run(out)
    assert len(run) == 93 and all(len(r) == 100 for r in run.values())
