"""Pairs to token ids: each unique text tokenised once, query and passage cut separately, then joined.

Why not the tokenizer's own pair encoding: it truncates the joined pair, and the student was trained with the
query and the passage cut *separately* (:mod:`rankdistill.modeling.cross_encoder`). Here each half is cut to its
own budget and the halves are joined by the tokenizer's post-processor (``[CLS] q [SEP] p [SEP]`` for
BERT/ELECTRA), so for pairs that fit their budgets the ids equal ``CrossEncoder.predict``'s.
"""

from __future__ import annotations

from collections.abc import Sequence

from rankdistill.errors import RankdistillError


class PairEncoder:
    """Separate truncation of queries and passages, joined by the tokenizer's post-processor.

    ``gated``: the layout of :mod:`rankdistill.modeling.gated` instead, each text a sequence of its own
    (``[CLS] q [SEP] [CLS] p [SEP]``); the type ids then say which is which (1 = query, 2 = passage).
    """

    def __init__(self, tokenizer, max_query_length: int, max_passage_length: int, max_positions: int | None,
                 gated: bool = False):
        from tokenizers import Tokenizer

        if not getattr(tokenizer, "is_fast", False):
            raise RankdistillError("re-ranking needs a fast (Rust) tokenizer; the model folder has only a slow one")
        if max_query_length < 1 or max_passage_length < 1:
            raise RankdistillError("max_query_length and max_passage_length must be at least 1 token")
        # A private copy: tokenizer.json may switch on padding/truncation, which must not apply to halves.
        self.backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self.backend.no_padding()
        self.backend.no_truncation()
        self.post = self.backend.post_processor
        self.gated = gated
        if gated:  # each half has its own positions: the longer one must fit
            self.special = self.post.num_special_tokens_to_add(False) if self.post is not None else 0
            total = max(max_query_length, max_passage_length) + self.special
        else:
            self.special = self.post.num_special_tokens_to_add(True) if self.post is not None else 0
            total = max_query_length + max_passage_length + self.special
        if max_positions is not None and total > max_positions:
            raise RankdistillError(
                f"max query length {max_query_length} + max passage length {max_passage_length} + {self.special} "
                f"special tokens = {total} exceeds the model's {max_positions} positions; lower max_passage_length"
            )
        self.max_query_length = max_query_length
        self.max_passage_length = max_passage_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    def _encode_unique(self, texts: Sequence[str], limit: int, cut: set[str] | None = None) -> dict[str, object]:
        unique = list(dict.fromkeys(texts))
        encodings = self.backend.encode_batch(unique, add_special_tokens=False)
        for text, enc in zip(unique, encodings):
            if len(enc.ids) > limit:
                enc.truncate(limit)
                if cut is not None:
                    cut.add(text)
        return dict(zip(unique, encodings))

    def encode(
        self,
        queries: Sequence[str],
        passages: Sequence[str],
        cut_queries: set[str] | None = None,
        cut_passages: set[str] | None = None,
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Token ids and type ids of every pair; each unique text is tokenised once.

        ``cut_queries``/``cut_passages``: when given, the texts longer than their budget are added to them.
        """
        qenc = self._encode_unique(queries, self.max_query_length, cut_queries)
        penc = self._encode_unique(passages, self.max_passage_length, cut_passages)
        ids: list[list[int]] = []
        types: list[list[int]] = []
        if self.gated:
            qids = {q: (self.post.process(e, None, True).ids if self.post is not None else e.ids) for q, e in qenc.items()}
            pids = {p: (self.post.process(e, None, True).ids if self.post is not None else e.ids) for p, e in penc.items()}
            for q, p in zip(queries, passages):
                ids.append(qids[q] + pids[p])
                types.append([1] * len(qids[q]) + [2] * len(pids[p]))
            return ids, types
        for q, p in zip(queries, passages):
            if self.post is None:  # a tokenizer without special tokens: plain concatenation
                ids.append(qenc[q].ids + penc[p].ids)
                types.append([0] * len(qenc[q].ids) + [1] * len(penc[p].ids))
                continue
            joined = self.post.process(qenc[q], penc[p], True)
            ids.append(joined.ids)
            types.append(joined.type_ids)
        return ids, types
