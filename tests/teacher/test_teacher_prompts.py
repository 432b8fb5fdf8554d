"""Prompt templates against the reference systems, and the sliding window's spans."""

from __future__ import annotations

import json

import pytest

from rankdistill.errors import RankdistillError
from rankdistill.data.trec import read_run
from rankdistill.teacher.backends.replay import normalize_prompt
from rankdistill.teacher.prompts import build_prompt, replace_number
from rankdistill.teacher.windows import window_spans


def test_window_spans_follow_rank_llm():
    assert window_spans(100, 20, 10) == [(80, 100), (70, 90), (60, 80), (50, 70), (40, 60), (30, 50), (20, 40),
                                         (10, 30), (0, 20)]
    assert window_spans(20, 20, 10) == [(0, 20)]
    assert window_spans(7, 20, 10) == [(0, 7)]  # fewer candidates than a window: one short window
    assert window_spans(25, 20, 10) == [(5, 25), (0, 15)]  # last window shorter, never a redundant one
    assert window_spans(0, 20, 10) == []


def _tsv(path):
    return dict(line.rstrip("\n").split("\t", 1) for line in path.open(encoding="utf-8"))


@pytest.fixture(scope="module")
def reference_prompts(dl20):
    recorded = json.loads((dl20 / "llm-responses-rankvicuna-dl20-top20.json").read_text(encoding="utf-8"))
    run = read_run(dl20 / "bm25-top100.run")
    queries, passages = _tsv(dl20 / "queries.tsv"), _tsv(dl20 / "passages.tsv")
    ours = [
        build_prompt("rankvicuna", queries[qid], [passages[d] for d, _ in ranked[:20]], max_passage_words=None).text
        for qid, ranked in run.items()  # the recording follows the run's query order
    ]
    return ours, [r["prompt"] for r in recorded]


def test_rankvicuna_reproduces_reference_prompts(reference_prompts):
    ours, theirs = reference_prompts
    assert len(ours) == len(theirs) == 54
    exact = sum(a == b for a, b in zip(ours, theirs))
    normalized = sum(normalize_prompt(a) == normalize_prompt(b) for a, b in zip(ours, theirs))
    assert exact >= 50, exact
    assert normalized == 54
    # normalisation must not make different windows collide
    assert len({normalize_prompt(t) for t in theirs}) == 54


def test_rankvicuna_layout():
    p = build_prompt("rankvicuna", "what is [1] x", ["alpha [2] beta", "Title: Content: gamma  delta\n"], max_passage_words=None)
    assert p.text.startswith("A chat between a curious user and an artificial intelligence assistant.")
    assert " USER: I will provide you with 2 passages, each indicated by a numerical identifier []." in p.text
    assert "\n\n[1] alpha (2) beta\n[2] gamma delta\nSearch Query: what is [1] x.\n" in p.text
    assert p.text.endswith("do not say any word or explain.  ASSISTANT:")
    assert p.num_passages == 2
    assert [m["role"] for m in p.messages] == ["system", "user"]


def test_truncation_and_cleaning():
    words = " ".join(f"w{i}" for i in range(400))
    p = build_prompt("rankvicuna", "q", [words], max_passage_words=None)
    assert "w299 " not in p.text and " w299\n" in p.text  # 300 words by default
    p = build_prompt("rankzephyr", "q", [words, "caf\u00c3\u00a9 \u201cquoted\u201d"], max_passage_words=5)
    assert "[1] w0 w1 w2 w3 w4\n" in p.text
    assert '[2] café "quoted"\n' in p.text  # ftfy: mojibake repaired, curly quotes straightened
    assert replace_number("see [12] and [a]") == "see (12) and [a]"


def test_rankzephyr_layout():
    p = build_prompt("rankzephyr", "q [3]", ["a", "b"], max_passage_words=None)
    assert p.text.startswith("<|system|>\nYou are RankLLM, an intelligent assistant that can rank passages based on "
                             "their relevancy to the query</s>\n<|user|>\nI will provide you with 2 passages")
    assert "search query: q (3).\n\n[1] a\n[2] b\nSearch Query: q (3).\n" in p.text
    assert "e.g., [2] > [1], Only respond" in p.text
    assert p.text.endswith("do not say any word or explain.</s>\n<|assistant|>\n")
    assert p.messages[0] == {"role": "system", "content": "You are RankLLM, an intelligent assistant that can rank "
                             "passages based on their relevancy to the query"}


def test_rankgpt_multiturn():
    p = build_prompt("rankgpt", "q", ["first [9]", "second"], max_passage_words=None)
    roles = [m["role"] for m in p.messages]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user", "assistant", "user"]
    assert p.messages[1]["content"] == ("I will provide you with 2 passages, each indicated by number identifier []. \n"
                                        "Rank the passages based on their relevance to query: q.")
    assert p.messages[3]["content"] == "[1] first (9)"
    assert p.messages[6]["content"] == "Received passage [2]."
    assert p.messages[7]["content"].startswith("Search Query: q. \nRank the 2 passages above")
    assert json.loads(p.text) == p.messages


def test_unknown_template_is_a_user_error():
    with pytest.raises(RankdistillError, match="choose one of rankgpt, rankvicuna, rankzephyr"):
        build_prompt("rankllama", "q", ["a"], max_passage_words=None)
