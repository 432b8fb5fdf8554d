"""The steps of a build over one ranking: read the inputs, sample each query's list, attach targets, windows and
passages, count the set. :mod:`rankdistill.distillation.builder` runs them once (one teacher/first-stage pair),
:mod:`rankdistill.distillation.sources` once per candidate source or once on the fused runs; the rules are in
the builder's docstring.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rankdistill.data.trec import Qrels, Run, read_run
from rankdistill.distillation.options import BuildConfig
from rankdistill.distillation.sampling import cross_negatives, query_rng, rank_target, sample_indices
from rankdistill.errors import RankdistillError

Positions = dict[str, dict[str, tuple[int, float]]]  # qid -> docid -> (1-based rank, score)


@dataclass
class Sampled:
    """One ranking's rows (passages still None), the queries asked and skipped, and the names of what was read."""

    rows: list[dict[str, Any]]
    qids: list[str]
    skipped: list[str]
    ranking_source: str
    target_source: str | None


Windows = dict[str, dict[str, tuple[int, ...]]]  # qid -> docid -> its teacher-window ranges, flat (first, last, ...)


def sample(cfg: BuildConfig, inputs: Inputs, progress: bool = True, source: str | None = None,
           windows: Windows | None = None) -> Sampled:
    """Every query's list from ``inputs``; ``source`` names the lists, ``windows`` replaces the replayed ones."""
    from rankdistill.util.progress import track

    target_run, target_source = _target_ranking(cfg, inputs)
    ranking, ranking_source = sampled_ranking(cfg, inputs)
    qids = _queries(cfg, inputs, ranking, ranking_source)
    if windows is None and cfg.pairs == "compared":
        windows = teacher_windows(cfg, qids, inputs)
    maker = _ListMaker(
        cfg, inputs.queries, ranking, inputs.qrels, _positions(inputs.teacher), _positions(inputs.first),
        _positions(target_run), target_source, source=source, windows=windows or {},
        # passages of every query, for cross-query negatives: with few training queries a student can fit each
        # list by passage features alone; a passage that answers another query must score below this query's own
        pool=[docid for q in qids for docid, _ in ranking[q][: cfg.depth]] if cfg.cross_negatives else [],
    )
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for qid in track(qids, "sampling" if source is None else f"sampling {source}", disable=not progress):
        items = maker.rows(qid)
        if items is None:
            skipped.append(qid)
        else:
            rows.extend(items)
    if not rows:
        raise RankdistillError(
            f"no query could be sampled: all {len(skipped)} lack a judged-relevant passage (grade >= "
            f"{cfg.relevant_grade}) in the top {cfg.depth} of {ranking_source}"
        )
    return Sampled(rows, qids, skipped, ranking_source, target_source)


@dataclass
class Inputs:
    """What one build reads, each with the name its errors use."""

    collection: Any  # rankdistill.data.collection.Collection
    teacher: Run | None
    first: Run | None
    qrels: Qrels | None
    teacher_source: str | None
    first_source: str | None
    qrels_source: str | None

    @property
    def queries(self) -> dict[str, str]:
        return self.collection.queries


def read_inputs(cfg: BuildConfig, collection: Any = None) -> Inputs:
    """The runs and the collection (read unless given); the dataset's scoreddocs stand in for a missing first stage."""
    from rankdistill.data.collection import load_collection

    teacher = read_run(cfg.teacher_run) if cfg.teacher_run else None
    first = read_run(cfg.first_stage_run) if cfg.first_stage_run else None
    if cfg.dataset is None and cfg.queries is None:
        raise RankdistillError("name the queries and passages: dataset (irds:<id> or a folder), or queries and corpus")
    coll = collection or load_collection(cfg.dataset, queries=cfg.queries, corpus=cfg.corpus, qrels=cfg.qrels,
                                         split=cfg.split, fix_encoding=cfg.fix_encoding)
    qrels = coll.qrels
    qrels_source = str(cfg.qrels) if cfg.qrels else (f"qrels of {coll.name}" if qrels else None)
    first_source = str(cfg.first_stage_run) if cfg.first_stage_run else None
    if first is None and coll.scoreddocs:
        first, first_source = coll.scoreddocs, f"scoreddocs of {coll.name}"
    teacher_source = str(cfg.teacher_run) if cfg.teacher_run else None
    return Inputs(coll, teacher, first, qrels, teacher_source, first_source, qrels_source)


