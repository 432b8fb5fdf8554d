"""Replay backend: the issue's acceptance command, recordings, matching rules, resume from the cache."""

from __future__ import annotations

import json

import pytest

from rankdistill.cli import main
from rankdistill.errors import RankdistillError
from rankdistill.data.trec import read_run
from rankdistill.teacher.backends.base import Generation
from rankdistill.teacher.backends.replay import ReplayBackend, normalize_prompt, read_recording
from rankdistill.teacher.prompts import build_prompt
from rankdistill.teacher.teach import teach

RESPONSES = "llm-responses-rankvicuna-dl20-top20.json"


class Scripted:
    """Answers every window with its reversed order; optionally dies after ``die_after`` answers."""

    name, model_id = "scripted", "scripted-v1"

    def __init__(self, die_after=None):
        self.asked: list[str] = []
        self.calls: list[int] = []  # prompts per generate call
        self.die_after = die_after

    def generate(self, prompts, on_result, *, max_new_tokens, first_token=False):
        self.calls.append(len(prompts))
        for i, p in enumerate(prompts):
            if self.die_after is not None and len(self.asked) == self.die_after:
                raise KeyboardInterrupt
            self.asked.append(p.text)
            answer = " > ".join(f"[{k}]" for k in range(p.num_passages, 0, -1))
            on_result(i, Generation(text=answer, prompt_tokens=3, completion_tokens=2))

    def close(self):
        pass


def _order(run):
    return {qid: [d for d, _ in ranked] for qid, ranked in run.items()}


def test_acceptance_replay_reproduces_rankvicuna_top20(dl20, irds_home, tmp_path):
    out = tmp_path / "out"
    main([
        "teach", "--dataset", "irds:msmarco-passage/trec-dl-2020/judged", "--run", str(dl20 / "bm25-top100.run"),
        "--backend", "replay", "--replay-file", str(dl20 / RESPONSES), "--prompt", "rankvicuna",
        "--depth", "20", "--window", "20", "--stride", "10", "--output", str(out),
    ])
    ours, reference = _order(read_run(out / "teacher.run")), _order(read_run(dl20 / "rankvicuna-7b-top20.run"))
    assert ours.keys() == reference.keys() and len(ours) == 54
    wrong = [qid for qid in reference if ours[qid] != reference[qid]]
    assert wrong == []
    stats = json.loads((out / "stats.json").read_text())
    assert stats["queries"] == 54 and stats["windows"] == 54 and stats["llm_calls"] == 54
    assert stats["replay_matches"]["exact"] >= 50
    assert stats["replay_matches"]["exact"] + stats["replay_matches"]["normalized"] == 54
    assert stats["repairs"] == {"duplicate": 0, "out_of_range": 0, "missing": 0, "garbage": 0}
    # scores strictly decreasing, equal to the reference's 101 - rank
    for qid, ranked in read_run(out / "teacher.run").items():
        assert [s for _, s in ranked] == [float(100 - i) for i in range(100)]

    # rerun: everything from the cache, same run
    again = teach(dl20 / "bm25-top100.run", dataset=dl20, output=out, backend="replay",
                  replay_file=dl20 / RESPONSES, prompt="rankvicuna", depth=20, progress=False)
    assert again.stats["llm_calls"] == 0 and again.stats["cache_hits"] == {"windows": 54, "queries": 54}
    assert _order(again.run) == ours


def test_exact_mode_reports_where_the_closest_prompt_differs(dl20, tmp_path):
    with pytest.raises(RankdistillError) as info:
        teach(dl20 / "bm25-top100.run", dataset=dl20, output=tmp_path, backend="replay", replay_match="exact",
              replay_file=dl20 / RESPONSES, prompt="rankvicuna", depth=20, progress=False)
    message = str(info.value)
    assert "no recorded prompt matches (exact)" in message and "replay_match normalized" in message
    assert "first differs at line 12, column 50" in message  # the Etruscans passage (non-Latin mojibake)
    assert "Tyrrh" in message


def test_unmatched_prompt_names_the_difference(tmp_path):
    recording = tmp_path / "rec.json"
    p1 = build_prompt("rankzephyr", "what is water", ["water is wet", "fire is hot"], max_passage_words=None)
    recording.write_text(json.dumps([{"prompt": p1.text, "response": "[2] > [1]"}]), encoding="utf-8")
    backend = ReplayBackend(recording, replay_match="normalized")
    other = build_prompt("rankzephyr", "what is water", ["water is wet", "ice is cold"], max_passage_words=None)
    with pytest.raises(RankdistillError) as info:
        backend.generate([other], lambda i, g: None, max_new_tokens=10)
    message = str(info.value)
    assert str(recording) in message and "closest is the one on line 1" in message
    assert "first differs at line 7, column 5" in message
    assert "[1] water is wet\\n[2] ice is cold" in message and "[2] fire is hot" in message


def test_normalisation_rules():
    assert normalize_prompt("a \u201cb\u201d\n\n  c\u2019s") == "a \"b\" c's"
    assert normalize_prompt("caf\u00c3\u00a9") == normalize_prompt("café")  # mojibake repaired first
    assert normalize_prompt("known as \u03c4\u00cf \u03c1\u03c1 (T") == normalize_prompt('known as \u00cf"\u00cf \u00cf\x81 (T')
    assert normalize_prompt("[1] a") != normalize_prompt("[2] a")


