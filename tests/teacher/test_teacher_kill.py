"""The teacher's cost is visible and kill-safe: ``rankdistill teach`` SIGKILLed at five random points of one run
against a faulty local server, rerun each time, ends byte-identical to an uninterrupted run; no window committed
to ``cache.sqlite`` is ever requested again; ``stats.json`` counts exactly what the server saw; and a second
``teach`` on the same folder stops with the first one's pid instead of paying for the same windows.

The server (``helpers/fake_llm_server.py``) numbers requests across all runs and injects, by a seeded hash of the
request number, 429 with Retry-After, 500/503, dropped connections, slow answers, and malformed answers (not
JSON, or no choices). Which windows a run asks is recovered from the server's log (a hash of the chat messages),
which windows are committed from ``cache.sqlite`` itself.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from helpers.fake_llm_server import FakeLLMServer, expected_teacher, first_stage, messages_hash, write_toy_collection

from rankdistill.teacher.cache import text_hash
from rankdistill.teacher.prompts import build_prompt

MODEL, TEMPLATE, WINDOW, STRIDE, DEPTH, QUERIES = "fake-ranker", "rankzephyr", 10, 5, 30, 8
WINDOWS = QUERIES * 5
FAULT_KINDS = {"429:0.2": "http_429", "500": "http_5xx", "503": "http_5xx", "drop": "connection",
               "malformed": "malformed", "nochoices": "malformed"}


def fault(n: int, request: dict) -> str | None:
    """About a third of all requests fail, which way decided by a seeded hash of the request number."""
    draw = random.Random(f"fault-{n}").random()
    for kind, upto in zip(FAULT_KINDS, (0.06, 0.12, 0.16, 0.22, 0.28, 0.32)):
        if draw < upto:
            return kind
    return None


def slow(n: int, request: dict) -> float:
    """One answer in five takes a quarter of a second; the others a few milliseconds."""
    return 0.25 if random.Random(f"slow-{n}").random() < 0.2 else 0.02


def _setup(tmp_path: Path) -> tuple[Path, Path, dict[str, tuple[str, int]], dict[str, tuple[str, int]]]:
    """The toy collection and every window the teacher will ask, keyed by the server's and the cache's hashes."""
    data = tmp_path / "data"
    run = write_toy_collection(data, n_queries=QUERIES, n_candidates=DEPTH, seed=7)
    queries = dict(line.split("\t", 1) for line in (data / "queries.tsv").read_text().splitlines())
    passages = dict(line.split("\t", 1) for line in (data / "passages.tsv").read_text().splitlines())
    by_messages, by_text = {}, {}
    for qid, candidates in first_stage(run).items():
        for step, docs in enumerate(expected_teacher(candidates, qid, window=WINDOW, stride=STRIDE)[1]):
            prompt = build_prompt(TEMPLATE, queries[qid], [passages[d] for d in docs], max_passage_words=None)
            by_messages[messages_hash(prompt.messages)] = (qid, step)
            by_text[text_hash(prompt.text)] = (qid, step)
    assert len(by_messages) == len(by_text) == WINDOWS
    return data, run, by_messages, by_text


def _command(tmp_path: Path, data: Path, run: Path, out: Path, base_url: str) -> list[str]:
    config = tmp_path / "teach.yaml"  # the backoff knobs have no flags: short, so faults cost milliseconds
    config.write_text(yaml.safe_dump({"options": {"backoff_base": 0.02, "backoff_max": 0.1, "seed": 0}}))
    return [
        sys.executable, "-m", "rankdistill", "teach", "--config", str(config), "--run", str(run), "--dataset",
        str(data), "--output", str(out), "--backend", "openai", "--model", MODEL, "--base-url", base_url,
        "--prompt", TEMPLATE, "--depth", str(DEPTH), "--window", str(WINDOW), "--stride", str(STRIDE),
        "--concurrency", "4", "--timeout", "5", "--max-retries", "12", "--api-key-env", "RANKDISTILL_TEST_NO_KEY",
    ]


def _cache_marks(out: Path, by_text: dict[str, tuple[str, int]]) -> tuple[set, set]:
    """(windows committed to cache.sqlite, windows marked as sent without a committed answer)."""
    if not (out / "cache.sqlite").exists():
        return set(), set()
    db = sqlite3.connect(out / "cache.sqlite")
    try:
        committed = {by_text[h] for (h,) in db.execute("SELECT prompt_hash FROM windows")}
        asked = {by_text[h] for (h,) in db.execute("SELECT prompt_hash FROM asked")}
    finally:
        db.close()
    return committed, asked


ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}


def test_teach_killed_at_five_random_points_ends_byte_identical_and_never_reasks_a_committed_window(tmp_path):
    data, run, by_messages, by_text = _setup(tmp_path)
    rng = random.Random(20)
    with FakeLLMServer(tmp_path / "server.jsonl", faults=fault, delay=slow, lifetime=150) as server:
        # 1. the uninterrupted reference, through the same faults
        reference = subprocess.run(_command(tmp_path, data, run, tmp_path / "reference", server.base_url), env=ENV,
                                   capture_output=True, text=True, timeout=90)
        assert reference.returncode == 0, reference.stderr
        seen = len(server.records())

        # 2. five runs on one folder, each SIGKILLed at a random point once it has had a few answers
        out = tmp_path / "killed"
        requested_earlier: set = set()
        points: list[str] = []
        for kill in range(5):
            committed, _ = _cache_marks(out, by_text)
            answers, linger = rng.randint(1, 3), rng.uniform(0.0, 0.08)
            log = tmp_path / f"kill{kill}.stderr"
            with log.open("w") as stderr:
                proc = subprocess.Popen(_command(tmp_path, data, run, out, server.base_url), env=ENV,
                                        stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 60
            while sum(r["event"] == "done" and r["delivered"] for r in server.records()[seen:]) < answers:
                assert proc.poll() is None, f"kill {kill}: teach ended before the kill: {log.read_text()}"
                assert time.monotonic() < deadline, f"kill {kill}: the teacher never got going"
                time.sleep(0.005)
            time.sleep(linger)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert proc.returncode == -signal.SIGKILL, f"kill {kill} landed after the run had finished"
            time.sleep(0.3)  # requests the dead client had already sent are still logged on arrival
            records = server.records()[seen:]
            seen += len(records)
            requested = {by_messages[r["prompt_sha"]] for r in records if r["event"] == "recv"}
            assert not requested & committed, f"kill {kill}: committed windows were requested again"
            requested_earlier |= requested
            points.append(f"{len(requested)} asked, {len(_cache_marks(out, by_text)[0]) - len(committed)} committed")
            assert not (out / "teacher.run").exists()

        # 3. the last run, left to finish
        committed, marked = _cache_marks(out, by_text)
        assert 5 <= len(committed) < WINDOWS, "the kills must leave work for the last run"
        in_flight = requested_earlier - committed  # sent by a killed run, answer never committed
        assert in_flight <= marked  # the marks cover every window the server saw and no run committed
        last = subprocess.run(_command(tmp_path, data, run, out, server.base_url), env=ENV,
                              capture_output=True, text=True, timeout=90)
        assert last.returncode == 0, last.stderr
        records = server.records()[seen:]

    assert (out / "teacher.run").read_bytes() == (tmp_path / "reference" / "teacher.run").read_bytes()
    recv = [r for r in records if r["event"] == "recv"]
    requested = {by_messages[r["prompt_sha"]] for r in recv}
    assert not requested & committed
    assert requested == set(by_messages.values()) - committed  # exactly the windows the cache lacked

    stats = json.loads((out / "stats.json").read_text())
    delivered = [r for r in records if r["event"] == "done" and r["delivered"]]
    failures = Counter(FAULT_KINDS[r["fault"]] for r in recv if r["fault"] is not None)
    assert stats["requests"] == len(recv) and stats["llm_calls"] == len(delivered) == len(requested)
    assert stats["retries"] == {kind: failures.get(kind, 0) for kind in ("http_429", "http_5xx", "connection",
                                                                         "timeout", "malformed")}
    assert sum(failures.values()) == len(recv) - len(delivered)  # every failed request was retried, none given up
    assert stats["cache_hits"]["windows"] == len(committed) and stats["malformed_gave_up"] == 0
    assert stats["windows_reasked"] == len(requested & marked) >= len(in_flight)
    assert stats["prompt_tokens"] == sum(r["usage"]["prompt_tokens"] for r in delivered)
    assert stats["completion_tokens"] == sum(r["usage"]["completion_tokens"] for r in delivered)
    assert _cache_marks(out, by_text)[1] == set()  # nothing left in flight
    spend = " ".join(last.stderr.split())
    assert f"teacher spend: {len(recv)} requests" in spend
    assert f"{stats['windows_reasked']} re-asked after a resume" in spend
    print(f"5 kills ({'; '.join(points)}): {len(committed)} of {WINDOWS} windows committed before the last run, "
          f"{len(in_flight)} in flight at a kill; last run: {len(recv)} requests, {dict(failures)}")


def test_a_second_teach_on_the_same_folder_stops_naming_the_first_and_a_killed_one_frees_it(tmp_path):
    data, run, _, _ = _setup(tmp_path)
    out = tmp_path / "out"
    pace = {"delay": 2.0}
    with FakeLLMServer(tmp_path / "server.jsonl", delay=lambda n, r: pace["delay"], lifetime=60) as server:
        first = subprocess.Popen(_command(tmp_path, data, run, out, server.base_url), env=ENV,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while not server.records("recv"):
            assert first.poll() is None and time.monotonic() < deadline, "the first teach never got going"
            time.sleep(0.01)
        second = subprocess.run(_command(tmp_path, data, run, out, server.base_url), env=ENV,
                                capture_output=True, text=True, timeout=60)
        # the second one asked nothing: the first asks each window once (no faults here), so a window asked twice
        # would be the second's (counting requests instead races the first's own concurrent ones)
        asked = [r["prompt_sha"] for r in server.records("recv")]
        assert len(asked) == len(set(asked))
        assert first.poll() is None
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        pace["delay"] = 0.0
        third = subprocess.run(_command(tmp_path, data, run, out, server.base_url), env=ENV,
                               capture_output=True, text=True, timeout=60)
    message = " ".join(second.stderr.split())
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert f"{out} is in use by another process (pid {first.pid})" in message and "choose another output" in message
    assert third.returncode == 0, third.stderr  # the kernel dropped the killed holder's lock
    holder = (out / ".rankdistill.lock").read_text().strip()  # the last holder's pid, left behind: harmless
    assert (out / "teacher.run").exists() and holder.isdigit() and holder != str(first.pid)
