"""Tiny models built in code with a local tokenizer: tests never touch the Hugging Face hub."""

from __future__ import annotations

import re
from pathlib import Path

WORDS = (
    "the a an of to in and or is are was what who how why when where which does do can for on with by from "
    "at as it be this that not no yes public records record naturalization information passage query search "
    "hotel phone water river city car price cost time year day people state court law data model rank best "
    "good bad small large fast slow test train student teacher first second third one two three four five"
).split()


def build_vocab(path: Path, extra_text: str = "") -> Path:
    """A WordPiece vocab: BERT's special tokens, ASCII characters (so nothing is unknown), common words."""
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [chr(c) for c in range(33, 127)]
    words = list(dict.fromkeys(WORDS + re.findall(r"[a-z]+", extra_text.lower())))
    tokens = list(dict.fromkeys(specials + chars + [f"##{c}" for c in chars if c.isalnum()] + words))
    path.write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return path


def tiny_bert_tokenizer(folder: Path):
    from transformers import BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = build_vocab(folder / "vocab.txt")
    # transformers 5 reads ``vocab`` (``vocab_file`` is silently ignored there, leaving only the 5 special
    # tokens, so every word became [UNK]); transformers 4 reads ``vocab_file``. Pass both.
    return BertTokenizerFast(vocab=str(vocab), vocab_file=str(vocab), do_lower_case=True, model_max_length=512)


def tiny_encoder_dir(folder: Path, kind: str = "bert", seed: int = 0) -> Path:
    """A 2-layer encoder (BERT or ELECTRA) with a 1-label head, saved with its tokenizer in ``folder``."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        ElectraConfig,
        ElectraForSequenceClassification,
    )

    folder = Path(folder)
    tokenizer = tiny_bert_tokenizer(folder)
    common = dict(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        num_labels=1,
    )
    torch.manual_seed(seed)
    if kind == "electra":
        model = ElectraForSequenceClassification(ElectraConfig(embedding_size=32, **common))
    else:
        model = BertForSequenceClassification(BertConfig(**common))
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_scoring_dir(folder: Path, seed: int = 3) -> Path:
    """The tiny BERT re-initialised with wider weights (std 0.3, seeded), so scores depend on the text
    and differ by far more than a 1e-4 tolerance (at std 0.02 every pair scores about the same)."""
    from transformers import AutoModelForSequenceClassification

    folder = tiny_encoder_dir(folder, kind="bert", seed=seed)
    widen(AutoModelForSequenceClassification.from_pretrained(folder)).save_pretrained(folder)
    return folder


def widen(model, std: float = 0.3):
    """``model`` with every weight matrix redrawn at ``std`` (seeded): texts then score far apart."""
    import torch

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1:
                param.normal_(0.0, std, generator=gen)
    return model