def _target_ranking(cfg: BuildConfig, inputs: Inputs) -> tuple[Run | None, str | None]:
    """The ranking ``rank``/``score`` targets come from (None for ``relevance``), and its name."""
    if cfg.targets in ("rank", "score"):
        if inputs.teacher is not None:
            return inputs.teacher, inputs.teacher_source
        if inputs.first is None:
            raise RankdistillError(
                f"targets {cfg.targets!r} needs a ranking: give teacher_run (or first_stage_run); "
                "with only qrels use targets 'relevance'"
            )
        return inputs.first, inputs.first_source
    if inputs.qrels is None:
        raise RankdistillError("targets 'relevance' needs qrels: give qrels (a file) or a dataset with qrels")
    return None, inputs.qrels_source


def sampled_ranking(cfg: BuildConfig, inputs: Inputs) -> tuple[Run, str]:
    """The ranking whose top ``depth`` is sampled, and its name."""
    if cfg.sampling == "single-relevant":
        if inputs.qrels is None:
            raise RankdistillError(
                "sampling 'single-relevant' needs qrels to find the relevant passage: give qrels (a file)"
            )
        if cfg.negatives == "first-stage":
            ranking, source, param, other = inputs.first, inputs.first_source, "first_stage_run", "teacher"
        else:
            ranking, source, param, other = inputs.teacher, inputs.teacher_source, "teacher_run", "first-stage"
        if ranking is None:
            raise RankdistillError(
                f"sampling 'single-relevant' draws hard negatives from the {cfg.negatives} run: give {param} "
                f"or set negatives {other!r}"
            )
        return ranking, source
    if inputs.teacher is not None:
        return inputs.teacher, inputs.teacher_source
    if inputs.first is not None:
        return inputs.first, inputs.first_source
    if inputs.qrels is not None:
        return _qrels_ranking(inputs.qrels), f"judged passages of {inputs.qrels_source}"
    raise RankdistillError("nothing to learn from: give teacher_run, first_stage_run or qrels")


def _queries(cfg: BuildConfig, inputs: Inputs, ranking: Run, ranking_source: str) -> list[str]:
    """``qids`` (else the ranking's queries), each with a text and candidates."""
    qids = list(dict.fromkeys(cfg.qids)) if cfg.qids is not None else list(ranking)
    no_text = [q for q in qids if not (inputs.queries.get(q) or "").strip()]
    if no_text:
        raise RankdistillError(
            f"{len(no_text)} query id(s) have no text in {cfg.queries or inputs.collection.name}, e.g. {no_text[:5]}; "
            "the runs and the queries must come from the same collection (or restrict qids)"
        )
    no_candidates = [q for q in qids if not ranking.get(q)]
    if no_candidates:
        raise RankdistillError(
            f"{len(no_candidates)} query id(s) have no candidates in {ranking_source}, e.g. {no_candidates[:5]}; "
            "restrict qids or use a ranking that covers them"
        )
    return qids


