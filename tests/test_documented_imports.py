"""Every dotted ``rankdistill.…`` name the README documents resolves, and so do the names documented before the
stage packages (old code and notebooks keep working)."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
# documented in the README before the move (rankdistill 0.1 layout)
FORMERLY_DOCUMENTED = [
    "rankdistill.pyterrier.Reranker", "rankdistill.model.load_cross_encoder", "rankdistill.model.truncate_pairs",
    "rankdistill.teacher.windows", "rankdistill.teacher.teach.teach", "rankdistill.teacher.parse",
    "rankdistill.teacher.prompts", "rankdistill.heads.SegmentSimilarity", "rankdistill.gated.GatedTransformer",
    "rankdistill.backbones", "rankdistill.collection.load_collection", "rankdistill.runs.read_run",
    "rankdistill.significance", "rankdistill.cpu_forward", "rankdistill.scoring.CrossEncoderScorer",
    "rankdistill.config", "rankdistill.distillset", "rankdistill.training.train", "rankdistill.workflow.pipeline",
    "rankdistill.evaluation.evaluate", "rankdistill.reranking.rerank", "rankdistill.serving.serve",
    "rankdistill.exporting.export",
]


def resolve(dotted: str):
    """Import the longest importable module prefix of ``dotted`` and walk the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ModuleNotFoundError(dotted)


def documented() -> list[str]:
    names = set(re.findall(r"\brankdistill(?:\.[A-Za-z_]\w*)+", README.read_text(encoding="utf-8")))
    return sorted(n for n in names if not n.endswith((".json", ".yaml", ".py")))


def test_the_readme_documents_some_names():
    assert "rankdistill.load_cross_encoder" in documented()


@pytest.mark.parametrize("dotted", documented() + FORMERLY_DOCUMENTED)
def test_documented_name_resolves(dotted):
    assert resolve(dotted) is not None


def test_old_and_new_paths_are_the_same_objects():
    assert resolve("rankdistill.pyterrier.Reranker") is resolve("rankdistill.serving.pyterrier.Reranker")
    assert resolve("rankdistill.model.load_cross_encoder") is resolve("rankdistill.load_cross_encoder")
