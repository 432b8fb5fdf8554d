"""Re-ranking runs with a student: the scorer, token-budget batches, the fast CPU forward pass."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.reranking.reranker")  # ``rankdistill.reranking`` was one module
