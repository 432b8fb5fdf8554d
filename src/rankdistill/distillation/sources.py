"""Several candidate sources per query: each a first-stage run and the teacher's re-ranking of it.

A query ranked by the LLM over BM25's candidates and again over SPLADE's gives two teacher lists of one query.
``merge: none`` keeps them apart: one list per (query, source), each sampled, targeted and (``pairs: compared``)
window-replayed exactly as a single-source build of that source would be, with the source's own window, stride
and depth, and named in the ``source`` column; the trainer learns each as its own list. ``merge: rrf`` fuses them
into one list per query: the teacher runs by reciprocal rank fusion (:func:`fuse_rrf`, k = ``RRF_K``), which then
is sampled and gives the ``rank``/``score`` targets (``teacher_rank``/``teacher_score`` are the fused rank and
score), the first-stage runs likewise fused for ``first_stage_rank`` and single-relevant's negatives. With
``pairs: compared`` a fused list keeps the union of every source's compared pairs: each passage carries one window
range per source that ranked it, each source's windows numbered after the previous sources' (so ranges of two
sources never overlap), and two passages are learnt as a pair iff one source's teacher saw them in one window.

Both are offered because which trains the better student is not measured yet (``benchmarks/RESULTS.md`` has the
sets' sizes): separate lists give the loss every teacher decision as it was made, two teachers' disagreements
included; a fused list gives one order per query, with fewer rows to score per step.

Every source is checked before anything is sampled: its teacher run must be a permutation of the top
``teacher_depth`` of its first-stage run for every query, and its passages must be in the corpus; an error
names the source as ``sources[i] (name): ...``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rankdistill.data.trec import Run
from rankdistill.distillation.lists import (
    Inputs,
    Windows,
    read_inputs,
    sample,
    sampled_ranking,
    set_stats,
    teacher_windows,
)
from rankdistill.distillation.options import RRF_K, BuildConfig
from rankdistill.distillation.schema import write_set
from rankdistill.errors import RankdistillError
from rankdistill.teacher.windows import window_spans


def build_sources(cfg: BuildConfig, progress: bool = True) -> Path:
    """Write a set from ``cfg.sources`` (one list per source and query, or one fused list: ``cfg.merge``).

    Raises:
        RankdistillError: A source whose runs do not fit each other, the queries or the corpus, named
            ``sources[i] (name)``; or any error of a single-source build.
    """
    assert cfg.sources is not None
    configs, inputs = _read_sources(cfg)
    qids = _common_queries(cfg, configs, inputs)
    configs = [c.model_copy(update={"qids": qids}) for c in configs]
    for i, (c, inp) in enumerate(zip(configs, inputs, strict=True)):
        with _naming(cfg, i):
            _check_permutation(c, inp, qids)
    if cfg.merge == "rrf":
        fused = _fused_inputs(cfg, inputs)
        windows = _merged_windows(cfg, configs, inputs, qids) if cfg.pairs == "compared" else None
        name = "+".join(s.label for s in cfg.sources)
        merged = cfg.model_copy(update={"sources": None, "merge": "none", "qids": qids})
        parts = [sample(merged, fused, progress=progress, source=name, windows=windows)]
    else:
        parts = []
        for i, (c, inp) in enumerate(zip(configs, inputs, strict=True)):
            with _naming(cfg, i):
                parts.append(sample(c, inp, progress=progress, source=cfg.sources[i].label))
    rows = [row for part in parts for row in part.rows]
    _attach_passages(cfg, rows, inputs)
    skipped = sorted({q for part in parts for q in part.skipped}, key=qids.index)
    compared = cfg.pairs == "compared"
    counts = set_stats(rows, len(qids), skipped, compared)
    counts["per_source"] = {part.rows[0]["source"]: set_stats(part.rows, len(qids), part.skipped, compared)
                            for part in parts}
    meta = {
        "config": json.loads(cfg.model_dump_json()),
        "sources": {
            "candidate_sources": [_described(c, s.label) for c, s in zip(configs, cfg.sources, strict=True)],
            "merge": cfg.merge, "qrels": inputs[0].qrels_source, "collection": inputs[0].collection.name,
        },
        "counts": counts,
    }
    return write_set(rows, cfg.output, meta)


def fuse_rrf(runs: Sequence[Run], k: int = RRF_K) -> Run:
    """Reciprocal rank fusion: each passage scores the sum over runs of 1 / (k + its 1-based rank there).

    Ties keep the order in which passages first appear (runs in order, each best first), so the fused run is
    deterministic. Cormack, Clarke and Buettcher, SIGIR 2009.
    """
    fused: Run = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        scores: dict[str, float] = {}
        for run in runs:
            for rank, (docid, _) in enumerate(run.get(qid, []), 1):
                scores[docid] = scores.get(docid, 0.0) + 1.0 / (k + rank)
        fused[qid] = sorted(scores.items(), key=lambda item: -item[1])
    return fused


# --- the steps --------------------------------------------------------------------------------------------


@contextmanager
def _naming(cfg: BuildConfig, index: int) -> Iterator[None]:
    """Errors raised inside name the source they concern."""
    try:
        yield
    except RankdistillError as exc:
        raise RankdistillError(f"sources[{index}] ({cfg.sources[index].label}): {exc}") from None


def _read_sources(cfg: BuildConfig) -> tuple[list[BuildConfig], list[Inputs]]:
    """Each source's single-source options and inputs; the collection is read once."""
    configs, inputs = [], []
    collection = None
    for i in range(len(cfg.sources)):
        c = cfg.for_source(i)
        for key in ("first_stage_run", "teacher_run"):
            if not Path(getattr(c, key)).is_file():
                raise RankdistillError(f"sources[{i}] ({cfg.sources[i].label}).{key}: {getattr(c, key)} does not exist")
        with _naming(cfg, i):
            inp = read_inputs(c, collection)
        collection = inp.collection
        configs.append(c)
        inputs.append(inp)
    return configs, inputs


