"""The openai backend against a real local HTTP server that misbehaves on purpose (tests/fake_llm_server.py).

The fake server ranks each window by a hash of (query, document); the expected teacher run is computed in
the test from that rule and a bottom-up sliding window written here, independently of rankdistill.teacher.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
import sys
import time
from email.utils import formatdate

import pytest


from helpers.fake_llm_server import (  # noqa: E402
    FakeLLMServer,
    expected_teacher,
    first_stage,
    rank_window,
    read_trec,
    write_toy_collection,
)

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.teacher.backends import make_backend  # noqa: E402
from rankdistill.teacher.backends.openai import OpenAIBackend, OpenAIOptions, backoff_delay, parse_retry_after  # noqa: E402
from rankdistill.teacher.prompts import build_prompt  # noqa: E402

KEY_ENV = "RANKDISTILL_TEST_LLM_KEY"


@pytest.fixture
def secret_key(monkeypatch) -> str:
    key = "sk-test-" + secrets.token_hex(16)
    monkeypatch.setenv(KEY_ENV, key)
    return key


def _openai(model: str, base_url: str, **options) -> OpenAIBackend:
    return OpenAIBackend(model, OpenAIOptions(base_url=base_url, **options))


def _prompts(qid: str, groups: list[list[str]], template: str = "rankzephyr"):
    return [build_prompt(template, f"qz{qid} a question", [f"pz{d} some text" for d in docs], max_passage_words=None) for docs in groups]


def _collect(backend, prompts, **kw):
    got: dict[int, object] = {}
    order: list[int] = []

    def on_result(i, gen):
        assert i not in got, f"prompt {i} reported twice"
        got[i] = gen
        order.append(i)

    backend.generate(prompts, on_result, max_new_tokens=kw.pop("max_new_tokens", 64), **kw)
    return got


def _answer(docs: list[str], qid: str) -> str:
    return " > ".join(f"[{i + 1}]" for i in rank_window(qid, docs))


# -- pure helpers ----------------------------------------------------------------------------------------


def test_parse_retry_after_seconds_and_http_dates():
    now = 1_700_000_000.0
    assert parse_retry_after("3", now) == 3.0
    assert parse_retry_after(" 0.25 ", now) == 0.25
    assert parse_retry_after("-4", now) == 0.0
    assert parse_retry_after(formatdate(now + 7, usegmt=True), now) == pytest.approx(7.0)
    assert parse_retry_after(formatdate(now - 30, usegmt=True), now) == 0.0  # a date in the past: no wait
    assert parse_retry_after("99999999", now) == 600.0  # capped
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_is_exponential_with_full_jitter_and_retry_after_is_a_floor():
    rng = random.Random(0)
    for attempt, ceiling in [(0, 0.5), (1, 1.0), (3, 4.0), (10, 30.0)]:
        draws = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(400)]
        assert 0.0 <= min(draws) < 0.1 * ceiling  # full jitter reaches down to ~0 ...
        assert 0.9 * ceiling < max(draws) <= ceiling  # ... and up to the capped exponential
    assert all(backoff_delay(0, 0.5, 30.0, rng, retry_after=2.0) == 2.0 for _ in range(50))
    assert backoff_delay(6, 0.5, 30.0, random.Random(1), retry_after=0.01) >= 0.01


def test_bad_options_are_one_line_errors():
    with pytest.raises(RankdistillError, match=r"^options.base_url: must be an http\(s\) URL .*'127.0.0.1:8000/v1'"):
        make_backend("openai", "m", options={"base_url": "127.0.0.1:8000/v1"})
    with pytest.raises(RankdistillError, match=r"^options.concurrency: Input should be greater than or equal to 1 \(got 0\)$"):
        make_backend("openai", "m", options={"base_url": "http://127.0.0.1:1/v1", "concurrency": 0})
    with pytest.raises(RankdistillError, match="^options.base_url: required key is missing$"):
        make_backend("openai", "m", options={})
    with pytest.raises(RankdistillError, match="first_token"):
        _openai("m", "http://127.0.0.1:1/v1").generate(_prompts("q", [["a", "b"]]), print, max_new_tokens=8, first_token=True)


# -- the backend alone against the fake server -----------------------------------------------------------


def test_backend_survives_429_500_hang_trickle_drop_and_malformed(tmp_path, secret_key, caplog):
    caplog.set_level(logging.DEBUG)
    groups = [[f"x{g}{k}" for k in range(6)] for g in range(4)]
    prompts = _prompts("q7", groups)
    faults = {1: "429:1", 2: "500", 3: "hang", 4: "malformed", 5: "nochoices", 6: "drop", 7: "503", 8: "429-date:2",
              9: "trickle"}
    with FakeLLMServer(tmp_path / "log.jsonl", faults=faults, expected_key=secret_key, hang_seconds=10) as server:
        # max_retries > number of faults: whichever windows the faults land on, none runs out of retries
        backend = _openai("fake-ranker", server.base_url, api_key_env=KEY_ENV, concurrency=2, timeout=0.6,
                                max_retries=10, backoff_base=0.02, backoff_max=0.2, seed=0)
        started = time.monotonic()
        got = _collect(backend, prompts, max_new_tokens=33)
        elapsed = time.monotonic() - started
        backend.close()
        records = server.records()

    assert sorted(got) == [0, 1, 2, 3]
    for i, docs in enumerate(groups):
        assert got[i].text == _answer(docs, "q7")
        assert got[i].completion_tokens == 12 and got[i].prompt_tokens > 0  # from the server's usage block
    kinds = {"http_429": 2, "http_5xx": 2, "timeout": 2, "malformed": 2, "connection": 1}
    assert backend.stats["retries"] == 9
    assert {k: backend.stats[f"retries_{k}"] for k in kinds} == kinds
    assert backend.stats["requests"] == 13 and backend.stats["malformed_gave_up"] == 0
    recv = [r for r in records if r["event"] == "recv"]
    assert len(recv) == 13
    assert all(r["auth"] == "ok" and r["temperature"] == 0 and r["max_tokens"] == 33 for r in recv)
    assert all(r["model"] == "fake-ranker" for r in recv)
    # Retry-After honoured: the retry of each 429'd window arrived no earlier than the header said.
    done = {r["n"]: r for r in records if r["event"] == "done"}
    for n, floor in ((1, 1.0), (8, 1.0)):  # "429-date:2" is an HTTP date 2 s ahead, whole seconds: >= 1 s
        retry = min((r for r in recv if r["prompt_sha"] == done[n]["prompt_sha"] and r["n"] > n), key=lambda r: r["n"])
        assert retry["t"] - done[n]["t"] >= floor - 0.02
    assert elapsed < 6
    assert secret_key not in caplog.text
    assert secret_key not in (tmp_path / "log.jsonl").read_text()


def test_concurrency_is_bounded_and_used(tmp_path):
    groups = [[f"c{g}{k}" for k in range(3)] for g in range(8)]
    with FakeLLMServer(tmp_path / "log.jsonl", delay=0.15) as server:
        backend = _openai("m", server.base_url, concurrency=3)
        started = time.monotonic()
        got = _collect(backend, _prompts("q2", groups))
        elapsed = time.monotonic() - started
        backend.close()
        assert server.max_in_flight == 3
    assert [got[i].text for i in range(8)] == [_answer(g, "q2") for g in groups]
    assert 0.15 * 3 <= elapsed < 0.15 * 8  # ceil(8 / 3) rounds of 0.15 s, not 8 sequential answers


def test_generate_works_inside_a_running_event_loop_and_close_stops_its_thread(tmp_path):
    """A notebook runs an event loop in the main thread; generate() must still work there, synchronously."""
    import asyncio
    import threading

    groups = [["n1", "n2", "n3"], ["n4", "n5", "n6"]]
    with FakeLLMServer(tmp_path / "log.jsonl") as server:
        backend = _openai("m", server.base_url)
        caller = []

        async def notebook_cell():
            def on_result(i, gen):
                caller.append(threading.current_thread())
                got[i] = gen

            got: dict = {}
            backend.generate(_prompts("q3", groups), on_result, max_new_tokens=16)
            backend.generate(_prompts("q3", groups[:1]), on_result, max_new_tokens=16)  # the pool is reused
            return got

        got = asyncio.run(notebook_cell())
        worker = backend._thread
        backend.close()
    assert [got[i].text for i in range(2)] == [_answer(g, "q3") for g in groups]
    assert caller == [threading.main_thread()] * 3  # on_result runs in the caller's thread (SQLite-safe)
    assert worker is not None and not worker.is_alive()


def test_persistently_malformed_answer_becomes_empty_text_and_is_counted(tmp_path):
    groups = [["a1", "a2", "a3"], ["b1", "b2", "b3"]]
    prompts = _prompts("q1", groups)

    def faults(n, request):  # every request for the window holding "b1" gets an HTML page
        return "malformed" if "pzb1" in json.dumps(request["messages"]) else None

    with FakeLLMServer(tmp_path / "log.jsonl", faults=faults) as server:
        backend = _openai("m", server.base_url, max_retries=2, backoff_base=0.01, seed=0)
        got = _collect(backend, prompts)
        backend.close()
        recv = server.records("recv")
    assert got[0].text == _answer(groups[0], "q1")
    assert got[1].text == ""  # the parser keeps the previous order for an empty answer
    assert backend.stats["malformed_gave_up"] == 1 and backend.stats["retries_malformed"] == 2
    assert sum("b1" in r["docids"] for r in recv) == 3  # first try + max_retries


def test_persistent_server_errors_stop_with_a_clear_error(tmp_path):
    with FakeLLMServer(tmp_path / "log.jsonl", faults=lambda n, r: "500") as server:
        backend = _openai("m", server.base_url, max_retries=2, backoff_base=0.01)
        with pytest.raises(RankdistillError) as err:
            _collect(backend, _prompts("q1", [["a", "b"]]))
        backend.close()
        assert len(server.records("recv")) == 3
    assert "failed 3 times" in str(err.value) and "HTTP 500" in str(err.value) and "rerun" in str(err.value)


def test_connection_refused_is_retried_then_reported(tmp_path):
    with FakeLLMServer(tmp_path / "log.jsonl") as server:
        url = server.base_url  # the port is free again once the server stops
    backend = _openai("m", url, max_retries=1, backoff_base=0.01)
    with pytest.raises(RankdistillError, match="connection error"):
        _collect(backend, _prompts("q1", [["a", "b"]]))
    backend.close()
    assert backend.stats["retries_connection"] == 1


def test_wrong_key_names_the_variable_and_never_shows_the_key(tmp_path, secret_key, caplog):
    caplog.set_level(logging.DEBUG)
    with FakeLLMServer(tmp_path / "log.jsonl", expected_key="sk-the-right-one") as server:
        backend = _openai("m", server.base_url, api_key_env=KEY_ENV, backoff_base=0.01)
        with pytest.raises(RankdistillError) as err:
            _collect(backend, _prompts("q1", [["a", "b"], ["c", "d"]]))
        backend.close()
        recv = server.records("recv")
    message = str(err.value)
    assert "HTTP 401" in message and f"${KEY_ENV}" in message and "Incorrect API key" in message
    assert secret_key not in message and "***" in message  # the server echoed the key; we scrubbed it
    assert secret_key not in caplog.text and secret_key not in repr(backend)
    assert backend.stats["retries"] == 0 and 1 <= len(recv) <= 2  # a 401 is not retried


def test_missing_key_sends_no_authorization_header(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeLLMServer(tmp_path / "log.jsonl") as server:
        backend = _openai("m", server.base_url, api_key_env=KEY_ENV)
        got = _collect(backend, _prompts("q1", [["a", "b", "c"]]))
        backend.close()
        assert [r["auth"] for r in server.records("recv")] == ["missing"]
    assert got[0].text == _answer(["a", "b", "c"], "q1")
    with FakeLLMServer(tmp_path / "log2.jsonl", expected_key="sk-x") as server:
        backend = _openai("m", server.base_url, api_key_env=KEY_ENV)
        with pytest.raises(RankdistillError, match=f"\\${KEY_ENV} is not set"):
            _collect(backend, _prompts("q1", [["a", "b"]]))
        backend.close()


def test_other_4xx_names_status_and_server_message(tmp_path):
    with FakeLLMServer(tmp_path / "log.jsonl") as server:
        backend = _openai("m", server.base_url + "/nowhere")
        with pytest.raises(RankdistillError, match=r"HTTP 404 \(no route /v1/nowhere/chat/completions\).*base_url"):
            _collect(backend, _prompts("q1", [["a", "b"]]))
        backend.close()
        # a prompt without the markers the fake server needs: it answers 400 with a message
        backend = _openai("m", server.base_url)
        plain = [build_prompt("rankgpt", "no marker", ["one", "two"], max_passage_words=None)]
        with pytest.raises(RankdistillError, match=r"HTTP 400: prompt has no qz/pz markers"):
            _collect(backend, plain)
        backend.close()


# -- the whole teacher through teach() -------------------------------------------------------------------


def test_teach_openai_finishes_with_expected_run_despite_faults(tmp_path, secret_key, caplog, capfd):
    from rankdistill.teacher.teach import teach

    caplog.set_level(logging.DEBUG)
    data = tmp_path / "data"
    run_path = write_toy_collection(data, n_queries=3, n_candidates=30, seed=3)
    candidates = first_stage(run_path)
    expected = {qid: expected_teacher(c, qid, window=10, stride=5) for qid, c in candidates.items()}
    faults = {2: "429:1", 4: "500", 5: "hang", 7: "malformed", 9: "nochoices", 11: "503", 13: "drop"}
    out = tmp_path / "out"
    with FakeLLMServer(tmp_path / "server.jsonl", faults=faults, expected_key=secret_key, hang_seconds=10) as server:
        result = teach(
            run_path, dataset=data, output=out, backend="openai", model="fake-ranker", prompt="rankzephyr",
            depth=30, window=10, stride=5, record=out / "record.jsonl", progress=False,
            backend_options={"base_url": server.base_url, "api_key_env": KEY_ENV, "timeout": 0.8, "max_retries": 10,
                             "concurrency": 4, "backoff_base": 0.02, "backoff_max": 0.2},
        )
        records = server.records()

    got = read_trec(result.run_path)
    assert got == {qid: order for qid, (order, _) in expected.items()}
    stats = json.loads(result.stats_path.read_text())
    assert stats["windows"] == 15 and stats["llm_calls"] == 15 and stats["queries"] == 3
    assert sum(stats["repairs"].values()) == 0  # every answer that reached the parser was well formed
    # The server was asked exactly the expected windows, in sliding order per query, each answered once.
    delivered = [r for r in records if r["event"] == "done" and r["delivered"]]
    assert len(delivered) == 15
    for qid, (_, asked) in expected.items():
        assert [r["docids"] for r in delivered if r["qid"] == qid] == asked
    recv = [r for r in records if r["event"] == "recv"]
    assert len(recv) == 15 + len(faults)  # each fault cost exactly one retry
    retry_after_done = next(r for r in records if r["event"] == "done" and r["n"] == 2)
    retry = min((r for r in recv if r["prompt_sha"] == retry_after_done["prompt_sha"] and r["n"] > 2), key=lambda r: r["n"])
    assert retry["t"] - retry_after_done["t"] >= 0.98  # Retry-After: 1 honoured
    backend_stats = stats["backend_stats"]
    assert backend_stats["retries"] == len(faults) and backend_stats["requests"] == 15 + len(faults)
    assert backend_stats["retries_http_429"] == 1 and backend_stats["retries_http_5xx"] == 2
    assert backend_stats["retries_timeout"] == 1 and backend_stats["retries_malformed"] == 2
    assert backend_stats["retries_connection"] == 1 and backend_stats.get("malformed_gave_up", 0) == 0
    # The key is in no output, log or message.
    captured = capfd.readouterr()
    for path in [*out.iterdir(), tmp_path / "server.jsonl"]:
        assert secret_key.encode() not in path.read_bytes(), path
    assert secret_key not in caplog.text + captured.out + captured.err
    record = [json.loads(line) for line in (out / "record.jsonl").read_text().splitlines()]
    assert len(record) == 15 and all(r["response"].startswith("[") for r in record)


def test_cli_wrong_key_is_one_line_exit_2_without_the_key(tmp_path, secret_key):
    import os
    import subprocess

    data = tmp_path / "data"
    run_path = write_toy_collection(data, n_queries=1, n_candidates=10)
    with FakeLLMServer(tmp_path / "server.jsonl", expected_key="sk-the-right-one") as server:
        done = subprocess.run(
            [sys.executable, "-m", "rankdistill", "teach", "--run", str(run_path), "--dataset", str(data),
             "--output", str(tmp_path / "out"), "--backend", "openai", "--model", "m", "--base-url", server.base_url,
             "--api-key-env", KEY_ENV, "--depth", "10", "--window", "10", "--stride", "5"],
            capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "500"},
        )
    assert done.returncode == 2
    assert "HTTP 401" in done.stderr and f"${KEY_ENV}" in done.stderr and "Traceback" not in done.stderr
    assert secret_key not in done.stderr + done.stdout
