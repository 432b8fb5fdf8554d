"""The cross-encoder: construction from any encoder, separate query/passage truncation, saving, model card.

Scoring follows monoELECTRA: ``[CLS] q [SEP] p [SEP]`` through the encoder, one score from the first token.
The head is the architecture's own ``AutoModelForSequenceClassification`` head with ``num_labels=1`` (BERT and
MiniLM: pooler dense+tanh then one linear unit; ELECTRA: dense+GELU then one linear unit), not a bare linear
layer as in lightning-ir: that is what lets the saved folder load in plain transformers and
sentence-transformers without custom code.

Truncation. The paper cuts the query to 32 and the passage to 256 tokens *separately*; sentence-transformers'
``CrossEncoder`` truncates the joined pair instead (longest-first up to ``max_seq_length``). We keep the saved
model a plain CrossEncoder and do the separate cut on the *text*: :func:`truncate_pairs` cuts each text at
the character where its n-th token ends, so tokenising the cut text gives the same first n tokens. The saved
model's ``max_seq_length`` is q + p + special tokens, so ``CrossEncoder(path).predict`` never cuts a pair that
has been through :func:`truncate_pairs` and gives identical scores for it; on raw pairs it differs only
where a passage is longer than its budget. ``rankdistill rerank`` applies :func:`truncate_pairs` with the
budgets stored in ``rankdistill.json`` (:func:`read_truncation`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError

TRUNCATION_FILE = "rankdistill.json"
DEFAULT_MAX_QUERY_LENGTH = 32
DEFAULT_MAX_PASSAGE_LENGTH = 256


def build_cross_encoder(
    backbone: str, *, max_query_length: int, max_passage_length: int, seed: int, head: str = "cls"
):
    """A one-score CrossEncoder with identity activation (raw scores) from a model folder or hub id.

    ``head="cls"``: the architecture's own sequence-classification head on the first token; a checkpoint
    without one (e.g. a bi-encoder such as all-MiniLM-L6-v2) gets a fresh linear head, initialised under
    ``seed`` so the same config trains the same model. ``head="similarity"``: the
    :class:`~rankdistill.modeling.heads.SegmentSimilarity` head (see :mod:`rankdistill.modeling.heads` for why). ``head="gated"``:
    the same head on :class:`~rankdistill.modeling.gated.GatedTransformer`, whose cross-attention starts shut, so the
    untrained model is the backbone's bi-encoder (see :mod:`rankdistill.modeling.gated`). A folder saved by rankdistill
    with a similarity head (gated or not) loads as it is, whatever ``head`` says.
    """
    import torch
    from sentence_transformers import CrossEncoder
    from transformers import logging as hf_logging
    from transformers import set_seed

    from rankdistill.modeling.heads import HEADS

    if head not in HEADS:
        raise RankdistillError(f"head {head!r} is not one of {', '.join(HEADS)}")
    set_seed(seed)
    device = "cpu" if not torch.cuda.is_available() else None
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the "classifier newly initialised" report is expected here
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        if has_similarity_head(backbone):
            model = load_cross_encoder(backbone, device=device)
        elif head in ("similarity", "gated"):
            from sentence_transformers.base.modules import Transformer

            from rankdistill.modeling.heads import SegmentSimilarity

            if head == "gated":
                from rankdistill.modeling.gated import GatedTransformer

                try:
                    encoder = GatedTransformer(backbone, max_query_length=max_query_length, max_passage_length=max_passage_length)
                except ValueError as exc:
                    raise RankdistillError(f"head 'gated' cannot use {backbone!r}: {exc}") from None
            else:
                encoder = Transformer(backbone, transformer_task="feature-extraction")
            encoder.model.config.num_labels = 1  # one score per pair: predict() returns shape (n,)
            sep = encoder.tokenizer.sep_token_id
            if sep is None:
                raise RankdistillError(f"head {head!r} needs a tokenizer with a separator token; {backbone!r} has none")
            model = CrossEncoder(modules=[encoder, SegmentSimilarity(sep)], activation_fn=torch.nn.Identity(), device=device)
        else:
            model = CrossEncoder(backbone, num_labels=1, activation_fn=torch.nn.Identity(), device=device)
    except OSError as exc:
        raise RankdistillError(f"cannot load backbone {backbone!r}: {str(exc).splitlines()[0]}") from exc
    finally:
        hf_logging.set_verbosity(level)
        st_logger.setLevel(st_level)
    set_max_length(model, max_query_length, max_passage_length)
    return model


def _modules(folder: str | Path) -> list[dict]:
    """The entries of ``modules.json``, with class paths written before the package move read as today's."""
    from rankdistill.util.moved import MOVED

    path = Path(folder) / "modules.json"
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    for entry in entries:
        module, _, name = str(entry.get("type", "")).rpartition(".")
        entry["type"] = f"{MOVED.get(module, module)}.{name}" if module else name
    return entries


