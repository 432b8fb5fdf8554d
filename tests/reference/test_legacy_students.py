"""Students saved before the package move (``rankdistill.heads``/``rankdistill.gated`` in ``modules.json``) load and
score exactly as they did: the folders under ``legacy_students/`` were written by that code and never regenerated."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

FOLDER = Path(__file__).resolve().parent / "legacy_students"
EXPECTED = json.loads((FOLDER / "expected_scores.json").read_text())
PAIRS = [tuple(p) for p in EXPECTED["pairs"]]
HEADS = sorted(EXPECTED["scores"])


def test_folders_name_the_old_class_paths():
    """The fixture really is old: its modules.json names the pre-move modules."""
    types = {m["type"] for m in json.loads((FOLDER / "student-gated" / "modules.json").read_text())}
    assert types == {"rankdistill.gated.GatedTransformer", "rankdistill.heads.SegmentSimilarity"}


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fast_cpu", [False, True])
def test_scorer_gives_the_recorded_scores(head, fast_cpu):
    from rankdistill.reranking.scorer import CrossEncoderScorer

    scorer = CrossEncoderScorer(FOLDER / f"student-{head}", dtype="float32", fast_cpu=fast_cpu)
    got = scorer.score([q for q, _ in PAIRS], [p for _, p in PAIRS])
    np.testing.assert_allclose(got, EXPECTED["scores"][head], rtol=0, atol=1e-4)


@pytest.mark.parametrize("head", HEADS)
def test_load_cross_encoder_predicts_the_recorded_scores(head):
    from rankdistill.modeling.cross_encoder import head_name, load_cross_encoder

    folder = FOLDER / f"student-{head}"
    assert head_name(folder) == head
    model = load_cross_encoder(folder)
    np.testing.assert_allclose(model.predict(PAIRS), EXPECTED["scores"][head], rtol=0, atol=1e-4)


def test_old_class_paths_are_the_new_classes():
    """sentence-transformers imports the class path it reads; the old path must give the very same class."""
    import importlib

    from rankdistill.modeling.gated import GatedTransformer
    from rankdistill.modeling.heads import SegmentSimilarity

    assert importlib.import_module("rankdistill.gated").GatedTransformer is GatedTransformer
    assert importlib.import_module("rankdistill.heads").SegmentSimilarity is SegmentSimilarity
