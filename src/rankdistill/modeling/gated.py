"""A cross-encoder that starts as its backbone's bi-encoder: cross-attention behind gates that open in training.

Why: a bi-encoder checkpoint such as all-MiniLM-L6-v2 ranks DL20's BM25 top-100 well untrained, but the same
weights read as a cross-encoder (``[CLS] q [SEP] p [SEP]``, every token attending to every token) start far lower
with the similarity head and near random with a fresh ``[CLS]`` head, and a few dozen teacher-ranked queries do
not bring them back (figures in ``benchmarks/RESULTS.md``). Here the pair is laid out as two sequences, ``[CLS] q [SEP] [CLS] p [SEP]``, each
with its own positions from 0, and in every layer and head the attention weights are

    w = w_own + g · (w_all − w_own)

where ``w_own`` attends within the token's own sequence, ``w_all`` over the whole pair (ordinary cross-encoder
attention) and ``g ∈ [0, 1]`` is a learnt gate per layer and head, 0 at the start. With the gates shut the query
and the passage are encoded apart, exactly as the bi-encoder does, and :class:`~rankdistill.modeling.heads.SegmentSimilarity`
on the mean query and passage tokens gives the bi-encoder's cosine: step 0 ranks as well as the zero-shot
backbone. Training opens the gates as far as the teacher's signal pays for it (a gate at 0 has a non-zero
gradient, unlike an attention bias at −∞).

transformers lets a model use an attention function registered under a name (``AttentionInterface``): importing
this module registers ``rankdistill_gated``; the masks and gates reach it as keyword arguments of the forward.
MPNet (all-mpnet-base-v2) computes attention in its own layer, with a relative position bias: its self-attention
modules get :func:`_gated_mpnet_attention` instead.
"""

from __future__ import annotations

import json
import threading
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from sentence_transformers.base.modules import Transformer

from rankdistill.modeling.architecture import unsupported_reason
from rankdistill.modeling.truncation import DEFAULT_MAX_PASSAGE_LENGTH, DEFAULT_MAX_QUERY_LENGTH

ATTENTION = "rankdistill_gated"
GATED_ENCODER = "rankdistill.modeling.gated.GatedTransformer"
GATES_FILE = "gates.json"
# model types whose position ids start after the padding index (create_position_ids_from_input_ids)
_OFFSET_POSITIONS = {"roberta", "xlm-roberta", "camembert", "mpnet"}
# model types whose self-attention adds a relative position bias and is not routed through AttentionInterface: their
# self-attention modules are given :func:`_gated_mpnet_attention` (all-mpnet-base-v2 is one)
_RELATIVE_BIAS = {"mpnet"}


def gated_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, gated_masks=None,
                    gates=None, **kwargs):
    """Attention over (batch, heads, length, size) tensors with ``w = w_own + g (w_all - w_own)``.

    ``gated_masks``: additive (own-sequence, whole-pair) masks of shape (batch, 1, length, length) and
    (batch, 1, 1, length); ``gates``: (layers, heads). Without them (a plain forward) it is ordinary attention.
    """
    scores = torch.matmul(query, key.transpose(-1, -2)) * (scaling if scaling is not None else query.size(-1) ** -0.5)
    if gated_masks is None:
        if attention_mask is not None:
            scores = scores + attention_mask
        weights = torch.softmax(scores, dim=-1)
    else:
        own_mask, all_mask = gated_masks
        own = torch.softmax(scores + own_mask.to(scores.dtype), dim=-1)
        gate = gates[module.layer_idx].clamp(0.0, 1.0).to(scores.dtype).view(1, -1, 1, 1)
        if bool((gate > 0).any()) or gates.requires_grad:
            weights = own + gate * (torch.softmax(scores + all_mask.to(scores.dtype), dim=-1) - own)
        else:  # every gate shut and frozen: the bi-encoder, one softmax
            weights = own
    weights = torch.nn.functional.dropout(weights, p=dropout, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), None


# the gated masks and gates of the forward running on this thread: the re-ranker scores batches of different lengths
# on several threads with one model, so they cannot live on the (shared) modules
_MPNET_STATE = threading.local()


