"""BM25 first stage: a bm25s index built once into a folder, memory-mapped for search, TREC run out.

Text analysis follows Lucene's English analyzer, the one Anserini/Pyserini use for their published
BM25 figures: lower-casing, Lucene's 33 English stop words (bm25s' ``"en"`` list) and the Porter
stemmer (PyStemmer ``"porter"``; ``"english"`` selects Snowball/Porter2 instead).

The index folder holds bm25s' files (``*.npy`` score matrix in CSC form, ``vocab.index.json``,
``params.index.json``), ``docids.txt`` (row i of the matrix is the document on line i+1) and
``rankdistill-index.json`` (the parameters and corpus identity; written last, so a folder without it
is not a finished index). The folder is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from rankdistill.data.trec import Run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.util.files import atomic_write

log = logging.getLogger(__name__)

INDEX_FORMAT = 1
META_NAME = "rankdistill-index.json"
DOCIDS_NAME = "docids.txt"
METHODS = ("lucene", "robertson", "atire", "bm25l", "bm25+")


class EmptyQueryWarning(UserWarning):
    """A query with no searchable term (all stop words, or no word at all): its result is empty."""


def _tokenizer(stemmer: str, vocab: dict[str, int] | None = None):
    """bm25s' tokenizer with PyStemmer; given ``vocab`` (stem -> id) it maps queries onto an index."""
    import bm25s.tokenization
    import Stemmer

    try:
        stem = Stemmer.Stemmer(stemmer)
    except KeyError:
        raise RankdistillError(
            f"unknown stemmer {stemmer!r}; PyStemmer offers {', '.join(Stemmer.algorithms())}"
        ) from None
    tok = bm25s.tokenization.Tokenizer(lower=True, stopwords="en", stemmer=stem)
    if vocab is not None:
        tok.stem_to_sid = dict(vocab)
    return tok


def _size_hint(corpus) -> int | None:
    """Number of documents for the progress bar, without a full scan where the source can tell."""
    dataset = getattr(corpus, "_dataset", None)  # ir_datasets knows its count without iterating
    if dataset is not None:
        try:
            return int(dataset.docs_count())
        except Exception:
            return None
    try:
        return len(corpus)
    except TypeError:
        return None


def corpus_identity(corpus) -> str:
    """A string that changes when the corpus does: the SQLite store's name hashes path, size and mtime."""
    db_path = getattr(corpus, "db_path", None)
    if db_path is not None:
        return f"file:{Path(db_path).name}"
    return str(getattr(corpus, "name", repr(corpus)))


def default_index_dir(identity: str, *, k1: float, b: float, method: str, stemmer: str) -> Path:
    """``cache_dir()/bm25/<hash>``: one folder per corpus and parameter set."""
    from rankdistill.data.corpus import cache_dir

    key = json.dumps([identity, k1, b, method, stemmer, "en", INDEX_FORMAT])
    return cache_dir() / "bm25" / hashlib.sha1(key.encode()).hexdigest()[:16]


