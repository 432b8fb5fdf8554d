"""Backend options models, their one-line errors, the listwise cache key, and ``rankdistill teach --config``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rankdistill.cli import main
from rankdistill.data.trec import read_run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends import BACKENDS, LISTWISE, make_backend, options_model, validate_backend_options
from rankdistill.teacher.backends.base import Generation
from rankdistill.teacher.listwise import WindowSettings
from rankdistill.teacher.teach import teach


def test_options_models_load_without_the_model_libraries():
    """A config is checked without torch, vllm, httpx, transformers or sentence-transformers."""
    code = (
        "import sys\n"
        "from rankdistill.teacher.backends import BACKENDS, options_model, validate_backend_options\n"
        "for name in BACKENDS: options_model(name)\n"
        "validate_backend_options('openai', {'base_url': 'http://127.0.0.1:1/v1', 'concurrency': 2})\n"
        "heavy = ('torch', 'vllm', 'httpx', 'transformers', 'sentence_transformers')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("name", list(BACKENDS))
def test_every_options_model_forbids_unknown_keys_and_describes_its_keys(name):
    model = options_model(name)
    assert model.model_config.get("extra") == "forbid"
    assert all(field.description for field in model.model_fields.values())


def test_defaults_are_todays():
    assert validate_backend_options("hf", {}).model_dump() == {
        "device": None, "dtype": None, "batch_size": 8, "trust_remote_code": False}
    assert validate_backend_options("vllm", {}).model_dump() == {
        "tensor_parallel_size": 1, "dtype": "auto", "max_model_len": None, "gpu_memory_utilization": 0.9, "seed": 0,
        "engine_options": {}}
    assert validate_backend_options("openai", {"base_url": "http://h/v1"}).model_dump() == {
        "base_url": "http://h/v1", "api_key_env": "OPENAI_API_KEY", "concurrency": 8, "timeout": 60.0, "max_retries": 6,
        "temperature": 0.0, "backoff_base": 0.5, "backoff_max": 30.0, "seed": None}
    assert validate_backend_options("embedding", {"max_length": None}).model_dump() == {
        "batch_size": 64, "device": None, "max_length": None, "dtype": "auto"}  # None means the default
    assert validate_backend_options("replay", {}).model_dump() == {}


def test_bad_options_are_one_line_errors_naming_the_key():
    with pytest.raises(RankdistillError) as info:
        validate_backend_options("openai", {"base_ur": "http://h/v1"})
    assert str(info.value) == (
        "options.base_url: required key is missing; options.base_ur: unknown key (check its spelling and indentation); "
        "allowed: api_key_env, backoff_base, backoff_max, base_url, concurrency, max_retries, seed, temperature, timeout"
    )
    with pytest.raises(RankdistillError, match=r"^teacher.options.dtype: got 'int8'; allowed: 'auto', 'bfloat16'"):
        validate_backend_options("hf", {"dtype": "int8"}, where="teacher.options")
    with pytest.raises(RankdistillError, match=r"^options.batch_size: Input should be greater than or equal to 1 \(got 0\)$"):
        validate_backend_options("embedding", {"batch_size": 0})
    with pytest.raises(RankdistillError, match=r"^options.engine_options: the backend sets these itself .*: seed$"):
        validate_backend_options("vllm", {"engine_options": {"seed": 3, "enforce_eager": True}})
    with pytest.raises(RankdistillError, match=r"^options: the replay backend takes no options \(got base_url\)$"):
        validate_backend_options("replay", {"base_url": "http://h/v1"})
    unknown = "^unknown teacher backend 'hff'; choose one of hf, vllm, openai, replay, embedding$"
    with pytest.raises(RankdistillError, match=unknown):
        validate_backend_options("hff", {})
    with pytest.raises(RankdistillError, match="not a listwise LLM backend"):
        make_backend("embedding", "minilm-l6")
    assert LISTWISE == ("hf", "vllm", "openai", "replay")


def test_the_cache_key_is_unchanged():
    """Caches written before the listwise split resume: the finished-query key is the same hash of the same keys."""
    vicuna = WindowSettings("rankvicuna", 100, 20, 10, None, False)
    assert vicuna.cache_key("castorini/rank_vicuna_7b_v1") == "f4ab9bc8fed5a55d"
    assert WindowSettings("rankzephyr", 30, 10, 5, 12, True).cache_key("m") == "6228cc143be7d59f"


# -- teach() and the CLI over a toy collection and a recording --------------------------------------------


class Reverse:
    """Answers every window with its reversed order."""

    name, model_id = "reverse", "reverse-v1"

    def generate(self, prompts, on_result, *, max_new_tokens, first_token=False):
        for i, p in enumerate(prompts):
            on_result(i, Generation(text=" > ".join(f"[{k}]" for k in range(p.num_passages, 0, -1))))

    def close(self):
        pass


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """queries.tsv, corpus.tsv, first.run (2 queries x 12 candidates) and a recording of every 6/3 window at depth 12."""
    root = tmp_path_factory.mktemp("toy")
    (root / "queries.tsv").write_text("q1\twhere rivers go\nq2\tcheap hotels\n")
    (root / "corpus.tsv").write_text("".join(f"d{i}\tpassage {i} on topic {i % 4}\n" for i in range(30)))
    write_run({q: [(f"d{i + k}", 30.0 - i) for i in range(12)] for k, q in ((0, "q1"), (10, "q2"))}, root / "first.run", "bm25")
    teach(root / "first.run", dataset=root, output=root / "recorded", backend=Reverse(), depth=12, window=6, stride=3,
          record=root / "rec.jsonl", progress=False)
    return root


def test_teach_names_parameters_not_flags(toy, tmp_path):
    common = dict(dataset=toy, output=tmp_path, progress=False)
    with pytest.raises(RankdistillError, match="^depth must be at least 1, got 0$"):
        teach(toy / "first.run", depth=0, **common)
    with pytest.raises(RankdistillError, match="^backend replay needs replay_file"):
        teach(toy / "first.run", backend="replay", **common)
    with pytest.raises(RankdistillError, match="^backend hf needs model"):
        teach(toy / "first.run", backend="hf", **common)
    with pytest.raises(RankdistillError, match=r"^backend_options.batch_sise: unknown key .*allowed: batch_size, device"):
        teach(toy / "first.run", backend="hf", model="some/model", backend_options={"batch_sise": 2}, **common)
    with pytest.raises(RankdistillError, match=r"^backend_options: the replay backend takes no options"):
        teach(toy / "first.run", backend="replay", replay_file=toy / "rec.jsonl", backend_options={"x": 1}, **common)


def _config(path: Path, values: dict) -> Path:
    path.write_text(yaml.safe_dump(values))
    return path


def test_cli_config_file_with_flags_winning(toy, tmp_path):
    (tmp_path / "sub").mkdir()
    config = _config(tmp_path / "sub" / "teach.yaml", {
        "run": str(toy / "first.run"), "dataset": str(toy), "output": "out",  # relative: next to the file
        "backend": "replay", "replay-file": str(toy / "rec.jsonl"), "replay_match": "exact",
        "depth": 12, "window": 6, "stride": 4, "tag": "from-yaml",
    })
    main(["teach", "--config", str(config), "--stride", "3"])  # the flag wins over the file's stride
    out = tmp_path / "sub" / "out"
    stats = json.loads((out / "stats.json").read_text())
    assert (stats["depth"], stats["window"], stats["stride"]) == (12, 6, 3)
    assert stats["replay_matches"] == {"exact": stats["windows"], "normalized": 0}
    assert read_run(out / "teacher.run") == read_run(toy / "recorded" / "teacher.run")
    assert (out / "teacher.run").read_text().split()[5] == "from-yaml"


def test_cli_config_errors_name_the_file_and_key(toy, tmp_path, cli_error):
    base = {"run": str(toy / "first.run"), "dataset": str(toy), "output": str(tmp_path / "o")}
    config = _config(tmp_path / "a.yaml", {**base, "dept": 12})
    message = cli_error(["teach", "--config", str(config)])
    assert message.startswith(f"error: {config}: dept: unknown key") and "depth" in message
    config = _config(tmp_path / "b.yaml", {**base, "backend": "hf", "model": "m", "options": {"batch_sise": 2}})
    message = cli_error(["teach", "--config", str(config)])
    assert message.startswith(f"error: {config}: options.batch_sise: unknown key") and "batch_size" in message
    config = _config(tmp_path / "c.yaml", {**base, "depth": "deep"})
    assert f"{config}: depth: Input should be a valid integer" in cli_error(["teach", "--config", str(config)])
    assert "missing --run" in cli_error(["teach", "--output", str(tmp_path / "o")])
    config = _config(tmp_path / "d.yaml", {**base, "backend": "openai", "model": "m", "base_url": "localhost:1"})
    assert f"{config}: options.base_url: must be an http(s) URL" in cli_error(["teach", "--config", str(config)])
    assert not (tmp_path / "o" / "teacher.run").exists()


def test_cli_options_mapping_reaches_the_backend(toy, tmp_path, monkeypatch):
    """options: in the file, a flag over the same key, and flags of other backends left out."""
    seen = {}

    def fake_make_backend(name, model=None, *, options=None, where="options", **inputs):
        seen.update(name=name, model=model, options=dict(options))
        return Reverse()

    monkeypatch.setattr("rankdistill.teacher.teach.make_backend", fake_make_backend)
    config = _config(tmp_path / "t.yaml", {
        "run": str(toy / "first.run"), "dataset": str(toy), "output": str(tmp_path / "o"), "backend": "hf",
        "model": "m", "depth": 12, "window": 6, "stride": 3,
        "options": {"trust_remote_code": True, "batch_size": 4}, "batch_size": 3,
    })
    main(["teach", "--config", str(config), "--device", "cpu", "--base-url", "http://h/v1"])
    assert seen == {"name": "hf", "model": "m", "options": {"trust_remote_code": True, "batch_size": 3, "device": "cpu"}}


@pytest.mark.parametrize(("window", "stride", "needle"), [(5, 9, "stride 9 exceeds window 5"), (1, 1, "window 1 ranks nothing")])
def test_windows_that_do_not_cover_the_list_are_refused(cli_error, tmp_path, window, stride, needle):
    run = tmp_path / "a.run"
    run.write_text("q1 Q0 d1 1 2.0 x\nq1 Q0 d2 2 1.0 x\n")
    queries = tmp_path / "q.tsv"
    queries.write_text("q1\twhat\n")
    corpus = tmp_path / "c.tsv"
    corpus.write_text("d1\tone\nd2\ttwo\n")
    message = cli_error(["teach", "--queries", str(queries), "--corpus", str(corpus), "--run", str(run),
                         "--backend", "replay", "--replay-file", str(run), "--window", str(window),
                         "--stride", str(stride), "--output", str(tmp_path / "out")])
    assert needle in message