def test_recording_formats_and_record_round_trip(dl20, tmp_path):
    """--record writes JSONL that replays to the same run; rank_llm's bracket-less dump and torn lines are read."""
    first = teach(dl20 / "bm25-top100.run", dataset=dl20, output=tmp_path / "a", backend="replay",
                  replay_file=dl20 / RESPONSES, prompt="rankvicuna", depth=20, record=tmp_path / "rec.jsonl",
                  progress=False)
    lines = (tmp_path / "rec.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 54 and all({"prompt", "response", "model", "template"} <= json.loads(x).keys() for x in lines)
    with (tmp_path / "rec.jsonl").open("a", encoding="utf-8") as handle:
        handle.write('{"prompt": "torn')  # a writer killed mid-line
    second = teach(dl20 / "bm25-top100.run", dataset=dl20, output=tmp_path / "b", backend="replay",
                   replay_file=tmp_path / "rec.jsonl", replay_match="exact", prompt="rankvicuna", depth=20,
                   progress=False)
    assert _order(second.run) == _order(first.run)
    assert second.stats["replay_matches"] == {"exact": 54, "normalized": 0}

    raw = ", ".join(json.dumps(r) for r in json.loads((dl20 / RESPONSES).read_text()))  # rank_llm's own dump
    (tmp_path / "raw.json").write_text(raw + ", ", encoding="utf-8")
    assert [r["prompt"] for r in read_recording(tmp_path / "raw.json")] == [
        r["prompt"] for r in read_recording(dl20 / RESPONSES)
    ]


def test_crash_mid_run_resumes_without_paying_twice(tmp_path):
    """A run killed after some windows resumes from the cache: no window is asked twice, same final run."""
    from rankdistill.data.collection import Collection

    docs = {f"d{i}": f"passage number {i} about topic {i % 3}" for i in range(30)}

    class Corpus:
        name = "toy"

        def __len__(self):
            return len(docs)

        def __iter__(self):
            return iter(docs.items())

        def get_many(self, ids):
            return {i: docs[i] for i in ids if i in docs}

    collection = Collection(name="toy", queries={"q1": "topic 1", "q2": "topic 2"}, corpus=Corpus())
    run = {"q1": [(f"d{i}", 30.0 - i) for i in range(30)], "q2": [(f"d{29 - i}", 30.0 - i) for i in range(25)]}

    kwargs = dict(collection=collection, prompt="rankzephyr", depth=20, window=8, stride=4, progress=False)
    clean = teach(run, output=tmp_path / "clean", backend=Scripted(), **kwargs)
    windows = clean.stats["windows"]
    assert windows == 2 * len([(12, 20), (8, 16), (4, 12), (0, 8)])
    crashing = Scripted(die_after=5)
    with pytest.raises(KeyboardInterrupt):
        teach(run, output=tmp_path / "resumed", backend=crashing, **kwargs)
    resumed_backend = Scripted()
    resumed = teach(run, output=tmp_path / "resumed", backend=resumed_backend, **kwargs)
    assert _order(resumed.run) == _order(clean.run)
    assert len(crashing.asked) + len(resumed_backend.asked) == windows
    assert not set(crashing.asked) & set(resumed_backend.asked)
    assert resumed.stats["cache_hits"]["windows"] == 5 and resumed.stats["llm_calls"] == windows - 5
    # the crash came in step 2 (one window per query): q1's window was answered, q2's was sent and lost
    assert resumed.stats["windows_reasked"] == 1 and resumed.stats["requests"] == windows - 5
    assert resumed.stats["retries"] == {"http_429": 0, "http_5xx": 0, "connection": 0, "timeout": 0, "malformed": 0}
    assert clean.stats["windows_reasked"] == 0
    # candidates below depth keep first-stage order, scores strictly decreasing
    q2 = [d for d, _ in resumed.run["q2"]]
    assert q2[20:] == [f"d{29 - i}" for i in range(20, 25)]
    scores = [s for _, s in resumed.run["q1"]]
    assert all(a > b for a, b in zip(scores, scores[1:]))


def test_depth_100_record_then_replay(dl20, tmp_path):
    """Depth 100: 9 windows per query (80-100 ... 0-20); a recording of them replays to the same run."""
    run = dict(list(read_run(dl20 / "bm25-top100.run").items())[:4])
    backend = Scripted()
    recorded = teach(run, dataset=dl20, output=tmp_path / "a", backend=backend, prompt="rankvicuna", depth=100,
                     record=tmp_path / "rec.jsonl", progress=False)
    assert recorded.stats["windows"] == len(backend.asked) == 4 * 9
    assert backend.calls == [4] * 9  # one generate call per sliding step, all queries together
    assert backend.asked[0].count("\n[") == 20
    # every window reverses its slice: hand-computed result of 9 reversals of 20 with stride 10
    order = list(range(100))
    for start in range(80, -1, -10):
        order[start:start + 20] = order[start:start + 20][::-1]
    for qid, ranked in run.items():
        assert [d for d, _ in recorded.run[qid]] == [ranked[k][0] for k in order]
    replayed = teach(run, dataset=dl20, output=tmp_path / "b", backend="replay", replay_file=tmp_path / "rec.jsonl",
                     replay_match="exact", prompt="rankvicuna", depth=100, progress=False)
    assert replayed.stats["replay_matches"] == {"exact": 36, "normalized": 0}
    assert _order(replayed.run) == _order(recorded.run)


def test_bad_recording_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "[1]"}\n{"prompt": "b"}\n', encoding="utf-8")
    with pytest.raises(RankdistillError, match=r"bad.jsonl:2: expected objects with \"prompt\" and \"response\""):
        read_recording(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"prompt": "a", "response": "[1]"},\n{"prompt": "b", "response": [1] oops},\n{}\n]\n')
    with pytest.raises(RankdistillError, match=r"broken.json:3: not valid JSON"):
        read_recording(broken)
