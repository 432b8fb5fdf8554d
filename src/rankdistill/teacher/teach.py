"""``teach()``: the one entry point of the teacher stage, whichever teacher runs.

It checks what it is given, loads the run and the texts, and hands over to the listwise LLM teacher
(``teacher/listwise.py``: hf, vllm, openai, replay, or any object with the ``Backend`` interface) or to the
pointwise bi-encoder teacher (``teacher/embedding.py``: ``backend="embedding"``). Both write the same files
(``teacher/outputs.py``), so what comes after reads one layout.
"""

from __future__ import annotations

import inspect
import time
from pathlib import Path
from typing import Any

from rankdistill.data.collection import Collection, load_collection
from rankdistill.data.trec import Run, read_run
from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends import LISTWISE, backend_entry, make_backend, validate_backend_options
from rankdistill.teacher.backends.base import Backend
from rankdistill.teacher.listwise import WindowSettings, teach_listwise
from rankdistill.teacher.outputs import TeachResult
from rankdistill.teacher.prompts import TEMPLATES
from rankdistill.util.lock import output_lock

# teach()'s parameters that only the listwise LLM backends read
LISTWISE_ONLY = ("prompt", "window", "stride", "first_token", "max_passage_words", "record", "replay_file",
                 "max_new_tokens")


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
    """Re-rank the top ``depth`` candidates of ``run`` with a listwise LLM (or a bi-encoder) and write the teacher run.

    Writes ``teacher.run`` (the teacher's order; scores strictly decreasing; candidates below ``depth`` follow
    in first-stage order) and ``stats.json`` into ``output``; the LLM teacher also keeps ``cache.sqlite`` there,
    so a rerun with the same settings resumes where the last one stopped and ends with the same run. One
    process at a time may write ``output`` (a lock file there): a second one stops with an error naming the first.

    Args:
        run: the first-stage run (a TREC file or ``{qid: [(docid, score), ...]}``, best first).
        dataset: ``irds:<id>`` or a folder with the queries and passages; ``queries``, ``corpus`` and ``qrels``
            name files instead or override its own; ``split`` picks BEIR qrels, ``fix_encoding`` repairs
            MS MARCO mojibake in file corpora. Not read when ``collection`` is given.
        output: folder for the teacher's files.
        backend: ``hf``, ``vllm``, ``openai``, ``replay`` (listwise LLM), ``embedding`` (bi-encoder cosine), or
            a ``Backend`` object.
        model: model name or path (for openai, the name the server serves; for replay, an optional label).
        prompt: template, one of ``rankgpt``, ``rankvicuna``, ``rankzephyr``.
        depth: candidates re-ranked per query.
        window: passages per prompt.
        stride: step of the sliding window, which walks from the bottom of the list to the top.
        max_passage_words: words kept per passage (default: the template's).
        first_token: rank a window by the first identifier's logits (FIRST; hf and vllm).
        record: append each fresh prompt and answer to this JSONL file (a recording replay can answer from).
        replay_file: the recording the replay backend answers from; ``replay_match`` says how prompts are
            matched: ``auto`` (exact, else normalized), ``exact`` or ``normalized``.
        backend_options: the backend's own options, checked by its options model (``HFOptions``,
            ``VLLMOptions``, ``OpenAIOptions``, ``EmbeddingOptions``); None values mean the defaults.
        max_new_tokens: generation budget per window (default 10 tokens per passage).
        collection: query and passage texts already loaded.
        tag: the run's tag (default ``teacher-<prompt>``, or ``teacher-embedding``).
        progress: show progress bars.

    Returns:
        Where the run and stats were written, and the run and stats themselves.

    Raises:
        RankdistillError: a setting out of range or not meant for the chosen backend, bad backend options, an
            empty run, queries without text, or a backend failure (finished windows stay cached).
        OutputLockedError: another process is writing ``output``.
    """
    _check_settings(prompt, depth, window, stride, max_passage_words)
    if backend != "embedding":
        _check_windows(window, stride)
    started = time.perf_counter()
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise RankdistillError(f"{output}: is a file; output must be a folder (for teacher.run, stats.json, cache.sqlite)")
    first_stage = read_run(run) if isinstance(run, (str, Path)) else run
    if not first_stage:
        raise RankdistillError("the run to re-rank is empty")
    if collection is None:
        collection = load_collection(dataset, queries=queries, corpus=corpus, qrels=qrels, split=split,
                                     fix_encoding=fix_encoding)
    _check_texts(first_stage, collection)
    output.mkdir(parents=True, exist_ok=True)  # after the inputs are read: a bad one leaves no empty folder
    with output_lock(output, "teach"):  # a second teach on this folder would pay for the same windows again
        if backend == "embedding":
            _refuse_listwise(prompt=prompt, window=window, stride=stride, first_token=first_token,
                             max_passage_words=max_passage_words, record=record, replay_file=replay_file,
                             max_new_tokens=max_new_tokens)
            return _teach_embedding(first_stage, collection, output=output, model=model, depth=depth, tag=tag,
                                    progress=progress, backend_options=backend_options)
        engine = _build_backend(backend, model, replay_file, replay_match, backend_options)
        settings = WindowSettings(prompt=prompt, depth=depth, window=window, stride=stride,
                                  max_passage_words=max_passage_words, first_token=first_token)
        return teach_listwise(first_stage, collection, engine, settings, output=output, record=record,
                              max_new_tokens=max_new_tokens, tag=tag, progress=progress, started=started)


