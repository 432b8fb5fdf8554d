"""Pointwise teaching with a bi-encoder: the teacher's score is the cosine of query and passage embeddings.

A small, strong bi-encoder (all-MiniLM-L6-v2) gives graded targets for queries without judgments, a
cheap first distillation stage before the listwise LLM. The model's own sentence-transformers modules
do the pooling; embeddings are L2-normalised, so the cosine is a dot product. Each unique passage is
encoded once however many queries retrieved it.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from rankdistill.data.collection import Collection
from rankdistill.data.trec import Run, append_tail, write_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.outputs import RUN_NAME, TeachResult, write_stats
from rankdistill.util.progress import make_progress

CHUNK = 256  # texts per encode call: the progress bar advances per chunk


class EmbeddingOptions(BaseModel):
    """The embedding teacher's options (``backend_options`` of ``teach()``, ``options:`` in a config)."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(64, ge=1, description="Texts per encode batch.")
    device: str | None = Field(None, description="cpu, cuda, cuda:1 ...; default: sentence-transformers' choice.")
    max_length: int | None = Field(
        None, ge=1, description="Tokens kept per text, special tokens not counted (default: the model's own limit); "
        "e.g. a student's passage budget, so the baseline reads what the student reads.",
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Precision of the forward pass, as the re-ranker's: auto is bf16 autocast on GPUs and on "
        "CPUs with native bf16 (weights stay float32), float32 elsewhere; float32 for bit-exact cosines.",
    )


def load_bi_encoder(model: str, device: str | None = None):
    """``SentenceTransformer`` of a short name, folder or hub id; a folder it cannot load is one clear line."""
    from sentence_transformers import SentenceTransformer

    from rankdistill.modeling.backbones import resolve_backbone

    path = resolve_backbone(model)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError for folders it cannot read
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RankdistillError(
            f"model {model}: {path} is not a sentence-transformers or Hugging Face encoder ({first})"
        ) from exc


def _precision(encoder, dtype: str) -> tuple[str, Callable[[], contextlib.AbstractContextManager]]:
    """The forward's resolved dtype and a factory of its context: autocast, so the weights stay float32.

    On a CPU with native bf16 (AVX512_BF16/AMX) all-mpnet-base-v2's forward ran 2.9x faster than float32, embeddings
    within 1.3e-3; DL20 nDCG@10 moved by 0.0002 (mpnet) and 0.0015 (MiniLM) (benchmarks/RESULTS.md, section 15).
    """
    import torch

    from rankdistill.util.device import resolve_dtype

    device = str(encoder.device)
    resolved = resolve_dtype(dtype, device)
    if resolved == "float32":
        return resolved, contextlib.nullcontext
    return resolved, functools.partial(torch.autocast, torch.device(device).type, dtype=getattr(torch, resolved))


def _encode(encoder, texts: list[str], batch_size: int, bar, task,
            precision: Callable[[], contextlib.AbstractContextManager]) -> np.ndarray:
    """Normalised embeddings of ``texts`` (float32, one row each), advancing ``task`` chunk by chunk."""
    parts = []
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start : start + CHUNK]
        with precision():
            embedded = encoder.encode(chunk, batch_size=batch_size, normalize_embeddings=True,
                                      convert_to_tensor=True, show_progress_bar=False)
        parts.append(embedded.float().cpu().numpy())
        bar.advance(task, len(chunk))
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)  # never indexed


def rank_by_cosine(candidates: list[str], cosines: list[float], tail: list[str]) -> list[tuple[str, float]]:
    """Candidates by cosine, best first (ties keep first-stage order), then the tail below the lowest cosine.

    The tail keeps its first-stage order with scores lowest-1, lowest-2, ... so the run stays strictly
    ordered by score, as the LLM teacher's run is.
    """
    ranked = sorted(zip(candidates, cosines), key=lambda item: -item[1])  # stable: ties keep given order
    return append_tail(ranked, tail)


def teach_embedding(
    first_stage: Run,
    collection: Collection,
    *,
    output: Path,
    model: str,
    depth: int,
    options: EmbeddingOptions | None = None,
    tag: str | None = None,
    progress: bool = True,
) -> TeachResult:
    """Score each query's top-``depth`` candidates by cosine; write ``teacher.run`` and ``stats.json``.

    Args:
        first_stage: the run whose top candidates are scored; the rest follow in its order.
        collection: query and passage texts.
        output: folder for ``teacher.run`` and ``stats.json``.
        model: a sentence-transformers model: short name (``minilm-l6``), folder or hub id.
        depth: candidates scored per query.
        options: batch size, device, token budget (``EmbeddingOptions``' defaults when None).
        tag: the run's tag (default ``teacher-embedding``).
        progress: show progress bars.

    Returns:
        The run and stats, and where they were written.

    Raises:
        RankdistillError: the model cannot be loaded as an encoder.
    """
    options = options or EmbeddingOptions()
    started = time.perf_counter()
    encoder = load_bi_encoder(model, options.device)
    if options.max_length is not None:
        encoder.max_seq_length = options.max_length + encoder.tokenizer.num_special_tokens_to_add(False)
    dtype, precision = _precision(encoder, options.dtype)
    qids = list(first_stage)
    tops = {qid: [d for d, _ in first_stage[qid][:depth]] for qid in qids}
    unique = list(dict.fromkeys(d for qid in qids for d in tops[qid]))
    passages = collection.texts(unique)
    with make_progress(disable=not progress) as bar:
        q_task = bar.add_task("teacher queries (embedding)", total=len(qids))
        p_task = bar.add_task("teacher passages (embedding)", total=len(unique))
        q_emb = _encode(encoder, [collection.queries[q] for q in qids], options.batch_size, bar, q_task, precision)
        p_emb = _encode(encoder, [passages[d] for d in unique], options.batch_size, bar, p_task, precision)
    row = {docid: i for i, docid in enumerate(unique)}
    teacher_run: Run = {}
    pairs = 0
    for i, qid in enumerate(qids):
        top = tops[qid]
        cosines = (p_emb[[row[d] for d in top]] @ q_emb[i]).tolist() if top else []
        pairs += len(top)
        tail = [d for d, _ in first_stage[qid][depth:]]
        teacher_run[qid] = rank_by_cosine(top, [float(c) for c in cosines], tail)
    output.mkdir(parents=True, exist_ok=True)
    run_path = write_run(teacher_run, output / RUN_NAME, tag or "teacher-embedding")
    seconds = time.perf_counter() - started
    stats = {
        "backend": "embedding", "model": model, "depth": depth, "max_seq_length": encoder.max_seq_length,
        "dtype": dtype, "queries": len(qids), "pairs": pairs,
        "unique_passages": len(unique), "seconds": round(seconds, 3),
        "pairs_per_s": round(pairs / seconds, 3) if seconds > 0 else None, "wall_time_s": round(seconds, 3),
    }
    stats_path = write_stats(stats, output)
    return TeachResult(run_path=Path(run_path), stats_path=stats_path, run=teacher_run, stats=stats)
