"""Re-ranking: scores equal CrossEncoder.predict, batching does not permute scores, valid runs, edge cases."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rankdistill.cli import main
from rankdistill.errors import RankdistillError
from rankdistill.reranking.reranker import rerank
from rankdistill.data.trec import read_run, write_run
from rankdistill.reranking.batching import make_batches
from rankdistill.reranking.scorer import CrossEncoderScorer

from helpers.data import PASSAGES, QUERIES
from helpers.tiny import tiny_scoring_dir

ROOT = Path(__file__).resolve().parents[2]

RUN = {
    "q1": [("d1", 9.0), ("d3", 8.0), ("d5", 7.0), ("d6", 6.0)],
    "q2": [("d2", 5.0), ("d6", 4.0), ("d1", 3.0)],
    "q3": [("d4", 2.0)],  # fewer candidates than the depth: scored as they are
}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return tiny_scoring_dir(tmp_path_factory.mktemp("ce") / "model")


@pytest.fixture()
def files(tmp_path) -> dict[str, Path]:
    queries = tmp_path / "queries.tsv"
    queries.write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES.items()), encoding="utf-8")
    corpus = tmp_path / "corpus.tsv"
    corpus.write_text("".join(f"{d}\t{t}\n" for d, t in PASSAGES.items()), encoding="utf-8")
    return {"queries": queries, "corpus": corpus, "run": write_run(RUN, tmp_path / "first.run")}


def _pairs():
    return [(QUERIES[q], PASSAGES[d]) for q, docs in RUN.items() for d, _ in docs]


def _ce_scores(model_dir, pairs):
    import torch
    from sentence_transformers import CrossEncoder

    ce = CrossEncoder(str(model_dir), activation_fn=torch.nn.Identity(), device="cpu")
    return ce.predict(pairs, batch_size=3)


def test_scores_equal_cross_encoder_predict_fp32(model_dir):
    pairs = _pairs()
    expected = _ce_scores(model_dir, pairs)
    for fast_cpu in (True, False):  # rankdistill.reranking.cpu_forward, and the Hugging Face forward
        scorer = CrossEncoderScorer(model_dir, dtype="float32", device="cpu", batch_tokens=64, fast_cpu=fast_cpu)
        assert (scorer.fast is not None) == fast_cpu
        got = scorer.score([q for q, _ in pairs], [p for _, p in pairs])
        assert np.abs(got - expected).max() <= 1e-4
    assert np.min(np.diff(np.sort(expected))) > 1e-2  # scores far apart: a mix-up of pairs would show


def test_batch_order_and_size_do_not_permute_scores(model_dir):
    pairs = _pairs()
    qs, ps = [q for q, _ in pairs], [p for _, p in pairs]
    scorer = CrossEncoderScorer(model_dir, dtype="float32", device="cpu", batch_tokens=10_000)
    reference = scorer.score(qs, ps)  # one batch
    scorer.batch_tokens = 1  # one pair per batch: no padding at all
    single = scorer.score(qs, ps)
    perm = np.random.default_rng(0).permutation(len(pairs))
    scorer.batch_tokens = 48
    shuffled = scorer.score([qs[i] for i in perm], [ps[i] for i in perm])
    np.testing.assert_allclose(single, reference, atol=1e-5)
    np.testing.assert_allclose(shuffled, reference[perm], atol=1e-5)


def test_batches_respect_token_budget_and_cover_every_pair():
    ids = [[1] * n for n in (5, 3, 9, 3, 7, 1)]
    batches = make_batches(ids, [[0] * len(x) for x in ids], batch_tokens=10, pad_id=0)
    assert sorted(i for b in batches for i in b.index) == list(range(6))
    for b in batches:
        assert b.input_ids.size <= 10 or len(b.index) == 1  # a single long pair may exceed the budget
        assert b.attention_mask.sum() == sum(len(ids[i]) for i in b.index)
    assert [len(ids[b.index[-1]]) for b in batches] == sorted(len(ids[b.index[-1]]) for b in batches)


def test_separate_truncation_cuts_query_and_passage_on_their_own(model_dir):
    scorer = CrossEncoderScorer(model_dir, dtype="float32", device="cpu", max_query_length=3, max_passage_length=5)
    ids, types = scorer.encoder.encode([QUERIES["q1"]], [PASSAGES["d4"]])
    tok = scorer.tokenizer
    q = tok(QUERIES["q1"], add_special_tokens=False)["input_ids"][:3]
    p = tok(PASSAGES["d4"], add_special_tokens=False)["input_ids"][:5]
    assert ids[0] == [tok.cls_token_id, *q, tok.sep_token_id, *p, tok.sep_token_id]
    assert types[0] == [0] * 5 + [1] * 6


def test_rerank_writes_valid_run_sorted_by_model_scores(model_dir, files, tmp_path):
    out = rerank(model_dir, files["run"], queries=files["queries"], corpus=files["corpus"], depth=3,
                 output=tmp_path / "out.run", dtype="float32", progress=False)
    lines = [line.split() for line in out.read_text().splitlines()]
    by_q: dict[str, list[list[str]]] = {}
    for parts in lines:
        by_q.setdefault(parts[0], []).append(parts)
    assert list(by_q) == ["q1", "q2", "q3"]  # the run's query order is kept
    assert {q: len(v) for q, v in by_q.items()} == {"q1": 4, "q2": 3, "q3": 1}  # depth 3 scored, q1's 4th kept below
    assert by_q["q1"][-1][2] == "d6"
    for rows in by_q.values():
        assert [int(r[3]) for r in rows] == list(range(1, len(rows) + 1))
        scores = [float(r[4]) for r in rows]
        assert all(a > b for a, b in zip(scores, scores[1:]))  # strictly decreasing: distinct texts
    # the scores are the model's, for the top-3 candidates of the input run
    reranked = read_run(out)
    expected = _ce_scores(model_dir, [(QUERIES["q1"], PASSAGES[d]) for d, _ in RUN["q1"][:3]])
    got = dict(reranked["q1"][:3])
    assert set(got) == {"d1", "d3", "d5"}
    assert np.abs(np.array([got[d] for d, _ in RUN["q1"][:3]]) - expected).max() <= 1e-4


def test_bfloat16_keeps_the_fp32_order_on_tiny_model(model_dir):
    pairs = _pairs()
    qs, ps = [q for q, _ in pairs], [p for _, p in pairs]
    fp32 = CrossEncoderScorer(model_dir, dtype="float32", device="cpu").score(qs, ps)
    bf16 = CrossEncoderScorer(model_dir, dtype="bfloat16", device="cpu").score(qs, ps)
    assert bf16.dtype == np.float32
    assert np.abs(bf16 - fp32).max() < 0.05 * (np.abs(fp32).max() + 1)


def test_missing_documents_are_named_with_the_corpus(model_dir, files, tmp_path):
    bad = write_run({"q1": [("d1", 2.0), ("nope-7", 1.0)]}, tmp_path / "bad.run")
    with pytest.raises(RankdistillError, match=r"nope-7.*corpus .*corpus\.tsv|corpus .*corpus\.tsv.*nope-7"):
        rerank(model_dir, bad, queries=files["queries"], corpus=files["corpus"], output=tmp_path / "o.run", progress=False)
    assert not (tmp_path / "o.run").exists()


def test_queries_missing_from_queries_file_are_named(model_dir, files, tmp_path):
    bad = write_run({"q1": [("d1", 2.0)], "q99": [("d2", 1.0)]}, tmp_path / "bad.run")
    with pytest.raises(RankdistillError, match=r"1 of 2 queries .*'q99'.*as queries"):
        rerank(model_dir, bad, queries=files["queries"], corpus=files["corpus"], output=tmp_path / "o.run", progress=False)


def test_empty_query_text_warns_and_is_still_scored(model_dir, files, tmp_path):
    queries = tmp_path / "q_empty.tsv"
    queries.write_text("q1\t \nq2\twho keeps public records\n", encoding="utf-8")
    run = write_run({"q1": [("d1", 2.0), ("d2", 1.0)], "q2": [("d2", 1.0)]}, tmp_path / "r.run")
    with pytest.warns(UserWarning, match=r"1 queries have empty text.*'q1'"):
        out = rerank(model_dir, run, queries=queries, corpus=files["corpus"], output=tmp_path / "o.run",
                     dtype="float32", progress=False)
    assert {q: len(d) for q, d in read_run(out).items()} == {"q1": 2, "q2": 1}


def test_cli_rerank_and_clear_error_exit_code(model_dir, files, tmp_path, capsys):
    out = tmp_path / "cli.run"
    main(["rerank", "--model", str(model_dir), "--run", str(files["run"]), "--queries", str(files["queries"]),
          "--corpus", str(files["corpus"]), "--depth", "2", "--dtype", "float32", "--output", str(out)])
    assert {q: len(d) for q, d in read_run(out).items()} == {"q1": 4, "q2": 3, "q3": 1}  # the tail kept below the top 2
    with pytest.raises(SystemExit) as exc:
        main(["rerank", "--model", str(model_dir), "--run", str(files["run"]), "--queries", str(files["queries"]),
              "--corpus", str(files["corpus"]), "--dtype", "float64", "--output", str(tmp_path / "x.run")])
    assert exc.value.code == 2
    assert "dtype 'float64' is not one of auto, float32, bfloat16, float16" in capsys.readouterr().err


def test_cli_rerank_config_file_paths_relative_to_it_and_flags_win(model_dir, files, tmp_path, cli_error):
    folder = tmp_path / "cfg"
    shutil.copytree(model_dir, folder / "student")
    for key, name in (("queries", "q.tsv"), ("corpus", "c.tsv"), ("run", "first.run")):
        shutil.copy(files[key], folder / name)
    config = folder / "rerank.yaml"
    config.write_text("model: student\nrun: first.run\nqueries: q.tsv\ncorpus: c.tsv\noutput: out/re.run\n"
                      "max-query-length: 16\ndepth: 2\ndtype: float32\n", encoding="utf-8")
    main(["rerank", "--config", str(config)])
    depth2 = read_run(folder / "out" / "re.run")
    main(["rerank", "-c", str(config), "--depth", "1", "--output", str(tmp_path / "d1.run")])
    depth1 = read_run(tmp_path / "d1.run")
    for qid, docs in RUN.items():  # the flag wins: depth 1 leaves everything below the first document in run order
        assert [d for d, _ in depth1[qid][1:]] == [d for d, _ in docs if d != depth1[qid][0][0]]
    assert [d for d, _ in depth2["q1"][2:]] == ["d5", "d6"]
    config.write_text(config.read_text(encoding="utf-8") + "depht: 3\n", encoding="utf-8")
    assert "rerank.yaml: depht: unknown key" in cli_error(["rerank", "-c", str(config)])
    config.write_text("model: student\nrun: first.run\ndepth: deep\n", encoding="utf-8")
    assert "--output is required" in cli_error(["rerank", "-c", str(config)])
    assert "depth: Input should be a valid integer" in cli_error(["rerank", "-c", str(config), "-o", str(tmp_path / "x.run")])
    assert "--model and --output are required" in cli_error(["rerank", "--run", str(files["run"])])


def test_budgets_beyond_model_positions_are_refused(model_dir):
    with pytest.raises(RankdistillError, match="exceeds the model's 512 positions; lower max_passage_length"):
        CrossEncoderScorer(model_dir, dtype="float32", device="cpu", max_query_length=32, max_passage_length=500)


def test_torchrun_shards_merge_into_the_single_process_run(model_dir, files, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside this python")
    single = rerank(model_dir, files["run"], queries=files["queries"], corpus=files["corpus"],
                    output=tmp_path / "single.run", dtype="float32", progress=False)
    sharded = tmp_path / "sharded.run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "-m", "rankdistill", "--", "rerank",
         "--model", str(model_dir), "--run", str(files["run"]), "--queries", str(files["queries"]),
         "--corpus", str(files["corpus"]), "--dtype", "float32", "--output", str(sharded)],
        check=True, env=env, cwd=tmp_path, capture_output=True, timeout=240,
    )
    a, b = read_run(single), read_run(sharded)
    assert list(a) == list(b)
    for qid in a:
        assert [d for d, _ in a[qid]] == [d for d, _ in b[qid]]
        np.testing.assert_allclose([s for _, s in a[qid]], [s for _, s in b[qid]], atol=1e-5)
    assert not list(tmp_path.glob("sharded.run.part*"))


def test_budgets_stored_with_a_rankdistill_model_are_the_default(model_dir, tmp_path):
    import shutil

    from rankdistill.modeling.cross_encoder import write_truncation

    folder = shutil.copytree(model_dir, tmp_path / "stored")
    write_truncation(folder, 2, 4)
    scorer = CrossEncoderScorer(folder, dtype="float32", device="cpu")
    assert (scorer.max_query_length, scorer.max_passage_length) == (2, 4)
    ids, _ = scorer.encoder.encode([QUERIES["q1"]], [PASSAGES["d4"]])
    assert len(ids[0]) == 2 + 4 + 3
    explicit = CrossEncoderScorer(folder, dtype="float32", device="cpu", max_passage_length=6)
    assert (explicit.max_query_length, explicit.max_passage_length) == (2, 6)


def test_bare_encoder_gets_a_seeded_head_and_a_warning(model_dir, tmp_path):
    import shutil

    from transformers import AutoModel

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(model_dir).save_pretrained(bare)  # a bi-encoder-like folder: no classifier
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        if (model_dir / name).exists():
            shutil.copy(model_dir / name, bare / name)
    pairs = _pairs()
    with pytest.warns(UserWarning, match="no trained scoring head .*classifier"):
        first = CrossEncoderScorer(bare, dtype="float32", device="cpu").score([q for q, _ in pairs], [p for _, p in pairs])
    with pytest.warns(UserWarning):
        second = CrossEncoderScorer(bare, dtype="float32", device="cpu").score([q for q, _ in pairs], [p for _, p in pairs])
    np.testing.assert_array_equal(first, second)  # the fresh head is initialised the same way every time


@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile (inductor) needs a C++ compiler")
def test_compiled_scorer_equals_eager_scores(model_dir):
    pairs = _pairs()
    qs, ps = [q for q, _ in pairs], [p for _, p in pairs]
    eager = CrossEncoderScorer(model_dir, dtype="float32", device="cpu", batch_tokens=48).score(qs, ps)
    compiled = CrossEncoderScorer(model_dir, dtype="float32", device="cpu", batch_tokens=48, compile=True)
    assert compiled.compiled is not None
    got = compiled.score(qs, ps)  # several batch shapes through one dynamic graph
    assert np.abs(got - eager).max() <= 1e-4


def test_rerank_keeps_the_first_stage_tail_below_the_reranked_top(model_dir, files, tmp_path):
    from rankdistill.evaluation.metrics import evaluate

    first = {"q1": [("d1", 5.0), ("d2", 4.0), ("d3", 3.0), ("d4", 2.0), ("d5", 1.0)],
             "q2": [("d6", 2.0), ("d2", 1.5), ("d1", 1.0), ("d5", 0.5), ("d3", 0.1)]}
    path = write_run(first, tmp_path / "five.run")
    out = read_run(rerank(model_dir, path, queries=files["queries"], corpus=files["corpus"], depth=2,
                          output=tmp_path / "re.run", dtype="float32", progress=False))
    scored = _ce_scores(model_dir, [(QUERIES[q], PASSAGES[d]) for q, docs in first.items() for d, _ in docs[:2]])
    for i, (qid, docs) in enumerate(first.items()):
        ranked = out[qid]
        assert len(ranked) == 5
        assert {d for d, _ in ranked[:2]} == {d for d, _ in docs[:2]}  # the top 2, ordered by the model
        assert [d for d, _ in ranked[2:]] == [d for d, _ in docs[2:]]  # the tail, in first-stage order
        top = dict(ranked[:2])
        assert [top[d] for d, _ in docs[:2]] == pytest.approx(list(scored[2 * i: 2 * i + 2]), abs=1e-4)
        assert max(s for _, s in ranked[2:]) < min(top.values())  # scored below the re-ranked documents
    qrels = {"q1": {"d2": 1, "d4": 1, "d5": 2}, "q2": {"d1": 1, "d3": 1}}
    result = evaluate({"first": first, "student": out}, qrels=qrels, measures=["R@100", "R@3"])
    assert result.means["student"]["R@100"] == result.means["first"]["R@100"] == 1.0  # only the top was permuted
    # a run cut at the depth would have lost the tail's relevant documents: R@100 = (1/3 + 0) / 2
    cut = {q: docs[:2] for q, docs in out.items()}
    assert evaluate({"cut": cut}, qrels=qrels, measures=["R@100"]).means["cut"]["R@100"] == pytest.approx(1 / 6)


def test_fusion_sums_zscores_by_hand():
    from rankdistill.reranking.fusion import fuse_with_first_stage

    # model z: mean 2, std sqrt(2/3) -> (-1, 0, 1)/0.8165; first stage z of (10, 30, 20) -> (-1, 1, 0)/0.8165
    fused = dict(fuse_with_first_stage([("a", 1.0), ("b", 2.0), ("c", 3.0)], [("a", 10.0), ("b", 30.0), ("c", 20.0)], 0.5))
    s = 1 / math.sqrt(2 / 3)
    assert fused == pytest.approx({"a": -1.5 * s, "b": 0.5 * s, "c": 1.0 * s})
    with pytest.raises(RankdistillError, match="fuse_first_stage"):
        fuse_with_first_stage([("a", 1.0)], [("a", 1.0)], -1)
    with pytest.raises(RankdistillError, match="no score for"):
        fuse_with_first_stage([("a", 1.0)], [("b", 1.0)], 1.0)
    with pytest.raises(RankdistillError, match="fuse_first_stage"):  # refused before any data or model is read
        rerank("no-such-model", {"q": [("d", 1.0)]}, output="unused.run", fuse_first_stage=float("nan"))


def test_rerank_fused_with_a_dominant_first_stage_keeps_its_order(model_dir, files, tmp_path):
    from rankdistill.reranking.fusion import fuse_with_first_stage

    plain = read_run(rerank(model_dir, files["run"], queries=files["queries"], corpus=files["corpus"], depth=3,
                            output=tmp_path / "plain.run", dtype="float32", progress=False))
    fused = read_run(rerank(model_dir, files["run"], queries=files["queries"], corpus=files["corpus"], depth=3,
                            output=tmp_path / "fused.run", dtype="float32", fuse_first_stage=1e6, progress=False))
    assert [d for d, _ in fused["q1"]] == [d for d, _ in RUN["q1"]]  # the run's own order, tail included
    half = read_run(rerank(model_dir, files["run"], queries=files["queries"], corpus=files["corpus"], depth=3,
                           output=tmp_path / "half.run", dtype="float32", fuse_first_stage=0.5, progress=False))
    expected = dict(fuse_with_first_stage(plain["q1"][:3], RUN["q1"][:3], 0.5))  # the model's scores, fused by hand
    assert dict(half["q1"][:3]) == pytest.approx(expected, abs=1e-6)
    assert [d for d, _ in half["q1"][:3]] == sorted(expected, key=lambda d: -expected[d])
