"""Re-rank a run with a cross-encoder: score every query's top-k candidates and write a new run.

Sharding: started by ``torchrun --standalone --nproc-per-node N -m rankdistill -- rerank ...`` (the ``--``
keeps torchrun from reading ``--run`` as its own ``--run-path``) (or any launcher that
sets ``RANK``/``WORLD_SIZE``), each process scores every N-th query, writes its part beside the output,
and rank 0 merges the parts into the output once all processes have finished (a gloo barrier; works for
CPU processes and for one GPU per process, ``LOCAL_RANK`` picks the GPU).
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

from rankdistill.errors import RankdistillError
from rankdistill.data.trec import Run, append_tail, read_run, run_from_scores, top_k, write_run


def _shard() -> tuple[int, int]:
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if not 0 <= rank < world:
        raise RankdistillError(f"RANK={rank} is not in 0..WORLD_SIZE-1 (WORLD_SIZE={world})")
    return rank, world


def _barrier(world: int) -> None:
    """Wait for every shard (torchrun sets MASTER_ADDR/PORT); a no-op for one process."""
    if world == 1:
        return
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    dist.barrier()


def _default_tag(model: str | Path) -> str:
    name = Path(str(model)).name or str(model)
    return "rankdistill-" + (re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "model")


def rerank(
    model: str | Path,
    run: str | Path | Mapping[str, list[tuple[str, float]]],
    *,
    dataset: str | Path | None = None,
    queries: str | Path | None = None,
    corpus: str | Path | None = None,
    depth: int = 100,
    output: str | Path,
    dtype: str = "auto",
    batch_tokens: int | None = None,
    max_query_length: int | None = None,
    max_passage_length: int | None = None,
    device: str = "auto",
    compile: bool = False,
    tag: str | None = None,
    fix_encoding: bool = False,
    fuse_first_stage: float = 0.0,
    progress: bool = True,
) -> Path:
    """Score the top-``depth`` candidates of every query in ``run`` and write the re-ranked run to ``output``.

    Below the re-ranked top, each query keeps the rest of the run's list in its order, scored below the model's
    scores: a run re-ranked at depth 20 of a 100-deep list still holds 100 documents, so its recall and AP are
    computed on the same list as the input's. Queries with fewer than ``depth`` candidates are scored as they are.
    Under torchrun each process scores every N-th query and rank 0 writes the merged run (see the module docstring).

    Args:
        model: a cross-encoder folder, a hub id, or a short name (``minilm-l6``).
        run: a TREC run file, or ``{qid: [(docid, score), ...]}`` in rank order.
        dataset: an ``irds:`` id or a folder naming the queries and the corpus.
        queries: a queries file; overrides the dataset's.
        corpus: a corpus file; overrides the dataset's.
        depth: candidates per query to score.
        output: where the re-ranked TREC run is written (atomically).
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16``.
        batch_tokens: padded tokens per batch (default: 4096 on CPU, 65536 on GPU).
        max_query_length: query tokens kept, cut apart from the passage (default: the model's stored budget, else 32).
        max_passage_length: passage tokens kept (default: the model's stored budget, else 256).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        compile: ``torch.compile`` the model (needs a C++ compiler; on CPU slower than the default for
            BERT-family models).
        tag: the run tag (default ``rankdistill-<model name>``).
        fix_encoding: repair MS MARCO mojibake in file corpora as ir_datasets does.
        fuse_first_stage: above 0, rank the top by z(model score) + this weight * z(run's score), per query
            (:mod:`~rankdistill.reranking.fusion`); 0 (the default) ranks by the model alone.
        progress: show a progress bar.

    Returns:
        The output path.

    Raises:
        RankdistillError: ``depth`` is below 1, a query of the run has no text, a candidate is not in the corpus,
            or the model does not load (see :class:`~rankdistill.reranking.scorer.CrossEncoderScorer`).
    """
    from rankdistill.data.collection import load_collection
    from rankdistill.reranking.fusion import check_weight, fuse_ranking
    from rankdistill.reranking.scorer import CrossEncoderScorer

    if depth is not None and depth < 1:
        raise RankdistillError(f"depth must be at least 1, got {depth}")
    check_weight(fuse_first_stage)
    run_name = str(run) if not isinstance(run, Mapping) else "the given run"
    full: Run = read_run(run) if not isinstance(run, Mapping) else {qid: list(docs) for qid, docs in run.items()}
    candidates: Run = top_k(full, depth)
    collection = load_collection(dataset, queries=queries, corpus=corpus, fix_encoding=fix_encoding)
    _check_queries(candidates, collection, run_name)
    rank, world = _shard()
    qids = list(candidates)[rank::world]
    texts = collection.texts([docid for qid in qids for docid, _ in candidates[qid]], strict=True)  # names missing ids

    scorer = CrossEncoderScorer(
        model, dtype=dtype, device=device, batch_tokens=batch_tokens, max_query_length=max_query_length,
        max_passage_length=max_passage_length, compile=compile,
    )
    label = f"re-rank {scorer.dtype}" + (f" shard {rank + 1}/{world}" if world > 1 else "")
    scored = _score(scorer, {qid: candidates[qid] for qid in qids}, collection.queries, texts, label, progress)
    if fuse_first_stage:
        result = {qid: fuse_ranking(docs, candidates[qid], fuse_first_stage, (d for d, _ in full[qid][depth:]))
                  for qid, docs in scored.items()}
    else:
        result = {qid: append_tail(ranked, (d for d, _ in full[qid][depth:])) for qid, ranked in run_from_scores(scored).items()}
    output = Path(output)
    tag = tag or _default_tag(model)
    if world == 1:
        return write_run(result, output, tag)
    return _write_merged(result, list(candidates), output, tag, rank, world)


def _check_queries(candidates: Run, collection, run_name: str) -> None:
    """Every query of the run needs a text; an empty one is scored on the passage alone, with a warning."""
    missing = [qid for qid in candidates if qid not in collection.queries]
    if missing:
        raise RankdistillError(
            f"{len(missing)} of {len(candidates)} queries in {run_name} have no text in the queries of "
            f"{collection.name}, e.g. {missing[:5]}; pass the queries file that belongs to the run as queries"
        )
    empty = [qid for qid in candidates if not collection.queries[qid].strip()]
    if empty:
        warnings.warn(
            f"{len(empty)} queries have empty text, e.g. {empty[:5]}; they are scored on the passage alone",
            stacklevel=3,  # the caller of rerank
        )


def _score(scorer, candidates: Run, queries: Mapping[str, str], texts: Mapping[str, str], label: str,
           progress: bool) -> dict[str, list[tuple[str, float]]]:
    """Each query's candidates with the model's scores, in the run's order."""
    from rankdistill.util.progress import make_progress

    pair_q = [queries[qid] for qid, docs in candidates.items() for _ in docs]
    pair_p = [texts[docid] for docs in candidates.values() for docid, _ in docs]
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(label, total=len(pair_q))
        scores = scorer.score(pair_q, pair_p, on_batch=lambda n: bar.advance(task, n))
    scored: dict[str, list[tuple[str, float]]] = {}
    pos = 0
    for qid, docs in candidates.items():
        scored[qid] = [(docid, float(s)) for (docid, _), s in zip(docs, scores[pos : pos + len(docs)])]
        pos += len(docs)
    return scored


def _write_merged(part_run: Run, qids: list[str], output: Path, tag: str, rank: int, world: int) -> Path:
    """Write this shard's part beside ``output``; once every shard has, rank 0 merges the parts in ``qids`` order."""
    part = output.with_name(f"{output.name}.part{rank}-of-{world}")
    write_run(part_run, part, tag)
    _barrier(world)
    if rank == 0:
        merged: Run = {}
        parts = [output.with_name(f"{output.name}.part{r}-of-{world}") for r in range(world)]
        for path in parts:
            merged.update(read_run(path))
        write_run({qid: merged[qid] for qid in qids if qid in merged}, output, tag)
        for path in parts:
            path.unlink()
    _barrier(world)
    return output
