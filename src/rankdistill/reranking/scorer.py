"""The cross-encoder scoring engine: tokenise once, batch by a token budget, score under inference mode.

Why not ``CrossEncoder.predict``: it truncates the joined pair (the student was trained with the query and
the passage cut *separately*), sorts by character length and pads to a fixed number of pairs per batch.
Here every unique query and passage is tokenised once and cut separately (:mod:`rankdistill.reranking.encoding`),
sorted by exact token length and packed into batches of at most ``batch_tokens`` padded tokens
(:mod:`rankdistill.reranking.batching`), so short pairs go in big batches and padding is a few tokens per batch.
For pairs that fit their budgets the tokens, and so the fp32 scores, equal ``CrossEncoder.predict`` with identity
activation.

On CPU, BERT-family models run through rankdistill's own forward pass over the same weights
(:mod:`rankdistill.reranking.cpu_forward`), in one stream of batches per core (:meth:`CrossEncoderScorer._score_parallel`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import closing
from pathlib import Path

import numpy as np

from rankdistill.errors import RankdistillError
from rankdistill.modeling.cross_encoder import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH, read_truncation
from rankdistill.reranking.batching import Batch, make_batches
from rankdistill.reranking.encoding import PairEncoder
from rankdistill.reranking.loading import ModelFiles, load_weights, read_model_files
from rankdistill.util.device import default_threads, resolve_device, resolve_dtype

# Padded tokens per batch: on CPU (per stream) the best of the budgets measured, with either forward pass; on GPU
# enough to fill the device, not measured yet (benchmarks/RESULTS.md, "token budgets").
DEFAULT_BATCH_TOKENS = {"cpu": 4096, "cuda": 65536}
# The compiled CPU path gains from bigger batches: fewer calls into its fused kernels (benchmarks/RESULTS.md).
COMPILED_CPU_BATCH_TOKENS = 16384


def resolve_budgets(path: str, max_query_length: int | None, max_passage_length: int | None) -> tuple[int, int]:
    """(query, passage) token budgets: the ones given, else those stored with a rankdistill model, else the defaults."""
    stored = read_truncation(path) if Path(path).is_dir() else None
    return (
        max_query_length or (stored[0] if stored else DEFAULT_MAX_QUERY_LENGTH),
        max_passage_length or (stored[1] if stored else DEFAULT_MAX_PASSAGE_LENGTH),
    )


def default_batch_tokens(device: str, compile: bool) -> int:
    """Padded tokens per batch when the caller gives none."""
    if device.startswith("cuda"):
        return DEFAULT_BATCH_TOKENS["cuda"]
    return COMPILED_CPU_BATCH_TOKENS if compile else DEFAULT_BATCH_TOKENS["cpu"]


def cpu_streams(threads: int | None, dtype: str, compile: bool) -> int:
    """Set torch's CPU threads and return how many streams of batches run at once: one per core
    (:meth:`CrossEncoderScorer._score_parallel`), one for the compiled graph."""
    import torch

    cpu_threads = threads or default_threads()
    torch.set_num_threads(cpu_threads)
    if dtype == "float16":
        warnings.warn("float16 on CPU has no fast kernels on most CPUs; bfloat16 or float32 are faster", stacklevel=3)
    return 1 if compile else cpu_threads


def _compile(model):
    """``torch.compile`` (inductor) with weight freezing, for inference only.

    Freezing prepacks the weights for oneDNN and fuses bias, GELU and the residual add into each matmul (the
    eager bf16 profile spent much of its time copying biases); ``enable_concat_linear`` merges Q, K and V into one
    matmul; ``dynamic=True`` compiles one graph for every (batch, width). Compiling takes seconds per process and
    needs a C++ compiler. It compiles the Hugging Face forward: on CPU, for the BERT-family models that
    :mod:`rankdistill.reranking.cpu_forward` covers, the default (uncompiled) path is faster (benchmarks/RESULTS.md).
    """
    import shutil

    import torch

    if shutil.which("g++") is None and shutil.which("c++") is None:
        raise RankdistillError("compile needs a C++ compiler (g++) for torch.compile; install one or leave compile off")
    import torch._dynamo.config as dynamo_config

    # batches of one pair, or without padding, still specialise a few graphs; past the default limit of 8
    # dynamo silently falls back to eager for every new shape
    dynamo_config.cache_size_limit = max(dynamo_config.cache_size_limit, 256)
    if hasattr(dynamo_config, "recompile_limit"):
        dynamo_config.recompile_limit = max(dynamo_config.recompile_limit, 256)
    return torch.compile(model, dynamic=True, options={"freezing": True, "cpp.enable_concat_linear": True})


def _cpu_forward(model, files: ModelFiles):
    """rankdistill's own CPU forward over ``model``'s weights (:mod:`rankdistill.reranking.cpu_forward`), or None
    where it does not apply."""
    from rankdistill.reranking.cpu_forward import build_cpu_forward

    return build_cpu_forward(model, pooled=files.head is None, use_types=files.use_types, gates=files.gates)


class CrossEncoderScorer:
    """Scores (query, passage) pairs with a one-label sequence-classification model (raw logits), or with an
    encoder and rankdistill's similarity head.

    Args:
        model: a cross-encoder folder, hub id or short name (``minilm-l6``).
        dtype: ``auto``, ``float32``, ``bfloat16`` or ``float16`` (:func:`rankdistill.util.device.resolve_dtype`).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        batch_tokens: padded tokens per batch (default :func:`default_batch_tokens`).
        max_query_length: query tokens kept (default: the model's stored budget, else 32).
        max_passage_length: passage tokens kept (default: the model's stored budget, else 256).
        threads: CPU threads (default: the usable cores, split between torchrun's processes).
        compile: ``torch.compile`` the Hugging Face forward (not for the gated head).
        fast_cpu: on CPU, rankdistill's own forward pass where it applies.

    Raises:
        RankdistillError: the model does not load or is not a one-score cross-encoder, the budgets do not fit the
            model's positions, or ``compile`` is asked for a gated model or without a C++ compiler.
    """

    def __init__(
        self,
        model: str | Path,
        *,
        dtype: str = "auto",
        device: str = "auto",
        batch_tokens: int | None = None,
        max_query_length: int | None = None,
        max_passage_length: int | None = None,
        threads: int | None = None,
        compile: bool = False,
        fast_cpu: bool = True,
    ):
        from rankdistill.modeling.backbones import resolve_backbone
        from rankdistill.modeling.gated import position_offset

        for option, value in (("batch_tokens", batch_tokens), ("max_query_length", max_query_length),
                              ("max_passage_length", max_passage_length), ("threads", threads)):
            if value is not None and value < 1:  # checked before the defaults fill in: 0 must not mean "default"
                raise RankdistillError(f"{option} must be at least 1, got {value}")
        self.model_path = resolve_backbone(model)
        self.max_query_length, self.max_passage_length = resolve_budgets(self.model_path, max_query_length, max_passage_length)
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.workers = cpu_streams(threads, self.dtype, compile) if self.device == "cpu" else 1
        self.batch_tokens = int(batch_tokens or default_batch_tokens(self.device, compile))

        files = read_model_files(model, self.model_path)
        if files.gates is not None and compile:
            raise RankdistillError("compile does not cover the gated head (rankdistill.modeling.gated); leave compile off")
        self.tokenizer, self.head, self.gates = files.tokenizer, files.head, files.gates
        self._use_types = files.use_types
        self._offset = position_offset(files.config)
        self.encoder = PairEncoder(  # checks the budgets against the model's positions before its weights load
            self.tokenizer, self.max_query_length, self.max_passage_length,
            getattr(files.config, "max_position_embeddings", None), gated=self.gates is not None,
        )
        self.model, self.fresh_head = load_weights(files, model, self.dtype, self.device)
        self.compiled = _compile(self.model) if compile else None
        use_fast = self.device == "cpu" and not compile and fast_cpu
        self.fast = _cpu_forward(self.model, files) if use_fast else None

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

        Single-threaded streams beat one stream on every thread: small kernels (softmax, LayerNorm, the attention
        matmuls) scale badly over threads (benchmarks/RESULTS.md; measured on 2 cores only). torch's thread count
        is process-wide, so it is 1 only while this runs.
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
            inputs = self._inputs(batch)
            out = self._forward(inputs)
            if self.head is not None:
                mask = inputs.get("attention_mask")
                if mask is None:
                    mask = torch.ones_like(inputs["input_ids"])
                out = self.head.score(out, inputs["input_ids"], mask)
            return out.float().cpu().numpy()

    def _inputs(self, batch: Batch) -> dict:
        """The batch's tensors on the device, as the forward pass takes them."""
        import torch

        inputs = {"input_ids": torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)}
        # no padding: no mask, the faster attention kernel; compiled: always a mask, so one graph serves all
        if self.compiled is not None or not batch.attention_mask.all():
            inputs["attention_mask"] = torch.from_numpy(batch.attention_mask).to(self.device, non_blocking=True)
        if self._use_types:
            inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids).to(self.device, non_blocking=True)
        return inputs

    def _forward(self, inputs: dict):
        """One logit per pair, or the token states where rankdistill's similarity head scores them."""
        if self.fast is not None:
            return self.fast(inputs["input_ids"], inputs.get("token_type_ids"), inputs.get("attention_mask"))
        model = self.compiled if self.compiled is not None else self.model
        if self.head is None:
            return model(**inputs).logits[:, 0]
        return model(**inputs).last_hidden_state

    def _score_gated(self, batch: Batch) -> np.ndarray:
        """A batch of the gated layout (type ids = segments: 1 query, 2 passage, 0 padding)."""
        import torch

        from rankdistill.modeling.gated import encode, masks, positions

        ids = torch.from_numpy(batch.input_ids).to(self.device, non_blocking=True)
        segments = torch.from_numpy(batch.token_type_ids).to(self.device, non_blocking=True)
        mask = (segments > 0).long()
        pos = positions(segments, self._offset)
        gated_masks = masks(segments, self.model.dtype)
        gates = self.gates.to(self.device)
        if self.fast is not None:
            states = self.fast(ids, torch.zeros_like(ids), mask, position_ids=pos, gated=(*gated_masks, gates))
        else:
            states = encode(self.model, ids, mask, pos, gated_masks, gates)
        return self.head.score(states, ids, mask).float().cpu().numpy()

    def token_count(self, queries: Sequence[str], passages: Sequence[str]) -> tuple[int, int]:
        """(real tokens, padded tokens) the batches of these pairs hold: for FLOP counts and padding waste."""
        ids, types = self.encoder.encode(queries, passages)
        batches = self.batches(ids, types)
        real = sum(len(x) for x in ids)
        padded = sum(b.input_ids.size for b in batches)
        return real, padded
