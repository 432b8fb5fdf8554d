"""``rankdistill train DATA.parquet -o MODEL``: fine-tune or distil a cross-encoder (one or more stages).

Every option is a field of :class:`rankdistill.training.options.TrainOptions`: the help texts and defaults below
are read from there. Flags default to None, so a flag left out never hides the ``--config`` file's value.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from rankdistill.commands._common import ConfigOpt, merge_config
from rankdistill.errors import RankdistillError
from rankdistill.training.losses import LOSSES
from rankdistill.training.options import TrainOptions

LOSS_HELP = ", ".join(f"{name} ({entry.summary})" if entry.summary else name for name, entry in LOSSES.items()) + "."

# what a library message asks for, in flag spelling (the library names keys, the command line has flags)
FLAG_HINTS = {
    "set overwrite=True": "pass --overwrite",
    "set resume=True": "pass --resume",
    "output: give the folder": "--output/-o: give the folder",
    "set bf16 to 'auto' or False": "pass --no-bf16 (or bf16: auto in --config)",
}


def _default(key: str) -> str:
    """`` (default: X)`` from the option's field: defaults are written once, in the options model."""
    value = TrainOptions.model_fields[key].get_default(call_default_factory=True)
    text = re.sub(r"e-0(\d)", r"e-\1", f"{value:g}") if isinstance(value, float) else str(value)
    return f" (default: {text})"


def _help(key: str) -> str:
    """The option's description and default."""
    return f"{TrainOptions.model_fields[key].description}{_default(key)}"


def _with_flags(message: str) -> str:
    for phrase, flag in FLAG_HINTS.items():
        message = message.replace(phrase, flag)
    return message


def _from_cwd(model: str | None) -> str | None:
    """A relative model folder on the command line is relative to the working directory, not to ``--config``."""
    return str(Path(model).resolve()) if model is not None and model.startswith(".") else model


def train_command(
    ctx: typer.Context,
    data: Annotated[
        Optional[list[Path]],
        typer.Argument(help="Training set(s): parquet from `rankdistill build` (one list per query).", show_default=False),
    ] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Folder for the trained model (required).")] = None,
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help=_help("model"))] = None,
    head: Annotated[Optional[str], typer.Option("--head", help=_help("head"))] = None,
    loss: Annotated[Optional[str], typer.Option("--loss", help=f"Loss: {LOSS_HELP}{_default('loss')}")] = None,
    loss_kwargs: Annotated[
        Optional[str], typer.Option("--loss-kwargs", help='Loss parameters as JSON, e.g. \'{"temperature": 10}\'.')
    ] = None,
    epochs: Annotated[Optional[float], typer.Option("--epochs", help=_help("epochs"))] = None,
    max_steps: Annotated[
        Optional[int], typer.Option("--max-steps", help="Stop after this many optimiser steps (overrides --epochs).")
    ] = None,
    learning_rate: Annotated[Optional[float], typer.Option("--learning-rate", "--lr", help=_help("learning_rate"))] = None,
    gate_learning_rate: Annotated[
        Optional[float], typer.Option("--gate-learning-rate", help=f"--head gated: the gates' learning rate.{_default('gate_learning_rate')}")
    ] = None,
    batch_queries: Annotated[Optional[int], typer.Option("--batch-queries", help=_help("batch_queries"))] = None,
    grad_accum: Annotated[Optional[int], typer.Option("--grad-accum", help=_help("grad_accum"))] = None,
    max_query_length: Annotated[Optional[int], typer.Option("--max-query-length", help=_help("max_query_length"))] = None,
    max_passage_length: Annotated[Optional[int], typer.Option("--max-passage-length", help=_help("max_passage_length"))] = None,
    warmup_ratio: Annotated[Optional[float], typer.Option("--warmup-ratio", help=_help("warmup_ratio"))] = None,
    weight_decay: Annotated[Optional[float], typer.Option("--weight-decay", help=_help("weight_decay"))] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help=_help("seed"))] = None,
    bf16: Annotated[
        Optional[bool],
        typer.Option(
            "--bf16/--no-bf16",
            help="bf16 mixed precision (autocast), on a GPU or a CPU with native bf16. (default: on with a bf16 GPU, "
            "off on CPU; bf16: auto in --config also turns it on for CPUs with native bf16)",
        ),
    ] = None,
    save_steps: Annotated[Optional[int], typer.Option("--save-steps", help=_help("save_steps"))] = None,
    logging_steps: Annotated[Optional[int], typer.Option("--logging-steps", help=_help("logging_steps"))] = None,
    resume: Annotated[Optional[bool], typer.Option("--resume/--no-resume", help=_help("resume"))] = None,
    overwrite: Annotated[Optional[bool], typer.Option("--overwrite/--no-overwrite", help=_help("overwrite"))] = None,
    keep_checkpoints: Annotated[
        Optional[bool], typer.Option("--keep-checkpoints/--no-keep-checkpoints", help=_help("keep_checkpoints"))
    ] = None,
) -> None:
    """Train a cross-encoder on listwise data (scored from the first token, monoELECTRA style; --head gated for few queries).

    Built on sentence-transformers' CrossEncoderTrainer: bf16, gradient accumulation, warm-up, checkpoints and
    --resume come from Hugging Face's Trainer; run it under `torchrun`/`accelerate launch` for several GPUs
    (`torchrun --standalone --nproc-per-node N -m rankdistill -- train ...`; each process takes --batch-queries lists).
    The model folder loads with sentence_transformers.CrossEncoder (raw scores) and, with the cls head,
    AutoModelForSequenceClassification; it has a model card (README.md).

    A --config file takes these option names as keys (e.g. learning_rate), plus `stages: [{data, loss, ...}, ...]`
    for multi-stage training (a stage inherits the keys it does not set) and `metrics` for the model card.
    """
    from rankdistill.training.options import parse_options, resolve_file_paths
    from rankdistill.training.trainer import train_from_options
    from rankdistill.util.distributed import is_main_process

    flags: dict[str, Any] = dict(
        data=[str(p) for p in data] if data else None, output=output, model=_from_cwd(model), head=head, loss=loss,
        loss_kwargs=_json_option(loss_kwargs), epochs=epochs, max_steps=max_steps, learning_rate=learning_rate,
        gate_learning_rate=gate_learning_rate, batch_queries=batch_queries, grad_accum=grad_accum,
        max_query_length=max_query_length, max_passage_length=max_passage_length, warmup_ratio=warmup_ratio,
        weight_decay=weight_decay, seed=seed, bf16=bf16, save_steps=save_steps, logging_steps=logging_steps,
        resume=resume, overwrite=overwrite, keep_checkpoints=keep_checkpoints,
    )
    values = merge_config(ctx, config, flags, path_keys=("data", "output"))
    if config is not None:
        values = resolve_file_paths(values, config.resolve().parent)
    try:
        path = train_from_options(parse_options(values, where=config if config is not None else "train options"))
    except RankdistillError as exc:
        if _with_flags(str(exc)) == str(exc):
            raise
        raise RankdistillError(_with_flags(str(exc))) from exc
    if is_main_process():  # under torchrun one table, not one per process
        _print_summary(path)


def _json_option(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RankdistillError(f"--loss-kwargs: not JSON ({exc.msg}); e.g. '{{\"temperature\": 10}}'") from None


def _print_summary(path: Path) -> None:
    """One row per stage: loss, data size, steps, first and last logged loss, time."""
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