def _check_settings(prompt: str, depth: int, window: int, stride: int, max_passage_words: int | None) -> None:
    if prompt not in TEMPLATES:
        raise RankdistillError(f"prompt {prompt!r}: choose one of {', '.join(sorted(TEMPLATES))}")
    for name, value in (("depth", depth), ("window", window), ("stride", stride)):
        if value < 1:
            raise RankdistillError(f"{name} must be at least 1, got {value}")
    if max_passage_words is not None and max_passage_words < 1:
        raise RankdistillError(f"max_passage_words must be at least 1, got {max_passage_words}")


def _check_windows(window: int, stride: int) -> None:
    """Sliding windows must cover the list: every passage ranked at least once."""
    if window < 2:
        raise RankdistillError(f"window {window} ranks nothing: a window must hold at least 2 passages (default 20)")
    if stride > window:  # windows would skip passages: some would never be ranked
        raise RankdistillError(
            f"stride {stride} exceeds window {window}: the passages between windows would never be ranked; "
            f"use a stride of at most {window} (e.g. window 20, stride 10)"
        )


def _check_texts(first_stage: Run, collection: Collection) -> None:
    """Every query of the run needs its text, and the teacher needs passage texts."""
    if collection.corpus is None:
        raise RankdistillError("the teacher needs passage text: give dataset or corpus")
    missing = [qid for qid in first_stage if qid not in collection.queries]
    if missing:
        raise RankdistillError(
            f"{len(missing)} run queries have no text in the collection (first: {', '.join(missing[:5])}); "
            "check dataset/queries"
        )


def _refuse_listwise(**values: Any) -> None:
    """The pointwise teacher reads none of the listwise parameters: one left off its default is a mistake."""
    defaults = inspect.signature(teach).parameters
    changed = [name for name in LISTWISE_ONLY if values[name] != defaults[name].default]
    if changed:
        raise RankdistillError(
            f"backend embedding scores each passage on its own: {', '.join(changed)} only apply to the listwise "
            f"LLM backends ({', '.join(LISTWISE)}); drop them"
        )


def _teach_embedding(first_stage: Run, collection: Collection, *, output: Path, model: str | None, depth: int,
                     tag: str | None, progress: bool, backend_options: dict[str, Any] | None) -> TeachResult:
    """The pointwise bi-encoder teacher (``teacher/embedding.py``)."""
    from rankdistill.teacher.embedding import teach_embedding

    if model is None:
        raise RankdistillError("backend embedding needs model (a sentence-transformers model: minilm-l6, a folder or hub id)")
    options = validate_backend_options("embedding", backend_options, where="backend_options")
    return teach_embedding(first_stage, collection, output=output, model=model, depth=depth, options=options, tag=tag,
                           progress=progress)


def _build_backend(backend: str | Backend, model: str | None, replay_file: str | Path | None, replay_match: str,
                   backend_options: dict[str, Any] | None) -> Backend:
    """The listwise backend ``backend`` names (a ``Backend`` object is used as it is)."""
    if not isinstance(backend, str):
        return backend
    backend_entry(backend)  # an unknown name fails here, before the checks below
    if backend == "replay":
        if replay_file is None:
            raise RankdistillError("backend replay needs replay_file (a recording of prompts and responses)")
        return make_backend("replay", model, options=backend_options, where="backend_options",
                            replay_file=replay_file, replay_match=replay_match)
    if model is None:
        raise RankdistillError(f"backend {backend} needs model (a model name or path)")
    return make_backend(backend, model, options=backend_options, where="backend_options")
