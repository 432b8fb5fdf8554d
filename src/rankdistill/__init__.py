"""rankdistill: turn a slow listwise LLM re-ranker into a fast cross-encoder.

The Python API mirrors the CLI: every command is a function here (imported lazily, so
``import rankdistill`` stays fast and does not pull in torch).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "load_collection": "collection",
    "Collection": "collection",
    "read_run": "runs",
    "write_run": "runs",
    "read_qrels": "runs",
    "write_qrels": "runs",
    "RankdistillError": "errors",
    "retrieve": "bm25",
    "BM25Index": "bm25",
    "evaluate": "evaluation",
    "teach": "teacher.teach",
    "build": "distillset",
    "make_loss": "losses",
    "train": "training",
    "rerank": "reranking",
    "pipeline": "workflow",
    "serve": "serving",
    "export": "exporting",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'rankdistill' has no attribute {name!r}")
