"""The HTTP server: real requests (httpx) to uvicorn on a free loopback port; scores equal ``rerank``'s."""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from rankdistill.cli import main  # noqa: E402
from rankdistill.reranking.reranker import rerank  # noqa: E402
from rankdistill.data.trec import read_run, write_run  # noqa: E402
from rankdistill.reranking.scorer import CrossEncoderScorer  # noqa: E402
from rankdistill.serving.app import create_app  # noqa: E402
from rankdistill.serving.batcher import Batcher  # noqa: E402
from rankdistill.serving.schema import TRUNCATED_HEADER  # noqa: E402

from helpers.data import PASSAGES, QUERIES  # noqa: E402
from helpers.server import running  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
MAX_Q, MAX_P = 12, 32  # small budgets (d4 alone is longer), so a test can cut a query and a passage
TOKEN = "s3cret-Token-9f8e7d"

RUN = {
    "q1": [("d1", 9.0), ("d3", 8.0), ("d5", 7.0), ("d6", 6.0)],
    "q2": [("d2", 5.0), ("d6", 4.0), ("d1", 3.0)],
    "q3": [("d4", 2.0), ("d5", 1.0)],
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_scoring_dir(tmp_path_factory.mktemp("serve") / "model")


@pytest.fixture(scope="module")
def scorer(model_dir):
    # small batches: a request's pairs span several batches, run in two streams (threads=2)
    return CrossEncoderScorer(model_dir, dtype="float32", device="cpu", max_query_length=MAX_Q, max_passage_length=MAX_P,
                              batch_tokens=256, threads=2)


@pytest.fixture(scope="module")
def url(scorer):
    # a 30 ms wait, so a burst of requests reliably shares scoring rounds
    with running(create_app(scorer, name="tiny", max_documents=8, max_wait_ms=30)) as base:
        yield base


def post(url: str, body, path: str = "/v1/rerank", **kwargs) -> httpx.Response:
    return httpx.post(url + path, json=body, timeout=30, **kwargs)


def test_scores_and_order_equal_rerank(url, model_dir, tmp_path):
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{d}\t{t}\n" for d, t in PASSAGES.items()), encoding="utf-8")
    out = rerank(model_dir, write_run(RUN, tmp_path / "first.run"), queries=queries, corpus=corpus, output=tmp_path / "re.run",
                 dtype="float32", device="cpu", max_query_length=MAX_Q, max_passage_length=MAX_P, progress=False)
    expected = read_run(out)
    for qid, candidates in RUN.items():
        docids = [d for d, _ in candidates]
        response = post(url, {"query": QUERIES[qid], "documents": [PASSAGES[d] for d in docids]})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert [docids[r["index"]] for r in results] == [d for d, _ in expected[qid]]
        np.testing.assert_allclose([r["relevance_score"] for r in results], [s for _, s in expected[qid]], atol=1e-4, rtol=0)
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True)


def test_request_shapes_top_n_documents_and_alias(url, scorer):
    docs = [PASSAGES[d] for d in ("d1", "d3", "d5", "d6")]
    body = {"model": "rerank-english-v3.0", "query": QUERIES["q1"], "documents": [{"text": d, "title": "x"} for d in docs],
            "top_n": 2, "return_documents": True, "extra_field": 1}
    response = post(url, body)
    assert response.status_code == 200, response.text
    data = response.json()
    want = scorer.score([QUERIES["q1"]] * 4, docs)
    best = list(np.argsort(-want, kind="stable")[:2])
    assert [r["index"] for r in data["results"]] == best
    assert [r["document"]["text"] for r in data["results"]] == [docs[i] for i in best]
    assert data["model"] == "tiny" and data["id"] and data["usage"]["total_tokens"] > 0
    assert data["meta"]["truncated"] is False and TRUNCATED_HEADER not in response.headers
    plain = post(url, {"query": QUERIES["q1"], "documents": docs, "top_n": 99}, path="/rerank")
    assert plain.status_code == 200
    assert len(plain.json()["results"]) == 4 and "document" not in plain.json()["results"][0]
    assert [r["relevance_score"] for r in plain.json()["results"][:2]] == [r["relevance_score"] for r in data["results"]]


