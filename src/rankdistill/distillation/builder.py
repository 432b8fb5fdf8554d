"""Distillation sets: sample each query's candidates from a ranking and attach the student's targets.

The sampling strategies re-implement lightning-ir's ``RunDataset``/``Sampler`` (the code behind the
Rank-DistiLLM paper), with a numpy ``Generator`` per query so a set is reproducible from its seed and
does not depend on the order in which queries are processed.

Output: one parquet file, one row per (query, candidate), rows grouped by query and ordered by
``position`` (0-based; target descending, ties in the sampled ranking's order). The schema is the
contract with ``rankdistill train`` (see ``SCHEMA``); the parquet key-value metadata ``rankdistill``
holds the build config and the counts as JSON.

Which ranking is sampled:
- ``single-relevant``: the ranking named by ``negatives`` (the first-stage run by default, as in the
  paper's stage 1): one judged-relevant passage (grade >= ``relevant_grade``) from its top ``depth`` plus
  ``sample_size - 1`` passages from the same top ``depth`` that are not judged relevant.
- every other strategy: the teacher run if given, else the first-stage run (a file, or the dataset's
  own ``scoreddocs``), else the judged passages of the qrels ordered by grade.

Targets (higher = better): ``rank`` -> ``depth - rank + 1`` from the teacher run (else the first-stage
run), 0 for a passage the ranking does not hold within ``depth``; ``score`` -> the teacher's score (else
the first stage's), a passage without one is an error; ``relevance`` -> the qrels grade, unjudged = 0.

Pairs: ``compared`` stores, for each passage the sliding-window teacher ranked, the first and last of its
windows (``window_first``/``window_last``, replayed from the first-stage run: see
:mod:`rankdistill.teacher.windows`); a pairwise loss then learns only the order of passages whose windows
met, i.e. what the LLM judged, not the first-stage order it carried along. Passages without windows (cross
negatives, passages below the teacher's depth) are ordered by their targets against every other passage.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rankdistill.errors import RankdistillError
from rankdistill.data.trec import Qrels, Run, read_qrels, read_run

SAMPLINGS = ("top", "random", "log-random", "top-and-random", "single-relevant")
TARGETS = ("rank", "score", "relevance")
NEGATIVES = ("first-stage", "teacher")
METADATA_KEY = b"rankdistill"

Sampling = Literal["top", "random", "log-random", "top-and-random", "single-relevant"]


def _schema():
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("qid", pa.string(), nullable=False),
            pa.field("query", pa.string(), nullable=False),
            pa.field("docid", pa.string(), nullable=False),
            pa.field("passage", pa.string(), nullable=False),
            pa.field("target", pa.float64(), nullable=False),
            pa.field("teacher_rank", pa.int32()),
            pa.field("teacher_score", pa.float64()),
            pa.field("first_stage_rank", pa.int32()),
            pa.field("first_stage_score", pa.float64()),
            pa.field("relevance", pa.int32()),
            pa.field("position", pa.int32(), nullable=False),
            # --pairs compared: the first and last teacher window that held the passage (0 = the first, bottom one)
            pa.field("window_first", pa.int32()),
            pa.field("window_last", pa.int32()),
        ]
    )


class BuildConfig(BaseModel):
    """Every knob of ``build``; the CLI's ``--config`` YAML and its flags both end up here."""

    model_config = ConfigDict(extra="forbid")

    output: Path = Field(..., description="Parquet file to write.")
    teacher_run: Path | None = Field(None, description="TREC run of the teacher (its rank column is the teacher's order).")
    first_stage_run: Path | None = Field(None, description="TREC run of the first stage (hard negatives).")
    qrels: Path | None = Field(None, description="TREC qrels (else the dataset's own).")
    dataset: str | None = Field(None, description="irds:<id> or a folder with queries and corpus.")
    queries: Path | None = None
    corpus: Path | None = None
    split: str = "test"
    fix_encoding: bool = False
    depth: int = Field(100, gt=0, description="Candidates come from the top `depth` of the ranking.")
    sample_size: int = Field(100, gt=0, description="Passages per query (k).")
    sampling: Sampling = "top"
    targets: Literal["rank", "score", "relevance"] = "rank"
    negatives: Literal["first-stage", "teacher"] = "first-stage"
    relevant_grade: int = Field(1, description="Lowest qrels grade that counts as relevant (single-relevant).")
    cross_negatives: int = Field(
        0, ge=0, description="Passages of other queries added to each list below every own candidate (query-dependence)."
    )
    pairs: Literal["all", "compared"] = Field(
        "all", description="Which pairs train a pairwise loss: every ordered pair, or only those the teacher compared."
    )
    teacher_window: int = Field(20, gt=1, description="--pairs compared: the teacher's window size.")
    teacher_stride: int = Field(10, gt=0, description="--pairs compared: the teacher's stride.")
    teacher_depth: int = Field(100, gt=0, description="--pairs compared: how many first-stage candidates the teacher ranked.")
    seed: int = 0
    qids: list[str] | None = None

    @field_validator("sampling", "negatives", mode="before")
    @classmethod
    def _hyphens(cls, value: Any) -> Any:
        # lightning-ir spells them with underscores (log_random); accept both
        return value.replace("_", "-") if isinstance(value, str) else value

    @field_validator("qids", mode="before")
    @classmethod
    def _qid_list(cls, value: Any) -> Any:
        if value is None or isinstance(value, list | tuple):
            return None if value is None else [str(v) for v in value]
        if isinstance(value, Path) or (isinstance(value, str) and Path(value).is_file()):
            return [line.strip() for line in Path(value).read_text(encoding="utf-8").splitlines() if line.strip()]
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return [str(v) for v in value]


