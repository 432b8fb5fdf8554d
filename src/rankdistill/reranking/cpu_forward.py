"""An inference-only forward pass for BERT-family cross-encoders on CPU, built from the model's own weights.

Why by hand: no library offers these for Hugging Face encoders on CPU. Profiled on CPU, the Hugging Face forward
spent a large share of its bf16 time in the CPU flash-attention kernel (small heads, short pairs), ran bias, GELU
and residual adds as separate passes over memory, and computed the whole last layer although the scoring head
reads only the ``[CLS]`` token (benchmarks/RESULTS.md has the profile and the gains). This pass, for the same
weights:

- runs the last layer's query, attention output and feed-forward for ``[CLS]`` only (keys and values still
  for every token), when the head reads ``[CLS]`` only: fewer FLOPs, the same result;
- computes attention as two batched matmuls and a softmax (faster than the flash kernel at these sizes,
  the same maths);
- fuses bias, GELU and the residual add into oneDNN's matmul (``torch.ops.mkldnn._linear_pointwise``, the
  kernel ``torch.compile`` itself emits on CPU) where that op exists, with plain ``F.linear`` otherwise.

It supports the encoder layout shared by BERT, MiniLM, ELECTRA, RoBERTa, XLM-R and CamemBERT with absolute
positions; anything else keeps the Hugging Face forward. Every instance checks itself against the Hugging
Face forward on a small padded batch before it is used (:func:`build_cpu_forward`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from rankdistill.modeling.architecture import POOLER_HEADS, unsupported_reason

log = logging.getLogger(__name__)

# hidden_act -> (oneDNN post-op, its algorithm); others are applied after the matmul
_FUSED_ACTS = {"gelu": ("gelu", "none"), "gelu_new": ("gelu", "tanh"), "gelu_pytorch_tanh": ("gelu", "tanh"), "relu": ("relu", "")}
PACK_BATCH_HINT = 4096  # rows per matmul that oneDNN lays the packed weights out for: the CPU token budget


def _linear_ops(dtype) -> tuple[Callable, Callable, Callable]:
    """(linear with a fused activation, linear + residual add, weight prepacking), oneDNN-fused where torch
    has the ops (prepacked weights are faster again), plain ``F.linear`` otherwise."""
    import torch
    import torch.nn.functional as F

    def plain(x, w, b, act="none", alg=""):
        y = F.linear(x, w, b)
        if act == "gelu":
            return F.gelu(y, approximate="tanh" if alg == "tanh" else "none")
        return torch.relu_(y) if act == "relu" else y

    def plain_add(x, other, w, b):
        y = F.linear(x, w, b)
        return y.add_(other)

    def unpacked(w):
        return w

    mkldnn = getattr(torch.ops, "mkldnn", None)
    fused = getattr(mkldnn, "_linear_pointwise", None)
    reorder = getattr(mkldnn, "_reorder_linear_weight", None)
    if fused is None or reorder is None or not torch.backends.mkldnn.is_available():
        return plain, plain_add, unpacked

    def pack(w):
        return reorder(w.contiguous(), PACK_BATCH_HINT)

    try:  # the ops are torch-internal: prove them on this CPU and dtype before trusting them
        x = torch.randn(3, 8).to(dtype)
        w, b, r = torch.randn(4, 8).to(dtype), torch.randn(4).to(dtype), torch.randn(3, 4).to(dtype)
        tol = 1e-4 if dtype == torch.float32 else 0.1
        ok = (fused(x, pack(w), b, "gelu", [], "none") - plain(x, w, b, "gelu", "none")).abs().max() <= tol
        ok = ok and (fused.binary(x, r, pack(w), b, "add") - plain_add(x, r, w, b)).abs().max() <= tol
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        ok, why = False, str(exc)
    else:
        why = "results differ from F.linear"
    if not ok:
        log.debug("oneDNN fused linear not used (%s); using F.linear", why)
        return plain, plain_add, unpacked
    return (lambda x, w, b, act="none", alg="": fused(x, w, b, act, [], alg)), (lambda x, o, w, b: fused.binary(x, o, w, b, "add")), pack


class CpuEncoderForward:
    """Scores (``pooled=True``: the model's one logit per pair) or final hidden states (``pooled=False``)."""

    def __init__(self, model, pooled: bool):
        import torch

        self.model = model
        self.pooled = pooled
        self.base = model.base_model
        dtype = next(model.parameters()).dtype
        self.linear, self.linear_add, pack = _linear_ops(dtype)
        with torch.no_grad():
            self._build_layers(pack)

    def _build_layers(self, pack) -> None:
        import torch

        hidden_act = getattr(self.model.config, "hidden_act", None)
        act = _FUSED_ACTS.get(hidden_act) if isinstance(hidden_act, str) else None
        layers = self.base.encoder.layer
        self.layers = []
        for i, layer in enumerate(layers):
            sa = layer.attention.self
            heads = sa.num_attention_heads
            size = sa.attention_head_size
            scale = size**-0.5  # folded into the query weights: one multiply less per attention score
            wq, bq = sa.query.weight * scale, sa.query.bias * scale
            wqkv = torch.cat([wq, sa.key.weight, sa.value.weight]).contiguous()
            bqkv = torch.cat([bq, sa.key.bias, sa.value.bias]).contiguous()
            rows = heads * size
            if self.pooled and i == len(layers) - 1:  # the [CLS]-only last layer: query apart from keys and values
                ly = {"wq": pack(wqkv[:rows]), "bq": bqkv[:rows], "wkv": pack(wqkv[rows:]), "bkv": bqkv[rows:]}
            else:
                ly = {"wqkv": pack(wqkv), "bqkv": bqkv}
            self.layers.append({
                "heads": heads, "size": size, **ly,
                "wo": pack(layer.attention.output.dense.weight), "bo": layer.attention.output.dense.bias,
                "ln1": layer.attention.output.LayerNorm,
                "wi": pack(layer.intermediate.dense.weight), "bi": layer.intermediate.dense.bias,
                "act": None if act else layer.intermediate.intermediate_act_fn,
                "wf": pack(layer.output.dense.weight), "bf": layer.output.dense.bias, "ln2": layer.output.LayerNorm,
            })
        self.act = act or ("none", "")

    def _attend(self, q, k, v, mask, gated=None):
        """softmax(q kᵀ + mask) v over (batch*heads, len, size) tensors; the scale is in q already.

        ``gated``: (own-sequence mask, whole-pair mask, this layer's gates expanded to (batch*heads, 1, 1)):
        the weights of :func:`rankdistill.modeling.gated.gated_attention`, ``w_own + g (w_all - w_own)``.
        """
        import torch

        scores = torch.bmm(q, k.transpose(1, 2))
        if gated is not None:
            own_mask, all_mask, gate = gated
            own = torch.softmax(scores + own_mask, -1)
            if gate is not None:
                own = own + gate * (torch.softmax(scores.add_(all_mask), -1) - own)
            return torch.bmm(own, v)
        if mask is not None:
            scores += mask
        return torch.bmm(torch.softmax(scores, -1), v)

    def __call__(self, input_ids, token_type_ids=None, attention_mask=None, position_ids=None, gated=None):
        """``position_ids`` and ``gated`` = (own-sequence mask, whole-pair mask, gates) for the gated layout of
        :mod:`rankdistill.modeling.gated` (masks as :func:`rankdistill.modeling.gated.masks` makes them, gates (layers, heads))."""
        import torch

        kwargs = {"input_ids": input_ids}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if position_ids is not None:
            kwargs["position_ids"] = position_ids
        x = self.base.embeddings(**kwargs)
        if getattr(self.base, "embeddings_project", None) is not None:  # ELECTRA with embedding_size != hidden
            x = self.base.embeddings_project(x)
        batch, width, hidden = x.shape
        heads, size = self.layers[0]["heads"], self.layers[0]["size"]
        mask = None
        gate_masks = None
        if gated is not None:
            own_mask, all_mask, gates = gated
            gate_masks = (own_mask.to(x.dtype).expand(batch, heads, width, width).reshape(batch * heads, width, width),
                          all_mask.to(x.dtype).expand(batch, heads, 1, width).reshape(batch * heads, 1, width))
            gates = gates.clamp(0.0, 1.0).to(x.dtype)
        elif attention_mask is not None:
            mask = torch.zeros(batch, 1, 1, width, dtype=x.dtype, device=x.device)
            mask.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(x.dtype).min)
            mask = mask.expand(batch, heads, 1, width).reshape(batch * heads, 1, width)
        x = x.reshape(batch * width, hidden)
        rows = width
        for index, ly in enumerate(self.layers):
            layer_gated = None
            if gate_masks is not None:
                gate = gates[index]
                gate = gate.view(1, heads, 1, 1).expand(batch, heads, 1, 1).reshape(batch * heads, 1, 1) if bool((gate > 0).any()) else None
                layer_gated = (*gate_masks, gate)
            if "wq" in ly:  # the last layer, when the head reads [CLS] only: its query, output and feed-forward suffice
                first = x.view(batch, width, hidden)[:, 0]
                q = self.linear(first, ly["wq"], ly["bq"]).view(batch * heads, 1, size)
                kv = self.linear(x, ly["wkv"], ly["bkv"]).view(batch, width, 2, heads, size)
                k, v = kv.permute(2, 0, 3, 1, 4).reshape(2, batch * heads, width, size)
                x, rows = first, 1
            else:
                qkv = self.linear(x, ly["wqkv"], ly["bqkv"]).view(batch, width, 3, heads, size)
                q, k, v = qkv.permute(2, 0, 3, 1, 4).reshape(3, batch * heads, width, size)
            ctx = self._attend(q, k, v, mask, layer_gated).view(batch, heads, rows, size).transpose(1, 2).reshape(batch * rows, hidden)
            x = ly["ln1"](self.linear_add(ctx, x, ly["wo"], ly["bo"]))
            h = self.linear(x, ly["wi"], ly["bi"], *self.act)
            if ly["act"] is not None:
                h = ly["act"](h)
            x = ly["ln2"](self.linear_add(h, x, ly["wf"], ly["bf"]))
        states = x.view(batch, rows, hidden)
        if not self.pooled:
            return states
        if type(self.model).__name__ in POOLER_HEADS:
            return self.model.classifier(self.model.dropout(self.base.pooler(states)))[:, 0]
        return self.model.classifier(states)[:, 0]


