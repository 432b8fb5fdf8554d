"""A pipeline survives being killed: ``rankdistill pipeline`` SIGKILLed in the teacher, the build, training
mid-epoch, re-ranking and evaluation, rerun each time, ends with the figures of an uninterrupted run, and no file
under its final name is ever half-written (so none can be read half-written).

Tiny everything: 8 toy queries with 20 candidates each, an LLM teacher served by the local fake server (3 windows
per query), a 2-layer BERT trained for 2 epochs with a checkpoint after every step, 2-fold cross-validation.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from helpers.fake_llm_server import FakeLLMServer, first_stage, preference, write_toy_collection
from helpers.tiny import tiny_encoder_dir

from rankdistill.workflow.manifest import hash_path
from rankdistill.workflow.runner import pipeline

QUERIES, DEPTH = 8, 20
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "400"}


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The toy collection with qrels (the fake teacher's favourite three of each list are relevant), a tiny model."""
    data = tmp_path / "data"
    run = write_toy_collection(data, n_queries=QUERIES, n_candidates=DEPTH, n_docs=40, seed=3)
    lines = []
    for qid, docids in first_stage(run).items():
        ranked = sorted(docids, key=lambda d: -preference(qid, d))
        lines += [f"{qid} 0 {d} {2 if i == 0 else 1 if i < 3 else 0}\n" for i, d in enumerate(ranked[:6])]
    (data / "qrels.txt").write_text("".join(lines))
    return data, run, tiny_encoder_dir(tmp_path / "tiny-model")


def _config(tmp_path: Path, data: Path, run: Path, model: Path, base_url: str, output: Path) -> Path:
    cfg = {
        "name": "kill", "output": str(output), "seed": 0,
        "train": {
            "dataset": str(data), "first_stage": {"run": str(run)}, "model": str(model),
            "teacher": {"backend": "openai", "model": "fake-ranker", "depth": DEPTH, "window": 10, "stride": 5,
                        "options": {"base_url": base_url, "concurrency": 4, "backoff_base": 0.02,
                                    "api_key_env": "RANKDISTILL_TEST_NO_KEY"}},
            "stages": [{"name": "distill", "loss": "ranknet", "sample_size": 8, "depth": DEPTH, "epochs": 2,
                        "learning_rate": 1e-3, "max_passage_length": 48, "save_steps": 1, "logging_steps": 1}],
        },
        "evaluate": {"cross_validation": 2, "depth": DEPTH, "measures": ["nDCG@10", "RR@10"]},
    }
    path = tmp_path / f"{output.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _no_half_written_file(out: Path) -> None:
    """Every file under a final name is whole, and every manifest vouches only for the bytes that are there."""
    for manifest in (out / "manifests").glob("*.json"):
        saved = json.loads(manifest.read_text())
        for path, digest in saved["outputs"].items():
            assert hash_path(Path(path)) == digest, f"{manifest.name} vouches for {path}, which has changed"
    for path in out.rglob("*"):
        inside = path.relative_to(out).parts
        if path.name.startswith(".") or any(part.endswith(".checkpoints") for part in inside) or not path.is_file():
            continue  # temp files of atomic writes, the lock, Trainer checkpoints in <model>.checkpoints (checked on resume)
        if path.suffix == ".run":
            text = path.read_text()
            assert text.endswith("\n") and all(len(line.split()) == 6 for line in text.splitlines()), path
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".html":
            assert path.read_text().rstrip().endswith("</html>"), path
    for model in out.glob("students/*/model-*"):
        if model.is_dir() and not model.name.endswith(".checkpoints"):
            assert {"config.json", "model.safetensors", "training_log.json"} <= {p.name for p in model.iterdir()}


def _figures(value):
    """metrics.json without the runs' file paths (the two runs live in different folders)."""
    if isinstance(value, dict):
        return {k: _figures(v) for k, v in value.items() if k != "path"}
    return [_figures(v) for v in value] if isinstance(value, list) else value


def _sections(markdown: str) -> dict[str, str]:
    """A report's sections by title."""
    return {part.split("\n", 1)[0]: part for part in markdown.split("\n## ")[1:]}


