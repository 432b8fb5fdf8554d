"""``rankdistill serve MODEL_DIR``: an HTTP re-ranking server (Cohere v1/v2, Jina and text-embeddings-inference shapes)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from rankdistill.commands._common import warnings_to_stderr
from rankdistill.serving.app import (
    API_KEY_ENV,
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DOCUMENTS,
    DEFAULT_MAX_REQUEST_TOKENS,
)
from rankdistill.serving.batcher import DEFAULT_MAX_BATCH_TOKENS, DEFAULT_MAX_WAIT_MS

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


def serve_command(
    model: Annotated[str, typer.Argument(help="Cross-encoder folder, hub id or short name (minilm-l6).", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to listen on.")] = 8000,
    name: Annotated[Optional[str], typer.Option("--name", help="Model name in responses and /v1/models (default: the folder name).")] = None,
    dtype: Annotated[str, typer.Option("--dtype", help="auto, float32, bfloat16 or float16 (auto: bf16 on GPU and on CPUs with native bf16).")] = "auto",
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.")] = "auto",
    batch_tokens: Annotated[Optional[int], typer.Option("--batch-tokens", help="Padded tokens per forward batch (default 4096 on CPU, 65536 on GPU).")] = None,
    max_query_length: Annotated[Optional[int], typer.Option("--max-query-length", help="Query tokens kept (default: the model's, else 32).")] = None,
    max_passage_length: Annotated[Optional[int], typer.Option("--max-passage-length", help="Document tokens kept (default: the model's, else 256).")] = None,
    max_documents: Annotated[int, typer.Option("--max-documents", help="Most documents in one request (more: 422).")] = DEFAULT_MAX_DOCUMENTS,
    max_request_tokens: Annotated[int, typer.Option("--max-request-tokens", help="Most tokens scored for one request, after cutting to the budgets (more: 413).")] = DEFAULT_MAX_REQUEST_TOKENS,
    max_body_bytes: Annotated[int, typer.Option("--max-body-bytes", help="Largest request body in bytes (larger: 413).")] = DEFAULT_MAX_BODY_BYTES,
    body_timeout_s: Annotated[float, typer.Option("--body-timeout-s", help="Seconds a request body may take to arrive (slower: 408).")] = DEFAULT_BODY_TIMEOUT_S,
    max_batch_tokens: Annotated[int, typer.Option("--max-batch-tokens", help="Real tokens of the requests scored together.")] = DEFAULT_MAX_BATCH_TOKENS,
    max_wait_ms: Annotated[float, typer.Option("--max-wait-ms", help="How long a request waits for others to share its batch.")] = DEFAULT_MAX_WAIT_MS,
    api_key_env: Annotated[str, typer.Option("--api-key-env", help="Environment variable holding the bearer token; unset: no auth.")] = API_KEY_ENV,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level: critical, error, warning, info, debug.")] = "info",
) -> None:
    """Serve a cross-encoder over HTTP: POST /v1/rerank, /v2/rerank and /rerank (Cohere v1/v2, Jina, TEI), GET /health, GET /v1/models."""
    from rankdistill.errors import RankdistillError
    from rankdistill.serving.app import create_server

    if log_level not in LOG_LEVELS:  # uvicorn would fail with a KeyError only once the model is loaded
        raise RankdistillError(f"--log-level {log_level!r}: choose one of {', '.join(LOG_LEVELS)}")
    warnings_to_stderr()
    server = create_server(
        model, host=host, port=port, name=name, dtype=dtype, device=device, batch_tokens=batch_tokens,
        max_query_length=max_query_length, max_passage_length=max_passage_length, max_documents=max_documents,
        max_request_tokens=max_request_tokens, max_body_bytes=max_body_bytes, body_timeout_s=body_timeout_s,
        max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, api_key_env=api_key_env, log_level=log_level,
    )
    typer.echo(server.summary())
    server.run()


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