def teacher_windows(cfg: BuildConfig, qids: list[str], inputs: Inputs) -> Windows:
    """qid -> docid -> (first, last) teacher window, replayed from the first-stage order (``pairs='compared'``)."""
    from rankdistill.teacher.windows import replay_windows

    teacher, first = inputs.teacher, inputs.first
    if cfg.targets not in ("rank", "score") or teacher is None or first is None:
        raise RankdistillError(
            "pairs 'compared' needs the teacher run and the first-stage run it re-ranked (teacher_run and "
            "first_stage_run) and targets 'rank' or 'score'"
        )
    out: Windows = {}
    failed: list[str] = []
    for qid in qids:
        candidates = [docid for docid, _ in first.get(qid, [])[: cfg.teacher_depth]]
        among = set(candidates)
        ranked = [docid for docid, _ in teacher.get(qid, []) if docid in among]
        spans = replay_windows(candidates, ranked, cfg.teacher_window, cfg.teacher_stride)
        if spans is None:
            failed.append(qid)
        else:
            out[qid] = spans
    if failed:
        raise RankdistillError(
            f"pairs 'compared': for {len(failed)} of {len(qids)} queries (e.g. {failed[:5]}) {inputs.teacher_source} is "
            f"not a sliding-window re-ranking (window {cfg.teacher_window}, stride {cfg.teacher_stride}, bottom to top) "
            f"of the top {cfg.teacher_depth} of {inputs.first_source}; give the teacher's teacher_window/teacher_stride/"
            "teacher_depth, or use pairs 'all'"
        )
    return out


@dataclass
class _ListMaker:
    """Makes one query's rows: sample, attach targets and the other columns, add cross negatives, order."""

    cfg: BuildConfig
    queries: dict[str, str]
    ranking: Run
    qrels: Qrels | None
    teacher: Positions
    first: Positions
    target: Positions
    target_source: str | None
    source: str | None = None
    windows: Windows = field(default_factory=dict)
    pool: list[str] = field(default_factory=list)

    def rows(self, qid: str) -> list[dict[str, Any]] | None:
        """The query's rows in ``position`` order (passages still None); None when its sampling finds nothing."""
        cfg = self.cfg
        candidates = [docid for docid, _ in self.ranking[qid][: cfg.depth]]
        grades = (self.qrels or {}).get(qid, {})
        relevant = [d in grades and grades[d] >= cfg.relevant_grade for d in candidates]
        chosen = sample_indices(len(candidates), cfg.sample_size, cfg.sampling, query_rng(cfg.seed, qid), relevant)
        if chosen is None:
            return None
        items = [self._row(qid, candidates[idx], grades, (idx, order)) for order, idx in enumerate(chosen)]
        if cfg.cross_negatives:
            items += self._cross_rows(qid, grades, items, len(candidates))
        # target descending, ties in the sampled ranking's order
        items.sort(key=lambda r: (-r["target"], r["_order"]))
        for position, item in enumerate(items):
            item["position"] = position
            del item["_order"]
        return items

    def _target(self, qid: str, docid: str, grades: dict[str, int]) -> float:
        if self.cfg.targets == "relevance":
            return float(grades.get(docid, 0))
        hit = self.target.get(qid, {}).get(docid)
        if self.cfg.targets == "rank":
            return rank_target(hit[0] if hit else None, self.cfg.depth)
        if hit is None:
            raise RankdistillError(
                f"targets 'score': passage {docid!r} of query {qid!r} has no score in {self.target_source}; "
                "use targets 'rank' or a ranking that scores every sampled passage"
            )
        return float(hit[1])

    def _row(self, qid: str, docid: str, grades: dict[str, int], order: tuple[int, int]) -> dict[str, Any]:
        t = self.teacher.get(qid, {}).get(docid)
        f = self.first.get(qid, {}).get(docid)
        w = self.windows.get(qid, {}).get(docid, ())
        return {
            "qid": qid, "query": self.queries[qid], "docid": docid, "passage": None,
            "target": self._target(qid, docid, grades),
            "teacher_rank": t[0] if t else None, "teacher_score": t[1] if t else None,
            "first_stage_rank": f[0] if f else None, "first_stage_score": f[1] if f else None,
            "relevance": grades.get(docid) if self.qrels is not None else None, "_order": order,
            "window_first": w[0] if w else None, "window_last": w[1] if w else None,
            "window_ranges": list(w) if len(w) > 2 else None, "source": self.source,
        }

    def _cross_rows(self, qid: str, grades: dict[str, int], items: list[dict[str, Any]], n: int) -> list[dict[str, Any]]:
        """Passages of other queries, one below the lowest own target (0 for relevance targets)."""
        cfg = self.cfg
        own = {docid for docid, _ in self.ranking[qid]} | set(grades)
        floor = 0.0 if cfg.targets == "relevance" else min(r["target"] for r in items) - 1.0
        picked = cross_negatives(self.pool, own, cfg.cross_negatives, query_rng(cfg.seed + 1, qid))
        return [
            {"qid": qid, "query": self.queries[qid], "docid": docid, "passage": None, "target": floor,
             "teacher_rank": None, "teacher_score": None, "first_stage_rank": None, "first_stage_score": None,
             "relevance": None, "_order": (n + i, len(items) + i), "window_first": None, "window_last": None,
             "window_ranges": None, "source": self.source}
            for i, docid in enumerate(picked)
        ]