def _module_types(folder: str | Path) -> list[str]:
    return [entry["type"] for entry in _modules(folder)]


def has_similarity_head(folder: str | Path) -> bool:
    """True for a model folder saved by rankdistill with the :class:`~rankdistill.modeling.heads.SegmentSimilarity` head."""
    from rankdistill.modeling.heads import SIMILARITY_HEAD

    return SIMILARITY_HEAD in _module_types(folder)


def is_gated(folder: str | Path) -> bool:
    """True for a model folder saved by rankdistill with the gated encoder (:mod:`rankdistill.modeling.gated`)."""
    from rankdistill.modeling.gated import GATED_ENCODER

    return GATED_ENCODER in _module_types(folder)


def head_name(folder: str | Path) -> str:
    """``gated``, ``similarity`` or ``cls``: the head a saved model folder carries."""
    return "gated" if is_gated(folder) else "similarity" if has_similarity_head(folder) else "cls"


def load_similarity_head(folder: str | Path):
    """The saved :class:`~rankdistill.modeling.heads.SegmentSimilarity` of a model folder (for the fast scorer)."""
    from rankdistill.modeling.heads import SIMILARITY_HEAD, SegmentSimilarity

    sub = next(e.get("path", "") for e in _modules(folder) if e["type"] == SIMILARITY_HEAD)
    return SegmentSimilarity.load(str(folder), subfolder=sub, local_files_only=True)


def load_cross_encoder(folder: str | Path, **kwargs):
    """Load a saved rankdistill model (either head) as a sentence-transformers ``CrossEncoder``.

    sentence-transformers imports a module class from outside its own package only with
    ``trust_remote_code=True``. We grant it only after checking that every module is sentence-transformers'
    own or ours and that the config names no remote modelling code, so no other code can run.
    """
    import torch
    from sentence_transformers import CrossEncoder

    from rankdistill.modeling.gated import GATED_ENCODER
    from rankdistill.modeling.heads import SIMILARITY_HEAD

    types = _module_types(folder)
    foreign = [t for t in types if not (t.startswith("sentence_transformers.") or t in (SIMILARITY_HEAD, GATED_ENCODER))]
    config = Path(folder) / "config.json"
    remote = config.is_file() and "auto_map" in json.loads(config.read_text(encoding="utf-8"))
    trusted = bool(types) and not foreign and not remote
    kwargs.setdefault("activation_fn", torch.nn.Identity())
    return CrossEncoder(str(folder), trust_remote_code=trusted, **kwargs)


def pair_length(tokenizer, max_query_length: int, max_passage_length: int) -> int:
    """Tokens in ``[CLS] q [SEP] p [SEP]`` when both parts use their whole budget."""
    return max_query_length + max_passage_length + tokenizer.num_special_tokens_to_add(pair=True)


