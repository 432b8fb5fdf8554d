"""The similarity head: segment masks, the score formula, training, saving, loading, fast scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.data import write_set  # noqa: E402
from helpers.tiny import tiny_encoder_dir  # noqa: E402

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.modeling.heads import SegmentSimilarity, segment_masks  # noqa: E402


def test_segment_masks_split_at_the_first_separator():
    # [CLS] q1 q2 [SEP] p1 p2 [SEP] [PAD]  /  [CLS] q1 [SEP] p1 [SEP] [PAD] [PAD] [PAD]
    ids = torch.tensor([[101, 5, 6, 102, 7, 8, 102, 0], [101, 5, 102, 7, 102, 0, 0, 0]])
    mask = (ids != 0).long()
    query, passage = segment_masks(ids, mask, sep_token_id=102)
    assert query.int().tolist() == [[1, 1, 1, 1, 0, 0, 0, 0], [1, 1, 1, 0, 0, 0, 0, 0]]
    assert passage.int().tolist() == [[0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 0, 0, 0]]


def test_score_is_scaled_cosine_of_segment_means():
    head = SegmentSimilarity(sep_token_id=9, initial_scale=20.0)
    ids = torch.tensor([[1, 9, 2, 3, 9]])
    mask = torch.ones_like(ids)
    hidden = torch.tensor([[[1.0, 0.0], [1.0, 2.0], [0.0, 1.0], [2.0, 1.0], [0.0, 0.0]]]).to(torch.bfloat16)
    # query = tokens 0-1: mean (1, 1); passage = tokens 2-4: mean (2/3, 2/3) -> cosine 1
    assert head.score(hidden, ids, mask).item() == pytest.approx(20.0, abs=1e-5)
    hidden[0, 2] = torch.tensor([0.0, -3.0])  # passage mean (2/3, -2/3): orthogonal to (1, 1)
    assert head.score(hidden, ids, mask).item() == pytest.approx(0.0, abs=1e-5)
    assert head.score(hidden, ids, mask).dtype == torch.float32


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from rankdistill.training.trainer import train

    root = tmp_path_factory.mktemp("heads")
    encoder = tiny_encoder_dir(root / "enc")
    data = write_set(root / "train.parquet")
    first = train(data, model=str(encoder), output=root / "stage1", head="similarity", max_steps=15,
                  learning_rate=3e-3, warmup_ratio=0.0, logging_steps=1, save_steps=1000, seed=0)
    second = train(data, model=str(first), output=root / "stage2", max_steps=5, learning_rate=1e-3,
                   warmup_ratio=0.0, logging_steps=1, save_steps=1000, seed=0)
    return {"root": root, "encoder": encoder, "data": data, "first": first, "second": second}


def test_similarity_head_trains_and_round_trips(trained):
    from rankdistill.modeling.cross_encoder import has_similarity_head, load_cross_encoder

    first = trained["first"]
    assert has_similarity_head(first)
    losses = [e["loss"] for e in json.loads((first / "training_log.json").read_text())["stages"][0]["log_history"] if "loss" in e]
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.05
    model = load_cross_encoder(first, device="cpu")
    scores = model.predict([("what is the water", "good water river city"), ("what is the water", "bad water river city")])
    assert scores.shape == (2,) and scores[0] > scores[1]  # the toy set ranks "good" above "bad"
    assert "similarity head" in (first / "README.md").read_text()
    assert json.loads((first / "training_log.json").read_text())["settings"]["head"] == "similarity"


def test_next_stage_keeps_the_similarity_head(trained):
    from rankdistill.modeling.cross_encoder import has_similarity_head, load_cross_encoder

    assert has_similarity_head(trained["second"])
    a = load_cross_encoder(trained["first"], device="cpu")
    b = load_cross_encoder(trained["second"], device="cpu")
    assert b[1].scale.item() != a[1].scale.item()  # the learnt scale moved on in stage 2, not re-initialised


def test_fast_scorer_equals_predict_for_similarity_head(trained):
    from rankdistill.modeling.cross_encoder import load_cross_encoder, truncate_pairs
    from rankdistill.reranking.scorer import CrossEncoderScorer

    model = load_cross_encoder(trained["second"], device="cpu")
    queries = ["what is the water", "what is the price", "x", "what is the court law data state"] * 3
    passages = ["good water river", "bad price cost time year day", "good", "bad law " * 40] * 3
    qs, ps = truncate_pairs(model.tokenizer, queries, passages, 32, 256)
    reference = model.predict(list(zip(qs, ps)), batch_size=5)
    scorer = CrossEncoderScorer(trained["second"], dtype="float32", device="cpu", batch_tokens=64)
    assert scorer.head is not None
    assert scorer.fast is not None  # rankdistill.reranking.cpu_forward, all token states (no [CLS]-only last layer)
    np.testing.assert_allclose(scorer.score(queries, passages), reference, atol=1e-4)
    plain = CrossEncoderScorer(trained["second"], dtype="float32", device="cpu", batch_tokens=64, fast_cpu=False)
    np.testing.assert_allclose(plain.score(queries, passages), reference, atol=1e-4)


def test_unknown_head_is_a_clear_error(trained):
    from rankdistill.training.trainer import train

    with pytest.raises(RankdistillError, match="head"):
        train(trained["data"], model=str(trained["encoder"]), output=trained["root"] / "bad", head="mean", max_steps=1)


def test_foreign_module_is_not_trusted(trained, tmp_path):
    import shutil

    from rankdistill.modeling.cross_encoder import load_cross_encoder

    folder = tmp_path / "m"
    shutil.copytree(trained["first"], folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1]["type"] = "evil_package.Head"
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(Exception, match="trust_remote_code"):
        load_cross_encoder(folder, device="cpu")


def test_similarity_student_loads_with_plain_sentence_transformers(trained):
    """What the model card and README promise: plain CrossEncoder with trust_remote_code, same scores."""
    from sentence_transformers import CrossEncoder

    from rankdistill.modeling.cross_encoder import load_cross_encoder

    folder = trained["second"]
    pairs = [("what is the water", "good water river city"), ("what is the water", "bad water river city"),
             ("river", "a city by the river")]
    ours = load_cross_encoder(folder, device="cpu").predict(pairs)
    plain = CrossEncoder(str(folder), trust_remote_code=True, device="cpu")  # raw scores: the saved activation
    assert np.abs(plain.predict(pairs) - ours).max() < 1e-6
    card = (folder / "README.md").read_text()
    assert "trust_remote_code=True" in card and "load_cross_encoder" in card
