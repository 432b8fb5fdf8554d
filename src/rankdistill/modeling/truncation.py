"""Query and passage token budgets: their defaults, the separate cut of the texts, and where a model stores them.

The paper cuts the query to 32 and the passage to 256 tokens *separately*; sentence-transformers'
``CrossEncoder`` truncates the joined pair instead (longest-first up to ``max_seq_length``). We keep the saved
model a plain CrossEncoder and do the separate cut on the *text*: :func:`truncate_pairs` cuts each text at
the character where its n-th token ends, so tokenising the cut text gives the same first n tokens. The saved
model's ``max_seq_length`` is q + p + special tokens (:func:`set_max_length`), so ``CrossEncoder(path).predict``
never cuts a pair that has been through :func:`truncate_pairs` and gives identical scores for it; on raw pairs it
differs only where a passage is longer than its budget. The budgets are saved beside the weights in
``rankdistill.json`` (:func:`write_truncation`), so re-ranking applies the ones the model was trained with
(:func:`read_truncation`).

This module imports neither torch nor transformers: configs and the CLI read the budgets' defaults from here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from rankdistill.errors import RankdistillError

TRUNCATION_FILE = "rankdistill.json"
DEFAULT_MAX_QUERY_LENGTH = 32  # the paper's budgets
DEFAULT_MAX_PASSAGE_LENGTH = 256


class TruncationOptions(BaseModel):
    """The student's query and passage budgets, in tokens, each cut separately (saved with the model)."""

    model_config = ConfigDict(extra="forbid")

    max_query_length: int = Field(DEFAULT_MAX_QUERY_LENGTH, ge=1, description="Query budget in tokens, cut separately.")
    max_passage_length: int = Field(
        DEFAULT_MAX_PASSAGE_LENGTH, ge=1, description="Passage budget in tokens, cut separately."
    )


def pair_length(tokenizer, max_query_length: int, max_passage_length: int) -> int:
    """Tokens in ``[CLS] q [SEP] p [SEP]`` when both parts use their whole budget."""
    return max_query_length + max_passage_length + tokenizer.num_special_tokens_to_add(pair=True)


def set_max_length(model, max_query_length: int, max_passage_length: int) -> None:
    """Set a CrossEncoder's joint limit to the two budgets + special tokens, so pre-cut pairs are never cut again.

    Raises:
        RankdistillError: a budget below 1, or a pair longer than the backbone's position embeddings.
    """
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

    Raises:
        RankdistillError: the tokenizer is not a fast one (only those give character offsets).
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
    """Save the budgets beside a model (``rankdistill.json``), with ``extra`` keys such as the base model."""
    info = {
        "truncation": "separate",
        "max_query_length": max_query_length,
        "max_passage_length": max_passage_length,
        "note": "cut the query and the passage separately with rankdistill.modeling.truncation.truncate_pairs before CrossEncoder.predict",
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
