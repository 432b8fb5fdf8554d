"""``rankdistill train DATA.parquet -o MODEL``: fine-tune or distil a cross-encoder (one or more stages)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.errors import RankdistillError

LOSS_HELP = (
    "ranknet (pairs ordered by the target; the paper's distillation loss), lce (softmax of one relevant vs hard "
    "negatives), kl (KL to softmax(target/temperature)), listnet, approx-ndcg, adr-mse, margin-mse (teacher "
    "scores), bce (binary labels)."
)


def train_command(
    data: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Training set(s): parquet from `rankdistill build` (one list per query).", show_default=False),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for the trained model (required).")] = None,
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config", "-c",
            help="YAML file; keys = these option names (e.g. learning_rate), plus `stages: [{data, loss, ...}, ...]` "
            "for multi-stage training and `metrics` for the model card. Paths are relative to the file. Flags win.",
        ),
    ] = None,
    model: Annotated[
        Optional[str],
        typer.Option("--model", "-m", help="Backbone: short name (minilm-l6, offline), model folder or hub id. (default: minilm-l6)"),
    ] = None,
    head: Annotated[
        Optional[str],
        typer.Option(
            "--head",
            help="Scoring head: cls (the architecture's classification head on [CLS]), similarity (scaled cosine of "
            "the query's and the passage's mean tokens) or gated (that cosine over [CLS] q [SEP] [CLS] p [SEP] with "
            "cross-attention behind gates that start shut: the untrained model is the backbone's bi-encoder; for "
            "bi-encoder backbones and few training queries). (default: cls)",
        ),
    ] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help=f"Loss: {LOSS_HELP} (default: ranknet)")] = None,
    loss_kwargs: Annotated[
        Optional[str], typer.Option("--loss-kwargs", help='Loss parameters as JSON, e.g. \'{"temperature": 10}\'.')
    ] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help="Passes over the queries. (default: 1)")] = None,
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps (overrides --epochs).")
    ] = None,
    learning_rate: Annotated[
        Optional[float],
        typer.Option("--learning-rate", "--lr", help="Peak AdamW learning rate (paper: 1e-5 on 10k queries). (default: 2e-5)"),
    ] = None,
    gate_learning_rate: Annotated[
        Optional[float], typer.Option("--gate-learning-rate", help="--head gated: the gates' learning rate. (default: 1e-2)")
    ] = None,
    batch_queries: Annotated[
        Optional[int], typer.Option("--batch-queries", help="Queries (whole lists) per device batch. (default: 1)")
    ] = None,
    grad_accum: Annotated[
        Optional[int], typer.Option("--grad-accum", help="Gradient accumulation steps (paper: 32 for distillation). (default: 1)")
    ] = None,
    max_query_length: Annotated[
        Optional[int], typer.Option("--max-query-length", help="Query budget in tokens, cut separately. (default: 32)")
    ] = None,
    max_passage_length: Annotated[
        Optional[int], typer.Option("--max-passage-length", help="Passage budget in tokens, cut separately. (default: 256)")
    ] = None,
    warmup_ratio: Annotated[
        Optional[float], typer.Option("--warmup-ratio", help="Fraction of steps with linear warm-up. (default: 0.1)")
    ] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help="AdamW weight decay. (default: 0.01)")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for the head's init, data order and dropout. (default: 0)")] = None,
    bf16: Annotated[
        Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 mixed precision (autocast), on a GPU or a CPU with native bf16. (default: on with a bf16 GPU, off on CPU)")
    ] = None,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help="Checkpoint every N steps. (default: 500)")] = None,
    logging_steps: Annotated[Optional[int], typer.Option("--logging-steps", help="Log the loss every N steps. (default: 10)")] = None,
    resume: Annotated[
        Optional[bool],
        typer.Option("--resume/--no-resume", help="Continue from the last checkpoint in OUTPUT.checkpoints (finished stages are kept)."),
    ] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite/--no-overwrite", help="Replace an existing OUTPUT.")] = None,
    keep_checkpoints: Annotated[
        Optional[bool], typer.Option("--keep-checkpoints/--no-keep-checkpoints", help="Keep OUTPUT.checkpoints after success.")
    ] = None,
) -> None:
    """Train a cross-encoder (score from the first token, monoELECTRA style) on listwise data.

    Built on sentence-transformers' CrossEncoderTrainer: bf16, gradient accumulation, warm-up, checkpoints and
    --resume come from Hugging Face's Trainer; run it under `torchrun`/`accelerate launch` for several GPUs.
    The model folder loads with sentence_transformers.CrossEncoder (raw scores) and, with the cls head,
    AutoModelForSequenceClassification; it has a model card (README.md).
    """
    from rankdistill.training.trainer import load_config, parse_options, train_from_options

    values: dict[str, Any] = load_config(config) if config is not None else {}
    flags = dict(
        data=[str(p) for p in data] if data else None, output=output, model=model, head=head, loss=loss, epochs=epochs,
        max_steps=max_steps, learning_rate=learning_rate, gate_learning_rate=gate_learning_rate,
        batch_queries=batch_queries, grad_accum=grad_accum, max_query_length=max_query_length, max_passage_length=max_passage_length, warmup_ratio=warmup_ratio,
        weight_decay=weight_decay, seed=seed, bf16=bf16, save_steps=save_steps, logging_steps=logging_steps,
        resume=resume, overwrite=overwrite, keep_checkpoints=keep_checkpoints,
    )
    if loss_kwargs is not None:
        try:
            flags["loss_kwargs"] = json.loads(loss_kwargs)
        except json.JSONDecodeError as exc:
            raise RankdistillError(f"--loss-kwargs: not JSON ({exc.msg}); e.g. '{{\"temperature\": 10}}'") from None
    values.update({k: v for k, v in flags.items() if v is not None})
    opts = parse_options(values, where=str(config) if config is not None else "train options")
    path = train_from_options(opts)

    log = json.loads((path / "training_log.json").read_text(encoding="utf-8"))
    table = Table(title=f"Trained {path}")
    for col in ("stage", "loss", "queries", "pairs", "steps", "first loss", "last loss", "seconds"):
        table.add_column(col, justify="right" if col not in ("loss",) else "left")
    for stage in log["stages"]:
        losses = [e["loss"] for e in stage["log_history"] if "loss" in e]
        table.add_row(
            str(stage["stage"]), stage["loss"], str(stage["queries"]), str(stage["pairs"]), str(stage["steps"]),
            f"{losses[0]:.4f}" if losses else "–", f"{losses[-1]:.4f}" if losses else "–", f"{stage['train_seconds']:.0f}",
        )
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