class BM25Index:
    """A BM25 index over one corpus: ``build`` once, ``load`` (memory-mapped) afterwards, ``search``."""

    def __init__(self, directory: Path, model, docids: list[str], meta: dict):
        self.directory = Path(directory)
        self.model = model
        self.docids = docids
        self.meta = meta
        self._tok = _tokenizer(meta["stemmer"], model.vocab_dict)
        # Postings in CSC form: column t holds the documents that contain stem t.
        self._indptr = model.scores["indptr"]
        self._indices = model.scores["indices"]

    def __len__(self) -> int:
        return len(self.docids)

    # ------------------------------------------------------------------ building
    @classmethod
    def build(
        cls,
        documents: Iterable[tuple[str, str]],
        directory: str | Path,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str = "porter",
        identity: str = "",
        total: int | None = None,
        show_progress: bool = True,
    ) -> BM25Index:
        """Tokenise ``documents`` (streamed) and write the index to ``directory``.

        Memory: the text is streamed one document at a time and doc ids go straight to disk, but bm25s
        needs every document's token-id list at once to compute document frequencies and the score
        matrix, so about 8 bytes per (non-stop-word) token plus the vocabulary stay in memory while
        building (an estimate, not measured: ~3 GB for the 8.8M MS MARCO passages).
        """
        import bm25s

        from rankdistill.util.progress import make_progress, status

        if method not in METHODS:
            raise RankdistillError(f"unknown BM25 method {method!r}; choose one of {', '.join(METHODS)}")
        directory = Path(directory)
        tok = _tokenizer(stemmer)
        started = time.perf_counter()
        tmp = directory.parent / f".{directory.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            token_ids: list[list[int]] = []
            seen: set[str] = set()
            with (tmp / DOCIDS_NAME).open("w", encoding="utf-8") as ids_out, make_progress(disable=not show_progress) as bar:
                task = bar.add_task("BM25 tokenise", total=total)

                def texts() -> Iterator[str]:
                    for docid, text in documents:
                        if docid in seen:
                            raise RankdistillError(f"document id {docid!r} occurs twice in the corpus; ids must be unique")
                        seen.add(docid)
                        if any(c.isspace() for c in docid) or not docid:
                            raise RankdistillError(f"document id {docid!r} contains white space; TREC runs cannot hold it")
                        ids_out.write(docid + "\n")
                        bar.advance(task)
                        yield text

                for ids in tok.streaming_tokenize(texts(), update_vocab=True, allow_empty=True):
                    token_ids.append(ids)
            seen.clear()
            if not token_ids:
                raise RankdistillError("the corpus has no documents; nothing to index")
            with status("BM25 weights", disable=not show_progress):
                model = bm25s.BM25(k1=k1, b=b, method=method)
                model.index((token_ids, tok.get_vocab_dict()), show_progress=False)
                del token_ids
                model.save(tmp, show_progress=False)
            meta = {
                "format": INDEX_FORMAT,
                "corpus": identity,
                "num_docs": int(model.scores["num_docs"]),
                "vocab_size": len(model.vocab_dict),
                "k1": k1,
                "b": b,
                "method": method,
                "stemmer": stemmer,
                "stopwords": "lucene-en",
                "bm25s_version": bm25s.__version__,
                "build_seconds": round(time.perf_counter() - started, 3),
            }
            with atomic_write(tmp / META_NAME) as out:
                json.dump(meta, out, indent=2)
            if directory.is_dir() and not any(directory.iterdir()):
                directory.rmdir()  # an empty folder the user made for us
            try:
                os.replace(tmp, directory)
            except OSError:
                if not (directory / META_NAME).is_file():
                    raise
                shutil.rmtree(tmp, ignore_errors=True)  # another process finished the same index first
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return cls.load(directory)

    @classmethod
    def load(cls, directory: str | Path, mmap: bool = True) -> BM25Index:
        """Open a finished index; the score matrix is memory-mapped, not read into memory."""
        import bm25s

        directory = Path(directory)
        meta_path = directory / META_NAME
        if not meta_path.is_file():
            raise RankdistillError(f"{directory}: not a rankdistill BM25 index (no {META_NAME}); build one with rankdistill retrieve")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != INDEX_FORMAT:
            raise RankdistillError(f"{directory}: index format {meta.get('format')} is not {INDEX_FORMAT}; delete the folder to rebuild it")
        model = bm25s.BM25.load(directory, mmap=mmap, show_progress=False)
        docids = (directory / DOCIDS_NAME).read_text(encoding="utf-8").split("\n")[:-1]
        if len(docids) != meta["num_docs"]:
            raise RankdistillError(f"{directory}: {DOCIDS_NAME} has {len(docids)} ids for {meta['num_docs']} documents; delete the folder to rebuild it")
        return cls(directory, model, docids, meta)

    @classmethod
    def open(
        cls,
        corpus,
        directory: str | Path | None = None,
        *,
        k1: float = 0.9,
        b: float = 0.4,
        method: str = "lucene",
        stemmer: str = "porter",
        show_progress: bool = True,
    ) -> tuple[BM25Index, bool]:
        """Load the index of ``corpus`` if it exists, else build it; returns ``(index, built_now)``."""
        identity = corpus_identity(corpus)
        if directory is None:
            directory = default_index_dir(identity, k1=k1, b=b, method=method, stemmer=stemmer)
        directory = Path(directory)
        wanted = {"corpus": identity, "k1": k1, "b": b, "method": method, "stemmer": stemmer}
        if (directory / META_NAME).is_file():
            index = cls.load(directory)
            differ = {key: index.meta.get(key) for key, value in wanted.items() if index.meta.get(key) != value}
            if differ:
                raise RankdistillError(
                    f"{directory}: this index was built with {differ}, not {({k: wanted[k] for k in differ})}; "
                    "give another index_dir (or none, to use the cache)"
                )
            return index, False
        if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
            raise RankdistillError(f"{directory}: exists and is not a rankdistill BM25 index; name an empty or new folder")
        index = cls.build(
            corpus, directory, k1=k1, b=b, method=method, stemmer=stemmer, identity=identity,
            total=_size_hint(corpus), show_progress=show_progress,
        )
        return index, True

    # ------------------------------------------------------------------ searching
    def query_terms(self, text: str) -> list[int]:
        """Stem ids of a query that occur in the index (unknown stems and stop words dropped)."""
        return next(self._tok.streaming_tokenize([text], update_vocab=False, allow_empty=False))

    def search_one(self, text: str, k: int = 1000) -> list[tuple[str, float]]:
        """Top ``k`` documents that contain a query term, best first; ties in order of the corpus."""
        terms = self.query_terms(text)
        if not terms:
            return []
        scores = self.model.get_scores_from_ids(terms)
        terms_arr = np.asarray(terms, dtype=np.int64)
        starts, ends = self._indptr[terms_arr], self._indptr[terms_arr + 1]
        matching = np.unique(np.concatenate([self._indices[s:e] for s, e in zip(starts, ends)]))
        cand_scores = scores[matching]
        if len(matching) > k:
            # keep every document tied with the k-th score, so the cut below is deterministic
            kth = np.partition(cand_scores, len(cand_scores) - k)[len(cand_scores) - k]
            keep = cand_scores >= kth
            matching, cand_scores = matching[keep], cand_scores[keep]
        order = np.lexsort((matching, -cand_scores))[:k]
        return [(self.docids[i], float(cand_scores[j])) for j, i in zip(order, matching[order])]

    def search(self, queries: Mapping[str, str], k: int = 1000, show_progress: bool = True) -> Run:
        """Search every query; queries with no searchable term get an empty list and one warning."""
        from rankdistill.util.progress import track

        run: Run = {}
        empty: list[str] = []
        unmatched: list[str] = []
        for qid, text in track(queries.items(), "BM25 search", total=len(queries), disable=not show_progress):
            run[qid] = self.search_one(text, k)
            if not run[qid]:
                (unmatched if _has_terms(self._tok, text) else empty).append(qid)
        if empty:
            warnings.warn(
                f"{_count(empty, 'query has', 'queries have')} no searchable term after tokenisation "
                f"(stop words only, or no word of 2+ letters), so an empty result: {', '.join(empty[:10])}",
                EmptyQueryWarning,
                stacklevel=2,
            )
        if unmatched:
            warnings.warn(
                f"{_count(unmatched, 'query matches', 'queries match')} no indexed term, so an empty result: "
                f"{', '.join(unmatched[:10])}",
                EmptyQueryWarning,
                stacklevel=2,
            )
        return run


