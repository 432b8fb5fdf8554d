"""Collections: queries, a random-access corpus and qrels, named one way everywhere.

A collection is named by ``irds:<ir_datasets id>``, by a folder (BEIR layout: corpus.jsonl,
queries.jsonl, qrels/<split>.tsv; or TSV files), or by separate files. Corpora from files are
copied once into an SQLite store in the cache folder, so lookups by id are random access without
holding millions of passages in memory.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from rankdistill.data.corpus import (
    IRDS_PREFIX,
    Corpus,
    IrdsCorpus,
    MissingDocumentError,
    SqliteCorpus,
    _irds_error,
)
from rankdistill.data.formats import read_queries
from rankdistill.data.trec import Qrels, Run, read_qrels
from rankdistill.errors import RankdistillError

CORPUS_NAMES = ("corpus.jsonl", "corpus.tsv", "collection.tsv", "passages.tsv", "docs.jsonl", "docs.tsv")
QUERY_NAMES = ("queries.jsonl", "queries.tsv", "topics.tsv")
QRELS_NAMES = ("qrels.txt", "qrels.tsv", "qrels")


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
            raise RankdistillError(f"collection {self.name} has no corpus; give corpus (a file) or a dataset with documents")
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
            "IR_DATASETS_HOME to a folder that holds the data, or give local files (dataset FOLDER, or queries, "
            "corpus, qrels)"
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
        raise RankdistillError("name a collection: dataset (irds:<id> or a folder), or queries/corpus/qrels files")
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