def build_cpu_forward(model, pooled: bool, use_types: bool, gates=None) -> CpuEncoderForward | None:
    """The fast pass for ``model`` (in eval mode, on CPU), or None where unsupported or where it disagrees
    with the Hugging Face forward on a padded test batch (logged, never silent). ``gates``: a gated encoder's
    (layers, heads) gates (:mod:`rankdistill.modeling.gated`); the test batch then has the gated layout."""
    import torch

    reason = unsupported_reason(model, pooled)
    if reason is not None:
        log.info("re-ranking with the Hugging Face forward: %s", reason)
        return None
    fast = CpuEncoderForward(model, pooled)
    # a self-check: two pairs, one padded, random ids of the model's vocabulary
    generator = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    ids = torch.randint(5, vocab, (2, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    types = None
    if use_types:
        types = torch.zeros_like(ids)
        types[:, 6:] = 1
    inputs = {"input_ids": ids, "attention_mask": mask, **({"token_type_ids": types} if use_types else {})}
    extra = {}
    if gates is not None:
        from rankdistill.modeling.gated import masks, position_offset, positions

        segments = mask.clone()
        segments[:, 5:] *= 2  # a query of 5 tokens, then the passage (the second one padded)
        types = torch.zeros_like(ids)
        gated_masks = masks(segments, next(model.parameters()).dtype)
        pos = positions(segments, position_offset(model.config))
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types, "position_ids": pos,
                  "gated_masks": gated_masks, "gates": gates}
        extra = {"position_ids": pos, "gated": (*gated_masks, gates)}
    with torch.inference_mode():
        ref = model(**inputs)
        ref = ref.logits[:, 0] if pooled else ref.last_hidden_state
        got = fast(ids, types, mask, **extra)
    if not pooled:  # padded positions are undefined in both
        ref, got = ref[mask.bool()], got[mask.bool()]
    dtype = next(model.parameters()).dtype
    tol = 1e-4 if dtype == torch.float32 else 0.05
    diff = float((ref.float() - got.float()).abs().max())
    if not diff <= tol * max(1.0, float(ref.float().abs().max())):
        log.warning("re-ranking with the Hugging Face forward: the fast CPU pass differs by %.3g on a test batch", diff)
        return None
    return fast