def describe_validation_error(exc: ValidationError, where: str = "") -> RankdistillError:
    """One line naming each bad key and, for choices, the allowed values."""
    problems = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "literal_error":
            msg = f"{err.get('input')!r} is not allowed; choose one of {err['ctx']['expected']}"
        elif err["type"] == "extra_forbidden":
            msg = f"unknown option; known options: {', '.join(BuildConfig.model_fields)}"
        elif err["type"] == "missing":
            msg = f"required: pass --{key.replace('_', '-')} or set '{key}' in the --config file"
        else:
            msg = err["msg"]
        problems.append(f"{key}: {msg}")
    prefix = f"{where}: " if where else ""
    return RankdistillError(prefix + "; ".join(problems))


def query_rng(seed: int, qid: str) -> np.random.Generator:
    """A generator for one query, from the set's seed and the query id (independent of query order)."""
    digest = int.from_bytes(hashlib.sha256(qid.encode("utf-8")).digest()[:8], "little")
    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, digest]))


# --- sampling: each returns indices into the ranked candidate list (0 = best) -------------------------


def sample_indices(
    n: int,
    k: int,
    strategy: str,
    rng: np.random.Generator,
    relevant: Sequence[bool] | None = None,
) -> list[int] | None:
    """Pick up to ``k`` of ``n`` ranked candidates (0-based, best first) as lightning-ir's Sampler does.

    ``top``: the first k. ``random``: k uniformly without replacement. ``log-random``: k without
    replacement with weight 1/ln(1 + rank) (rank 1-based). ``top-and-random``: the first k//2, then
    k - k//2 uniformly from the rest. ``single-relevant``: one of the ``relevant`` candidates uniformly,
    then min(k-1, #non-relevant) of the non-relevant ones uniformly; None when no candidate is relevant.
    Lists shorter than k give all their candidates (lightning-ir drops such queries instead).
    """
    k = min(k, n) if strategy != "single-relevant" else k
    if strategy == "top":
        return list(range(k))
    if strategy == "random":
        return sorted(rng.choice(n, size=k, replace=False).tolist())
    if strategy == "log-random":
        weights = 1.0 / np.log1p(np.arange(1, n + 1, dtype=np.float64))
        return sorted(rng.choice(n, size=k, replace=False, p=weights / weights.sum()).tolist())
    if strategy == "top-and-random":
        top = k // 2
        rest = rng.choice(np.arange(top, n), size=k - top, replace=False).tolist()
        return list(range(top)) + sorted(rest)
    if strategy == "single-relevant":
        if relevant is None:
            raise ValueError("single-relevant sampling needs the relevance of each candidate")
        pos = [i for i in range(n) if relevant[i]]
        neg = [i for i in range(n) if not relevant[i]]
        if not pos:
            return None
        chosen = int(rng.choice(pos))
        negatives = rng.choice(neg, size=min(k - 1, len(neg)), replace=False).tolist() if neg else []
        return [chosen, *sorted(int(i) for i in negatives)]
    raise RankdistillError(f"unknown sampling {strategy!r}; choose one of {', '.join(SAMPLINGS)}")


