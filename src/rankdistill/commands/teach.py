"""``rankdistill teach``: listwise LLM re-ranking with a sliding window (hf, vllm, openai or replay), or
pointwise bi-encoder cosines (embedding).

Every flag can also come from ``--config FILE.yaml`` (keys are the flag names), and so can any backend option,
flag or not, under ``options:`` (e.g. ``options: {trust_remote_code: true}``); flags given on the command line
win over the file, and a backend option given as a flag or top-level key wins over the same key under ``options:``.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from rankdistill.commands._common import (
    ConfigOpt,
    CorpusOpt,
    DatasetOpt,
    FixEncodingOpt,
    QrelsOpt,
    QueriesOpt,
    SplitOpt,
    merge_config,
)

# flags that are backend options: each goes to the backends whose options model has a key of its name
OPTION_FLAGS = ("batch_size", "device", "dtype", "base_url", "api_key_env", "concurrency", "timeout", "max_retries",
                "tensor_parallel_size", "max_model_len", "gpu_memory_utilization")
PATH_KEYS = ("run", "output", "queries", "corpus", "qrels", "record", "replay_file")


def teach_command(
    ctx: typer.Context,
    config: ConfigOpt = None,
    run: Annotated[
        Optional[Path],
        typer.Option("--run", help="First-stage TREC run whose top candidates are re-ranked (required, here or in --config)."),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Folder for teacher.run, stats.json, cache.sqlite (required, here or in --config)."),
    ] = None,
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
    """Re-rank a run's top candidates with a listwise LLM; resumable (rerun the same command to continue).

    In a --config file, any backend option (flag or not) may also go under options:, e.g.
    options: {trust_remote_code: true}; a flag or top-level key wins over the same key there.
    """
    from rankdistill.teacher.teach import teach

    values = _settings(ctx, config)
    result = teach(
        values["run"], dataset=values["dataset"], queries=values["queries"], corpus=values["corpus"],
        qrels=values["qrels"], split=values["split"], fix_encoding=values["fix_encoding"], output=values["output"],
        backend=values["backend"], model=values["model"], prompt=values["prompt"], depth=values["depth"],
        window=values["window"], stride=values["stride"], max_passage_words=values["max_passage_words"],
        first_token=values["first_token"], record=values["record"], replay_file=values["replay_file"],
        replay_match=values["replay_match"], backend_options=values["options"], max_new_tokens=values["max_new_tokens"],
        tag=values["tag"],
    )
    backend = values["backend"]
    s = result.stats
    err = Console(stderr=True)
    if backend == "embedding":
        err.print(f"{s['queries']} queries, {s['pairs']} pairs ({s['unique_passages']} unique passages), "
                  f"{s['seconds']:.1f} s, {s['pairs_per_s']} pairs/s", highlight=False)
        err.print(f"teacher run written to [bold]{result.run_path}[/], stats to [bold]{result.stats_path}[/]", highlight=False)
        return
    from rankdistill.teacher.outputs import describe_spend

    repairs = ", ".join(f"{k} {v}" for k, v in s["repairs"].items() if v) or "none"
    err.print(f"{s['queries']} queries, {s['windows']} windows, repairs: {repairs}, {s['wall_time_s']:.1f} s",
              highlight=False)
    err.print(describe_spend(s), highlight=False, soft_wrap=True)
    err.print(f"teacher run written to [bold]{result.run_path}[/], stats to [bold]{result.stats_path}[/]", highlight=False)


def _settings(ctx: typer.Context, config: Path | None) -> dict[str, Any]:
    """The flags merged over the --config file, checked, with ``options`` holding the backend's options."""
    from rankdistill.errors import RankdistillError
    from rankdistill.teacher.backends import options_model, validate_backend_options
    from rankdistill.util.config import validate

    flags = {name: value for name, value in ctx.params.items() if name != "config"}
    merged = merge_config(ctx, config, flags, PATH_KEYS)
    values = validate(_config_model(), merged, config).model_dump()  # every key, absent ones None
    for name in ("run", "output"):
        if values[name] is None:
            raise RankdistillError(f"missing --{name}: give it here or as '{name}:' in a --config file")
    fields = options_model(values["backend"]).model_fields
    given = {name: values[name] for name in OPTION_FLAGS if name in fields and values[name] is not None}
    where = f"{config}: options" if config is not None else "options"
    options = {**(values["options"] or {}), **given}
    validate_backend_options(values["backend"], options, where)  # here, to name the config file in the error
    values["options"] = options
    return values


def _config_model() -> type:
    """The --config file's keys: every flag of this command (typed as the flag is) and ``options``."""
    from pydantic import ConfigDict, create_model

    hints = typing.get_type_hints(teach_command)
    flags = {name: (hint, None) for name, hint in hints.items() if name not in ("ctx", "config", "return")}
    return create_model("TeachConfig", __config__=ConfigDict(extra="forbid"),
                        options=(Optional[dict[str, Any]], None), **flags)


def register(app: typer.Typer) -> None:
    app.command("teach")(teach_command)
