"""The listwise LLM teacher: re-rank each query's top candidates with a sliding window, resumably.

The window walks from the bottom of the top-``depth`` list to the top (RankGPT / rank_llm): window 20,
stride 10, depth 100 gives the spans 80-100, 70-90, ..., 0-20 (9 windows); each window's permutation
reorders that slice in place before the next window is built. One *step* is the k-th window of every
query: its prompts all go to the backend in one ``generate`` call, so local models batch and servers run
concurrently across queries. Windows and finished queries are committed to ``cache.sqlite`` at once.

``teach()`` (``teacher/teach.py``) checks the inputs, builds the backend and calls :func:`teach_listwise`.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.collection import Collection
from rankdistill.data.trec import Run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import RETRY_KINDS, Backend, Generation
from rankdistill.teacher.cache import TeacherCache
from rankdistill.teacher.outputs import CACHE_NAME, RUN_NAME, TeachResult, write_stats
from rankdistill.teacher.parse import format_permutation, parse_permutation
from rankdistill.teacher.prompts import Prompt, build_prompt
from rankdistill.teacher.windows import window_spans
from rankdistill.util.progress import make_progress

REPAIR_KINDS = ("duplicate", "out_of_range", "missing", "garbage")  # the parser's repairs, as stats.json lists them


@dataclass(frozen=True)
class WindowSettings:
    """What decides the teacher's prompts and windows (``teach()``'s parameters of the same names)."""

    prompt: str
    depth: int
    window: int
    stride: int
    max_passage_words: int | None
    first_token: bool

    @property
    def mode(self) -> str:
        """How a window is answered: the whole decoded permutation, or FIRST's first-token logits."""
        return "first-token" if self.first_token else "generate"

    def cache_key(self, model_id: str) -> str:
        """The finished-query key of ``cache.sqlite``: a rerun with other settings ranks afresh."""
        config = dict(model=model_id, prompt=self.prompt, mode=self.mode, depth=self.depth, window=self.window,
                      stride=self.stride, max_passage_words=self.max_passage_words)
        return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class QueryState:
    """One query on its way through the windows."""

    qid: str
    query: str
    candidates: list[str]  # the first-stage top-depth, fixed (part of the resume key)
    order: list[str]  # current order of the top-depth, reordered window by window
    tail: list[str]  # candidates below depth, kept in first-stage order
    spans: list[tuple[int, int]]
    repairs: Counter = field(default_factory=Counter)
    done: bool = False


def query_states(first_stage: Run, queries: Mapping[str, str], settings: WindowSettings) -> list[QueryState]:
    """Each query's top-``depth`` candidates, the rest, and its windows (bottom first)."""
    states = []
    for qid, ranked in first_stage.items():
        docids = [d for d, _ in ranked]
        top, tail = docids[: settings.depth], docids[settings.depth :]
        states.append(QueryState(qid, queries[qid], top, list(top), tail,
                                 window_spans(len(top), settings.window, settings.stride)))
    return states


def new_stats(engine: Backend, settings: WindowSettings, states: list[QueryState]) -> dict[str, Any]:
    """The counters ``stats.json`` reports, zeroed (in the order the file lists them)."""
    return {
        "backend": engine.name, "model": engine.model_id, "prompt": settings.prompt, "depth": settings.depth,
        "window": settings.window, "stride": settings.stride, "max_passage_words": settings.max_passage_words,
        "first_token": settings.first_token, "queries": len(states), "windows": sum(len(s.spans) for s in states),
        "llm_calls": 0, "requests": 0, "retries": {kind: 0 for kind in RETRY_KINDS}, "malformed_gave_up": 0,
        "prompt_tokens": 0, "completion_tokens": 0, "saved_tokens": 0, "repairs": Counter(),
        "cache_hits": {"windows": 0, "queries": 0}, "windows_reasked": 0,
    }


def resume_finished(states: list[QueryState], cache: TeacherCache, config: str, stats: dict[str, Any]) -> None:
    """Mark the queries ``cache.sqlite`` already holds finished under ``config``, with their order and repairs."""
    for state in states:
        finished = cache.get_query(config, state.qid, state.candidates)
        if finished is not None and sorted(finished[0]) == sorted(state.candidates):
            state.order, state.repairs, state.done = finished[0], finished[1], True
            stats["cache_hits"]["queries"] += 1
            stats["cache_hits"]["windows"] += len(state.spans)


def generation_budget(states: list[QueryState], window: int, max_new_tokens: int | None) -> int:
    """``max_new_tokens``, else 10 tokens per passage of the widest window (rank_llm's 200 for 20 passages)."""
    widest = min(window, max((len(s.candidates) for s in states), default=1))
    return max_new_tokens or 10 * widest


