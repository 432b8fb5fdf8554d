"""Old module paths (before the stage packages) keep importing: ``rankdistill.heads`` *is* ``rankdistill.modeling.heads``.

Why an import hook rather than a stub file per old module: students saved before the move name their classes in
``modules.json`` (``rankdistill.heads.SegmentSimilarity``, ``rankdistill.gated.GatedTransformer``) and must load the
very same classes, and twenty stub files would crowd the package's top level. The hook maps each old name to the
module object of its new place (so ``isinstance`` and class identity hold) and nothing else.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

# old dotted path -> new dotted path; old modules whose name is now a package (training, evaluation, reranking,
# serving, workflow) re-export their former names from that package's ``__init__`` instead
MOVED: dict[str, str] = {
    "rankdistill.fileio": "rankdistill.util.files",
    "rankdistill.progress": "rankdistill.util.progress",
    "rankdistill.runs": "rankdistill.data.trec",
    "rankdistill.collection": "rankdistill.data.collection",
    "rankdistill.distillset": "rankdistill.distillation.builder",
    "rankdistill.losses": "rankdistill.training.losses",
    "rankdistill.heads": "rankdistill.modeling.heads",
    "rankdistill.gated": "rankdistill.modeling.gated",
    "rankdistill.backbones": "rankdistill.modeling.backbones",
    "rankdistill.model": "rankdistill.modeling.cross_encoder",
    "rankdistill.cpu_forward": "rankdistill.reranking.cpu_forward",
    "rankdistill.scoring": "rankdistill.reranking.scorer",
    "rankdistill.significance": "rankdistill.evaluation.significance",
    "rankdistill.report": "rankdistill.evaluation.report",
    "rankdistill.plots": "rankdistill.evaluation.plots",
    "rankdistill.exporting": "rankdistill.serving.onnx",
    "rankdistill.pyterrier": "rankdistill.serving.pyterrier",
    "rankdistill.config": "rankdistill.workflow.config",
    "rankdistill.manifest": "rankdistill.workflow.manifest",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        if fullname in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(MOVED[spec.name])
        self._spec = module.__spec__
        return module

    def exec_module(self, module) -> None:
        module.__spec__ = self._spec  # importlib stamped the old name's spec on the shared module: undo it


def install() -> None:
    """Idempotent: put the finder first on ``sys.meta_path``."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())


def former_module(package: str, module: str):
    """A package ``__getattr__`` that hands out the names of the module the package replaced.

    ``rankdistill.training`` was one module and is now a package: ``from rankdistill.training import train``
    keeps working because the package resolves unknown names in ``module`` (imported on first use, so importing
    a light submodule of the package does not pull in the heavy one).
    """

    def __getattr__(name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        target = importlib.import_module(module)
        try:
            return getattr(target, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__
