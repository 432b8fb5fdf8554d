"""Listwise LLM teaching (and the pointwise ``embedding`` backend, see ``embedding.py``): re-rank each query's top candidates with a sliding window, resumably.

The window walks from the bottom of the top-``depth`` list to the top (RankGPT / rank_llm): window 20,
stride 10, depth 100 gives the spans 80-100, 70-90, ..., 0-20 (9 windows); each window's permutation
reorders that slice in place before the next window is built. One *step* is the k-th window of every
query: its prompts all go to the backend in one ``generate`` call, so local models batch and servers run
concurrently across queries. Windows and finished queries are committed to ``cache.sqlite`` at once.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.collection import Collection, load_collection
from rankdistill.errors import RankdistillError
from rankdistill.util.files import atomic_write
from rankdistill.util.progress import make_progress
from rankdistill.data.trec import Run, read_run, write_run
from rankdistill.teacher.backends import make_backend
from rankdistill.teacher.backends.base import Backend, Generation
from rankdistill.teacher.cache import TeacherCache
from rankdistill.teacher.parse import format_permutation, parse_permutation
from rankdistill.teacher.prompts import TEMPLATES, Prompt, build_prompt
from rankdistill.teacher.outputs import CACHE_NAME, RUN_NAME, STATS_NAME, TeachResult
from rankdistill.teacher.windows import window_spans

@dataclass
class _QueryState:
    qid: str
    query: str
    candidates: list[str]  # the first-stage top-depth, fixed (part of the resume key)
    order: list[str]  # current order of the top-depth, reordered window by window
    tail: list[str]  # candidates below depth, kept in first-stage order
    spans: list[tuple[int, int]]
    repairs: Counter = field(default_factory=Counter)
    done: bool = False


def _config_key(**config: Any) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def _load_run(run: Run | str | Path) -> Run:
    return read_run(run) if isinstance(run, (str, Path)) else run


def _build_backend(
    backend: str | Backend, model: str | None, replay_file: str | Path | None, replay_match: str,
    options: dict[str, Any],
) -> Backend:
    if not isinstance(backend, str):
        return backend
    if backend == "replay":
        if replay_file is None:
            raise RankdistillError("--backend replay needs --replay-file (a recording of prompts and responses)")
        return make_backend("replay", replay_file=replay_file, replay_match=replay_match, model=model, **options)
    if model is None:
        raise RankdistillError(f"--backend {backend} needs --model (a model name or path)")
    if backend == "openai" and not options.get("base_url"):
        raise RankdistillError("--backend openai needs --base-url (e.g. http://localhost:8000/v1)")
    return make_backend(backend, model=model, **options)


def teach(
    run: Run | str | Path,
    *,
    dataset: str | Path | None = None,
    queries: str | Path | None = None,
    corpus: str | Path | None = None,
    qrels: str | Path | None = None,
    output: str | Path,
    backend: str | Backend = "hf",
    model: str | None = None,
    prompt: str = "rankzephyr",
    depth: int = 100,
    window: int = 20,
    stride: int = 10,
    max_passage_words: int | None = None,
    first_token: bool = False,
    record: str | Path | None = None,
    replay_file: str | Path | None = None,
    replay_match: str = "auto",
    backend_options: dict[str, Any] | None = None,
    max_new_tokens: int | None = None,
    collection: Collection | None = None,
    split: str = "test",
    fix_encoding: bool = False,
    tag: str | None = None,
    progress: bool = True,
) -> TeachResult:
    """Re-rank the top ``depth`` candidates of ``run`` with a listwise LLM and write the teacher run.

    Writes ``teacher.run`` (the teacher's order; scores n..1, strictly decreasing; candidates below
    ``depth`` follow in first-stage order), ``stats.json`` and ``cache.sqlite`` into ``output``. A rerun
    with the same settings resumes from the cache and ends with the same run.
    """
    if prompt not in TEMPLATES:
        raise RankdistillError(f"--prompt {prompt!r}: choose one of {', '.join(sorted(TEMPLATES))}")
    for name, value in (("depth", depth), ("window", window), ("stride", stride)):
        if value < 1:
            raise RankdistillError(f"--{name} must be at least 1, got {value}")
    if max_passage_words is not None and max_passage_words < 1:
        raise RankdistillError(f"--max-passage-words must be at least 1, got {max_passage_words}")
    started = time.perf_counter()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    first_stage = _load_run(run)
    if not first_stage:
        raise RankdistillError("the run to re-rank is empty")
    if collection is None:
        collection = load_collection(dataset, queries=queries, corpus=corpus, qrels=qrels, split=split, fix_encoding=fix_encoding)
    if collection.corpus is None:
        raise RankdistillError("the teacher needs passage text: give --dataset or --corpus")
    missing = [qid for qid in first_stage if qid not in collection.queries]
    if missing:
        raise RankdistillError(
            f"{len(missing)} run queries have no text in the collection (first: {', '.join(missing[:5])}); "
            "check --dataset/--queries"
        )

    if backend == "embedding":
        return _teach_embedding(
            first_stage, collection, output=output, model=model, depth=depth, tag=tag, progress=progress,
            options=dict(backend_options or {}),
            listwise=_changed_options(teach, prompt=prompt, window=window, stride=stride, first_token=first_token,
                                      max_passage_words=max_passage_words, record=record, replay_file=replay_file,
                                      max_new_tokens=max_new_tokens),
        )
    engine = _build_backend(backend, model, replay_file, replay_match, dict(backend_options or {}))
    mode = "first-token" if first_token else "generate"
    config = _config_key(model=engine.model_id, prompt=prompt, mode=mode, depth=depth, window=window,
                         stride=stride, max_passage_words=max_passage_words)
    cache = TeacherCache(output / CACHE_NAME)
    states: list[_QueryState] = []
    stats: dict[str, Any] = {
        "backend": engine.name, "model": engine.model_id, "prompt": prompt, "depth": depth, "window": window,
        "stride": stride, "max_passage_words": max_passage_words, "first_token": first_token,
        "queries": len(first_stage), "windows": 0, "llm_calls": 0, "prompt_tokens": 0, "completion_tokens": 0,
        "saved_tokens": 0, "repairs": Counter(), "cache_hits": {"windows": 0, "queries": 0},
    }
    for qid, ranked in first_stage.items():
        docids = [d for d, _ in ranked]
        top, tail = docids[:depth], docids[depth:]
        state = _QueryState(qid, collection.queries[qid], top, list(top), tail, window_spans(len(top), window, stride))
        stats["windows"] += len(state.spans)
        finished = cache.get_query(config, qid, top)
        if finished is not None and sorted(finished[0]) == sorted(top):
            state.order, state.repairs, state.done = finished[0], finished[1], True
            stats["cache_hits"]["queries"] += 1
            stats["cache_hits"]["windows"] += len(state.spans)
        states.append(state)

    lock = threading.Lock()
    record_handle = Path(record).open("a", encoding="utf-8") if record is not None else None
    max_window = min(window, max((len(s.candidates) for s in states), default=1))
    max_new_tokens = max_new_tokens or 10 * max_window  # rank_llm's 200 tokens for a 20-passage window
    try:
        with make_progress(disable=not progress) as bar:
            window_task = bar.add_task("teacher windows", total=stats["windows"], completed=stats["cache_hits"]["windows"])
            query_task = bar.add_task("teacher queries", total=len(states), completed=stats["cache_hits"]["queries"])
            steps = max((len(s.spans) for s in states), default=0)
            for step in range(steps):
                active = [s for s in states if not s.done and step < len(s.spans)]
                prompts: list[Prompt] = []
                for state in active:
                    start, end = state.spans[step]
                    texts = collection.texts(state.order[start:end])
                    prompts.append(build_prompt(prompt, state.query, [texts[d] for d in state.order[start:end]],
                                                max_passage_words=max_passage_words))
                answers: list[Generation | None] = []
                for p in prompts:
                    hit = cache.get_window(engine.model_id, prompt, mode, p.text)
                    answers.append(hit)
                    if hit is not None:
                        stats["cache_hits"]["windows"] += 1
                        bar.advance(window_task)
                todo = [i for i, a in enumerate(answers) if a is None]

                def on_result(j: int, generation: Generation, todo: list[int] = todo) -> None:
                    i = todo[j]
                    cache.put_window(engine.model_id, prompt, mode, prompts[i].text, generation)
                    with lock:
                        answers[i] = generation
                        stats["llm_calls"] += 1
                        stats["prompt_tokens"] += generation.prompt_tokens
                        stats["completion_tokens"] += generation.completion_tokens
                        stats["saved_tokens"] += generation.saved_tokens
                        if record_handle is not None:
                            entry = {"prompt": prompts[i].text, "response": generation.text, "model": engine.model_id,
                                     "template": prompt, "prompt_tokens": generation.prompt_tokens,
                                     "completion_tokens": generation.completion_tokens}
                            if generation.ranking is not None:
                                entry["ranking"] = generation.ranking
                                entry["saved_tokens"] = generation.saved_tokens
                            record_handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
                            record_handle.flush()
                        bar.advance(window_task)

                if todo:
                    engine.generate([prompts[i] for i in todo], on_result, max_new_tokens=max_new_tokens,
                                    first_token=first_token)
                    unanswered = [active[i].qid for i in todo if answers[i] is None]
                    if unanswered:
                        raise RankdistillError(
                            f"backend {engine.name} returned no answer for {len(unanswered)} windows "
                            f"(queries {', '.join(unanswered[:5])}); rerun to resume"
                        )
                for state, p, answer in zip(active, prompts, answers):
                    assert answer is not None
                    start, end = state.spans[step]
                    order, repairs = _permutation(answer, p.num_passages)
                    state.repairs.update(repairs)
                    state.order[start:end] = [state.order[start + k] for k in order]
                    if step == len(state.spans) - 1:
                        state.done = True
                        cache.put_query(config, state.qid, state.candidates, state.order, state.repairs, len(state.spans))
                        bar.advance(query_task)
            for state in states:  # queries whose windows were all cached from another config, or empty ones
                if not state.done:
                    state.done = True
                    cache.put_query(config, state.qid, state.candidates, state.order, state.repairs, len(state.spans))
                    bar.advance(query_task)
    finally:
        if record_handle is not None:
            record_handle.close()
        cache.close()
        engine.close()

    teacher_run: Run = {}
    for state in states:
        ranked = state.order + state.tail
        teacher_run[state.qid] = [(docid, float(len(ranked) - i)) for i, docid in enumerate(ranked)]
        stats["repairs"].update(state.repairs)
    run_path = write_run(teacher_run, output / RUN_NAME, tag or f"teacher-{prompt}")
    stats["repairs"] = {kind: stats["repairs"].get(kind, 0) for kind in ("duplicate", "out_of_range", "missing", "garbage")}
    backend_stats = getattr(engine, "stats", None)  # e.g. the openai backend's request/retry counters
    if backend_stats:
        stats["backend_stats"] = dict(backend_stats)
    if hasattr(engine, "match_counts"):
        stats["replay_matches"] = dict(engine.match_counts)  # this run's fresh lookups (cache hits not included)
    stats["wall_time_s"] = round(time.perf_counter() - started, 3)
    stats_path = output / STATS_NAME
    with atomic_write(stats_path) as handle:
        json.dump(stats, handle, indent=2)
        handle.write("\n")
    return TeachResult(run_path=Path(run_path), stats_path=stats_path, run=teacher_run, stats=stats)


def _changed_options(function, **values: Any) -> list[str]:
    """The options (as --flags) whose value differs from ``function``'s default."""
    defaults = inspect.signature(function).parameters
    return ["--" + name.replace("_", "-") for name, value in values.items() if value != defaults[name].default]


