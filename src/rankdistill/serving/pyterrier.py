"""A PyTerrier transformer around rankdistill's scorer, so a student drops into a PyTerrier pipeline::

    import pyterrier as pt
    from rankdistill.serving.pyterrier import Reranker

    dataset = pt.get_dataset("irds:msmarco-passage")
    pipeline = bm25 >> pt.text.get_text(dataset, "text") >> Reranker("student/")
    pt.Experiment([bm25, pipeline], topics, qrels, eval_metrics=["ndcg_cut_10"])

It reads a result frame (``qid``, ``query``, ``docno`` and the text column) and returns it with ``score``
replaced by the cross-encoder's raw scores and ``rank`` recomputed, sorted by query and rank, as PyTerrier's
own re-rankers do. Scoring is :class:`~rankdistill.reranking.scorer.CrossEncoderScorer`, the engine of ``rerank``: the
same scores for the same pairs.
"""

from __future__ import annotations

from pathlib import Path

from rankdistill.errors import RankdistillError

try:
    import pyterrier as pt
except ImportError as exc:  # an optional extra
    raise RankdistillError("rankdistill.serving.pyterrier needs PyTerrier; install the pyterrier extra: pip install 'rankdistill[pyterrier]'") from exc

REQUIRED = ("qid", "query", "docno")


class Reranker(pt.Transformer):
    """Re-rank each query's documents with a cross-encoder folder, hub id or short name.

    ``text_field``: the column holding the document text (``pt.text.get_text`` fills it). The other
    arguments are :class:`~rankdistill.reranking.scorer.CrossEncoderScorer`'s (query and document cut separately to
    the model's stored budgets, else 32/256 tokens; bf16 on CPUs with native bf16).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        text_field: str = "text",
        dtype: str = "auto",
        device: str = "auto",
        batch_tokens: int | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
    ):
        from rankdistill.reranking.scorer import CrossEncoderScorer

        self.model = model
        self.text_field = text_field
        self.scorer = CrossEncoderScorer(
            model, dtype=dtype, device=device, batch_tokens=batch_tokens,
            max_query_length=max_query_length, max_passage_length=max_passage_length,
        )

    def __repr__(self) -> str:
        return f"Reranker({str(self.model)!r})"

    def transform(self, inp):
        missing = [c for c in (*REQUIRED, self.text_field) if c not in inp.columns]
        if missing:
            raise RankdistillError(
                f"Reranker needs the columns {', '.join(REQUIRED)} and {self.text_field!r}; the input has no "
                f"{', '.join(map(repr, missing))}: put a retriever and pt.text.get_text(dataset, {self.text_field!r}) before it"
            )
        out = inp.drop(columns=["score", "rank"], errors="ignore").copy()
        texts = out[self.text_field].fillna("").astype(str).tolist()
        out["score"] = self.scorer.score(out["query"].astype(str).tolist(), texts).astype("float64")
        out = pt.model.add_ranks(out)
        return out.sort_values(["qid", "rank"], kind="stable").reset_index(drop=True)
