"""The cross-encoder: construction from any encoder with one of rankdistill's heads, loading a saved one.

Scoring follows monoELECTRA: ``[CLS] q [SEP] p [SEP]`` through the encoder, one score from the first token.
The head is the architecture's own ``AutoModelForSequenceClassification`` head with ``num_labels=1`` (BERT and
MiniLM: pooler dense+tanh then one linear unit; ELECTRA: dense+GELU then one linear unit), not a bare linear
layer as in lightning-ir: that is what lets the saved folder load in plain transformers and
sentence-transformers without custom code. The query/passage budgets and their separate cut live in
:mod:`rankdistill.modeling.truncation`, the model card in :mod:`rankdistill.modeling.card` (both names are also
importable from here, where they used to live).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rankdistill.errors import RankdistillError
from rankdistill.modeling import HEADS
from rankdistill.modeling.truncation import (  # noqa: F401  (re-exported: saved model cards name this module)
    DEFAULT_MAX_PASSAGE_LENGTH,
    DEFAULT_MAX_QUERY_LENGTH,
    TRUNCATION_FILE,
    pair_length,
    read_truncation,
    set_max_length,
    truncate_pairs,
    truncate_texts,
    write_truncation,
)


def __getattr__(name: str):
    """``write_model_card`` used to live here; loaded on use (the card pulls in sentence-transformers' card code)."""
    if name == "write_model_card":
        from rankdistill.modeling.card import write_model_card

        return write_model_card
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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

    Args:
        backbone: a model folder or hub id (short names are resolved before, by ``modeling.backbones``).
        max_query_length: the query budget in tokens.
        max_passage_length: the passage budget in tokens.
        seed: seeds every random initialisation (a fresh head).
        head: one of :data:`rankdistill.modeling.HEADS`.

    Returns:
        The ``sentence_transformers.CrossEncoder``, on the GPU when there is one, its ``max_seq_length`` set to
        the two budgets plus special tokens.

    Raises:
        RankdistillError: an unknown head, a backbone that cannot be loaded or gated, budgets the backbone
            cannot hold.
    """
    import torch
    from transformers import set_seed

    if head not in HEADS:
        raise RankdistillError(f"head {head!r} is not one of {', '.join(HEADS)}")
    set_seed(seed)
    device = "cpu" if not torch.cuda.is_available() else None
    try:
        with _quiet_loading():
            if has_similarity_head(backbone):
                model = load_cross_encoder(backbone, device=device)
            elif head in ("similarity", "gated"):
                model = _similarity_cross_encoder(backbone, head, max_query_length, max_passage_length, device)
            else:
                from sentence_transformers import CrossEncoder

                model = CrossEncoder(backbone, num_labels=1, activation_fn=torch.nn.Identity(), device=device)
    except OSError as exc:
        raise RankdistillError(f"cannot load backbone {backbone!r}: {str(exc).splitlines()[0]}") from exc
    set_max_length(model, max_query_length, max_passage_length)
    return model


@contextmanager
def _quiet_loading() -> Iterator[None]:
    """Silence the "classifier newly initialised" reports of transformers and sentence-transformers: expected here."""
    from transformers import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    st_logger = logging.getLogger("sentence_transformers")
    st_level = st_logger.level
    st_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        st_logger.setLevel(st_level)


def _similarity_cross_encoder(backbone: str, head: str, max_query_length: int, max_passage_length: int, device):
    """The similarity head on the backbone's plain encoder, or (``gated``) on the gated one."""
    import torch
    from sentence_transformers import CrossEncoder
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
    return CrossEncoder(modules=[encoder, SegmentSimilarity(sep)], activation_fn=torch.nn.Identity(), device=device)


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
