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
from rankdistill.data.trec import Run, read_run, run_from_scores, top_k, write_run


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
    backend: str = "torch",
    compile: bool = False,
    tag: str | None = None,
    fix_encoding: bool = False,
    progress: bool = True,
) -> Path:
    """Score the top-``depth`` candidates of every query in ``run`` and write the re-ranked run to ``output``.

    ``model``: a cross-encoder folder, a hub id, or a short name (``minilm-l6``). Query and passage are
    truncated separately to ``max_query_length``/``max_passage_length`` tokens (default: the budgets stored
    with a rankdistill model, else 32/256). Queries with fewer than ``depth`` candidates are scored as they
    are. Returns the output path.
    """
    from rankdistill.data.collection import load_collection
    from rankdistill.util.progress import make_progress
    from rankdistill.reranking.scorer import CrossEncoderScorer

    if depth is not None and depth < 1:
        raise RankdistillError(f"depth must be at least 1, got {depth}")
    run_name = str(run) if not isinstance(run, Mapping) else "the given run"
    candidates: Run = top_k(read_run(run, depth) if not isinstance(run, Mapping) else dict(run), depth)
    collection = load_collection(dataset, queries=queries, corpus=corpus, fix_encoding=fix_encoding)
    missing_q = [qid for qid in candidates if qid not in collection.queries]
    if missing_q:
        raise RankdistillError(
            f"{len(missing_q)} of {len(candidates)} queries in {run_name} have no text in the queries of "
            f"{collection.name}, e.g. {missing_q[:5]}; pass the queries file that belongs to the run (--queries)"
        )
    empty = [qid for qid in candidates if not collection.queries[qid].strip()]
    if empty:
        warnings.warn(
            f"{len(empty)} queries have empty text, e.g. {empty[:5]}; they are scored on the passage alone",
            stacklevel=2,
        )
    rank, world = _shard()
    qids = list(candidates)[rank::world]
    docids = [docid for qid in qids for docid, _ in candidates[qid]]
    texts = collection.texts(docids, strict=True)  # raises naming the missing ids and the corpus

    scorer = CrossEncoderScorer(
        model, dtype=dtype, device=device, batch_tokens=batch_tokens, max_query_length=max_query_length,
        max_passage_length=max_passage_length, backend=backend, compile=compile,
    )
    pair_q = [collection.queries[qid] for qid in qids for _ in candidates[qid]]
    pair_p = [texts[docid] for docid in docids]
    with make_progress(disable=not progress) as bar:
        task = bar.add_task(f"re-rank {scorer.dtype}" + (f" shard {rank + 1}/{world}" if world > 1 else ""), total=len(pair_q))
        scores = scorer.score(pair_q, pair_p, on_batch=lambda n: bar.advance(task, n))
    scored: dict[str, list[tuple[str, float]]] = {}
    pos = 0
    for qid in qids:
        n = len(candidates[qid])
        scored[qid] = [(docid, float(s)) for (docid, _), s in zip(candidates[qid], scores[pos : pos + n])]
        pos += n
    result = run_from_scores(scored)
    output = Path(output)
    tag = tag or _default_tag(model)
    if world == 1:
        return write_run(result, output, tag)
    part = output.with_name(f"{output.name}.part{rank}-of-{world}")
    write_run(result, part, tag)
    _barrier(world)
    if rank == 0:
        merged: Run = {}
        parts = [output.with_name(f"{output.name}.part{r}-of-{world}") for r in range(world)]
        for path in parts:
            merged.update(read_run(path))
        write_run({qid: merged[qid] for qid in candidates if qid in merged}, output, tag)
        for path in parts:
            path.unlink()
    _barrier(world)
    return output