def rank_target(rank: int | None, depth: int) -> float:
    """Teacher rank -> target, higher is better: depth - rank + 1 (0 beyond depth or when unranked)."""
    if rank is None:
        return 0.0
    return float(max(depth - rank + 1, 0))


# --- build -------------------------------------------------------------------------------------------


def _positions(run: Run | None) -> dict[str, dict[str, tuple[int, float]]]:
    """qid -> docid -> (1-based rank, score) for fast lookups."""
    if run is None:
        return {}
    return {qid: {docid: (i + 1, score) for i, (docid, score) in enumerate(ranked)} for qid, ranked in run.items()}


def _qrels_ranking(qrels: Qrels) -> Run:
    # judged passages, best grade first (stable: file order within a grade)
    return {qid: sorted(((d, float(g)) for d, g in docs.items()), key=lambda x: -x[1]) for qid, docs in qrels.items()}


def build(
    *,
    teacher_run: str | Path | None = None,
    first_stage_run: str | Path | None = None,
    qrels: str | Path | None = None,
    dataset: str | None = None,
    queries: str | Path | None = None,
    corpus: str | Path | None = None,
    output: str | Path,
    depth: int = 100,
    sample_size: int = 100,
    sampling: str = "top",
    targets: str = "rank",
    negatives: str = "first-stage",
    seed: int = 0,
    qids: Iterable[str] | str | Path | None = None,
    relevant_grade: int = 1,
    cross_negatives: int = 0,
    pairs: str = "all",
    teacher_window: int = 20,
    teacher_stride: int = 10,
    teacher_depth: int = 100,
    split: str = "test",
    fix_encoding: bool = False,
    progress: bool = True,
) -> Path:
    """Write a distillation set (parquet) and return its path; see the module docstring for the rules.

    Queries: ``qids`` (a list, a comma-separated string or a file with one id a line) if given, else every
    query of the sampled ranking, in its file order. Queries that
    ``single-relevant`` cannot serve (no judged-relevant passage in the top ``depth``) are skipped and
    counted, as the paper's datasets do; every other problem is an error naming the ids.
    """
    try:
        cfg = BuildConfig(
            teacher_run=teacher_run, first_stage_run=first_stage_run, qrels=qrels, dataset=dataset,
            queries=queries, corpus=corpus, output=output, depth=depth, sample_size=sample_size,
            sampling=sampling, targets=targets, negatives=negatives, seed=seed,
            qids=list(qids) if isinstance(qids, list | tuple | set) else qids,
            relevant_grade=relevant_grade, cross_negatives=cross_negatives, pairs=pairs, teacher_window=teacher_window,
            teacher_stride=teacher_stride, teacher_depth=teacher_depth, split=split, fix_encoding=fix_encoding,
        )
    except ValidationError as exc:
        raise describe_validation_error(exc) from None
    return build_from_config(cfg, progress=progress)


