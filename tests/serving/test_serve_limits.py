"""The server under abuse: oversized bodies and requests, slow senders and callers that hang up.

Real HTTP to uvicorn on a free loopback port; slow and vanishing clients are raw sockets or httpx timeouts. Scoring is
held behind a gate where a test needs the batcher busy, so what is "queued" and what is "scored" is certain.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
import httpx  # noqa: E402

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.reranking.scorer import CrossEncoderScorer  # noqa: E402
from rankdistill.serving.app import create_app, encode_request  # noqa: E402

from helpers.data import PASSAGES, QUERIES  # noqa: E402
from helpers.server import running  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402

MAX_Q, MAX_P = 12, 32
LONG = "water price city river " * 20  # cut to 32 tokens


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    # 64-token forward batches: about one pair each, so one request of 8 documents is 8 batches, more than the
    # 2 streams + 1 in flight the batcher hands out: with scoring held, its loop waits and later requests stay queued
    model = tiny_scoring_dir(tmp_path_factory.mktemp("limits") / "model")
    return CrossEncoderScorer(model, dtype="float32", device="cpu", max_query_length=MAX_Q, max_passage_length=MAX_P,
                              batch_tokens=64, threads=2)


class Gated:
    """The scorer, with every forward batch held until :attr:`gate` is set (the attributes create_app reads)."""

    def __init__(self, scorer):
        self._scorer = scorer
        self.gate = threading.Event()
        self.model_path, self.encoder, self.workers = scorer.model_path, scorer.encoder, scorer.workers
        self.dtype, self.device, self.batches = scorer.dtype, scorer.device, scorer.batches

    def score_batch(self, batch):
        assert self.gate.wait(30), "the test never opened the gate"
        return self._scorer.score_batch(batch)


def _raw(url: str) -> socket.socket:
    host, port = url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _read_response(sock: socket.socket) -> tuple[int, dict]:
    """Status and JSON body of one HTTP/1.1 answer read off a raw socket (the server closes after it)."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(v) for k, v in (line.split(b":", 1) for line in head.split(b"\r\n")[1:]) if k.lower() == b"content-length"]
        if length and len(body) >= length[0]:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _headers(url: str, length: int) -> bytes:
    return (f"POST /v1/rerank HTTP/1.1\r\nHost: {url.removeprefix('http://')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


def test_body_over_the_limit_is_413_json_whether_declared_or_streamed(scorer):
    with running(create_app(scorer, name="tiny", max_body_bytes=2000)) as url:
        small = {"query": "water price", "documents": ["water price in the city"] * 3}
        assert httpx.post(url + "/v1/rerank", json=small).status_code == 200
        big = {"query": "water price", "documents": ["water price in the city"] * 100}  # about 2.7 kB
        raw = json.dumps(big).encode()
        response = httpx.post(url + "/v1/rerank", content=raw, headers={"content-type": "application/json"})
        assert response.status_code == 413 and response.headers["content-type"].startswith("application/json")
        size = len(raw)
        assert f"request body of {size} bytes is more than this server's limit of 2000 bytes" in response.json()["detail"]
        assert "max_body_bytes" in response.json()["detail"]

        def chunks():  # no Content-Length: the limit is found while reading
            for _ in range(10):
                yield b" " * 500

        streamed = httpx.post(url + "/rerank", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413 and "limit of 2000 bytes" in streamed.json()["detail"]
        seen = re.match(r"request body of at least (\d+) bytes", streamed.json()["detail"])
        assert seen and 2000 < int(seen[1]) <= 5000  # however the chunks were coalesced on the way

        # a declared size over the limit is refused before a byte of the body is sent
        with _raw(url) as sock:
            sock.sendall(_headers(url, 10**9))
            status, body = _read_response(sock)
        assert status == 413 and "1000000000 bytes" in body["detail"]
        assert httpx.get(url + "/health").json()["status"] == "ok"


def test_tokens_over_the_limit_is_413_with_the_count(scorer):
    documents = [LONG, LONG, PASSAGES["d1"]]
    tokens = sum(len(x) for x in encode_request(scorer.encoder, QUERIES["q1"], documents).ids)
    assert 2 * (MAX_Q + MAX_P) < tokens <= 3 * (MAX_Q + MAX_P + 3)  # the long ones were cut before counting
    with running(create_app(scorer, name="tiny", max_request_tokens=tokens - 1)) as url:
        response = httpx.post(url + "/v1/rerank", json={"query": QUERIES["q1"], "documents": documents})
        assert response.status_code == 413, response.text
        assert response.json()["detail"].startswith(f"{tokens} tokens to score (after cutting each text to the model's budget)"
                                                    f" is more than this server's limit of {tokens - 1} per request")
        ok = httpx.post(url + "/v1/rerank", json={"query": QUERIES["q1"], "documents": documents[1:]})
        assert ok.status_code == 200 and ok.json()["usage"]["total_tokens"] < tokens
        tei = httpx.post(url + "/rerank", json={"query": QUERIES["q1"], "texts": documents})
        assert tei.status_code == 413 and tei.json()["error_type"] == "Validation"
        assert tei.json()["error"] == tei.json()["detail"]
    with running(create_app(scorer, name="tiny", max_request_tokens=tokens)) as url:
        assert httpx.post(url + "/v1/rerank", json={"query": QUERIES["q1"], "documents": documents}).status_code == 200
        limits = httpx.get(url + "/v1/models").json()["data"][0]
        assert limits["max_request_tokens"] == tokens and limits["max_body_bytes"] == 16 * 2**20


def test_slow_sender_gets_408_and_holds_nobody_else(scorer):
    with running(create_app(scorer, name="tiny", body_timeout_s=1.5)) as url:
        body = json.dumps({"query": "water price", "documents": ["water price", "a river"]}).encode()
        with _raw(url) as slow:
            slow.sendall(_headers(url, len(body)) + body[:10])  # then nothing more
            t0 = time.perf_counter()
            other = httpx.post(url + "/v1/rerank", json={"query": QUERIES["q2"], "documents": [PASSAGES["d2"]]}, timeout=10)
            assert other.status_code == 200 and time.perf_counter() - t0 < 1.5  # answered while the slow one waits
            assert httpx.get(url + "/health", timeout=1).status_code == 200
            status, answer = _read_response(slow)
            waited = time.perf_counter() - t0
        assert status == 408 and 1.4 < waited < 5
        assert answer["detail"].startswith("request body not received within 1.5 s (10 bytes arrived)")


def test_caller_that_hangs_up_while_queued_is_never_scored_and_health_answers_throughout(scorer):
    gated = Gated(scorer)
    app = create_app(gated, name="tiny", max_wait_ms=0)
    first = {"query": QUERIES["q1"], "documents": [LONG + str(i) for i in range(8)]}
    gone = {"query": QUERIES["q2"], "documents": [PASSAGES["d2"], PASSAGES["d6"]]}
    last = {"query": QUERIES["q3"], "documents": [PASSAGES["d4"], PASSAGES["d5"], LONG]}
    with running(app) as url:

        async def scenario():
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                held = asyncio.ensure_future(client.post("/v1/rerank", json=first))
                await asyncio.sleep(0.5)  # the first request's batches fill every slot; the batcher waits for one
                with pytest.raises(httpx.ReadTimeout):  # the caller gives up: its connection closes
                    await client.post("/v1/rerank", json=gone, timeout=0.5)
                await asyncio.sleep(0.3)
                t0 = time.perf_counter()
                health = (await client.get("/health", timeout=2)).json()
                health_s = time.perf_counter() - t0
                assert not held.done()
                gated.gate.set()
                return (await held), health, health_s, (await client.post("/v1/rerank", json=last))

        held, health, health_s, after = asyncio.run(scenario())
        final = httpx.get(url + "/health").json()
    assert health["status"] == "ok" and health["pairs"] == 0 and health_s < 1.0  # answered while scoring was held
    for body, response in ((first, held), (last, after)):
        assert response.status_code == 200, response.text
        got = {r["index"]: r["relevance_score"] for r in response.json()["results"]}
        want = scorer.score([body["query"]] * len(body["documents"]), body["documents"])
        np.testing.assert_allclose([got[i] for i in range(len(want))], want, atol=1e-4, rtol=0)
    assert final["dropped"] == 1  # the caller that hung up was dropped from the queue ...
    assert final["pairs"] == len(first["documents"]) + len(last["documents"])  # ... and none of its pairs were scored


def test_limits_must_be_positive(scorer):
    with pytest.raises(RankdistillError, match="max_request_tokens is 0: it must be at least 1"):
        create_app(scorer, max_request_tokens=0)
    with pytest.raises(RankdistillError, match="max_body_bytes is -1: it must be at least 1"):
        create_app(scorer, max_body_bytes=-1)
    with pytest.raises(RankdistillError, match="body_timeout_s is 0: it must be above 0"):
        create_app(scorer, body_timeout_s=0)
