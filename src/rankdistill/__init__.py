"""rankdistill: turn a slow listwise LLM re-ranker into a fast cross-encoder.

The Python API mirrors the CLI: every command is a function here (imported lazily, so
``import rankdistill`` stays fast and does not pull in torch).
"""

from __future__ import annotations

import importlib

from rankdistill.util import moved as _moved

_moved.install()

__version__ = "0.1.0"

# public name -> module that defines it
_API = {
    "load_collection": "data.collection",
    "Collection": "data.collection",
    "read_run": "data.trec",
    "write_run": "data.trec",
    "read_qrels": "data.trec",
    "write_qrels": "data.trec",
    "RankdistillError": "errors",
    "retrieve": "bm25",
    "BM25Index": "bm25",
    "teach": "teacher.teach",
    "build": "distillation.builder",
    "make_loss": "training.losses",
    "train": "training.trainer",
    "load_cross_encoder": "modeling.cross_encoder",
    "rerank": "reranking.reranker",
    "fuse": "reranking.fusion",
    "fuse_runs": "reranking.fusion",
    "evaluate": "evaluation.metrics",
    "pipeline": "workflow.runner",
    "study": "studies.runner",
    "serve": "serving.app",
    "export": "serving.onnx",
}

__all__ = sorted(_API)


def __getattr__(name: str):
    if name in _API:
        module = importlib.import_module(f".{_API[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module 'rankdistill' has no attribute {name!r}")