def test_over_long_input_is_cut_and_said_so(url, scorer):
    query = "what is the price of water in the city this year for people"  # 13 tokens > 12
    long_doc = "water price city river " * 20  # 80 tokens > 32
    docs = [PASSAGES["d1"], long_doc, PASSAGES["d5"]]
    response = post(url, {"query": query, "documents": docs})
    assert response.status_code == 200, response.text
    meta = response.json()["meta"]
    assert meta["truncated"] and meta["query_truncated"] and meta["truncated_documents"] == [1]
    assert meta["max_query_tokens"] == MAX_Q and meta["max_document_tokens"] == MAX_P
    assert response.headers[TRUNCATED_HEADER] == "2"
    got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
    np.testing.assert_allclose([got[i] for i in range(3)], scorer.score([query] * 3, docs), atol=1e-4, rtol=0)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"query": "", "documents": ["a"]}, 422, "query is empty"),
        ({"query": "  \t", "documents": ["a"]}, 422, "query is empty"),
        ({"documents": ["a"]}, 422, "query: Field required"),
        ({"query": 3, "documents": ["a"]}, 422, "query: Input should be a valid string"),
        ({"query": "q"}, 422, "documents: Field required"),
        ({"query": "q", "documents": []}, 422, "documents is empty"),
        ({"query": "q", "documents": ["a"] * 9}, 422, "9 documents is more than this server's limit of 8"),
        ({"query": "q", "documents": [5]}, 422, "documents.0: each document must be a string or an object"),
        ({"query": "q", "documents": ["a", {"title": "t"}]}, 422, "documents.1: a document object needs a string field 'text'"),
        ({"query": "q", "documents": ["a"], "top_n": 0}, 422, "top_n: Input should be greater than or equal to 1"),
        ({"query": "q", "documents": "a"}, 422, "documents: Input should be a valid list"),
        (["q", "a"], 422, "Input should be a valid dictionary"),
    ],
)
def test_bad_requests_get_clear_4xx_json(url, body, status, message):
    response = post(url, body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert message in response.json()["detail"]


def test_malformed_json_wrong_route_and_method_are_json_errors(url):
    response = httpx.post(url + "/v1/rerank", content=b'{"query": "q", "documents": [', headers={"content-type": "application/json"})
    assert response.status_code == 422 and "JSON" in response.json()["detail"]
    assert httpx.get(url + "/v1/rerank").status_code == 405
    missing = httpx.post(url + "/v2/nothing", json={})
    assert missing.status_code == 404 and missing.json()["detail"] == "Not Found"


def test_health_and_models(url):
    health = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["model"] == "tiny"
    models = httpx.get(url + "/v1/models").json()
    assert models["object"] == "list"
    (entry,) = models["data"]
    assert entry["id"] == "tiny" and entry["max_documents"] == 8 and entry["dtype"] == "float32"
    assert entry["max_query_tokens"] == MAX_Q and entry["max_document_tokens"] == MAX_P


def test_concurrent_burst_is_batched_and_every_answer_is_right(url, scorer):
    rng = random.Random(0)
    words = " ".join(PASSAGES.values()).split()
    bodies = []
    for i in range(24):
        docs = [" ".join(rng.choices(words, k=rng.randint(3, 30))) for _ in range(rng.randint(1, 8))]
        bodies.append({"query": " ".join(rng.choices(words, k=rng.randint(1, 6))) + f" {i}", "documents": docs})
    before = httpx.get(url + "/health").json()

    async def burst():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/rerank", json=b) for b in bodies))

    responses = asyncio.run(burst())
    after = httpx.get(url + "/health").json()
    for body, response in zip(bodies, responses):
        assert response.status_code == 200, response.text
        want = scorer.score([body["query"]] * len(body["documents"]), body["documents"])
        results = response.json()["results"]
        assert sorted(r["index"] for r in results) == list(range(len(want)))
        np.testing.assert_allclose([r["relevance_score"] for r in results], want[[r["index"] for r in results]], atol=1e-4, rtol=0)
    assert scorer.workers == 2 and after["requests"] - before["requests"] == 24
    assert after["groups"] - before["groups"] < 24  # callers shared batches
    assert after["pairs"] - before["pairs"] == sum(len(b["documents"]) for b in bodies)


def test_bearer_auth_and_the_token_stays_out_of_the_logs(scorer, caplog):
    caplog.set_level(logging.DEBUG)
    app = create_app(scorer, name="tiny", api_key=TOKEN)
    with running(app, log_level="debug", access_log=True) as base:
        body = {"query": "price of water", "documents": ["water price", "a river"]}
        none = post(base, body)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        assert "RANKDISTILL_API_KEY" in none.json()["detail"] and TOKEN not in none.text
        assert post(base, body, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert post(base, body, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        good = post(base, body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert good.status_code == 200 and len(good.json()["results"]) == 2
        assert httpx.get(base + "/health").status_code == 200  # open, for load balancers
        assert httpx.get(base + "/v1/models").status_code == 401
        assert httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
    assert "POST /v1/rerank" in caplog.text  # the access log was captured
    assert TOKEN not in caplog.text


def test_batcher_groups_requests_up_to_the_token_budget_and_passes_errors_on():
    from rankdistill.reranking.batching import make_batches

    calls = []

    def score_batch(batch):
        calls.append(len(batch.index))
        if (batch.input_ids[:, 0] < 0).any():
            raise RuntimeError("boom")
        return batch.input_ids[:, 0].astype(np.float32)

    async def scenario():
        # a group's pairs in one batch each (a huge batch budget), one stream
        batcher = Batcher(lambda ids, types: make_batches(ids, types, 10**6, 0), score_batch, max_batch_tokens=25, max_wait_ms=20)
        batcher.start()
        try:
            jobs = [batcher.submit([[i, 1, 1, 1, 1], [i + 100, 1, 1, 1, 1]], [[0] * 5] * 2) for i in range(5)]  # 10 tokens each
            results = await asyncio.gather(*jobs)
            with pytest.raises(RuntimeError, match="boom"):
                await batcher.submit([[-1, 1]], [[0, 0]])
            ok = await batcher.submit([[7, 1]], [[0, 0]])  # a failed batch does not stop the batcher
            return results, ok, batcher.groups, batcher.requests
        finally:
            await batcher.stop()

    results, ok, groups, requests = asyncio.run(scenario())
    assert [list(r) for r in results] == [[i, i + 100] for i in range(5)] and list(ok) == [7]
    assert calls[:3] == [4, 4, 2] and groups == 5 and requests == 6  # two 10-token requests per 25-token group


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_cli_serves_with_auth_and_never_prints_the_token(model_dir, tmp_path):
    port = _free_port()
    env = {**os.environ, "RANKDISTILL_API_KEY": TOKEN, "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "serve.log"
    with log.open("w") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "rankdistill", "serve", str(model_dir), "--port", str(port), "--dtype", "float32",
             "--log-level", "debug", "--max-body-bytes", "4000", "--max-request-tokens", "500", "--body-timeout-s", "9"],
            stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(240):  # up to 60 s for torch and the model to load
                try:
                    if httpx.get(base + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                time.sleep(0.25)
            else:
                raise AssertionError("server did not come up:\n" + log.read_text())
            body = {"query": "price of water", "documents": ["water price", "a river", "the city"]}
            assert post(base, body).status_code == 401
            response = post(base, body, headers={"Authorization": f"Bearer {TOKEN}"})
            assert response.status_code == 200 and response.json()["model"] == "model"
            big = post(base, {"query": "q", "documents": ["water price"] * 400}, headers={"Authorization": f"Bearer {TOKEN}"})
            assert big.status_code == 413 and "limit of 4000 bytes" in big.json()["detail"]
            models = httpx.get(base + "/v1/models", headers={"Authorization": f"Bearer {TOKEN}"}).json()["data"][0]
            assert models["max_request_tokens"] == 500 and models["max_body_bytes"] == 4000
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = log.read_text()
    assert "serving" in text and "bearer token from $RANKDISTILL_API_KEY" in text
    assert TOKEN not in text


def test_cli_errors(cli_error, monkeypatch, tmp_path):
    assert "no such folder" in cli_error(["serve", str(tmp_path / "missing")])
    monkeypatch.setenv("RANKDISTILL_API_KEY", " ")
    assert "RANKDISTILL_API_KEY is set but empty" in cli_error(["serve", str(tmp_path / "missing")])


def test_python_api():
    import rankdistill

    assert rankdistill.serve.__module__ == "rankdistill.serving.app"
    assert "serve" in rankdistill.__all__ and main is not None