def build_from_config(cfg: BuildConfig, progress: bool = True) -> Path:
    from rankdistill.data.collection import load_collection
    from rankdistill.util.files import atomic_path
    from rankdistill.util.progress import track

    teacher = read_run(cfg.teacher_run) if cfg.teacher_run else None
    first = read_run(cfg.first_stage_run) if cfg.first_stage_run else None
    if cfg.dataset is None and cfg.queries is None:
        raise RankdistillError("name the queries and passages: --dataset irds:<id> or a folder, or --queries and --corpus")
    coll = load_collection(cfg.dataset, queries=cfg.queries, corpus=cfg.corpus, qrels=cfg.qrels, split=cfg.split,
                           fix_encoding=cfg.fix_encoding)
    qrels = coll.qrels
    qrels_source = str(cfg.qrels) if cfg.qrels else (f"qrels of {coll.name}" if qrels else None)
    first_source = str(cfg.first_stage_run) if cfg.first_stage_run else None
    if first is None and coll.scoreddocs:
        first, first_source = coll.scoreddocs, f"scoreddocs of {coll.name}"
    teacher_source = str(cfg.teacher_run) if cfg.teacher_run else None

    # where targets come from
    if cfg.targets in ("rank", "score"):
        target_run, target_source = (teacher, teacher_source) if teacher is not None else (first, first_source)
        if target_run is None:
            raise RankdistillError(
                f"--targets {cfg.targets} needs a ranking: pass --teacher-run (or --first-stage-run); "
                "with only qrels use --targets relevance"
            )
    else:
        if qrels is None:
            raise RankdistillError("--targets relevance needs qrels: pass --qrels FILE or a dataset with qrels")
        target_run, target_source = None, qrels_source

    # which ranking is sampled
    if cfg.sampling == "single-relevant":
        if qrels is None:
            raise RankdistillError("--sampling single-relevant needs qrels to find the relevant passage: pass --qrels FILE")
        ranking, ranking_source = (first, first_source) if cfg.negatives == "first-stage" else (teacher, teacher_source)
        if ranking is None:
            other = "--negatives teacher" if cfg.negatives == "first-stage" else "--negatives first-stage"
            flag = "--first-stage-run" if cfg.negatives == "first-stage" else "--teacher-run"
            raise RankdistillError(
                f"--sampling single-relevant draws hard negatives from the {cfg.negatives} run: pass {flag} or use {other}"
            )
    elif teacher is not None:
        ranking, ranking_source = teacher, teacher_source
    elif first is not None:
        ranking, ranking_source = first, first_source
    elif qrels is not None:
        ranking, ranking_source = _qrels_ranking(qrels), f"judged passages of {qrels_source}"
    else:
        raise RankdistillError("nothing to learn from: pass --teacher-run, --first-stage-run or --qrels")

    # the queries
    qids = list(dict.fromkeys(cfg.qids)) if cfg.qids is not None else list(ranking)
    no_text = [q for q in qids if not (coll.queries.get(q) or "").strip()]
    if no_text:
        raise RankdistillError(
            f"{len(no_text)} query id(s) have no text in {cfg.queries or coll.name}, e.g. {no_text[:5]}; "
            "the runs and the queries must come from the same collection (or restrict with --qids)"
        )
    no_candidates = [q for q in qids if not ranking.get(q)]
    if no_candidates:
        raise RankdistillError(
            f"{len(no_candidates)} query id(s) have no candidates in {ranking_source}, e.g. {no_candidates[:5]}; "
            "restrict the queries with --qids or use a ranking that covers them"
        )

    windows = _teacher_windows(cfg, qids, teacher, first, teacher_source, first_source) if cfg.pairs == "compared" else {}
    teacher_pos, first_pos, target_pos = _positions(teacher), _positions(first), _positions(target_run)
    # passages of every query, for cross-query negatives: with few training queries a student can fit each
    # list by passage features alone; a passage that answers another query must score below this query's own
    pool = [docid for q in qids for docid, _ in ranking[q][: cfg.depth]] if cfg.cross_negatives else []
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    for qid in track(qids, "sampling", disable=not progress):
        candidates = [docid for docid, _ in ranking[qid][: cfg.depth]]
        grades = (qrels or {}).get(qid, {})
        relevant = [d in grades and grades[d] >= cfg.relevant_grade for d in candidates]
        chosen = sample_indices(len(candidates), cfg.sample_size, cfg.sampling, query_rng(cfg.seed, qid), relevant)
        if chosen is None:
            skipped.append(qid)
            continue
        items = []
        for order, idx in enumerate(chosen):
            docid = candidates[idx]
            if cfg.targets == "relevance":
                target = float(grades.get(docid, 0))
            else:
                hit = target_pos.get(qid, {}).get(docid)
                if cfg.targets == "rank":
                    target = rank_target(hit[0] if hit else None, cfg.depth)
                else:
                    if hit is None:
                        raise RankdistillError(
                            f"--targets score: passage {docid!r} of query {qid!r} has no score in {target_source}; "
                            "use --targets rank or a ranking that scores every sampled passage"
                        )
                    target = float(hit[1])
            t = teacher_pos.get(qid, {}).get(docid)
            f = first_pos.get(qid, {}).get(docid)
            w = windows.get(qid, {}).get(docid, (None, None))
            items.append({
                "qid": qid, "query": coll.queries[qid], "docid": docid, "passage": None, "target": target,
                "teacher_rank": t[0] if t else None, "teacher_score": t[1] if t else None,
                "first_stage_rank": f[0] if f else None, "first_stage_score": f[1] if f else None,
                "relevance": grades.get(docid) if qrels is not None else None, "_order": (idx, order),
                "window_first": w[0], "window_last": w[1],
            })
        if cfg.cross_negatives:
            own = {docid for docid, _ in ranking[qid]} | set(grades)
            floor = 0.0 if cfg.targets == "relevance" else min(r["target"] for r in items) - 1.0
            for n, docid in enumerate(_cross_negatives(pool, own, cfg.cross_negatives, query_rng(cfg.seed + 1, qid))):
                items.append({
                    "qid": qid, "query": coll.queries[qid], "docid": docid, "passage": None, "target": floor,
                    "teacher_rank": None, "teacher_score": None, "first_stage_rank": None, "first_stage_score": None,
                    "relevance": None, "_order": (len(candidates) + n, len(items)),
                    "window_first": None, "window_last": None,
                })
        # target descending, ties in the sampled ranking's order
        items.sort(key=lambda r: (-r["target"], r["_order"]))
        for position, item in enumerate(items):
            item["position"] = position
            del item["_order"]
        rows.extend(items)

    if not rows:
        raise RankdistillError(
            f"no query could be sampled: all {len(skipped)} lack a judged-relevant passage (grade >= "
            f"{cfg.relevant_grade}) in the top {cfg.depth} of {ranking_source}"
        )
    if coll.corpus is None:
        raise RankdistillError(f"collection {coll.name} has no corpus: pass --corpus FILE or a dataset with passages")
    wanted = list(dict.fromkeys(r["docid"] for r in rows))
    texts = coll.corpus.get_many(wanted)
    missing = [d for d in wanted if d not in texts]
    if missing:
        raise RankdistillError(
            f"{len(missing)} candidate id(s) from {ranking_source} are not in the corpus {coll.corpus.name}, "
            f"e.g. {missing[:5]}; the runs and the corpus must come from the same collection"
        )
    for row in rows:
        row["passage"] = texts[row["docid"]]

    import pyarrow as pa
    import pyarrow.parquet as pq

    stats = _stats(rows, len(qids), skipped)
    meta = {
        "config": json.loads(cfg.model_dump_json()),
        "sources": {"ranking": ranking_source, "targets": target_source, "teacher": teacher_source,
                    "first_stage": first_source, "qrels": qrels_source, "collection": coll.name},
        "counts": stats,
    }
    schema = _schema().with_metadata({METADATA_KEY: json.dumps(meta).encode("utf-8")})
    table = pa.Table.from_pylist(rows, schema=schema)
    out = Path(cfg.output)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out


