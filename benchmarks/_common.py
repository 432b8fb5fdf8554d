"""Shared by the benchmarks: DL20 pairs, the MiniLM cross-encoder folder, machine facts, FLOP counts."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RANKDISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))
DL20 = SHARED / "msmarco-dl20"


def _tsv(path: Path) -> dict[str, str]:
    out = {}
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            key, text = line.rstrip("\n").split("\t", 1)
            out[key] = text
    return out


def dl20_pairs(limit: int | None = None) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(qid, docid) and (query, passage) of the DL20 BM25 top-100 (5,400 pairs), in run order."""
    from rankdistill.data.trec import read_run

    queries, passages = _tsv(DL20 / "queries.tsv"), _tsv(DL20 / "passages.tsv")
    run = read_run(DL20 / "bm25-top100.run")
    ids = [(qid, docid) for qid, docs in run.items() for docid, _ in docs][:limit]
    return ids, [(queries[q], passages[d]) for q, d in ids]


def minilm_cross_encoder(folder: Path, seed: int = 0) -> Path:
    """all-MiniLM-L6-v2 with a one-score head initialised under ``seed`` (untrained), saved as a plain folder.

    Saved once so that every configuration (ours and CrossEncoder.predict) loads the very same weights.
    """
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers import logging as hf_logging

    from rankdistill.modeling.backbones import resolve_backbone

    src = resolve_backbone("minilm-l6")
    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(src, num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(src).save_pretrained(folder)
    return folder


def machine() -> dict:
    import torch

    model = ""
    flags = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not model:
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    except OSError:
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "cpu": model,
        "cores": len(os.sched_getaffinity(0)),
        "avx512_bf16": " avx512_bf16" in f" {flags}",
        "amx_bf16": " amx_bf16" in f" {flags}",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def encoder_flops(config, lengths) -> float:
    """Forward FLOPs of a BERT-style encoder over sequences of the given (real) token lengths.

    Per token 2 x the non-embedding parameters of one layer stack (QKV, output, two FFN matrices), plus
    attention scores and the weighted sum, 2 x 2 x n^2 x hidden per layer for a sequence of n tokens.
    Embedding look-ups, layer norms, softmax and the one-token pooler/head are ignored (under 1 %).
    """
    h, inter, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    per_layer = 4 * h * h + 2 * h * inter  # weights; biases are negligible
    total = 0.0
    for n in lengths:
        total += layers * (2 * per_layer * n + 4 * n * n * h)
    return total