def _teach_embedding(first_stage: Run, collection: Collection, *, output: Path, model: str | None, depth: int,
                     tag: str | None, progress: bool, options: dict[str, Any], listwise: list[str]) -> TeachResult:
    """The pointwise bi-encoder teacher (``teacher/embedding.py``); listwise options are a mistake here."""
    from rankdistill.teacher.embedding import teach_embedding

    if listwise:
        raise RankdistillError(
            f"--backend embedding scores each passage on its own: {', '.join(listwise)} only apply to the listwise "
            "LLM backends (hf, vllm, openai, replay); drop them"
        )
    if model is None:
        raise RankdistillError("--backend embedding needs --model (a sentence-transformers model: minilm-l6, a folder or hub id)")
    unknown = sorted(set(options) - {"batch_size", "device", "max_length"})
    if unknown:
        raise RankdistillError(
            f"--backend embedding: options {', '.join(unknown)} do not apply (it takes batch_size, device, max_length)"
        )
    run, stats, run_path, stats_path = teach_embedding(
        first_stage, collection, output=output, model=model, depth=depth, tag=tag, progress=progress,
        batch_size=options.get("batch_size") or 64, device=options.get("device"), max_length=options.get("max_length"),
    )
    return TeachResult(run_path=run_path, stats_path=stats_path, run=run, stats=stats)


def _permutation(answer: Generation, n: int) -> tuple[list[int], Counter]:
    """The window order from an answer: the first-token ranking when given, else the parsed text."""
    if answer.ranking is not None:
        return parse_permutation(format_permutation(answer.ranking), n)
    return parse_permutation(answer.text, n)