def set_max_length(model, max_query_length: int, max_passage_length: int) -> None:
    """Joint limit = the two budgets + special tokens, so pre-truncated pairs are never cut again."""
    if max_query_length < 1 or max_passage_length < 1:
        raise RankdistillError("max_query_length and max_passage_length must be at least 1 token")
    length = pair_length(model.tokenizer, max_query_length, max_passage_length)
    limit = getattr(model.model.config, "max_position_embeddings", None)
    if limit is not None and length > limit:
        raise RankdistillError(
            f"max_query_length + max_passage_length + special tokens = {length} exceeds the backbone's "
            f"{limit} positions; lower max_passage_length"
        )
    model.max_seq_length = length


def truncate_texts(tokenizer, texts: Sequence[str], max_tokens: int, batch_size: int = 1024) -> list[str]:
    """Cut each text after its ``max_tokens``-th token (no special tokens counted), keeping the original text.

    Decoding token ids would lower-case and re-space the text; cutting at the token's character offset
    keeps it verbatim, so the cut text can be stored, shown and re-tokenised by any CrossEncoder.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise RankdistillError("separate query/passage truncation needs a fast (Rust) tokenizer for character offsets")
    out: list[str] = []
    for start in range(0, len(texts), batch_size):
        chunk = list(texts[start : start + batch_size])
        enc = tokenizer(
            chunk,
            add_special_tokens=False,
            truncation=True,
            max_length=max_tokens + 1,  # one extra token tells us whether anything was cut
            return_offsets_mapping=True,
        )
        for text, offsets in zip(chunk, enc["offset_mapping"]):
            if len(offsets) > max_tokens:
                out.append(text[: offsets[max_tokens - 1][1]])
            else:
                out.append(text)
    return out


def truncate_pairs(
    tokenizer,
    queries: Sequence[str],
    passages: Sequence[str],
    max_query_length: int = DEFAULT_MAX_QUERY_LENGTH,
    max_passage_length: int = DEFAULT_MAX_PASSAGE_LENGTH,
) -> tuple[list[str], list[str]]:
    """Separate truncation of queries and passages (the paper's 32/256), unique texts cut once."""
    uq = list(dict.fromkeys(queries))
    up = list(dict.fromkeys(passages))
    cq = dict(zip(uq, truncate_texts(tokenizer, uq, max_query_length)))
    cp = dict(zip(up, truncate_texts(tokenizer, up, max_passage_length)))
    return [cq[q] for q in queries], [cp[p] for p in passages]


def write_truncation(folder: Path, max_query_length: int, max_passage_length: int, extra: dict[str, Any] | None = None) -> None:
    info = {
        "truncation": "separate",
        "max_query_length": max_query_length,
        "max_passage_length": max_passage_length,
        "note": "cut the query and the passage separately with rankdistill.modeling.cross_encoder.truncate_pairs before CrossEncoder.predict",
        **(extra or {}),
    }
    (Path(folder) / TRUNCATION_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")


def read_truncation(folder: str | Path) -> tuple[int, int] | None:
    """(max_query_length, max_passage_length) stored with a rankdistill model, or None for other models."""
    path = Path(folder) / TRUNCATION_FILE
    if not path.is_file():
        return None
    info = json.loads(path.read_text(encoding="utf-8"))
    return int(info["max_query_length"]), int(info["max_passage_length"])


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) or "–"
    return "–" if value is None else str(value)


def _head_description(base_model: str, head: str) -> list[str]:
    if head == "gated":
        return [
            f"Trained with `rankdistill train` from **{base_model}**: `[CLS] query [SEP] [CLS] passage [SEP]` through the",
            "encoder with cross-attention behind learnt gates (shut at the start, so the untrained model is the backbone's",
            "bi-encoder), score = a learnt scale times the cosine of the mean query token and the mean passage token",
            "(rankdistill's gated similarity head). Outputs are raw scores, higher = more relevant.",
        ]
    if head == "similarity":
        return [
            f"Trained with `rankdistill train` from **{base_model}**: `[CLS] query [SEP] passage [SEP]` through the",
            "encoder, score = a learnt scale times the cosine of the mean query token and the mean passage token",
            "(rankdistill's similarity head). Outputs are raw scores, higher = more relevant.",
        ]
    return [
        f"Trained with `rankdistill train` from **{base_model}**: one score from the first token of",
        "`[CLS] query [SEP] passage [SEP]` (monoELECTRA style, through the architecture's sequence-classification",
        "head with one label). Outputs are raw scores (identity activation), higher = more relevant.",
    ]


def write_model_card(
    folder: Path,
    *,
    base_model: str,
    stages: list[dict[str, Any]],
    settings: dict[str, Any],
    metrics: dict[str, Any] | None = None,
) -> None:
    """README.md: base model, data, loss and hyper-parameters per stage, metrics when given, usage."""
    head = settings.get("head", "cls")
    similarity = head in ("similarity", "gated")
    lines = [
        "---",
        "library_name: sentence-transformers",
        "pipeline_tag: text-ranking",
        "tags: [cross-encoder, reranker, rankdistill]",
        f"base_model: {base_model}",
        "---",
        "",
        "# Cross-encoder re-ranker (rankdistill)",
        "",
        *_head_description(base_model, head),
        "",
        "## Training",
        "",
    ]
    for i, stage in enumerate(stages, 1):
        lines += [f"### Stage {i}" if len(stages) > 1 else "### Data and loss", ""]
        lines += ["| setting | value |", "|---|---|"]
        for key, value in stage.items():
            lines.append(f"| {key} | {_fmt(value)} |")
        lines.append("")
    lines += ["### Model settings", "", "| setting | value |", "|---|---|"]
    for key, value in settings.items():
        lines.append(f"| {key} | {_fmt(value)} |")
    lines.append("")
    if metrics:
        lines += ["## Metrics", "", "| metric | value |", "|---|---|"]
        for key, value in metrics.items():
            lines.append(f"| {key} | {_fmt(value)} |")
        lines.append("")
    mq, mp = settings.get("max_query_length"), settings.get("max_passage_length")
    if head == "gated":
        lines += [
            "## Usage",
            "",
            f"The model cuts queries to {mq} and passages to {mp} tokens *separately* itself. Its encoder and head are",
            "rankdistill's own modules (`rankdistill.modeling.gated.GatedTransformer`, `rankdistill.modeling.heads.SegmentSimilarity`):",
            "install rankdistill, then",
            "",
            "```python",
            "from sentence_transformers import CrossEncoder",
            "",
            'model = CrossEncoder("PATH", trust_remote_code=True)  # or rankdistill.modeling.cross_encoder.load_cross_encoder("PATH")',
            "scores = model.predict([(query, passage) for passage in passages])",
            "```",
            "",
        ]
        (Path(folder) / "README.md").write_text("\n".join(lines), encoding="utf-8")
        return
    lines += [
        "## Usage",
        "",
        f"Queries were cut to {mq} and passages to {mp} tokens *separately*. `CrossEncoder` truncates the",
        "joined pair instead, so cut the texts first to score exactly as in training (`rankdistill rerank`",
        "does this):",
        "",
        "```python",
        *(["from rankdistill.modeling.cross_encoder import load_cross_encoder, read_truncation, truncate_pairs", "",
            'model = load_cross_encoder("PATH")  # a CrossEncoder; or CrossEncoder("PATH", trust_remote_code=True)']
          if similarity else
          ["from sentence_transformers import CrossEncoder",
           "from rankdistill.modeling.cross_encoder import read_truncation, truncate_pairs", "",
           'model = CrossEncoder("PATH")']),
        'mq, mp = read_truncation("PATH")',
        "qs, ps = truncate_pairs(model.tokenizer, queries, passages, mq, mp)",
        "scores = model.predict(list(zip(qs, ps)))",
        "```",
        "",
        "The similarity head is rankdistill's own module (`rankdistill.modeling.heads.SegmentSimilarity`): install"
        " rankdistill to load the model." if similarity else
        "It also loads with `transformers.AutoModelForSequenceClassification` (one logit = the score).",
        "",
    ]
    (Path(folder) / "README.md").write_text("\n".join(lines), encoding="utf-8")