def _gated_mpnet_attention(self, hidden_states, attention_mask=None, position_bias=None, output_attentions=False,
                           **kwargs):
    """``MPNetSelfAttention.forward`` with the gated weights: MPNet computes attention itself (its relative position
    bias, from :class:`MPNetEncoder`, is added to the scores), so the gated masks and gates reach it through
    ``_MPNET_STATE``, which :func:`encode` sets for one call on its thread. The bias joins both masks: within a
    sequence the relative distances, hence the bias, are those of the sequence encoded alone."""
    shape = (*hidden_states.shape[:-1], -1, self.attention_head_size)
    q, k, v = (proj(hidden_states).view(shape).transpose(1, 2) for proj in (self.q, self.k, self.v))
    bias = position_bias if position_bias is not None else 0.0
    state = getattr(_MPNET_STATE, "value", None)
    if state is None:  # a plain forward: MPNet's own attention
        mask, gated_masks, gates = bias + (attention_mask if attention_mask is not None else 0.0), None, None
    else:
        (own_mask, all_mask), gates = state
        mask, gated_masks = None, (own_mask + bias, all_mask + bias)
    out, _ = gated_attention(self, q, k, v, mask, scaling=self.attention_head_size ** -0.5, dropout=self.dropout.p,
                             gated_masks=gated_masks, gates=gates)
    out = self.o(out.reshape(*hidden_states.shape[:-1], self.all_head_size))
    return (out, None) if output_attentions else (out,)


def _relative(config) -> bool:
    """Whether this model type computes attention itself with a relative position bias (see ``_RELATIVE_BIAS``)."""
    return getattr(config, "model_type", None) in _RELATIVE_BIAS


def _mpnet_reason(model) -> str | None:
    """Why an MPNet model cannot take the gated layout (None when it can)."""
    layers = getattr(getattr(model.base_model, "encoder", None), "layer", None)
    if not layers:
        return "no encoder.layer modules"
    for layer in layers:
        attn = getattr(getattr(layer, "attention", None), "attn", None)
        if attn is None or any(getattr(attn, name, None) is None for name in ("q", "k", "v", "o", "dropout")):
            return "unexpected MPNet layer layout"
    return None


def prepare(model) -> None:
    """Ready a loaded encoder for the gated layout: each self-attention learns the layer whose gates it reads, and
    MPNet's take :func:`_gated_mpnet_attention` (a BERT-family encoder's attention is routed by name already)."""
    relative = _relative(model.config)
    for index, layer in enumerate(model.base_model.encoder.layer):
        attention = layer.attention.attn if relative else layer.attention.self
        attention.layer_idx = index
        if relative:
            attention.forward = types.MethodType(_gated_mpnet_attention, attention)


def encode(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
           gated_masks: tuple[torch.Tensor, torch.Tensor], gates: torch.Tensor) -> torch.Tensor:
    """The last hidden states of a :func:`prepare`-d encoder over a batch of the gated layout (training and re-ranking
    both call this, so the two cannot drift apart)."""
    if _relative(model.config):  # MPNet: the state its attention reads, for this call on this thread
        _MPNET_STATE.value = (gated_masks, gates)
        try:
            return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).last_hidden_state
        finally:
            _MPNET_STATE.value = None
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                 token_type_ids=torch.zeros_like(input_ids), gated_masks=gated_masks, gates=gates).last_hidden_state


def _no_mask(*args, **kwargs):
    return None  # the gated function builds its masks from the segments itself


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(ATTENTION, gated_attention)
    AttentionMaskInterface.register(ATTENTION, _no_mask)


register()


