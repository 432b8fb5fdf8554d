"""The README's ONNX Runtime snippet, run as written on a tiny exported student: its scores are torch's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from helpers.tiny import tiny_scoring_dir  # noqa: E402
from rankdistill.cli import main  # noqa: E402
from rankdistill.modeling.truncation import truncate_pairs, write_truncation  # noqa: E402

README = Path(__file__).resolve().parents[2] / "README.md"
HEADING = "### The ONNX export in ONNX Runtime alone"
QUERY_BUDGET, PASSAGE_BUDGET = 4, 12  # small, so the snippet has to cut both


def snippet() -> str:
    """The first ``python`` block under the README's ONNX heading."""
    text = README.read_text(encoding="utf-8")
    assert HEADING in text
    match = re.search(r"```python\n(.*?)```", text.split(HEADING, 1)[1], re.S)
    assert match is not None, f"no python block under {HEADING!r}"
    return match.group(1)


def test_the_readme_snippet_scores_the_export_as_torch_does(tmp_path, monkeypatch, capsys):
    import torch
    from sentence_transformers import CrossEncoder

    student = tiny_scoring_dir(tmp_path / "student")
    write_truncation(student, QUERY_BUDGET, PASSAGE_BUDGET)  # as rankdistill train saves them
    main(["export", str(student), "--onnx", str(tmp_path / "student-onnx")])
    assert (tmp_path / "student-onnx" / "rankdistill.json").is_file()

    monkeypatch.chdir(tmp_path)  # the snippet names the folder as the README's export command wrote it
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(snippet(), str(README), "exec"), namespace)
    printed = re.findall(r"-?\d+\.\d+(?:e[-+]?\d+)?", capsys.readouterr().out)
    assert len(printed) == 2  # the snippet's own example: two passages, two scores

    query = "what is the price of water in the city of the state"
    passages = ["The price of water in the city rose this year, and the court keeps the records of it.",
                "Student and teacher rank data; the best model is small and fast. " * 3,
                "a river", "Law and court data for the state, one record a year."]
    got = namespace["score"](query, passages)
    qs, ps = truncate_pairs(CrossEncoder(str(student), device="cpu").tokenizer, [query] * len(passages), passages,
                            QUERY_BUDGET, PASSAGE_BUDGET)
    assert qs[0] != query and ps[0] != passages[0]  # both budgets cut: the snippet's cut is exercised
    assert namespace["cut"](passages, PASSAGE_BUDGET) == ps
    expected = CrossEncoder(str(student), device="cpu", activation_fn=torch.nn.Identity()).predict(list(zip(qs, ps)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    assert np.ptp(expected) > 1e-2  # the pairs score apart: a mix-up would show
