"""Embedding teacher: its run equals cosines computed independently; ties, the tail, stats, CLI errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.tiny import tiny_encoder_dir

from rankdistill.cli import main
from rankdistill.data.trec import read_run, write_run
from rankdistill.teacher.teach import teach

QUERIES = {"q1": "public records search", "q2": "hotel phone price", "q3": "river water city"}
PASSAGES = {
    "d1": "the public records of the city court",
    "d2": "a hotel with a phone and a good price",
    "d3": "water of the river in the city",
    "d4": "what is the cost of a car",
    "d5": "a hotel with a phone and a good price",  # same text as d2: a tie the first-stage order must break
    "d6": "naturalization records and data",
}
FIRST_STAGE = {
    "q1": ["d6", "d1", "d4", "d2", "d3"],
    "q2": ["d5", "d4", "d2", "d1"],
    "q3": ["d3", "d1"],
}
DEPTH = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("embedding-teacher")
    data = root / "data"
    data.mkdir()
    (data / "queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()))
    (data / "corpus.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in PASSAGES.items()))
    run = {q: [(d, 10.0 - i) for i, d in enumerate(docs)] for q, docs in FIRST_STAGE.items()}
    write_run(run, root / "first.run", tag="bm25")
    model = tiny_encoder_dir(root / "tiny-model")
    return root, data, model


def expected_cosines(model: Path) -> dict[str, dict[str, float]]:
    """Cosines from SentenceTransformer.encode and numpy, independently of the teacher's code."""
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(model))
    q = st.encode(list(QUERIES.values()))
    p = st.encode(list(PASSAGES.values()))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    p = p / np.linalg.norm(p, axis=1, keepdims=True)
    cos = q @ p.T
    return {qid: {d: float(cos[i, j]) for j, d in enumerate(PASSAGES)} for i, qid in enumerate(QUERIES)}


def test_run_is_the_cosine_order_with_the_first_stage_tail(setup):
    root, data, model = setup
    result = teach(root / "first.run", dataset=data, output=root / "out", backend="embedding", model=str(model),
                   depth=DEPTH, progress=False, backend_options={"dtype": "float32"})
    cos = expected_cosines(model)
    assert list(result.run) == list(FIRST_STAGE)
    for qid, docs in FIRST_STAGE.items():
        ranked = result.run[qid]
        top, tail = docs[:DEPTH], docs[DEPTH:]
        # stable: ties keep first-stage order; equal texts can differ by float noise (padding, bf16/AMX kernels)
        want = sorted(top, key=lambda d: -round(cos[qid][d], 5))
        assert [d for d, _ in ranked[: len(top)]] == want
        for d, score in ranked[: len(top)]:
            assert score == pytest.approx(cos[qid][d], abs=1e-5)
        assert [d for d, _ in ranked[len(top):]] == tail
        scores = [s for _, s in ranked]
        assert all(a > b for a, b in zip(scores[len(top) - 1:], scores[len(top):]))  # tail strictly below
    # d5 and d2 have the same text: equal cosines, and q2's first stage has d5 above d2
    q2 = [d for d, _ in result.run["q2"]]
    assert dict(result.run["q2"])["d5"] == pytest.approx(dict(result.run["q2"])["d2"], abs=1e-6)
    assert q2.index("d5") < q2.index("d2")
    assert read_run(root / "out" / "teacher.run") == result.run  # written as returned (round-trip)
    stats = json.loads((root / "out" / "stats.json").read_text())
    unique = {d for docs in FIRST_STAGE.values() for d in docs[:DEPTH]}
    assert (stats["queries"], stats["pairs"], stats["unique_passages"]) == (3, 3 + 3 + 2, len(unique))
    assert stats["model"] == str(model) and stats["pairs_per_s"] > 0 and stats["dtype"] == "float32"


def test_bf16_autocast_scores_near_the_float32_cosines(setup):
    """bfloat16 (what ``auto`` picks on a CPU with native bf16) runs the forward under autocast: the scores move,
    but only by bf16 rounding, and the run says which precision made it."""
    root, data, model = setup
    result = teach(root / "first.run", dataset=data, output=root / "out-bf16", backend="embedding", model=str(model),
                   depth=DEPTH, progress=False, backend_options={"dtype": "bfloat16"})
    cos = expected_cosines(model)
    diffs = [abs(score - cos[qid][d]) for qid, docs in FIRST_STAGE.items()
             for d, score in result.run[qid][: len(docs[:DEPTH])]]
    assert 0 < max(diffs) < 2e-2  # bf16 rounding moved them (autocast was on), and not by more
    assert json.loads((root / "out-bf16" / "stats.json").read_text())["dtype"] == "bfloat16"


def test_cli_writes_the_same_run(setup, capsys):
    root, data, model = setup
    out = root / "cli-out"
    main(["teach", "--backend", "embedding", "--model", str(model), "--run", str(root / "first.run"),
          "--dataset", str(data), "--depth", str(DEPTH), "--output", str(out), "--batch-size", "2"])
    assert "8 pairs" in " ".join(capsys.readouterr().err.split())
    cos = expected_cosines(model)
    run = read_run(out / "teacher.run")
    assert [d for d, _ in run["q1"][:DEPTH]] == sorted(FIRST_STAGE["q1"][:DEPTH], key=lambda d: -cos["q1"][d])


def test_cli_errors(setup, cli_error, tmp_path):
    root, data, model = setup
    base = ["teach", "--backend", "embedding", "--run", str(root / "first.run"), "--dataset", str(data),
            "--output", str(tmp_path / "o")]
    message = cli_error([*base, "--model", str(model), "--first-token", "--window", "5"])
    assert "window, first_token only apply to the listwise" in message
    assert "needs model" in cli_error(base)
    assert "record only apply" in cli_error([*base, "--model", str(model), "--record", str(tmp_path / "r.jsonl")])
    not_encoder = tmp_path / "not-an-encoder"
    not_encoder.mkdir()
    (not_encoder / "config.json").write_text('{"model_type": "no-such-architecture"}')
    message = cli_error([*base, "--model", str(not_encoder)])
    assert "is not a sentence-transformers or Hugging Face encoder" in message and str(not_encoder) in message
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "has no config.json" in cli_error([*base, "--model", str(empty)])
    assert not (tmp_path / "o" / "teacher.run").exists()
