"""hf backend end to end on a tiny random Llama built in the test (local tokenizer, no hub)."""

from __future__ import annotations

import json

import pytest

from rankdistill.cli import main
from rankdistill.data.trec import read_run, write_run
from rankdistill.teacher.backends.hf import HFBackend, HFOptions
from rankdistill.teacher.prompts import build_prompt
from rankdistill.teacher.teach import teach
from rankdistill.teacher.windows import window_spans
from helpers.tiny_lm import tiny_causal_lm_dir

TOPICS = ["water", "records", "hotel", "river", "price"]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    return tiny_causal_lm_dir(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """3 queries; q3 has fewer candidates (7) than the depth (12); q1 has 15 (3 below depth)."""
    folder = tmp_path_factory.mktemp("toy")
    (folder / "queries.tsv").write_text("q1\twhat is water\nq2\tpublic records [1]\nq3\tcheap hotel price\n")
    docs = {f"d{i}": f"the {TOPICS[i % 5]} passage {i} is about {TOPICS[(i * 3) % 5]} and more [2]" for i in range(40)}
    (folder / "corpus.tsv").write_text("".join(f"{d}\t{t}\n" for d, t in docs.items()))
    run = {
        "q1": [(f"d{i}", 100.0 - i) for i in range(15)],
        "q2": [(f"d{i}", 50.0 - i) for i in range(20, 32)],
        "q3": [(f"d{i}", 9.0 - i) for i in range(33, 40)],
    }
    write_run(run, folder / "first.run", "bm25")
    return folder, run


def _check_permutations(teacher, first_stage, depth):
    for qid, ranked in first_stage.items():
        docids = [d for d, _ in ranked]
        ours = [d for d, _ in teacher[qid]]
        assert sorted(ours[:depth]) == sorted(docids[:depth])  # a permutation of the top-depth
        assert ours[depth:] == docids[depth:]  # the rest in first-stage order
        scores = [s for _, s in teacher[qid]]
        assert all(a > b for a, b in zip(scores, scores[1:]))


def test_hf_generate_end_to_end_and_resume(tiny_lm, toy, tmp_path):
    folder, first_stage = toy
    out = tmp_path / "out"
    args = ["teach", "--queries", str(folder / "queries.tsv"), "--corpus", str(folder / "corpus.tsv"),
            "--run", str(folder / "first.run"), "--backend", "hf", "--model", str(tiny_lm), "--prompt", "rankzephyr",
            "--depth", "12", "--window", "6", "--stride", "3", "--max-passage-words", "12", "--max-new-tokens", "16",
            "--batch-size", "2", "--device", "cpu", "--output", str(out), "--record", str(tmp_path / "rec.jsonl")]
    main(args)
    teacher = read_run(out / "teacher.run")
    _check_permutations(teacher, first_stage, 12)
    stats = json.loads((out / "stats.json").read_text())
    windows = len(window_spans(12, 6, 3)) * 2 + len(window_spans(7, 6, 3))
    assert windows == 3 * 2 + 2
    assert stats["windows"] == stats["llm_calls"] == windows
    assert stats["queries"] == 3 and stats["cache_hits"] == {"windows": 0, "queries": 0}
    assert 0 < stats["completion_tokens"] <= 16 * windows and stats["prompt_tokens"] > 50 * windows
    assert sum(stats["repairs"].values()) > 0  # random weights: the parser repaired its answers
    assert stats["wall_time_s"] > 0
    assert len((tmp_path / "rec.jsonl").read_text().splitlines()) == windows

    main(args)  # rerun: every window and query from the cache, the same run
    again = json.loads((out / "stats.json").read_text())
    assert again["llm_calls"] == 0 and again["cache_hits"] == {"windows": windows, "queries": 3}
    assert read_run(out / "teacher.run") == teacher
    assert again["repairs"] == stats["repairs"]


def test_hf_first_token_end_to_end_and_resume(tiny_lm, toy, tmp_path):
    folder, first_stage = toy
    kwargs = dict(queries=folder / "queries.tsv", corpus=folder / "corpus.tsv", output=tmp_path / "out",
                  backend="hf", model=str(tiny_lm), prompt="rankvicuna", depth=12, window=10, stride=5,
                  max_passage_words=10, first_token=True, progress=False, backend_options={"batch_size": 3})
    result = teach(folder / "first.run", **kwargs)
    _check_permutations(result.run, first_stage, 12)
    stats = result.stats
    windows = 2 * len(window_spans(12, 10, 5)) + len(window_spans(7, 10, 5))
    assert stats["windows"] == stats["llm_calls"] == windows
    assert stats["completion_tokens"] == 0 and stats["saved_tokens"] > 0
    assert sum(stats["repairs"].values()) == 0  # a logit ranking is always a full permutation
    # windows of 10: identifiers 1 and 10 share their first digit token with this digit-splitting tokenizer
    full = sum(1 for n in (12, 12, 7) for start, end in window_spans(n, 10, 5) if end - start == 10)
    assert full == 2 and stats["backend_stats"]["shared_first_token_windows"] == full
    again = teach(folder / "first.run", **kwargs)
    assert again.stats["llm_calls"] == 0 and again.stats["cache_hits"]["windows"] == windows
    assert again.run == result.run


def test_first_token_ranking_matches_unbatched_logits(tiny_lm):
    """Batched, left-padded first-token ranking = the logits of a single unpadded forward pass."""
    import torch

    backend = HFBackend(str(tiny_lm), HFOptions(device="cpu", batch_size=2))
    prompts = [
        build_prompt("rankzephyr", "what is water", ["water is wet", "fish swim in rivers", "the sky"], max_passage_words=None),
        build_prompt("rankzephyr", "q", ["a much longer passage " * 8, "b", "c", "d"], max_passage_words=None),
    ]
    got = {}
    backend.generate(prompts, lambda i, g: got.__setitem__(i, g), max_new_tokens=8, first_token=True)
    tok = backend.tokenizer
    for i, p in enumerate(prompts):
        text = tok.apply_chat_template(p.messages, tokenize=False, add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False)["input_ids"] + tok("[", add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
        digit = [tok(str(k), add_special_tokens=False)["input_ids"][0] for k in range(1, p.num_passages + 1)]
        expected = sorted(range(p.num_passages), key=lambda k: (-logits[digit[k]].item(), k))
        assert got[i].ranking == expected
        assert got[i].text == " > ".join(f"[{k + 1}]" for k in expected)
