"""ONNX export: the graph's scores (ONNX Runtime) equal the torch scores within 1e-4; clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from rankdistill.cli import main  # noqa: E402
from rankdistill.serving.onnx import ONNX_FILE, REPORT_FILE  # noqa: E402
from rankdistill.reranking.batching import make_batches  # noqa: E402
from rankdistill.reranking.scorer import CrossEncoderScorer  # noqa: E402

from helpers.tiny import tiny_encoder_dir, tiny_scoring_dir  # noqa: E402

PAIRS = [
    ("what is the price of water in the city", "The price of water in the city rose this year."),
    ("who keeps public records of naturalization", "Public records: the court keeps naturalization records for people of the state."),
    ("fast small model", "A river runs by the city; the hotel phone is on the first floor."),
    ("fast small model", "Student and teacher rank data; the best model is small and fast. " * 4),
    ("a", "b"),
    ("law", "Law and court data for the state, one record a year."),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    model = tiny_scoring_dir(root / "model")
    out = root / "student-onnx"
    main(["export", str(model), "--onnx", str(out)])
    return model, out


def test_onnx_scores_equal_torch_scores(exported, capsys):
    model, out = exported
    assert (out / ONNX_FILE).is_file()
    for name in ("config.json", "tokenizer.json", "model.safetensors"):  # a full model folder, torch weights kept
        assert (out / name).is_file(), name
    scorer = CrossEncoderScorer(model, dtype="float32", device="cpu", max_query_length=32, max_passage_length=64)
    queries, passages = [q for q, _ in PAIRS], [p for _, p in PAIRS]
    torch_scores = scorer.score(queries, passages)
    # the very tokens and padded batches the scorer uses, through ONNX Runtime
    session = ort.InferenceSession(str(out / ONNX_FILE), providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    assert names == {"input_ids", "attention_mask", "token_type_ids"}
    ids, types = scorer.encoder.encode(queries, passages)
    onnx_scores = np.zeros(len(PAIRS), dtype=np.float32)
    batches = make_batches(ids, types, 64, scorer.encoder.pad_id)  # small budget: several batches, padding in each
    assert len(batches) > 1 and any(not b.attention_mask.all() for b in batches)
    for batch in batches:
        feed = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask, "token_type_ids": batch.token_type_ids}
        onnx_scores[batch.index] = session.run(["logits"], feed)[0][:, 0]
    diff = float(np.abs(onnx_scores - torch_scores).max())
    with capsys.disabled():
        print(f"\nONNX vs torch max |diff| on {len(PAIRS)} pairs: {diff:.2e}")
    assert diff <= 1e-4
    assert np.ptp(torch_scores) > 1e-2  # the scores differ, so the check means something
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["max_abs_diff_vs_torch"] <= 1e-4 and report["output"] == "logits"


def test_export_into_the_model_folder_itself(tmp_path):
    model = tiny_encoder_dir(tmp_path / "model", seed=1)
    main(["export", str(model), "--onnx", str(model)])
    assert (model / ONNX_FILE).is_file() and (model / "config.json").is_file()
    assert not any(p.name.startswith(".rankdistill-export-") for p in tmp_path.iterdir())


def test_export_errors(exported, cli_error, tmp_path):
    from rankdistill.modeling.cross_encoder import build_cross_encoder

    model, out = exported
    assert "already exists and is not empty" in cli_error(["export", str(model), "--onnx", str(out)])
    similarity = tmp_path / "similarity"
    build_cross_encoder(str(model), max_query_length=8, max_passage_length=16, seed=0, head="similarity").save_pretrained(str(similarity))
    assert "similarity head" in cli_error(["export", str(similarity), "--onnx", str(tmp_path / "x")])
    assert "no such folder" in cli_error(["export", str(tmp_path / "missing"), "--onnx", str(tmp_path / "y")])
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
