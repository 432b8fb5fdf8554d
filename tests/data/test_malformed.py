"""A battery of malformed inputs through every command: each exits 2 with one line naming the file and line, the
option or the key, and no traceback.

Every case is a small file (or option value) that a user could plausibly hand over by mistake: wrong column counts,
words where numbers belong, empty files, duplicate ids, binary garbage, bad UTF-8, YAML of the wrong shape, missing
files, folders where files belong, and numeric options out of range.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.data import PASSAGES, QUERIES, write_set
from helpers.tiny import tiny_encoder_dir

@pytest.fixture()
def cli_error(capsys):
    """Stricter than the shared fixture: exit 2, and stderr holds exactly one line, "error: ...", once progress
    bars (drawn in place on a terminal) are set aside; returns that line."""
    from rankdistill.cli import main

    def run(argv) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert "Traceback" not in err, err
        lines = [line for line in err.splitlines() if line.strip() and not _is_progress(line)]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        return lines[0]

    return run


def _is_progress(line: str) -> bool:
    return "\u2501" in line or "it/s]" in line or "?it/s" in line


GARBAGE = bytes(range(256)) * 3 + b"\x00\xff\xfe\n\x80\x81"
BAD_UTF8 = b"q1\tcaf\xe9 au lait\n"


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    """Well-formed files for every input, so each case breaks exactly one thing."""
    root = tmp_path_factory.mktemp("good")
    files = {
        "queries": root / "queries.tsv",
        "corpus": root / "corpus.tsv",
        "qrels": root / "qrels.txt",
        "run": root / "first.run",
        "teacher": root / "teacher.run",
    }
    files["queries"].write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    files["corpus"].write_text("".join(f"{d}\t{t}\n" for d, t in PASSAGES.items()), encoding="utf-8")
    files["qrels"].write_text("q1 0 d1 2\nq1 0 d3 0\nq2 0 d2 1\nq3 0 d4 1\n", encoding="utf-8")
    lines = [f"{q} Q0 {d} {r} {10 - r}.5 bm25\n" for q in QUERIES for r, d in enumerate(PASSAGES, 1)]
    files["run"].write_text("".join(lines), encoding="utf-8")
    files["teacher"].write_text("".join(lines), encoding="utf-8")
    files["set"] = write_set(root / "set.parquet")
    files["model"] = tiny_encoder_dir(root / "model")
    files["folder"] = root / "collection"
    files["folder"].mkdir()
    for role in ("queries", "corpus", "qrels"):
        (files["folder"] / files[role].name).write_bytes(files[role].read_bytes())
    files["recording"] = root / "rec.jsonl"
    files["recording"].write_text('{"prompt": "a", "response": "[1] > [2]"}\n', encoding="utf-8")
    return files


def _write(path: Path, content: bytes | str | None) -> Path:
    """``content`` as the file at ``path``; None makes a folder there instead."""
    if content is None:
        path.mkdir(parents=True, exist_ok=True)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# (case id, file suffix, content, the line its message names or None)
RUN_CASES = [
    ("five-columns", ".run", "q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 2.5\n", 2),
    ("seven-columns", ".run", "q1 Q0 d1 1 3.5 bm25 extra\n", 1),
    ("rank-not-integer", ".run", "q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 two 2.5 bm25\n", 2),
    ("score-not-number", ".run", "q1 Q0 d1 1 high bm25\n", 1),
    ("rank-with-underscore", ".run", "q1 Q0 d1 1_0 3.5 bm25\n", 1),
    ("score-in-arabic-digits", ".run", "q1 Q0 d1 1 \u0663.5 bm25\n", 1),
    ("score-nan", ".run", "q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 nan bm25\n", 2),
    ("duplicate-doc", ".run", "q1 Q0 d1 1 3.5 bm25\nq1 Q0 d2 2 2.5 bm25\nq1 Q0 d1 3 1.5 bm25\n", 3),
    ("empty", ".run", "", None),
    ("blank-lines-only", ".run", "\n\n  \n", None),
    ("garbage", ".run", GARBAGE, None),
    ("bad-utf8", ".run", b"q1 Q0 d1 1 3.5 bm25\nq1 Q0 d\xe92 2 2.5 bm25\n", None),
    ("folder", ".run", None, None),
]
QRELS_CASES = [
    ("three-columns", ".txt", "q1 0 d1 2\nq0 d3 1\nq2 0 d2 1\n", 2),
    ("five-columns", ".txt", "q1 0 d1 2 extra\n", 1),
    ("grade-word", ".txt", "q1 0 d1 2\nq1 0 d2 high\n", 2),
    ("grade-fraction", ".txt", "q1 0 d1 0.5\n", 1),
    ("grade-infinite", ".txt", "q1 0 d1 2\nq1 0 d2 inf\n", 2),
    ("grade-with-underscore", ".txt", "q1 0 d1 1_0\n", 1),
    ("duplicate-judgment", ".txt", "q1 0 d1 2\nq1 0 d3 0\nq1 0 d1 1\n", 3),
    ("empty", ".txt", "", None),
    ("garbage", ".txt", GARBAGE, None),
    ("bad-utf8", ".txt", b"q1 0 d1 2\nq1 0 d\xe92 1\n", None),
    ("beir-line-short", ".tsv", "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\n", 3),
    ("folder", ".txt", None, None),
]
TEXT_CASES = [
    ("no-tab", ".tsv", "q1\tfine\nq2 no tab here\n", 2),
    ("empty-id", ".tsv", "\tno id\n", 1),
    ("duplicate-id", ".tsv", "q1\tone\nq2\ttwo\nq1\tagain\n", 3),
    ("empty", ".tsv", "", None),
    ("garbage", ".tsv", GARBAGE, None),
    ("bad-utf8", ".tsv", b"q1\tfine\n" + BAD_UTF8, None),
    ("jsonl-invalid", ".jsonl", '{"_id": "q1", "text": "ok"}\n{"_id": "q2", "text": \n', 2),
    ("jsonl-not-object", ".jsonl", '["q1", "text"]\n', 1),
    ("jsonl-no-id", ".jsonl", '{"text": "no id"}\n', 1),
    ("jsonl-no-text", ".jsonl", '{"_id": "q1"}\n', 1),
    ("jsonl-id-not-scalar", ".jsonl", '{"_id": ["q", 1], "text": "x"}\n', 1),
    ("jsonl-text-not-string", ".jsonl", '{"_id": "q1", "text": {"a": 1}}\n', 1),
    ("jsonl-duplicate", ".jsonl", '{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', 2),
    ("folder", ".tsv", None, None),
]
YAML_CASES = [
    ("not-a-mapping", "- a\n- b\n", None),
    ("scalar", "just words\n", None),
    ("invalid-yaml", "output: x\n  bad: [unclosed\n", 2),
    ("bad-utf8", b"output: caf\xe9\n", None),
    ("garbage", GARBAGE, None),
    ("folder", None, None),
]


def _names(path: Path, line: int | None) -> str:
    return f"{path}:{line}" if line is not None else str(path)


def _check(message: str, path: Path, line: int | None) -> None:
    assert _names(path, line) in message, message


@pytest.mark.parametrize("case, suffix, content, line", RUN_CASES, ids=[c[0] for c in RUN_CASES])
@pytest.mark.parametrize("command", ["teach", "build", "rerank", "evaluate"])
def test_malformed_run(command, case, suffix, content, line, good, tmp_path, cli_error):
    bad = _write(tmp_path / f"bad{suffix}", content)
    out = tmp_path / "out"
    argv = {
        "teach": ["teach", "--run", bad, "--queries", good["queries"], "--corpus", good["corpus"], "--backend", "replay",
                  "--replay-file", good["recording"], "-o", out],
        "build": ["build", "--teacher-run", bad, "--first-stage-run", good["run"], "--queries", good["queries"],
                  "--corpus", good["corpus"], "-o", out / "set.parquet"],
        "rerank": ["rerank", "--model", good["model"], "--run", bad, "--queries", good["queries"], "--corpus",
                   good["corpus"], "-o", out / "re.run"],
        "evaluate": ["evaluate", good["run"], bad, "--qrels", good["qrels"]],
    }[command]
    _check(cli_error([str(a) for a in argv]), bad, line)


@pytest.mark.parametrize("case, suffix, content, line", QRELS_CASES, ids=[c[0] for c in QRELS_CASES])
@pytest.mark.parametrize("command", ["evaluate", "build"])
def test_malformed_qrels(command, case, suffix, content, line, good, tmp_path, cli_error):
    bad = _write(tmp_path / f"qrels{suffix}", content)
    argv = {
        "evaluate": ["evaluate", good["run"], "--qrels", bad],
        "build": ["build", "--teacher-run", good["teacher"], "--first-stage-run", good["run"], "--queries",
                  good["queries"], "--corpus", good["corpus"], "--qrels", bad, "--targets", "relevance",
                  "-o", tmp_path / "set.parquet"],
    }[command]
    _check(cli_error([str(a) for a in argv]), bad, line)


@pytest.mark.parametrize("case, suffix, content, line", TEXT_CASES, ids=[c[0] for c in TEXT_CASES])
@pytest.mark.parametrize("command, role", [("retrieve", "queries"), ("retrieve", "corpus"), ("teach", "queries"),
                                           ("build", "corpus"), ("rerank", "queries"), ("rerank", "corpus")])
def test_malformed_queries_and_corpus(command, role, case, suffix, content, line, good, tmp_path, cli_error):
    bad = _write(tmp_path / f"{role}{suffix}", content)
    files = {"queries": good["queries"], "corpus": good["corpus"], role: bad}
    out = tmp_path / "out"
    data = ["--queries", files["queries"], "--corpus", files["corpus"]]
    argv = {
        "retrieve": ["retrieve", *data, "--index", tmp_path / "index", "-o", out / "bm25.run"],
        "teach": ["teach", "--run", good["run"], *data, "--backend", "replay", "--replay-file", good["recording"],
                  "-o", out],
        "build": ["build", "--teacher-run", good["teacher"], "--first-stage-run", good["run"], *data,
                  "-o", out / "set.parquet"],
        "rerank": ["rerank", "--model", good["model"], "--run", good["run"], *data, "-o", out / "re.run"],
    }[command]
    _check(cli_error([str(a) for a in argv]), bad, line)


@pytest.mark.parametrize("case, content, line", YAML_CASES, ids=[c[0] for c in YAML_CASES])
@pytest.mark.parametrize("command", ["teach", "build", "train", "rerank", "evaluate", "pipeline"])
def test_malformed_yaml_config(command, case, content, line, tmp_path, cli_error):
    bad = _write(tmp_path / "config.yaml", content)
    argv = ["pipeline", bad] if command == "pipeline" else [command, "--config", bad]
    _check(cli_error([str(a) for a in argv]), bad, line)


CONFIG_KEY_CASES = [
    ("teach", "depth: many\n", "depth"),
    ("teach", "windw: 20\n", "windw"),
    ("teach", "window: [1, 2]\n", "window"),
    ("build", "sample_size: lots\n", "sample_size"),
    ("build", "sampling: everything\n", "sampling"),
    ("build", "smaple_size: 3\n", "smaple_size"),
    ("train", "epochs: forever\n", "epochs"),
    ("train", "loss: hinge\n", "loss"),
    ("train", "learning_rat: 0.1\n", "learning_rat"),
    ("rerank", "model: m\nrun: r\noutput: o\ndepth: deep\n", "depth"),
    ("rerank", "model: m\nrun: r\noutput: o\ndept: 10\n", "dept"),
    ("evaluate", "alpha: small\n", "alpha"),
    ("evaluate", "measures: nDCG@10\n", "measures"),
    ("pipeline", "name: x\nunknown_key: 1\n", "unknown_key"),
    ("pipeline", "name: [1, 2]\n", "name"),
    ("pipeline", "name: x\ntrain: 3\n", "train"),
]


@pytest.mark.parametrize("command, text, key", CONFIG_KEY_CASES, ids=[f"{c[0]}-{c[2]}" for c in CONFIG_KEY_CASES])
def test_config_wrong_types_and_unknown_keys_name_the_key(command, text, key, tmp_path, cli_error):
    cfg = _write(tmp_path / "config.yaml", text)
    argv = ["pipeline", cfg] if command == "pipeline" else [command, "--config", cfg]
    message = cli_error([str(a) for a in argv])
    assert str(cfg) in message and key in message, message


@pytest.mark.parametrize("case, content", [("missing", "missing"), ("folder", None), ("garbage", GARBAGE),
                                           ("not-objects", "[1, 2, 3]\n"), ("bad-utf8", b'{"prompt": "\xe9"}\n'),
                                           ("empty", "")])
def test_malformed_replay_recording(case, content, good, tmp_path, cli_error):
    bad = tmp_path / "rec.jsonl"
    if content != "missing":
        _write(bad, content)
    message = cli_error(["teach", "--run", str(good["run"]), "--queries", str(good["queries"]), "--corpus",
                         str(good["corpus"]), "--backend", "replay", "--replay-file", str(bad), "-o", str(tmp_path / "o")])
    assert str(bad) in message, message


@pytest.mark.parametrize("case, content", [("missing", "missing"), ("folder", None), ("garbage", GARBAGE),
                                           ("empty", ""), ("text", "qid,docid\nq1,d1\n")])
def test_malformed_training_set(case, content, tmp_path, cli_error):
    bad = tmp_path / "set.parquet"
    if content != "missing":
        _write(bad, content)
    message = cli_error(["train", str(bad), "-o", str(tmp_path / "model")])
    assert str(bad) in message, message


MODEL_CASES = [("missing", "missing"), ("empty-folder", None), ("a-file", "not a model\n")]


@pytest.mark.parametrize("case, content", MODEL_CASES, ids=[c[0] for c in MODEL_CASES])
@pytest.mark.parametrize("command", ["rerank", "export", "serve"])
def test_not_a_model(command, case, content, good, tmp_path, cli_error, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started on a bad model"))
    bad = tmp_path / "model"
    if content != "missing":
        _write(bad, content)
    argv = {
        "rerank": ["rerank", "--model", bad, "--run", good["run"], "--queries", good["queries"], "--corpus",
                   good["corpus"], "-o", tmp_path / "re.run"],
        "export": ["export", bad, "--onnx", tmp_path / "onnx"],
        "serve": ["serve", bad],
    }[command]
    assert str(bad) in cli_error([str(a) for a in argv])


def test_corrupt_model_config_names_the_file(good, tmp_path, cli_error):
    import shutil

    model = Path(shutil.copytree(good["model"], tmp_path / "model"))
    (model / "config.json").write_text("{not json", encoding="utf-8")
    message = cli_error(["rerank", "--model", str(model), "--run", str(good["run"]), "--queries", str(good["queries"]),
                         "--corpus", str(good["corpus"]), "-o", str(tmp_path / "re.run")])
    assert "config.json" in message, message


NUMERIC_CASES = [
    ("retrieve", ["--k", "0"], "k"),
    ("retrieve", ["--k", "-5"], "k"),
    ("retrieve", ["--k1", "-1"], "k1"),
    ("retrieve", ["--b", "2"], "b"),
    ("teach", ["--depth", "0"], "depth"),
    ("teach", ["--depth", "-3"], "depth"),
    ("teach", ["--window", "0"], "window"),
    ("teach", ["--stride", "0"], "stride"),
    ("teach", ["--stride", "-1"], "stride"),
    ("teach", ["--max-passage-words", "0"], "max_passage_words"),
    ("build", ["--depth", "0"], "depth"),
    ("build", ["--sample-size", "0"], "sample_size"),
    ("build", ["--sample-size", "-2"], "sample_size"),
    ("build", ["--cross-negatives", "-1"], "cross_negatives"),
    ("train", ["--epochs", "-1"], "epochs"),
    ("train", ["--epochs", "0"], "epochs"),
    ("train", ["--batch-queries", "0"], "batch_queries"),
    ("train", ["--grad-accum", "0"], "grad_accum"),
    ("train", ["--learning-rate", "-0.1"], "learning_rate"),
    ("train", ["--max-query-length", "0"], "max_query_length"),
    ("train", ["--warmup-ratio", "2"], "warmup_ratio"),
    ("rerank", ["--depth", "0"], "depth"),
    ("rerank", ["--depth", "-1"], "depth"),
    ("rerank", ["--batch-tokens", "0"], "batch_tokens"),
    ("rerank", ["--max-passage-length", "0"], "max_passage_length"),
    ("evaluate", ["--alpha", "0"], "alpha"),
    ("evaluate", ["--alpha", "1.5"], "alpha"),
    ("evaluate", ["--depth", "0"], "depth"),
    ("serve", ["--port", "-1"], "port"),
    ("serve", ["--port", "70000"], "port"),
    ("serve", ["--max-documents", "0"], "max_documents"),
    ("serve", ["--max-batch-tokens", "0"], "max_batch_tokens"),
    ("serve", ["--max-wait-ms", "-5"], "max_wait_ms"),
    ("serve", ["--batch-tokens", "0"], "batch_tokens"),
    ("export", ["--opset", "0"], "opset"),
]


@pytest.mark.parametrize("command, extra, option", NUMERIC_CASES, ids=[f"{c[0]}{'='.join(c[1])}" for c in NUMERIC_CASES])
def test_out_of_range_numeric_options_name_the_option(command, extra, option, good, tmp_path, cli_error, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started with a bad option"))
    out = tmp_path / "out"
    data = ["--queries", good["queries"], "--corpus", good["corpus"]]
    argv = {
        "retrieve": ["retrieve", *data, "--index", tmp_path / "index", "-o", out / "bm25.run"],
        "teach": ["teach", "--run", good["run"], *data, "--backend", "replay", "--replay-file", good["recording"],
                  "-o", out],
        "build": ["build", "--teacher-run", good["teacher"], "--first-stage-run", good["run"], *data,
                  "-o", out / "set.parquet"],
        "train": ["train", good["set"], "--model", good["model"], "-o", out / "model"],
        "rerank": ["rerank", "--model", good["model"], "--run", good["run"], *data, "-o", out / "re.run"],
        "evaluate": ["evaluate", good["run"], "--qrels", good["qrels"],
                     *(["--zero-shot", good["model"], "--dataset", good["folder"], "--candidates", good["run"]]
                       if option == "depth" else [])],
        "serve": ["serve", good["model"]],
        "export": ["export", good["model"], "--onnx", out / "onnx"],
    }[command]
    message = cli_error([str(a) for a in [*argv, *extra]])
    flag = extra[0]
    assert flag in message or option in message, message
    assert not out.exists() or not any(out.rglob("*.run")), "a bad option still wrote output"


def _misc_cases(good: dict[str, Path], tmp: Path) -> dict[str, tuple[list, str]]:
    """argv and what its message must name, for bad choices, bad paths and outputs of the wrong kind."""
    data = ["--queries", good["queries"], "--corpus", good["corpus"]]
    teach = ["teach", "--run", good["run"], *data, "--backend", "replay", "--replay-file", good["recording"]]
    build = ["build", "--teacher-run", good["teacher"], *data]
    rerank = ["rerank", "--model", good["model"], "--run", good["run"], *data]
    folder = tmp / "a-folder"
    folder.mkdir()
    two_ids = tmp / "qids.txt"
    two_ids.write_text("q1\nq2 q3\n", encoding="utf-8")
    binary_ids = tmp / "qids.bin"
    binary_ids.write_bytes(b"q1\n\0\x01\n")
    return {
        "teach-output-is-a-file": ([*teach, "-o", good["queries"]], str(good["queries"])),
        "teach-prompt": ([*teach, "-o", tmp / "t", "--prompt", "bogus"], "prompt"),
        "teach-backend": (["teach", "--run", good["run"], *data, "--backend", "bogus", "-o", tmp / "t"], "backend"),
        "teach-replay-match": ([*teach, "-o", tmp / "t", "--replay-match", "x"], "replay_match"),
        "teach-dataset-is-a-file": (["teach", "--run", good["run"], "--dataset", good["queries"], "--backend", "replay",
                                     "--replay-file", good["recording"], "-o", tmp / "t"], str(good["queries"])),
        "teach-dataset-empty-folder": (["teach", "--run", good["run"], "--dataset", folder, "--backend", "replay",
                                        "--replay-file", good["recording"], "-o", tmp / "t"], str(folder)),
        "build-output-is-a-folder": ([*build, "-o", folder], str(folder)),
        "build-output-inside-a-file": ([*build, "-o", good["queries"] / "set.parquet"], str(good["queries"])),
        "build-sampling": ([*build, "-o", tmp / "s.parquet", "--sampling", "bogus"], "sampling"),
        "train-loss": (["train", good["set"], "-o", tmp / "m", "--model", good["model"], "--loss", "bogus"], "loss"),
        "train-loss-kwargs": (["train", good["set"], "-o", tmp / "m", "--model", good["model"], "--loss-kwargs", "{bad"],
                              "--loss-kwargs"),
        "train-model-missing": (["train", good["set"], "-o", tmp / "m", "--model", tmp / "nomodel"], str(tmp / "nomodel")),
        "rerank-output-is-a-folder": ([*rerank, "-o", folder], str(folder)),
        "rerank-device": ([*rerank, "-o", tmp / "r.run", "--device", "bogus"], "device"),
        "rerank-dtype": ([*rerank, "-o", tmp / "r.run", "--dtype", "bogus"], "dtype"),
        "retrieve-output-is-a-folder": (["retrieve", *data, "--index", tmp / "index", "-o", folder], str(folder)),
        "retrieve-method": (["retrieve", *data, "--index", tmp / "index", "-o", tmp / "b.run", "--method", "x"], "method"),
        "evaluate-measure": (["evaluate", good["run"], "--qrels", good["qrels"], "-m", "nDCG@abc"], "nDCG@abc"),
        "evaluate-test": (["evaluate", good["run"], "--qrels", good["qrels"], "--test", "ztest"], "ztest"),
        "evaluate-rel-zero": (["evaluate", good["run"], "--qrels", good["qrels"], "--rel", "0"], "rel must be at least 1"),
        "build-qids-two-a-line": ([*build, "-o", tmp / "s.parquet", "--qids", two_ids], f"{two_ids}:2"),
        "build-qids-binary": ([*build, "-o", tmp / "s.parquet", "--qids", binary_ids], f"{binary_ids}:2"),
        "evaluate-output-format": (["evaluate", good["run"], "--qrels", good["qrels"], "-o", tmp / "x.xlsx"], "x.xlsx"),
        "serve-device": (["serve", good["model"], "--device", "bogus"], "device"),
        "serve-log-level": (["serve", good["model"], "--log-level", "bogus"], "--log-level"),
        "pipeline-missing": (["pipeline", tmp / "nope.yaml"], str(tmp / "nope.yaml")),
        "export-output-is-a-file": (["export", good["model"], "--onnx", good["queries"]], str(good["queries"])),
        "unknown-option": (["rerank", "--depht", "3"], "--depht"),
        "not-an-integer": (["retrieve", *data, "-o", tmp / "b.run", "--k", "ten"], "--k"),
    }


MISC = ["teach-output-is-a-file", "teach-prompt", "teach-backend", "teach-replay-match", "teach-dataset-is-a-file",
        "teach-dataset-empty-folder", "build-output-is-a-folder", "build-output-inside-a-file", "build-sampling",
        "train-loss", "train-loss-kwargs", "train-model-missing", "rerank-output-is-a-folder", "rerank-device",
        "rerank-dtype", "retrieve-output-is-a-folder", "retrieve-method", "evaluate-measure", "evaluate-test", "evaluate-rel-zero", "build-qids-two-a-line", "build-qids-binary",
        "evaluate-output-format", "serve-device", "serve-log-level", "pipeline-missing", "export-output-is-a-file",
        "unknown-option", "not-an-integer"]


@pytest.mark.parametrize("case", MISC)
def test_bad_choices_paths_and_outputs(case, good, tmp_path, cli_error, capsys, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server started with a bad option"))
    argv, named = _misc_cases(good, tmp_path)[case]
    message = cli_error([str(a) for a in argv])
    assert named in message, message
    assert message.count("error:") == 1, message
