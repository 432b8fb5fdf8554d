"""The cross-encoder scoring engine: tokenise once, batch by a token budget, score under inference mode.

Why not ``CrossEncoder.predict``: it truncates the joined pair (the student was trained with the query and
the passage cut *separately*), sorts by character length and pads to a fixed number of pairs per batch.
Here every unique query and passage is tokenised once, cut separately, joined with the tokenizer's own
post-processor (``[CLS] q [SEP] p [SEP]`` for BERT/ELECTRA), sorted by exact token length and packed into
batches of at most ``batch_tokens`` padded tokens, so short pairs go in big batches and padding is a few
tokens per batch. For pairs that fit their budgets the tokens, and so the fp32 scores, equal
``CrossEncoder.predict`` with identity activation.

On CPU, BERT-family models run through rankdistill's own forward pass over the same weights
(:mod:`rankdistill.reranking.cpu_forward`), in one stream of batches per core (:meth:`CrossEncoderScorer._score_parallel`).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rankdistill.errors import RankdistillError
from rankdistill.util.device import DTYPES, default_threads, resolve_device, resolve_dtype

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnx")
DEFAULT_MAX_QUERY_LENGTH = 32
DEFAULT_MAX_PASSAGE_LENGTH = 256
# Padded tokens per batch. CPU (per stream): 2k ≈ 4k > 8k with rankdistill.reranking.cpu_forward in two streams, and
# 1k ≈ 4k > 16k with the Hugging Face forward, on the 2-core benchmark machine (benchmarks/RESULTS.md).
# GPU: large batches fill the device (not measured here: no GPU was lent).
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
# The compiled CPU path: 16k padded tokens per batch beat 2k/4k/8k (fewer calls into its fused kernels).
COMPILED_CPU_BATCH_TOKENS = 16384


def _float32_head(model) -> None:
    """Run the classification head in float32 on upcast features.

    A bf16 logit has 8 bits of mantissa: scores near 8 are rounded to steps of 1/16, which makes ties
    between close candidates. The head sees one token per pair, so fp32 there costs nothing measurable.
    """
    import torch

    head = getattr(model, "classifier", None)
    if not isinstance(head, torch.nn.Module):
        return
    head.float()

    def upcast(_module, args, kwargs):
        cast = lambda x: x.float() if torch.is_tensor(x) and x.is_floating_point() else x  # noqa: E731
        return tuple(cast(a) for a in args), {k: cast(v) for k, v in kwargs.items()}

    head.register_forward_pre_hook(upcast, with_kwargs=True)


def _compile(model):
    """``torch.compile`` (inductor) with weight freezing, for inference only.

    Freezing prepacks the weights for oneDNN and fuses bias, GELU and the residual add into each matmul (the
    eager bf16 profile spent 18.6 % copying biases); ``enable_concat_linear`` merges Q, K and V into one matmul;
    ``dynamic=True`` compiles one graph for every (batch, width). It costs 12-35 s per process (needs a C++
    compiler). It compiles the Hugging Face forward: on CPU, for the BERT-family models that
    :mod:`rankdistill.reranking.cpu_forward` covers, the default (uncompiled) path is faster (benchmarks/RESULTS.md).
    """
    import shutil

    import torch

    if shutil.which("g++") is None and shutil.which("c++") is None:
        raise RankdistillError("--compile needs a C++ compiler (g++) for torch.compile; install one or leave --compile off")
    import torch._dynamo.config as dynamo_config

    # batches of one pair, or without padding, still specialise a few graphs; past the default limit of 8
    # dynamo silently falls back to eager for every new shape
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 256)
    if hasattr(dynamo_config, "recompile_limit"):
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    return torch.compile(model, dynamic=True, options={"freezing": True, "cpp.enable_concat_linear": True})


@dataclass
class Batch:
    """Indices into the pair list and the padded tensors for them."""

    index: np.ndarray
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    attention_mask: np.ndarray


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
            raise RankdistillError("--max-query-length and --max-passage-length must be at least 1 token")
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
                f"special tokens = {total} exceeds the model's {max_positions} positions; lower --max-passage-length"
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


def make_batches(ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]], batch_tokens: int, pad_id: int) -> list[Batch]:
    """Pairs sorted by token length (stable), cut into batches of at most ``batch_tokens`` padded tokens.

    Batches of one exact length would need no attention mask (a CPU SDPA call ran 10-38 % faster without one),
    but on 800 DL20 pairs they were 1.5-2x slower overall: too many small batches and new shapes.
    """
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    order = np.argsort(lengths, kind="stable")
    batches: list[Batch] = []
    start = 0
    while start < len(order):
        stop = start + 1
        # sorted ascending, so the last pair of a batch is its longest: n pairs cost n * len(last)
        while stop < len(order) and (stop - start + 1) * lengths[order[stop]] <= batch_tokens:
            stop += 1
        index = order[start:stop]
        width = int(lengths[index[-1]])
        input_ids = np.full((len(index), width), pad_id, dtype=np.int64)
        token_type_ids = np.zeros((len(index), width), dtype=np.int64)
        attention_mask = np.zeros((len(index), width), dtype=np.int64)
        for row, i in enumerate(index):
            n = lengths[i]
            input_ids[row, :n] = ids[i]
            token_type_ids[row, :n] = types[i]
            attention_mask[row, :n] = 1
        batches.append(Batch(index, input_ids, token_type_ids, attention_mask))
        start = stop
    return batches


class CrossEncoderScorer:
    """Scores (query, passage) pairs with a one-label sequence-classification model (raw logits), or with an
    encoder and rankdistill's similarity head."""

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        batch_tokens: int | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        backend: str = "torch",
        threads: int | None = None,
        compile: bool = False,
        fast_cpu: bool = True,
    ):
        import torch
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer
        from transformers import logging as hf_logging

        from rankdistill.modeling.backbones import resolve_backbone
        from rankdistill.modeling.gated import ATTENTION, position_offset, read_gates
        from rankdistill.modeling.cross_encoder import has_similarity_head, is_gated, load_similarity_head, read_truncation

        if backend not in BACKENDS:
            raise RankdistillError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if backend == "onnx":
            raise RankdistillError(
                "the ONNX Runtime backend is not shipped: it was not shown to beat torch on CPU here "
                "(see benchmarks/RESULTS.md); use --backend torch"
            )
        self.model_path = resolve_backbone(model)
        stored = read_truncation(self.model_path) if Path(self.model_path).is_dir() else None
        self.max_query_length = max_query_length or (stored[0] if stored else DEFAULT_MAX_QUERY_LENGTH)
        self.max_passage_length = max_passage_length or (stored[1] if stored else DEFAULT_MAX_PASSAGE_LENGTH)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.workers = 1
        if self.device == "cpu":
            cpu_threads = threads or default_threads()
            torch.set_num_threads(cpu_threads)
            self.workers = 1 if compile else cpu_threads  # one stream of batches per core (_score_parallel)
            if self.dtype == "float16":
                warnings.warn("float16 on CPU has no fast kernels on most CPUs; bfloat16 or float32 are faster", stacklevel=2)
        kind = "cuda" if self.device.startswith("cuda") else "cpu"
        default_tokens = COMPILED_CPU_BATCH_TOKENS if compile and kind == "cpu" else DEFAULT_BATCH_TOKENS[kind]
        self.batch_tokens = int(batch_tokens or default_tokens)

        try:
            config = AutoConfig.from_pretrained(self.model_path)
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        except (OSError, ValueError) as exc:
            raise RankdistillError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from exc
        trained_head = any(a.endswith("ForSequenceClassification") for a in (getattr(config, "architectures", None) or []))
        if trained_head and getattr(config, "num_labels", 1) != 1:  # a bare encoder's config says 2 by default
            raise RankdistillError(
                f"model {model!r} has {config.num_labels} output labels; re-ranking needs a one-score cross-encoder"
            )
        # rankdistill's similarity head (rankdistill.modeling.heads): the bare encoder, then the head on its token states
        self.head = load_similarity_head(self.model_path) if has_similarity_head(self.model_path) else None
        # rankdistill's gated encoder (rankdistill.modeling.gated): its gates, (layers, heads); None for any other model
        self.gates = read_gates(self.model_path) if is_gated(self.model_path) else None
        if self.gates is not None and compile:
            raise RankdistillError("--compile does not cover the gated head (rankdistill.modeling.gated); leave --compile off")
        auto_class = AutoModel if self.head is not None else AutoModelForSequenceClassification
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # we report a fresh head ourselves, in one line
        try:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)  # a missing head is initialised the same way every run
                loaded = auto_class.from_pretrained(
                    self.model_path,
                    **({} if self.head is not None else {"num_labels": 1}),
                    dtype=getattr(torch, self.dtype),
                    attn_implementation="sdpa" if self.gates is None else ATTENTION,
                    output_loading_info=True,
                )
        except (OSError, ValueError) as exc:
            raise RankdistillError(f"cannot load model {model!r}: {str(exc).splitlines()[0]}") from exc
        finally:
            hf_logging.set_verbosity(level)
        self.model, info = loaded
        self.fresh_head = sorted(info.get("missing_keys", []))
        if self.fresh_head:
            warnings.warn(
                f"model {model!r} has no trained scoring head ({', '.join(self.fresh_head)} newly initialised): "
                "its scores are not meaningful; train it first (rankdistill train)",
                stacklevel=2,
            )
        self.model.eval().to(self.device)
        if self.head is not None:
            self.head.eval().to(self.device)  # computes in float32 whatever the encoder's dtype
        elif self.dtype != "float32":
            _float32_head(self.model)
        self.compiled = _compile(self.model) if compile else None
        self._use_types = "token_type_ids" in self.tokenizer.model_input_names and getattr(config, "type_vocab_size", 2) > 1
        # CPU: rankdistill's own forward over the same weights (rankdistill.reranking.cpu_forward), where it applies
        self.fast = None
        if self.device == "cpu" and not compile and fast_cpu:
            from rankdistill.reranking.cpu_forward import build_cpu_forward

            self.fast = build_cpu_forward(self.model, pooled=self.head is None, use_types=self._use_types, gates=self.gates)
        self.encoder = PairEncoder(
            self.tokenizer, self.max_query_length, self.max_passage_length, getattr(config, "max_position_embeddings", None),
            gated=self.gates is not None,
        )
        self._offset = position_offset(config)

    def score(
        self,
        queries: Sequence[str],
        passages: Sequence[str],
        on_batch: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """Raw scores (float32) of ``zip(queries, passages)``, in input order."""
        if len(queries) != len(passages):
            raise ValueError("queries and passages must have the same length")
        scores = np.zeros(len(queries), dtype=np.float32)
        if not len(queries):
            return scores
        ids, types = self.encoder.encode(queries, passages)
        batches = self.batches(ids, types)
        if self.workers > 1:
            done = self._score_parallel(batches)
        else:
            done = (self.score_batch(batch) for batch in batches)
        with closing(done):  # an error here (or Ctrl-C) stops the streams now, not when the traceback is freed
            for batch, out in zip(batches, done):
                scores[batch.index] = out
                if on_batch is not None:
                    on_batch(len(batch.index))
        return scores

    def _score_parallel(self, batches: list[Batch]):
        """Batches in ``self.workers`` threads of one intra-op thread each, in order.

        On the 2-core benchmark machine two single-threaded streams of batches were 4-6 % faster than one
        two-threaded stream: small kernels (softmax, LayerNorm, the attention matmuls) scale badly over threads.
        Not measured on more cores. torch's thread count is process-wide, so it is 1 only while this runs.
        """
        import torch
        from concurrent.futures import ThreadPoolExecutor

        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="rankdistill-score")
        try:
            yield from pool.map(self.score_batch, batches)
        finally:  # on an error or Ctrl-C: finish the batches in flight, drop the rest
            pool.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(previous)

    def batches(self, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]]) -> list[Batch]:
        """Pairs tokenised by ``self.encoder.encode``, sorted by length into this scorer's token-budget batches."""
        return make_batches(ids, types, self.batch_tokens, self.encoder.pad_id)

    def score_batch(self, batch: Batch) -> np.ndarray:
        """Raw scores of one batch (its pairs in ``batch.index`` order); safe to call from several threads."""
        import torch

        with torch.inference_mode():  # thread-local: entered in the thread that runs the batch
            if self.gates is not None:
                return self._score_gated(batch)
            inputs = {"input_ids": torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)}
            # no padding: no mask, the faster attention kernel; compiled: always a mask, so one graph serves all
            if self.compiled is not None or not batch.attention_mask.all():
                inputs["attention_mask"] = torch.from_numpy(batch.attention_mask).to(self.device, non_blocking=True)
            if self._use_types:
                inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids).to(self.device, non_blocking=True)
            model = self.compiled if self.compiled is not None else self.model
            if self.fast is not None:
                out = self.fast(inputs["input_ids"], inputs.get("token_type_ids"), inputs.get("attention_mask"))
            elif self.head is None:
                out = model(**inputs).logits[:, 0]
            else:
                out = model(**inputs).last_hidden_state
            if self.head is not None:
                mask = inputs.get("attention_mask")
                if mask is None:
                    mask = torch.ones_like(inputs["input_ids"])
                out = self.head.score(out, inputs["input_ids"], mask)
            return out.float().cpu().numpy()

    def _score_gated(self, batch: Batch) -> np.ndarray:
        """A batch of the gated layout (type ids = segments: 1 query, 2 passage, 0 padding)."""
        import torch

        from rankdistill.modeling.gated import masks, positions

        ids = torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)
        segments = torch.from_numpy(batch.token_type_ids).to(self.device, non_blocking=True)
        mask = (segments > 0).long()
        pos = positions(segments, self._offset)
        gated_masks = masks(segments, self.model.dtype)
        gates = self.gates.to(self.device)
        if self.fast is not None:
            states = self.fast(ids, torch.zeros_like(ids), mask, position_ids=pos, gated=(*gated_masks, gates))
        else:
            states = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, token_type_ids=torch.zeros_like(ids),
                                gated_masks=gated_masks, gates=gates).last_hidden_state
        return self.head.score(states, ids, mask).float().cpu().numpy()

    def token_count(self, queries: Sequence[str], passages: Sequence[str]) -> tuple[int, int]:
        """(real tokens, padded tokens) the batches of these pairs hold: for FLOP counts and padding waste."""
        ids, types = self.encoder.encode(queries, passages)
        batches = self.batches(ids, types)
        real = sum(len(x) for x in ids)
        padded = sum(b.input_ids.size for b in batches)
        return real, padded
