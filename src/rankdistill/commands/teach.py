"""``rankdistill teach``: listwise LLM re-ranking with a sliding window (hf, vllm, openai or replay), or
pointwise bi-encoder cosines (embedding)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from rankdistill.commands._common import CorpusOpt, DatasetOpt, FixEncodingOpt, QrelsOpt, QueriesOpt, SplitOpt


def teach_command(
    run: Annotated[Path, typer.Option("--run", help="First-stage TREC run whose top candidates are re-ranked.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for teacher.run, stats.json, cache.sqlite.")],
    dataset: DatasetOpt = None,
    queries: QueriesOpt = None,
    corpus: CorpusOpt = None,
    qrels: QrelsOpt = None,
    split: SplitOpt = "test",
    fix_encoding: FixEncodingOpt = False,
    backend: Annotated[str, typer.Option("--backend", help="hf, vllm, openai, replay (listwise LLM) or embedding (bi-encoder cosine).")] = "hf",
    model: Annotated[Optional[str], typer.Option("--model", help="Model name/path (hf, vllm, embedding: e.g. minilm-l6) or served model name (openai).")] = None,
    prompt: Annotated[str, typer.Option("--prompt", help="Prompt template: rankgpt, rankvicuna, rankzephyr.")] = "rankzephyr",
    depth: Annotated[int, typer.Option("--depth", help="Candidates re-ranked per query (the rest keep first-stage order).")] = 100,
    window: Annotated[int, typer.Option("--window", help="Passages per prompt.")] = 20,
    stride: Annotated[int, typer.Option("--stride", help="Step of the sliding window (bottom to top).")] = 10,
    max_passage_words: Annotated[
        Optional[int], typer.Option("--max-passage-words", help="Words kept per passage (default: the template's, 300).")
    ] = None,
    first_token: Annotated[
        bool, typer.Option("--first-token", help="FIRST: rank a window by the first identifier's logits (hf; vllm via logprobs).")
    ] = False,
    record: Annotated[Optional[Path], typer.Option("--record", help="Append every prompt and response to this JSONL file.")] = None,
    replay_file: Annotated[Optional[Path], typer.Option("--replay-file", help="Recording to answer from (--backend replay).")] = None,
    replay_match: Annotated[
        str, typer.Option("--replay-match", help="auto (exact, else normalized), exact, or normalized (white space, quotes, encoding).")
    ] = "auto",
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Generation budget per window (default 10 per passage).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", help="hf: prompts per generate batch; embedding: texts per encode batch.")] = None,
    device: Annotated[Optional[str], typer.Option("--device", help="hf, embedding: cpu, cuda, cuda:1 ... (default: cuda if available).")] = None,
    base_url: Annotated[Optional[str], typer.Option("--base-url", help="openai: server URL, e.g. http://localhost:8000/v1.")] = None,
    api_key_env: Annotated[Optional[str], typer.Option("--api-key-env", help="openai: environment variable holding the key.")] = None,
    concurrency: Annotated[Optional[int], typer.Option("--concurrency", help="openai: requests in flight.")] = None,
    timeout: Annotated[Optional[float], typer.Option("--timeout", help="openai: seconds per request.")] = None,
    max_retries: Annotated[Optional[int], typer.Option("--max-retries", help="openai: retries on 429/5xx/timeouts.")] = None,
    tensor_parallel_size: Annotated[Optional[int], typer.Option("--tensor-parallel-size", help="vllm: GPUs per model.")] = None,
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="vllm/hf: auto, bfloat16, float16, float32.")] = None,
    max_model_len: Annotated[Optional[int], typer.Option("--max-model-len", help="vllm: context length to reserve.")] = None,
    gpu_memory_utilization: Annotated[
        Optional[float], typer.Option("--gpu-memory-utilization", help="vllm: share of GPU memory to use (0.9).")
    ] = None,
    tag: Annotated[Optional[str], typer.Option("--tag", help="Run tag (default teacher-<prompt>).")] = None,
) -> None:
    """Re-rank a run's top candidates with a listwise LLM; resumable (rerun the same command to continue)."""
    from rankdistill.teacher.teach import teach

    per_backend = {
        "hf": {"batch_size": batch_size, "device": device, "dtype": dtype},
        "openai": {"base_url": base_url, "api_key_env": api_key_env, "concurrency": concurrency, "timeout": timeout,
                   "max_retries": max_retries},
        "vllm": {"tensor_parallel_size": tensor_parallel_size, "dtype": dtype, "max_model_len": max_model_len,
                 "gpu_memory_utilization": gpu_memory_utilization},
        "replay": {},
        "embedding": {"batch_size": batch_size, "device": device},
    }
    options = {k: v for k, v in per_backend.get(backend, {}).items() if v is not None}
    result = teach(
        run, dataset=dataset, queries=queries, corpus=corpus, qrels=qrels, split=split, fix_encoding=fix_encoding,
        output=output, backend=backend, model=model, prompt=prompt, depth=depth, window=window, stride=stride,
        max_passage_words=max_passage_words, first_token=first_token, record=record, replay_file=replay_file,
        replay_match=replay_match, backend_options=options, max_new_tokens=max_new_tokens, tag=tag,
    )
    s = result.stats
    err = Console(stderr=True)
    if backend == "embedding":
        err.print(f"{s['queries']} queries, {s['pairs']} pairs ({s['unique_passages']} unique passages), "
                  f"{s['seconds']:.1f} s, {s['pairs_per_s']} pairs/s", highlight=False)
        err.print(f"teacher run written to [bold]{result.run_path}[/], stats to [bold]{result.stats_path}[/]", highlight=False)
        return
    repairs = ", ".join(f"{k} {v}" for k, v in s["repairs"].items() if v) or "none"
    err.print(
        f"{s['queries']} queries, {s['windows']} windows ({s['cache_hits']['windows']} from cache), "
        f"{s['llm_calls']} LLM calls, {s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens, "
        f"repairs: {repairs}, {s['wall_time_s']:.1f} s",
        highlight=False,
    )
    err.print(f"teacher run written to [bold]{result.run_path}[/], stats to [bold]{result.stats_path}[/]", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("teach")(teach_command)