def masks(segments: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive (own-sequence, whole-pair) masks from segment ids (0 = padding, 1 = query, 2 = passage)."""
    low = torch.finfo(dtype).min
    real = segments > 0
    own = (segments[:, :, None] == segments[:, None, :]) & real[:, None, :]
    own_mask = torch.zeros(own.shape, dtype=dtype, device=segments.device).masked_fill_(~own, low)[:, None]
    all_mask = torch.zeros(real.shape, dtype=dtype, device=segments.device).masked_fill_(~real, low)[:, None, None]
    return own_mask, all_mask


def positions(segments: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Position ids of the gated layout from its segment ids: each sequence counts from 0 (plus ``offset``)."""
    width = segments.shape[1]
    query_length = (segments == 1).sum(1, keepdim=True)
    index = torch.arange(width, device=segments.device)[None].expand_as(segments)
    return (index - (segments == 2) * query_length).masked_fill(segments == 0, 0) + offset


def layout(query_ids: Sequence[Sequence[int]], passage_ids: Sequence[Sequence[int]], pad_id: int,
           position_offset: int = 0) -> dict[str, torch.Tensor]:
    """Batch tensors for pairs of token ids that already carry their special tokens (``[CLS] q [SEP]``)."""
    width = max(len(q) + len(p) for q, p in zip(query_ids, passage_ids))
    batch = len(query_ids)
    ids = torch.full((batch, width), pad_id, dtype=torch.long)
    segments = torch.zeros((batch, width), dtype=torch.long)
    for row, (q, p) in enumerate(zip(query_ids, passage_ids)):
        n, m = len(q), len(p)
        ids[row, :n] = torch.as_tensor(q)
        ids[row, n : n + m] = torch.as_tensor(p)
        segments[row, :n] = 1
        segments[row, n : n + m] = 2
    return {"input_ids": ids, "attention_mask": (segments > 0).long(), "position_ids": positions(segments, position_offset),
            "segments": segments}


def position_offset(config) -> int:
    return int(config.pad_token_id) + 1 if getattr(config, "model_type", None) in _OFFSET_POSITIONS else 0


class GatedTransformer(Transformer):
    """sentence-transformers' ``Transformer`` with the gated pair layout; ``gates`` (layers, heads) start at 0.

    It expects (query, passage) pairs; queries are cut to ``max_query_length`` and passages to
    ``max_passage_length`` tokens, each separately (the paper's 32/256 budgets).
    """

    config_keys = [*Transformer.config_keys, "max_query_length", "max_passage_length"]

    def __init__(self, model_name_or_path: str, *args, max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
                 max_passage_length: int = DEFAULT_MAX_PASSAGE_LENGTH, **kwargs):
        model_kwargs = dict(kwargs.pop("model_kwargs", None) or {})
        model_kwargs["attn_implementation"] = ATTENTION
        kwargs.setdefault("transformer_task", "feature-extraction")
        super().__init__(model_name_or_path, *args, model_kwargs=model_kwargs, **kwargs)
        config = self.auto_model.config
        reason = _mpnet_reason(self.auto_model) if _relative(config) else unsupported_reason(self.auto_model, pooled=False)
        if reason is not None:
            raise ValueError(f"the gated layout needs a BERT-family encoder with absolute positions, or MPNet ({reason})")
        self.max_query_length = int(max_query_length)
        self.max_passage_length = int(max_passage_length)
        self.gates = torch.nn.Parameter(torch.zeros(config.num_hidden_layers, config.num_attention_heads))
        self._offset = position_offset(config)
        prepare(self.auto_model)

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs) -> dict[str, torch.Tensor]:
        if not inputs:
            return {}
        # (query, passage) pairs; a single text (sentence-transformers' model card statistics) is a query alone
        pairs = [(x, None) if isinstance(x, str) else tuple(x) for x in inputs]
        if any(len(p) != 2 for p in pairs):
            raise ValueError("the gated cross-encoder scores (query, passage) pairs")
        queries = [q if prompt is None else prompt + q for q, _ in pairs]
        tok = self.tokenizer
        special = tok.num_special_tokens_to_add()
        q_ids = tok(queries, truncation=True, max_length=self.max_query_length + special)["input_ids"]
        texts = [p for _, p in pairs if p is not None]
        cut = iter(tok(texts, truncation=True, max_length=self.max_passage_length + special)["input_ids"] if texts else [])
        p_ids = [next(cut) if p is not None else [] for _, p in pairs]
        return layout(q_ids, p_ids, tok.pad_token_id, self._offset)

    def forward(self, features: dict[str, Any], **kwargs) -> dict[str, Any]:
        ids = features["input_ids"]
        dtype = self.auto_model.dtype
        if torch.is_autocast_enabled(ids.device.type):
            dtype = torch.get_autocast_dtype(ids.device.type)
        features["token_embeddings"] = encode(self.auto_model, ids, features["attention_mask"], features["position_ids"],
                                              masks(features["segments"], dtype), self.gates)
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        super().save(output_path, *args, safe_serialization=safe_serialization, **kwargs)
        (Path(output_path) / GATES_FILE).write_text(json.dumps({"gates": self.gates.detach().cpu().tolist()}) + "\n")

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config.update(max_query_length=self.max_query_length, max_passage_length=self.max_passage_length)
        return config

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", **kwargs) -> GatedTransformer:
        model = super().load(model_name_or_path, subfolder=subfolder, **kwargs)
        path = Path(model_name_or_path) / subfolder / GATES_FILE
        if path.is_file():
            with torch.no_grad():
                model.gates.copy_(torch.tensor(json.loads(path.read_text())["gates"]))
        return model


def read_gates(folder: str | Path) -> torch.Tensor | None:
    """The (layers, heads) gates of a saved gated model, None for any other model folder."""
    path = Path(folder) / GATES_FILE
    return torch.tensor(json.loads(path.read_text())["gates"]) if path.is_file() else None