def _teacher_windows(cfg: BuildConfig, qids: list[str], teacher: Run | None, first: Run | None,
                     teacher_source: str | None, first_source: str | None) -> dict[str, dict[str, tuple[int, int]]]:
    """qid -> docid -> (first, last) teacher window, replayed from the first-stage order (``--pairs compared``)."""
    from rankdistill.teacher.windows import replay_windows

    if cfg.targets not in ("rank", "score") or teacher is None or first is None:
        raise RankdistillError(
            "--pairs compared needs the teacher run and the first-stage run it re-ranked (--teacher-run and "
            "--first-stage-run) and --targets rank or score"
        )
    out: dict[str, dict[str, tuple[int, int]]] = {}
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
            f"--pairs compared: for {len(failed)} of {len(qids)} queries (e.g. {failed[:5]}) {teacher_source} is not a "
            f"sliding-window re-ranking (window {cfg.teacher_window}, stride {cfg.teacher_stride}, bottom to top) of the "
            f"top {cfg.teacher_depth} of {first_source}; give the teacher's --teacher-window/--teacher-stride/"
            "--teacher-depth, or use --pairs all"
        )
    return out


def _cross_negatives(pool: list[str], own: set[str], k: int, rng: np.random.Generator) -> list[str]:
    """Up to ``k`` distinct passages drawn uniformly from ``pool`` (other queries' candidates), none of ``own``."""
    picked: list[str] = []
    for idx in rng.permutation(len(pool)):
        docid = pool[idx]
        if docid not in own and docid not in picked:
            picked.append(docid)
            if len(picked) == k:
                break
    return picked