def _count(items: list, one: str, many: str) -> str:
    return f"{len(items)} {one if len(items) == 1 else many}"


def _has_terms(tok, text: str) -> bool:
    """Whether the query keeps any word after stop-word removal (known to the index or not)."""
    words = tok.splitter(text.lower())
    stop = set(tok.stopwords or ())
    return any(w not in stop for w in words)


def retrieve(
    dataset: str | Path | None = None,
    *,
    queries: str | Path | Mapping[str, str] | None = None,
    corpus: str | Path | None = None,
    index_dir: str | Path | None = None,
    output: str | Path,
    k: int = 1000,
    k1: float = 0.9,
    b: float = 0.4,
    method: str = "lucene",
    stemmer: str = "porter",
    split: str = "test",
    fix_encoding: bool = False,
    tag: str = "bm25",
    show_progress: bool = True,
) -> Path:
    """BM25-retrieve the top ``k`` documents of every query and write them as a TREC run to ``output``.

    The index is built on first use (into ``index_dir``, default ``cache_dir()/bm25/<hash>``) and
    memory-mapped afterwards. ``queries`` may be a file or a ``{qid: text}`` mapping. k1=0.9, b=0.4 are
    Anserini's defaults.
    """
    from rankdistill.data.collection import load_collection

    if k < 1:
        raise RankdistillError(f"k must be at least 1, not {k}")
    if not 0 <= k1 < float("inf"):
        raise RankdistillError(f"k1 must be a number of at least 0 (term-frequency saturation), not {k1}")
    if not 0 <= b <= 1:
        raise RankdistillError(f"b must lie between 0 and 1 (length normalisation), not {b}")
    query_map = dict(queries) if isinstance(queries, Mapping) else None
    collection = load_collection(
        dataset, queries=None if query_map is not None else queries, corpus=corpus, split=split, fix_encoding=fix_encoding
    )
    if query_map is not None:
        collection.queries = query_map
    if collection.corpus is None:
        raise RankdistillError(f"collection {collection.name} has no corpus to index; give corpus (a file) or a dataset with documents")
    if not collection.queries:
        raise RankdistillError(f"collection {collection.name} has no queries; give queries (a file)")
    started = time.perf_counter()
    index, built = BM25Index.open(
        collection.corpus, index_dir, k1=k1, b=b, method=method, stemmer=stemmer, show_progress=show_progress
    )
    index_seconds = time.perf_counter() - started
    started = time.perf_counter()
    run = index.search(collection.queries, k=k, show_progress=show_progress)
    search_seconds = time.perf_counter() - started
    path = write_run(run, output, tag=tag)
    log.info(
        "BM25 index %s in %.2f s (%s documents, %s); searched %s queries in %.2f s", "built" if built else "loaded",
        index_seconds, f"{len(index):,}", index.directory, f"{len(run):,}", search_seconds,
    )
    return path
