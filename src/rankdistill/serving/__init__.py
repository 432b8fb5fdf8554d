"""The student in production: the HTTP re-ranking server, ONNX export, a PyTerrier transformer."""

from rankdistill.util.moved import former_module

__getattr__ = former_module(__name__, "rankdistill.serving.app")  # ``rankdistill.serving`` was one module
