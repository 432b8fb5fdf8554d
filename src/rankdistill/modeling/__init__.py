"""The student: backbones, scoring heads (cls, similarity, gated), query/passage budgets, model card, saving and loading.

This ``__init__`` stays light (no torch): configs validate head names against :data:`HEADS` without loading a model.
"""

from __future__ import annotations

from typing import Literal

# the scoring heads build_cross_encoder knows: the architecture's own classification head on [CLS] (cls), the
# scaled cosine of the query's and passage's mean tokens (similarity, modeling.heads), and that head on an encoder
# whose cross-attention starts shut (gated, modeling.gated)
HEADS = ("cls", "similarity", "gated")
HeadName = Literal[HEADS]  # type: ignore[valid-type]