def window_order(answer: Generation, n: int) -> tuple[list[int], Counter]:
    """The window order from an answer: the first-token ranking when given, else the parsed text."""
    if answer.ranking is not None:
        return parse_permutation(format_permutation(answer.ranking), n)
    return parse_permutation(answer.text, n)


class Recorder:
    """Appends every fresh answer with its prompt to a JSONL file that the replay backend reads back."""

    def __init__(self, path: str | Path | None):
        self._handle = Path(path).open("a", encoding="utf-8") if path is not None else None

    def write(self, prompt: Prompt, generation: Generation, model_id: str, template: str) -> None:
        if self._handle is None:
            return
        entry = {"prompt": prompt.text, "response": generation.text, "model": model_id, "template": template,
                 "prompt_tokens": generation.prompt_tokens, "completion_tokens": generation.completion_tokens}
        if generation.ranking is not None:
            entry["ranking"] = generation.ranking
            entry["saved_tokens"] = generation.saved_tokens
        self._handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


class _Walk:
    """The sliding steps over all queries, with the cache, the recording, the stats and the progress bars."""

    def __init__(self, engine: Backend, cache: TeacherCache, recorder: Recorder, collection: Collection,
                 settings: WindowSettings, config: str, stats: dict[str, Any], bar: Any, max_new_tokens: int):
        self.engine, self.cache, self.recorder, self.collection = engine, cache, recorder, collection
        self.settings, self.config, self.stats, self.bar = settings, config, stats, bar
        self.max_new_tokens = max_new_tokens
        self.lock = threading.Lock()  # backends may report answers from their own threads
        self.window_task = bar.add_task("teacher windows", total=stats["windows"], completed=stats["cache_hits"]["windows"])
        self.query_task = bar.add_task("teacher queries", total=stats["queries"], completed=stats["cache_hits"]["queries"])

    def run(self, states: list[QueryState]) -> None:
        """Every step in order, then the queries no step finished (all windows cached elsewhere, or none)."""
        steps = max((len(s.spans) for s in states), default=0)
        for step in range(steps):
            self.step([s for s in states if not s.done and step < len(s.spans)], step)
        for state in states:
            if not state.done:
                self.finish(state)

    def step(self, active: list[QueryState], step: int) -> None:
        """The ``step``-th window of every active query: from the cache, else in one ``generate`` call."""
        prompts = [self.prompt(state, *state.spans[step]) for state in active]
        answers = self.cached(prompts)
        todo = [i for i, answer in enumerate(answers) if answer is None]
        if todo:
            self.ask(prompts, answers, todo)
            unanswered = [active[i].qid for i in todo if answers[i] is None]
            if unanswered:
                raise RankdistillError(
                    f"backend {self.engine.name} returned no answer for {len(unanswered)} windows "
                    f"(queries {', '.join(unanswered[:5])}); rerun to resume"
                )
        for state, prompt, answer in zip(active, prompts, answers):
            assert answer is not None
            self.apply(state, step, prompt, answer)

    def prompt(self, state: QueryState, start: int, end: int) -> Prompt:
        docids = state.order[start:end]
        texts = self.collection.texts(docids)
        return build_prompt(self.settings.prompt, state.query, [texts[d] for d in docids],
                            max_passage_words=self.settings.max_passage_words)

    def cached(self, prompts: list[Prompt]) -> list[Generation | None]:
        """The cache's answer to each prompt (None: not asked yet under this model, template and mode)."""
        answers: list[Generation | None] = []
        for prompt in prompts:
            hit = self.cache.get_window(self.engine.model_id, self.settings.prompt, self.settings.mode, prompt.text)
            answers.append(hit)
            if hit is not None:
                self.stats["cache_hits"]["windows"] += 1
                self.bar.advance(self.window_task)
        return answers

    def ask(self, prompts: list[Prompt], answers: list[Generation | None], todo: list[int]) -> None:
        """Ask the backend for prompts ``todo``; each answer is committed to the cache the moment it arrives."""

        def on_result(j: int, generation: Generation) -> None:
            i = todo[j]
            self.cache.put_window(self.engine.model_id, self.settings.prompt, self.settings.mode, prompts[i].text,
                                  generation)
            with self.lock:
                answers[i] = generation
                self.count(generation)
                self.recorder.write(prompts[i], generation, self.engine.model_id, self.settings.prompt)
                self.bar.advance(self.window_task)

        def mark_sent(texts: list[str]) -> None:  # before a request leaves: what a kill may catch in flight
            again = self.cache.mark_asked(self.engine.model_id, self.settings.prompt, self.settings.mode, texts)
            with self.lock:
                self.stats["windows_reasked"] += again

        hooked = hasattr(self.engine, "on_send")  # the backend says when each prompt leaves (see Backend)
        if hooked:
            self.engine.on_send = lambda j: mark_sent([prompts[todo[j]].text])
        else:
            mark_sent([prompts[i].text for i in todo])
        try:
            self.engine.generate([prompts[i] for i in todo], on_result, max_new_tokens=self.max_new_tokens,
                                 first_token=self.settings.first_token)
        finally:
            if hooked:
                self.engine.on_send = None

    def count(self, generation: Generation) -> None:
        self.stats["llm_calls"] += 1
        self.stats["prompt_tokens"] += generation.prompt_tokens
        self.stats["completion_tokens"] += generation.completion_tokens
        self.stats["saved_tokens"] += generation.saved_tokens

    def apply(self, state: QueryState, step: int, prompt: Prompt, answer: Generation) -> None:
        """Reorder the window's slice by the answer; a query's last window finishes it."""
        start, end = state.spans[step]
        order, repairs = window_order(answer, prompt.num_passages)
        state.repairs.update(repairs)
        state.order[start:end] = [state.order[start + k] for k in order]
        if step == len(state.spans) - 1:
            self.finish(state)

    def finish(self, state: QueryState) -> None:
        state.done = True
        self.cache.put_query(self.config, state.qid, state.candidates, state.order, state.repairs, len(state.spans))
        self.bar.advance(self.query_task)