def attach_passages(rows: list[dict[str, Any]], inputs: Inputs, ranking_source: str) -> None:
    """Fill in each row's passage text from the corpus (every id must be there)."""
    corpus = inputs.collection.corpus
    if corpus is None:
        raise RankdistillError(
            f"collection {inputs.collection.name} has no corpus: give corpus (a file) or a dataset with passages"
        )
    wanted = list(dict.fromkeys(r["docid"] for r in rows))
    texts = corpus.get_many(wanted)
    missing = [d for d in wanted if d not in texts]
    if missing:
        raise RankdistillError(
            f"{len(missing)} candidate id(s) from {ranking_source} are not in the corpus {corpus.name}, "
            f"e.g. {missing[:5]}; the runs and the corpus must come from the same collection"
        )
    for row in rows:
        row["passage"] = texts[row["docid"]]


def _positions(run: Run | None) -> Positions:
    """qid -> docid -> (1-based rank, score) for fast lookups."""
    if run is None:
        return {}
    return {qid: {docid: (i + 1, score) for i, (docid, score) in enumerate(ranked)} for qid, ranked in run.items()}


def _qrels_ranking(qrels: Qrels) -> Run:
    # judged passages, best grade first (stable: file order within a grade)
    return {qid: sorted(((d, float(g)) for d, g in docs.items()), key=lambda x: -x[1]) for qid, docs in qrels.items()}


def set_stats(rows: list[dict[str, Any]], asked: int, skipped: list[str], compared: bool = False) -> dict[str, Any]:
    """The set's counts: queries, lists (one per query and source), rows, training pairs, targets, judgements."""
    from rankdistill.teacher.windows import ordered_pairs

    lists: dict[tuple[str, str | None], list[dict[str, Any]]] = {}
    for r in rows:
        lists.setdefault((r["qid"], r["source"]), []).append(r)
    lengths = [len(v) for v in lists.values()]
    tvals = [r["target"] for r in rows]
    grades = Counter("unjudged" if r["relevance"] is None else str(r["relevance"]) for r in rows)
    distinct = Counter(tvals)
    pairs = sum(ordered_pairs([r["target"] for r in items], [_ranges(r) for r in items] if compared else None)
                for items in lists.values())
    return {
        "queries": len({qid for qid, _ in lists}),
        "queries_asked": asked,
        "skipped_no_relevant": len(skipped),
        "skipped_qids": skipped[:50],
        "lists": len(lists),
        "rows": len(rows),
        "pairs": pairs,
        "list_length": {"min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)},
        "target": {"min": min(tvals), "mean": sum(tvals) / len(tvals), "max": max(tvals), "distinct": len(distinct)},
        "target_counts": {repr(k): v for k, v in sorted(distinct.items(), reverse=True)} if len(distinct) <= 10 else None,
        "relevance_counts": dict(sorted(grades.items())),
        "with_teacher_rank": sum(r["teacher_rank"] is not None for r in rows),
        "with_first_stage_rank": sum(r["first_stage_rank"] is not None for r in rows),
    }


def _ranges(row: dict[str, Any]) -> tuple[int, ...]:
    """A row's teacher-window ranges, flat: ``window_ranges`` when it has several, else its one range, else none."""
    if row.get("window_ranges"):
        return tuple(row["window_ranges"])
    return () if row.get("window_first") is None else (row["window_first"], row["window_last"])