def _stats(rows: list[dict[str, Any]], asked: int, skipped: list[str]) -> dict[str, Any]:
    lengths = Counter(r["qid"] for r in rows).values()
    tvals = [r["target"] for r in rows]
    grades = Counter("unjudged" if r["relevance"] is None else str(r["relevance"]) for r in rows)
    distinct = Counter(tvals)
    return {
        "queries": len(lengths),
        "queries_asked": asked,
        "skipped_no_relevant": len(skipped),
        "skipped_qids": skipped[:50],
        "rows": len(rows),
        "list_length": {"min": min(lengths), "mean": sum(lengths) / len(lengths), "max": max(lengths)},
        "target": {"min": min(tvals), "mean": sum(tvals) / len(tvals), "max": max(tvals), "distinct": len(distinct)},
        "target_counts": {repr(k): v for k, v in sorted(distinct.items(), reverse=True)} if len(distinct) <= 10 else None,
        "relevance_counts": dict(sorted(grades.items())),
        "with_teacher_rank": sum(r["teacher_rank"] is not None for r in rows),
        "with_first_stage_rank": sum(r["first_stage_rank"] is not None for r in rows),
    }


# --- reading a set back ------------------------------------------------------------------------------


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON the builder stored in the parquet (config, sources, counts)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise RankdistillError(f"{path}: no such distillation set")
    meta = pq.read_schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise RankdistillError(f"{path}: not a rankdistill distillation set (no 'rankdistill' metadata)")
    return json.loads(meta[METADATA_KEY])


def read_set(path: str | Path, qids: Iterable[str] | None = None):
    """The set as a pyarrow Table (optionally only ``qids``), rows in file order."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    read_metadata(path)
    table = pq.read_table(path)
    if qids is not None:
        table = table.filter(pc.is_in(table["qid"], value_set=pa.array([str(q) for q in qids], type=pa.string())))
    return table


def listwise_lists(path: str | Path, qids: Iterable[str] | None = None, column: str = "target") -> dict[str, list]:
    """Columns ``query``, ``docs``, ``labels`` (one row per query, lists in ``position`` order).

    This is the input sentence-transformers' listwise losses expect: wrap it in
    ``datasets.Dataset.from_dict`` — keep the columns in this order and add no other (the collator
    passes every non-label column to the loss).
    """
    table = read_set(path, qids).to_pydict()
    out: dict[str, list] = {"query": [], "docs": [], "labels": []}
    index: dict[str, int] = {}
    for qid, query, passage, pos, value in zip(table["qid"], table["query"], table["passage"], table["position"],
                                               table[column], strict=True):
        if qid not in index:
            index[qid] = len(out["query"])
            out["query"].append(query)
            out["docs"].append([])
            out["labels"].append([])
        i = index[qid]
        if pos != len(out["docs"][i]):
            raise RankdistillError(f"{path}: query {qid!r} rows are not in position order")
        out["docs"][i].append(passage)
        out["labels"][i].append(float(0 if value is None else value))
    return out


def describe_counts(stats: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Human-readable lines of a set's counts (for the CLI summary)."""
    ll, tg = stats["list_length"], stats["target"]
    lines = [
        ("queries", f"{stats['queries']} of {stats['queries_asked']}"
         + (f" ({stats['skipped_no_relevant']} skipped: no relevant passage)" if stats["skipped_no_relevant"] else "")),
        ("rows", str(stats["rows"])),
        ("list length", f"min {ll['min']}  mean {ll['mean']:.1f}  max {ll['max']}"),
        ("target", f"min {tg['min']:g}  mean {tg['mean']:.3g}  max {tg['max']:g}  ({tg['distinct']} distinct)"),
    ]
    if stats.get("target_counts"):
        lines.append(("target counts", ", ".join(f"{k}: {v}" for k, v in stats["target_counts"].items())))
    lines.append(("relevance", ", ".join(f"{k}: {v}" for k, v in stats["relevance_counts"].items())))
    lines.append(("teacher-ranked", str(stats["with_teacher_rank"])))
    lines.append(("first-stage-ranked", str(stats["with_first_stage_rank"])))
    if not math.isfinite(tg["mean"]):
        lines.append(("warning", "non-finite targets"))
    elif tg["distinct"] == 1:
        lines.append(("warning", "every target is the same: a ranking loss has nothing to learn from this set"))
    return lines
