"""The PyTerrier transformer: the frame contract, and a pipeline first stage >> get_text >> student.

PyTerrier's core installs from PyPI and runs without Java. Terrier's own BM25 (``pt.terrier.Retriever``)
needs Java and Terrier's jars from Maven Central, which this machine cannot reach, so the pipeline test
puts rankdistill's BM25 run in front (``pt.Transformer.from_df``) and reads the text with
``pt.text.get_text`` from the ir_datasets copy of Cranfield in ../shared/data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pt = pytest.importorskip("pyterrier")
pd = pytest.importorskip("pandas")

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.serving.pyterrier import Reranker  # noqa: E402
from rankdistill.reranking.scorer import CrossEncoderScorer  # noqa: E402

from helpers.tiny import tiny_scoring_dir  # noqa: E402

# PyTerrier's own deprecation noise under pandas 3, and its hint to share pipeline components
pytestmark = [pytest.mark.filterwarnings("ignore:The inplace keyword"), pytest.mark.filterwarnings("ignore:There are shared pipeline")]

ROWS = [
    ("q1", "what is the price of water", "d1", "The price of water in the city rose this year."),
    ("q1", "what is the price of water", "d2", "A river runs by the city; the hotel phone is on the first floor."),
    ("q1", "what is the price of water", "d3", "Two, three, four, five: what a good day for a test."),
    ("q2", "public records", "d4", "Public records: the court keeps naturalization records."),
    ("q2", "public records", "d1", "The price of water in the city rose this year."),
]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_scoring_dir(tmp_path_factory.mktemp("pt") / "model")


@pytest.fixture(scope="module")
def student(model_dir):
    return Reranker(model_dir, dtype="float32", device="cpu")


def test_frame_contract(student, model_dir):
    inp = pd.DataFrame(ROWS, columns=["qid", "query", "docno", "text"])
    inp["score"] = [3.0, 2.0, 1.0, 2.0, 1.0]
    inp["rank"] = [0, 1, 2, 0, 1]
    inp["extra"] = range(len(inp))
    out = student(inp)
    assert len(out) == len(inp) and set(inp.columns) <= set(out.columns)
    want = CrossEncoderScorer(model_dir, dtype="float32", device="cpu").score(inp["query"].tolist(), inp["text"].tolist())
    by_row = dict(zip(inp["extra"], want))
    np.testing.assert_allclose(out["score"].to_numpy(), [by_row[e] for e in out["extra"]], atol=1e-5, rtol=0)
    for qid, group in out.groupby("qid", sort=False):
        assert group["rank"].tolist() == list(range(len(group)))  # PyTerrier ranks from 0
        assert group["score"].is_monotonic_decreasing
    assert out["qid"].tolist() == sorted(out["qid"])
    assert inp["score"].tolist() == [3.0, 2.0, 1.0, 2.0, 1.0]  # the input frame is not modified
    assert repr(student).startswith("Reranker(")


def test_empty_frame_and_missing_text(student):
    empty = student(pd.DataFrame(columns=["qid", "query", "docno", "text"]))
    assert len(empty) == 0 and {"score", "rank"} <= set(empty.columns)
    with pytest.raises(RankdistillError, match=r"no 'text'.*pt\.text\.get_text"):
        student(pd.DataFrame(ROWS, columns=["qid", "query", "docno", "body"]))


def test_pipeline_first_stage_get_text_student(student, irds_home, tmp_path):
    import rankdistill
    from rankdistill.data.trec import read_run

    dataset = pt.get_dataset("irds:cranfield")
    topics = dataset.get_topics().head(5)
    run = read_run(rankdistill.retrieve("irds:cranfield", queries=dict(zip(topics["qid"], topics["query"])), k=20,
                                        output=tmp_path / "bm25.run", show_progress=False))
    first = pd.DataFrame([(q, d, s) for q, docs in run.items() for d, s in docs], columns=["qid", "docno", "score"])
    bm25 = pt.Transformer.from_df(first)
    pipeline = bm25 >> pt.text.get_text(dataset, "text") >> student
    out = pipeline(topics)
    assert len(out) == len(first) and out["text"].str.len().gt(0).all()
    assert set(out["qid"]) == set(topics["qid"])
    result = pt.Experiment([bm25, pipeline], topics, dataset.get_qrels(), eval_metrics=["ndcg_cut_10"], names=["bm25", "student"])
    assert list(result["name"]) == ["bm25", "student"] and result["ndcg_cut_10"].between(0, 1).all()
