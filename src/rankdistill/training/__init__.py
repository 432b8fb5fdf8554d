"""Training the student: per-stage options, the sentence-transformers trainer, the paper's losses."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.training.trainer")  # ``rankdistill.training`` was one module
