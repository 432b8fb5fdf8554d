"""Scoring heads for cross-encoders built on checkpoints that were never trained on pairs.

A fresh linear head on ``[CLS]`` starts as a random function: from a bi-encoder checkpoint such as
all-MiniLM-L6-v2 it needs thousands of training queries before it ranks better than BM25 (on the 27 DL20 queries
of a fold it stayed below BM25; figures in ``benchmarks/RESULTS.md``). :class:`SegmentSimilarity` instead starts
from what such a checkpoint already knows: the score is the scaled cosine between the mean of the query's tokens
and the mean of the passage's tokens, both taken from the *joint* encoding ``[CLS] q [SEP] p [SEP]``. Query and
passage still attend to each other in every layer (it is a cross-encoder), but before any training it already
ranks DL20's BM25 top-100 about as well as BM25, and training moves it from there.

sentence-transformers has no segment-aware pooling, so the head is written here as one of its modules; a
saved model therefore loads with ``rankdistill.modeling.cross_encoder.load_cross_encoder`` (or ``CrossEncoder(path,
trust_remote_code=True)`` where rankdistill is installed).

The joint encoding costs what the bi-encoder knew: :mod:`rankdistill.modeling.gated` puts the same head on an
encoder whose cross-attention starts shut, so that student starts where the bi-encoder is (``head: gated``).
"""

from __future__ import annotations

import torch
from sentence_transformers.base.modules import Module

from rankdistill.modeling import HEADS  # noqa: F401  (the head names, defined once in the package)

SIMILARITY_HEAD = "rankdistill.modeling.heads.SegmentSimilarity"


def segment_masks(input_ids: torch.Tensor, attention_mask: torch.Tensor, sep_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(query mask, passage mask): tokens up to the first separator, and the real tokens after it.

    Separator-based rather than ``token_type_ids``-based, so it works for tokenizers without type ids
    (RoBERTa's ``<s> q </s></s> p </s>`` puts the second ``</s>`` on the passage side, which is harmless).
    """
    is_sep = input_ids == sep_token_id
    after_first_sep = (torch.cumsum(is_sep.int(), dim=1) - is_sep.int()) > 0
    real = attention_mask.bool()
    return real & ~after_first_sep, real & after_first_sep


def _mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SegmentSimilarity(Module):
    """score = scale · cos(mean query token, mean passage token) of the joint encoding; ``scale`` is learnt.

    The initial scale 20 matches the temperature sentence-transformers' bi-encoders are trained with, so the
    untrained head's scores have the spread the backbone's similarities were tuned for. Computed in float32
    whatever the encoder's dtype: bf16 cosines would tie close candidates.
    """

    config_keys = ["sep_token_id", "initial_scale"]

    def __init__(self, sep_token_id: int, initial_scale: float = 20.0):
        super().__init__()
        self.sep_token_id = int(sep_token_id)
        self.initial_scale = float(initial_scale)
        self.scale = torch.nn.Parameter(torch.tensor(self.initial_scale, dtype=torch.float32))

    def score(self, token_embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """One score per pair, shape (batch,)."""
        hidden = token_embeddings.float()
        query_mask, passage_mask = segment_masks(input_ids, attention_mask, self.sep_token_id)
        query = torch.nn.functional.normalize(_mean(hidden, query_mask), dim=-1)
        passage = torch.nn.functional.normalize(_mean(hidden, passage_mask), dim=-1)
        return self.scale.float() * (query * passage).sum(-1)

    def forward(self, features: dict, **kwargs) -> dict:
        scores = self.score(features["token_embeddings"], features["input_ids"], features["attention_mask"])
        features["scores"] = scores.unsqueeze(1)
        return features

    def save(self, output_path: str, *args, safe_serialization: bool = True, **kwargs) -> None:
        self.save_config(output_path)
        self.save_torch_weights(output_path, safe_serialization=safe_serialization)

    @classmethod
    def load(cls, model_name_or_path: str, subfolder: str = "", token=None, cache_folder=None, revision=None,
             local_files_only: bool = False, **kwargs) -> SegmentSimilarity:
        hub = {"subfolder": subfolder, "token": token, "cache_folder": cache_folder, "revision": revision,
               "local_files_only": local_files_only}
        config = cls.load_config(model_name_or_path=model_name_or_path, **hub)
        model = cls(**{k: v for k, v in config.items() if k in cls.config_keys})
        return cls.load_torch_weights(model_name_or_path=model_name_or_path, model=model, **hub)
