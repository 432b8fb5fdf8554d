"""SIGKILL a ``rankdistill teach`` process mid-run, rerun it, and check nothing finished is paid for twice.

What can be asserted exactly (windows of one query are sequential; a step's windows across queries run
concurrently):
- the rerun asks the server for exactly the windows that were not committed to cache.sqlite at the kill,
  each once, and none that were committed;
- every window the server had answered but the killed process had not committed was the last answered
  window of its query (the one in flight at the kill): at most one per query;
- the final run equals an uninterrupted run's and the one computed from the fake teacher's rule.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from helpers.fake_llm_server import (  # noqa: E402
    FakeLLMServer,
    expected_teacher,
    first_stage,
    messages_hash,
    read_trec,
    write_toy_collection,
)

from rankdistill.teacher.cache import TeacherCache  # noqa: E402
from rankdistill.teacher.prompts import build_prompt  # noqa: E402

MODEL, TEMPLATE, WINDOW, STRIDE, DEPTH = "fake-ranker", "rankzephyr", 10, 5, 30


def _teach_cmd(data: Path, run: Path, out: Path, base_url: str) -> list[str]:
    return [
        sys.executable, "-m", "rankdistill", "teach", "--run", str(run), "--dataset", str(data), "--output", str(out),
        "--backend", "openai", "--model", MODEL, "--base-url", base_url, "--prompt", TEMPLATE,
        "--depth", str(DEPTH), "--window", str(WINDOW), "--stride", str(STRIDE), "--concurrency", "4",
        "--timeout", "10", "--api-key-env", "RANKDISTILL_TEST_NO_KEY",
    ]


def _tsv(path: Path) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in path.read_text().splitlines())


def test_sigkill_mid_run_then_rerun_pays_no_finished_window_twice(tmp_path):
    data = tmp_path / "data"
    run = write_toy_collection(data, n_queries=3, n_candidates=DEPTH, seed=11)
    candidates = first_stage(run)
    expected = {qid: expected_teacher(c, qid, window=WINDOW, stride=STRIDE) for qid, c in candidates.items()}
    queries, passages = _tsv(data / "queries.tsv"), _tsv(data / "passages.tsv")
    # Every window the teacher should ask, by (qid, step): its chat hash (what the server logs) and flat text
    # (what the cache keys), built here from the fake teacher's rule.
    windows: dict[str, tuple[str, int]] = {}
    texts: dict[tuple[str, int], str] = {}
    for qid, (_, asked) in expected.items():
        for step, docs in enumerate(asked):
            prompt = build_prompt(TEMPLATE, queries[qid], [passages[d] for d in docs], max_passage_words=None)
            windows[messages_hash(prompt.messages)] = (qid, step)
            texts[(qid, step)] = prompt.text
    assert len(windows) == 15

    # 1. uninterrupted reference run
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with FakeLLMServer(tmp_path / "full.jsonl") as server:
        done = subprocess.run(_teach_cmd(data, run, tmp_path / "full", server.base_url), env=env,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    full = read_trec(tmp_path / "full" / "teacher.run")
    assert full == {qid: order for qid, (order, _) in expected.items()}

    # 2. the same run, killed with SIGKILL once the (slow) server has answered 5 of the 15 windows: step 0 of
    #    every query and step 1 of q0 and q1, while q2's step-1 window is still in the server's delay
    out = tmp_path / "resumed"
    def slow(n: int, request: dict) -> float:  # q0 answers fast, q2 slowly: a step's windows finish apart
        text = json.dumps(request["messages"])
        return next(d for q, d in (("qzq0 ", 0.05), ("qzq1 ", 0.15), ("", 0.3)) if q in text)

    with FakeLLMServer(tmp_path / "killed.jsonl", delay=slow, lifetime=60) as server:
        with (tmp_path / "killed.stderr").open("w") as stderr:
            proc = subprocess.Popen(_teach_cmd(data, run, out, server.base_url), env=env,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
            deadline = time.monotonic() + 45
            while sum(1 for r in server.records("done") if r["delivered"]) < 5:
                assert proc.poll() is None, (tmp_path / "killed.stderr").read_text()
                assert time.monotonic() < deadline, "the teacher never got going"
                time.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        time.sleep(0.3)  # let the server finish the answers that were in its delay when the client died
        before = server.records()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "teacher.run").exists()

    delivered = {windows[r["prompt_sha"]] for r in before if r["event"] == "done" and r["delivered"]}
    asked_before = [windows[r["prompt_sha"]] for r in before if r["event"] == "recv"]
    assert len(asked_before) == len(set(asked_before))  # no window asked twice even within the killed run
    cache = TeacherCache(out / "cache.sqlite")
    committed = {key for key, text in texts.items() if cache.get_window(MODEL, TEMPLATE, "generate", text) is not None}
    cache.close()
    assert 5 <= len(delivered) < 15, "the kill must land mid-run"
    assert committed and committed <= delivered
    # Answered but not committed = in flight at the kill: only the last answered window of a query.
    for qid, step in delivered - committed:
        assert step == max(s for q, s in delivered if q == qid)
    assert len(delivered - committed) <= len(expected)

    # 3. rerun the same command: it asks exactly the uncommitted windows, once each, and ends with the same run
    with FakeLLMServer(tmp_path / "rerun.jsonl") as server:
        again = subprocess.run(_teach_cmd(data, run, out, server.base_url), env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        rerun_asked = [windows[r["prompt_sha"]] for r in server.records("recv")]
    print(f"killed after {len(delivered)} windows answered, {len(committed)} committed; rerun asked {len(rerun_asked)}")
    assert sorted(rerun_asked) == sorted(set(texts) - committed)
    assert not set(rerun_asked) & committed
    assert read_trec(out / "teacher.run") == full
    stats = json.loads((out / "stats.json").read_text())
    assert stats["llm_calls"] == 15 - len(committed)


def test_ctrl_c_mid_run_stops_promptly_and_the_rerun_finishes_the_same_run(tmp_path):
    data = tmp_path / "data"
    run = write_toy_collection(data, n_queries=3, n_candidates=DEPTH, seed=5)
    expected = {qid: expected_teacher(c, qid, window=WINDOW, stride=STRIDE)[0] for qid, c in first_stage(run).items()}
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # 0.5 s a window: 5 windows a query in sequence, so after the 4th answer about 1.5 s of work is left for the
    # Ctrl-C to interrupt (at 0.2 s the run once finished first on a loaded machine, leaving nothing to interrupt)
    with FakeLLMServer(tmp_path / "interrupted.jsonl", delay=0.5, lifetime=60) as server:
        with (tmp_path / "interrupted.stderr").open("w") as stderr:
            # SIGINT as a terminal delivers it: a suite started in the background (`make test &`) ignores SIGINT,
            # the child would inherit that and finish instead of stopping
            proc = subprocess.Popen(_teach_cmd(data, run, out, server.base_url), env=env,
                                    stdout=subprocess.DEVNULL, stderr=stderr,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
            deadline = time.monotonic() + 45
            while sum(1 for r in server.records("done") if r["delivered"]) < 4:
                assert proc.poll() is None, (tmp_path / "interrupted.stderr").read_text()
                assert time.monotonic() < deadline, "the teacher never got going"
                time.sleep(0.005)
            proc.send_signal(signal.SIGINT)
            stopped = time.monotonic()
            proc.wait(timeout=15)
        took = time.monotonic() - stopped
        asked_before = {r["prompt_sha"] for r in server.records("recv")}
    assert took < 5, f"Ctrl-C took {took:.1f} s to stop the teacher"  # requests in flight are cancelled
    assert not (out / "teacher.run").exists(), (
        f"the teacher finished before the Ctrl-C reached it (exit {proc.returncode}, {took:.1f} s after it): "
        + (tmp_path / "interrupted.stderr").read_text()[-2000:])
    with FakeLLMServer(tmp_path / "rerun.jsonl") as server:
        again = subprocess.run(_teach_cmd(data, run, out, server.base_url), env=env,
                               capture_output=True, text=True, timeout=60)
        assert again.returncode == 0, again.stderr
        asked_again = {r["prompt_sha"] for r in server.records("recv")}
    assert read_trec(out / "teacher.run") == expected
    stats = json.loads((out / "stats.json").read_text())
    assert stats["llm_calls"] == len(asked_again) < 15 and stats["cache_hits"]["windows"] == 15 - len(asked_again)
    assert len(asked_before | asked_again) == 15  # together the two runs asked each window, and only those
    assert proc.returncode == 130 and "interrupted" in (tmp_path / "interrupted.stderr").read_text()