def _common_queries(cfg: BuildConfig, configs: list[BuildConfig], inputs: list[Inputs]) -> list[str]:
    """``qids``, else every query some source ranks (in the sources' order); each source must rank all of them."""
    if cfg.qids is not None:
        qids = list(dict.fromkeys(cfg.qids))
    else:
        qids = []
        for i, (c, inp) in enumerate(zip(configs, inputs, strict=True)):
            with _naming(cfg, i):
                qids.extend(sampled_ranking(c, inp)[0])
        qids = list(dict.fromkeys(qids))
    for i, inp in enumerate(inputs):
        for run, key in ((inp.first, "first_stage_run"), (inp.teacher, "teacher_run")):
            lacking = [q for q in qids if not (run or {}).get(q)]
            if lacking:
                raise RankdistillError(
                    f"sources[{i}] ({cfg.sources[i].label}): {len(lacking)} of {len(qids)} queries have no candidates "
                    f"in its {key} {getattr(configs[i], key)}, e.g. {lacking[:5]}; every source must rank every query "
                    "(restrict qids to the queries all sources share)"
                )
    return qids


def _check_permutation(cfg: BuildConfig, inputs: Inputs, qids: list[str]) -> None:
    """The teacher run re-ranks the first stage's top ``teacher_depth``: per query, the same passages."""
    depth = cfg.teacher_depth
    for qid in qids:
        teacher = [d for d, _ in inputs.teacher[qid][:depth]]
        first = [d for d, _ in inputs.first[qid][:depth]]
        if set(teacher) != set(first) or len(set(teacher)) != len(teacher):
            extra = [d for d in teacher if d not in set(first)]
            lost = [d for d in first if d not in set(teacher)]
            raise RankdistillError(
                f"{cfg.teacher_run} is not a permutation of the top {depth} of {cfg.first_stage_run} for query {qid!r} "
                f"({len(extra)} passage(s) only in the teacher run, e.g. {extra[:3]}; {len(lost)} only in the first "
                f"stage, e.g. {lost[:3]}); pair each teacher run with the first-stage run it re-ranked and set the "
                "source's teacher_depth to how many candidates the teacher ranked"
            )


def _fused_inputs(cfg: BuildConfig, inputs: list[Inputs]) -> Inputs:
    """One set of inputs whose teacher and first-stage runs are the sources' fused by reciprocal rank."""
    labels = ", ".join(s.label for s in cfg.sources)
    first = inputs[0]
    return Inputs(
        first.collection, fuse_rrf([inp.teacher for inp in inputs]), fuse_rrf([inp.first for inp in inputs]),
        first.qrels, f"the teacher runs of {labels} fused by RRF (k={RRF_K})",
        f"the first-stage runs of {labels} fused by RRF (k={RRF_K})", first.qrels_source,
    )


def _merged_windows(cfg: BuildConfig, configs: list[BuildConfig], inputs: list[Inputs], qids: list[str]) -> Windows:
    """Every source's replayed windows on one list: its ranges shifted past the previous sources' windows."""
    merged: Windows = {}
    offset = 0
    for i, (c, inp) in enumerate(zip(configs, inputs, strict=True)):
        with _naming(cfg, i):
            windows = teacher_windows(c, qids, inp)
        for qid, spans in windows.items():
            target = merged.setdefault(qid, {})
            for docid, (first, last) in spans.items():
                target[docid] = (*target.get(docid, ()), first + offset, last + offset)
        offset += len(window_spans(c.teacher_depth, c.teacher_window, c.teacher_stride))
    return merged


def _attach_passages(cfg: BuildConfig, rows: list[dict[str, Any]], inputs: list[Inputs]) -> None:
    """Each row's passage text; an id the corpus lacks is reported with the first source whose runs hold it."""
    corpus = inputs[0].collection.corpus
    if corpus is None:
        raise RankdistillError(
            f"collection {inputs[0].collection.name} has no corpus: give corpus (a file) or a dataset with passages"
        )
    wanted = list(dict.fromkeys(r["docid"] for r in rows))
    texts = corpus.get_many(wanted)
    missing = {d for d in wanted if d not in texts}
    if missing:
        qids = {r["qid"] for r in rows}
        for i, inp in enumerate(inputs):
            held = list(dict.fromkeys(
                d for run in (inp.teacher, inp.first) for q in qids for d, _ in run.get(q, []) if d in missing
            ))
            if held:
                raise RankdistillError(
                    f"sources[{i}] ({cfg.sources[i].label}): {len(held)} candidate id(s) of {inp.teacher_source} / "
                    f"{inp.first_source} are not in the corpus {corpus.name}, e.g. {held[:5]}; the runs and the corpus "
                    "must come from the same collection"
                )
        raise RankdistillError(f"{len(missing)} candidate id(s) are not in the corpus {corpus.name}, e.g. {sorted(missing)[:5]}")
    for row in rows:
        row["passage"] = texts[row["docid"]]


def _described(cfg: BuildConfig, name: str) -> dict[str, Any]:
    return {"name": name, "first_stage_run": str(cfg.first_stage_run), "teacher_run": str(cfg.teacher_run),
            "teacher_window": cfg.teacher_window, "teacher_stride": cfg.teacher_stride, "teacher_depth": cfg.teacher_depth}
