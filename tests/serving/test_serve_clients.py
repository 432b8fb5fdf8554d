"""Real clients against the server: Cohere's SDK (v2 and v1 clients), and text-embeddings-inference's wire shape.

The Cohere SDK is an optional test extra (``rankdistill[serve-test]``, part of ``[test]``); it talks to uvicorn on a
free loopback port, with the bearer token the SDK sends as its API key. Scores are checked against the scorer's own.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
cohere = pytest.importorskip("cohere")
import httpx  # noqa: E402

from rankdistill.reranking.scorer import CrossEncoderScorer  # noqa: E402
from rankdistill.serving.app import create_app  # noqa: E402
from rankdistill.serving.schema import TRUNCATED_HEADER  # noqa: E402

from helpers.data import PASSAGES, QUERIES  # noqa: E402
from helpers.server import running  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402

MAX_Q, MAX_P = 12, 32
TOKEN = "co-test-Token-51ab"
DOCS = [PASSAGES[d] for d in ("d1", "d3", "d5", "d6", "d2")]


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    model = tiny_scoring_dir(tmp_path_factory.mktemp("clients") / "model")
    return CrossEncoderScorer(model, dtype="float32", device="cpu", max_query_length=MAX_Q, max_passage_length=MAX_P)


@pytest.fixture(scope="module")
def url(scorer):
    with running(create_app(scorer, name="tiny", max_documents=6, api_key=TOKEN)) as base:
        yield base


@pytest.fixture(scope="module")
def want(scorer) -> np.ndarray:
    return scorer.score([QUERIES["q1"]] * len(DOCS), DOCS)


def _best_first(scores) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))


def test_cohere_client_v2_reranks_against_the_server(url, want):
    client = cohere.ClientV2(api_key=TOKEN, base_url=url, timeout=30)
    response = client.rerank(model="tiny", query=QUERIES["q1"], documents=DOCS, top_n=3)
    assert [r.index for r in response.results] == _best_first(want)[:3]
    np.testing.assert_allclose([r.relevance_score for r in response.results], want[_best_first(want)[:3]], atol=1e-4, rtol=0)
    assert response.id and response.meta.api_version.version == "2"
    assert not response.meta.warnings

    # Cohere's own per-document budget is accepted, and the answer says it was not applied
    cut = client.rerank(model="tiny", query=QUERIES["q1"], documents=DOCS, max_tokens_per_doc=8)
    assert len(cut.results) == len(DOCS)
    assert cut.meta.warnings == [f"max_tokens_per_doc=8 is not applied: documents are cut to this model's budget of {MAX_P} tokens"]


def test_cohere_client_v1_reranks_with_documents(url, want):
    client = cohere.Client(api_key=TOKEN, base_url=url, timeout=30)
    response = client.rerank(model="tiny", query=QUERIES["q1"], documents=DOCS, return_documents=True)
    assert [r.index for r in response.results] == _best_first(want)
    assert [r.document.text for r in response.results] == [DOCS[i] for i in _best_first(want)]
    np.testing.assert_allclose([r.relevance_score for r in response.results], want[_best_first(want)], atol=1e-4, rtol=0)
    assert response.meta.api_version.version == "1"


def test_cohere_clients_see_our_errors(url):
    client = cohere.ClientV2(api_key=TOKEN, base_url=url, timeout=30)
    with pytest.raises(cohere.errors.UnprocessableEntityError) as info:
        client.rerank(model="tiny", query=QUERIES["q1"], documents=DOCS * 2)
    assert "10 documents is more than this server's limit of 6" in info.value.body["detail"]
    with pytest.raises(cohere.errors.UnauthorizedError):
        cohere.ClientV2(api_key="wrong", base_url=url, timeout=30).rerank(model="tiny", query="q", documents=["a"])


def _tei(url: str, body) -> httpx.Response:
    return httpx.post(url + "/rerank", json=body, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)


def test_tei_shape_on_rerank(url, want):
    response = _tei(url, {"query": QUERIES["q1"], "texts": DOCS})
    assert response.status_code == 200, response.text
    ranks = response.json()
    assert isinstance(ranks, list) and all(set(r) == {"index", "score"} for r in ranks)
    assert [r["index"] for r in ranks] == _best_first(want)
    # TEI squashes a one-label model's logit with a sigmoid unless raw_scores
    np.testing.assert_allclose([r["score"] for r in ranks], 1 / (1 + np.exp(-want[_best_first(want)])), atol=1e-5, rtol=0)

    raw = _tei(url, {"query": QUERIES["q1"], "texts": DOCS, "raw_scores": True, "return_text": True, "truncate": True,
                     "truncation_direction": "Right"}).json()
    assert [r["index"] for r in raw] == _best_first(want)
    np.testing.assert_allclose([r["score"] for r in raw], want[_best_first(want)], atol=1e-4, rtol=0)
    assert [r["text"] for r in raw] == [DOCS[i] for i in _best_first(want)]

    long = _tei(url, {"query": QUERIES["q1"], "texts": ["water price city river " * 20, DOCS[0]]})
    assert long.status_code == 200 and long.headers[TRUNCATED_HEADER] == "1"

    # the same path still answers the Cohere/Jina shape when the body has no texts
    cohere_shape = httpx.post(url + "/rerank", json={"query": QUERIES["q1"], "documents": DOCS},
                              headers={"Authorization": f"Bearer {TOKEN}"}).json()
    assert [r["index"] for r in cohere_shape["results"]] == _best_first(want)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "q", "texts": []}, 422, "texts is empty"),
        ({"query": "q", "texts": ["a"] * 7}, 422, "7 texts is more than this server's limit of 6"),
        ({"query": " ", "texts": ["a"]}, 422, "query is empty"),
        ({"query": "q", "texts": "a"}, 422, "texts: Input should be a valid list"),
        ({"query": "q", "texts": ["a"], "truncation_direction": "left"}, 422, "truncation_direction: Input should be 'right' or 'Right'"),
        ({"texts": ["a"]}, 422, "query: Field required"),
    ],
)
def test_tei_errors_carry_tei_fields(url, body, status, message):
    response = _tei(url, body)
    assert response.status_code == status, response.text
    data = response.json()
    assert message in data["detail"] and data["error"] == data["detail"] and data["error_type"] == "Validation"


def test_malformed_json_on_rerank_is_422_json(url):
    response = httpx.post(url + "/rerank", content=b'{"query": "q", "texts": [', headers={
        "Authorization": f"Bearer {TOKEN}", "content-type": "application/json"})
    assert response.status_code == 422 and "JSON decode error" in response.json()["detail"]
    assert _tei(url, ["q", "a"]).json()["detail"] == "invalid request: body: Input should be a valid dictionary or instance of RerankRequest"
