"""Which encoder layouts rankdistill's own code paths understand (the gated layout, the fast CPU pass).

One check shared by :mod:`rankdistill.modeling.gated` (which refuses a backbone it cannot gate) and
:mod:`rankdistill.reranking.cpu_forward` (which falls back to the Hugging Face forward), so both agree on what a
BERT-family encoder is.
"""

from __future__ import annotations

# sequence-classification classes whose head reads only the first token's final state, and how
POOLER_HEADS = {"BertForSequenceClassification"}  # pooler (dense + tanh on [CLS]), dropout, classifier
CLS_ONLY_HEADS = {  # classifier(features) takes features[:, 0]
    "ElectraForSequenceClassification",
    "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification",
    "CamembertForSequenceClassification",
}
ENCODER_TYPES = {"bert", "electra", "roberta", "xlm-roberta", "camembert"}


def unsupported_reason(model, pooled: bool) -> str | None:
    """Why this model cannot take the fast pass (None when it can)."""
    config = model.config
    if getattr(config, "model_type", None) not in ENCODER_TYPES:
        return f"model type {getattr(config, 'model_type', None)!r} is not a BERT-family encoder"
    if pooled and type(model).__name__ not in POOLER_HEADS | CLS_ONLY_HEADS:
        return f"{type(model).__name__} has no known [CLS] scoring head"
    if getattr(config, "is_decoder", False) or getattr(config, "add_cross_attention", False):
        return "decoder or cross-attention layers"
    if getattr(config, "position_embedding_type", "absolute") != "absolute":
        return f"position_embedding_type {config.position_embedding_type!r}"
    if getattr(config, "chunk_size_feed_forward", 0):
        return "chunked feed-forward"
    base = model.base_model
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if getattr(base, "embeddings", None) is None or not layers:
        return "no embeddings / encoder.layer modules"
    for layer in layers:
        try:
            attn = layer.attention
            modules = (attn.self.query, attn.self.key, attn.self.value, attn.output.dense, attn.output.LayerNorm,
                       layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm)
        except AttributeError as exc:
            return f"unexpected layer layout ({exc})"
        if any(m is None for m in modules):
            return "unexpected layer layout"
    return None
