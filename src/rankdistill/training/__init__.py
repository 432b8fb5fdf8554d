"""Training the student: the stage options (:mod:`~rankdistill.training.options`, one schema for ``train`` and the
pipeline's stages), the sentence-transformers trainer (:mod:`~rankdistill.training.trainer`) and the losses
(:mod:`~rankdistill.training.losses`, one file per family)."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.training.trainer")  # ``rankdistill.training`` was one module
