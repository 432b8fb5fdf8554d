"""Students saved before the package move load and score exactly as the same students saved today.

What changed on disk is only the class paths in ``modules.json`` (``rankdistill.gated.GatedTransformer``,
``rankdistill.heads.SegmentSimilarity`` then; ``rankdistill.modeling.…`` now). So each student is trained here from a
tiny model, copied, and its copy given the old class paths, byte for byte what the code before the move wrote; both
must load and give the same scores.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from helpers.data import write_set
from helpers.tiny import tiny_scoring_dir

PAIRS = [("what is the water price", "the river water price is good in the city"),
         ("what is the water price", "a car is fast"),
         ("who is the best student", "the best student of the year is in the court"),
         ("who is the best student", "public records of the state data model")]
HEADS = ("cls", "gated", "similarity")
OLD_PATHS = {"rankdistill.modeling.gated.GatedTransformer": "rankdistill.gated.GatedTransformer",
             "rankdistill.modeling.heads.SegmentSimilarity": "rankdistill.heads.SegmentSimilarity"}


@pytest.fixture(scope="module")
def students(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """head -> (student as saved today, the same folder with the pre-move class paths)."""
    from rankdistill.training.trainer import train

    root = tmp_path_factory.mktemp("legacy")
    encoder = tiny_scoring_dir(root / "enc")
    data = write_set(root / "set.parquet", queries=3, docs=4)
    out = {}
    for head in HEADS:
        new = root / f"student-{head}"
        # a large gate rate opens the gates within 3 steps, so they are far from their start at 0
        train(data, model=str(encoder), output=new, head=head, max_steps=3, learning_rate=1e-3,
              gate_learning_rate=0.5, max_query_length=8, max_passage_length=16, seed=0)
        old = root / f"legacy-{head}"
        shutil.copytree(new, old)
        modules = old / "modules.json"
        entries = json.loads(modules.read_text())
        for entry in entries:
            entry["type"] = OLD_PATHS.get(entry["type"], entry["type"])
        modules.write_text(json.dumps(entries, indent=2))
        out[head] = (new, old)
    return out


def test_the_copies_name_the_old_class_paths(students):
    new, old = students["gated"]
    types = {m["type"] for m in json.loads((old / "modules.json").read_text())}
    assert types == {"rankdistill.gated.GatedTransformer", "rankdistill.heads.SegmentSimilarity"}
    gates = json.loads((old / "gates.json").read_text())["gates"]
    assert np.abs(np.array(gates)).max() > 0.1  # trained gates, not the shut ones a bi-encoder would have


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("fast_cpu", [False, True])
def test_scorer_scores_old_and_new_folders_alike(students, head, fast_cpu):
    from rankdistill.reranking.scorer import CrossEncoderScorer

    queries, passages = [q for q, _ in PAIRS], [p for _, p in PAIRS]
    new, old = students[head]
    got = CrossEncoderScorer(old, dtype="float32", fast_cpu=fast_cpu).score(queries, passages)
    want = CrossEncoderScorer(new, dtype="float32", fast_cpu=fast_cpu).score(queries, passages)
    np.testing.assert_array_equal(got, want)
    assert len(set(np.round(want, 4))) == len(PAIRS)  # the pairs really score apart


@pytest.mark.parametrize("head", HEADS)
def test_load_cross_encoder_reads_the_old_folder(students, head):
    from rankdistill.modeling.cross_encoder import head_name, load_cross_encoder

    new, old = students[head]
    assert head_name(old) == head
    np.testing.assert_array_equal(load_cross_encoder(old).predict(PAIRS), load_cross_encoder(new).predict(PAIRS))


def test_old_class_paths_are_the_new_classes():
    """sentence-transformers imports the class path it reads; the old path must give the very same class."""
    import importlib

    from rankdistill.modeling.gated import GatedTransformer
    from rankdistill.modeling.heads import SegmentSimilarity

    assert importlib.import_module("rankdistill.gated").GatedTransformer is GatedTransformer
    assert importlib.import_module("rankdistill.heads").SegmentSimilarity is SegmentSimilarity