def teacher_run(states: list[QueryState]) -> Run:
    """The teacher's order, then the candidates below depth; scores n..1, strictly decreasing."""
    run: Run = {}
    for state in states:
        ranked = state.order + state.tail
        run[state.qid] = [(docid, float(len(ranked) - i)) for i, docid in enumerate(ranked)]
    return run


def final_stats(stats: dict[str, Any], states: list[QueryState], engine: Backend, started: float) -> dict[str, Any]:
    """``stats`` completed: repairs by kind, the backend's own counters, the wall time since ``started``."""
    repairs: Counter = Counter()
    for state in states:
        repairs.update(state.repairs)
    stats["repairs"] = {kind: repairs.get(kind, 0) for kind in REPAIR_KINDS}
    backend_stats = getattr(engine, "stats", None) or {}  # e.g. the openai backend's request/retry counters
    if backend_stats:
        stats["backend_stats"] = dict(backend_stats)
    # a local model answers each window in one generation; a server may need several requests (retries)
    stats["requests"] = backend_stats.get("requests", stats["llm_calls"])
    stats["retries"] = {kind: backend_stats.get(f"retries_{kind}", 0) for kind in RETRY_KINDS}
    stats["malformed_gave_up"] = backend_stats.get("malformed_gave_up", 0)
    if hasattr(engine, "match_counts"):
        stats["replay_matches"] = dict(engine.match_counts)  # this run's fresh lookups (cache hits not included)
    stats["wall_time_s"] = round(time.perf_counter() - started, 3)
    return stats


def teach_listwise(
    first_stage: Run,
    collection: Collection,
    engine: Backend,
    settings: WindowSettings,
    *,
    output: Path,
    record: str | Path | None = None,
    max_new_tokens: int | None = None,
    tag: str | None = None,
    progress: bool = True,
    started: float | None = None,
) -> TeachResult:
    """Rank every query of ``first_stage`` window by window with ``engine``; write the run, stats and cache.

    Args:
        first_stage: the run to re-rank; every query must have text in ``collection``.
        collection: query and passage texts.
        engine: the backend (closed when this returns or fails).
        settings: template, depth, window, stride, word budget, first-token mode.
        output: folder for ``teacher.run``, ``stats.json`` and ``cache.sqlite``.
        record: append each fresh prompt and answer to this JSONL file.
        max_new_tokens: generation budget per window (default: see :func:`generation_budget`).
        tag: the run's tag (default ``teacher-<prompt>``).
        progress: show progress bars.
        started: ``time.perf_counter()`` when the caller began (for ``wall_time_s``; default: now).

    Returns:
        The run and stats, and where they were written.

    Raises:
        RankdistillError: the backend's own errors, or windows it left unanswered (rerun to resume).
    """
    started = time.perf_counter() if started is None else started
    states = query_states(first_stage, collection.queries, settings)
    stats = new_stats(engine, settings, states)
    config = settings.cache_key(engine.model_id)
    recorder = Recorder(None)
    cache: TeacherCache | None = None
    try:
        cache = TeacherCache(output / CACHE_NAME)
        resume_finished(states, cache, config, stats)
        recorder = Recorder(record)
        budget = generation_budget(states, settings.window, max_new_tokens)
        with make_progress(disable=not progress) as bar:
            _Walk(engine, cache, recorder, collection, settings, config, stats, bar, budget).run(states)
    finally:
        recorder.close()
        if cache is not None:
            cache.close()
        engine.close()
    run = teacher_run(states)
    run_path = write_run(run, output / RUN_NAME, tag or f"teacher-{settings.prompt}")
    stats_path = write_stats(final_stats(stats, states, engine, started), output)
    return TeachResult(run_path=Path(run_path), stats_path=stats_path, run=run, stats=stats)