def _kill_when(proc: subprocess.Popen, log: Path, ready, linger: float, what: str) -> None:
    """SIGKILL ``proc`` ``linger`` seconds after ``ready(stderr text)`` first holds."""
    deadline = time.monotonic() + 90
    while not ready(log.read_text()):
        assert proc.poll() is None, f"{what}: the pipeline ended before the kill:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{what}: never reached"
        time.sleep(0.01)
    time.sleep(linger)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL, f"{what}: the kill landed after the pipeline had finished"


@pytest.mark.slow
def test_pipeline_sigkilled_in_every_stage_ends_with_an_uninterrupted_runs_figures(tmp_path):
    data, run, model = _setup(tmp_path)
    rng = random.Random(3)
    out = tmp_path / "killed"
    fold1 = out / "students" / "fold1" / "model-distill.checkpoints" / "stage-1"
    with FakeLLMServer(tmp_path / "server.jsonl", delay=0.1, lifetime=300) as server:
        reference = pipeline(_config(tmp_path, data, run, model, server.base_url, tmp_path / "reference"))
        assert reference.skipped == [] and "evaluate:cv" in reference.ran
        command = [sys.executable, "-m", "rankdistill", "pipeline",
                   str(_config(tmp_path, data, run, model, server.base_url, out))]
        served = len(server.records())

        def teacher_answered(_: str) -> bool:
            return sum(r["event"] == "done" for r in server.records()[served:]) >= 5

        def checkpointed(_: str) -> bool:  # fold 1's student has a complete checkpoint: it is mid-training
            return any((p / "trainer_state.json").exists() for p in fold1.glob("checkpoint-*"))

        kills = [  # what to kill, when it is under way, how long after that, and the stage it must not finish
            ("teacher", teacher_answered, rng.uniform(0.0, 0.2), "teach__train"),
            ("build", lambda err: "running build:" in err, rng.uniform(0.0, 0.05), "build__fold1__distill"),
            ("training mid-epoch", checkpointed, rng.uniform(0.0, 0.2), "train__fold1__distill"),
            ("re-ranking", lambda err: "running rerank:" in err, rng.uniform(0.0, 0.1), "rerank__fold1"),
            ("evaluation", lambda err: "running evaluate:" in err, rng.uniform(0.2, 1.0), "evaluate__cv"),
        ]
        for i, (what, ready, linger, stage) in enumerate(kills):
            log = tmp_path / f"kill{i}.stderr"
            with log.open("w") as stderr:
                proc = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=stderr)
            _kill_when(proc, log, ready, linger, what)
            _no_half_written_file(out)
            assert not (out / "manifests" / f"{stage}.json").exists(), f"the kill meant for {what} came too late"
        last = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=300)
    assert last.returncode == 0, last.stderr[-3000:]
    _no_half_written_file(out)

    # the candidate set is named after the first-stage run file ("run")
    for name in ("eval/cv/run/student.run", "train/teacher/teacher.run", "eval/cv/run/zero-shot/teacher.run"):
        assert (out / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    metrics, expected = (_figures(json.loads((root / "eval/cv/run/metrics.json").read_text()))
                         for root in (out, tmp_path / "reference"))
    assert metrics == expected and metrics["runs"]["student"]["per_query"]  # every figure, to the last digit
    log = json.loads((out / "students" / "fold1" / "model-distill" / "training_log.json").read_text())
    assert log["stages"][0]["resumed_from"], "fold 1's student was to resume from a checkpoint"
    report, expected_report = (_sections((root / "report" / "cv" / "report.md").read_text())
                               for root in (out, tmp_path / "reference"))
    assert set(report) == set(expected_report) and "Effectiveness" in report and "Per fold" in report
    for title in set(report) - {"Throughput and cost per query", "Configuration"}:  # timings and paths differ
        assert report[title] == expected_report[title], title
    # the teacher's spend is in the report: the resumed teacher paid only for windows not yet in its cache
    spend = next(line for line in report["Throughput and cost per query"].splitlines() if line.startswith("| teacher"))
    stats = json.loads((out / "train" / "teacher" / "stats.json").read_text())
    assert f"| {stats['requests']} | 0 | {stats['prompt_tokens']:,} | {stats['completion_tokens']:,} |" in spend
    assert 0 < stats["llm_calls"] < QUERIES * 3 and stats["cache_hits"]["windows"] == QUERIES * 3 - stats["llm_calls"]
