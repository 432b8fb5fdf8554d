"""Train a cross-encoder on a distillation set (parquet from ``rankdistill build``), in one or more stages.

Everything that Hugging Face's Trainer already does well — optimiser, warm-up, bf16, gradient accumulation,
checkpoints and resume, DDP under ``torchrun``/``accelerate`` — comes from sentence-transformers'
``CrossEncoderTrainer``; this module only turns the parquet into listwise examples, picks the loss, chains
stages and saves the result atomically with a model card. The options are validated in
:mod:`rankdistill.training.options`, the losses live in :mod:`rankdistill.training.losses`.

Layout while training: ``<output>.checkpoints/stage-<i>/checkpoint-<step>`` (Trainer checkpoints) and
``stage-<i>/model`` once a stage finishes. The last stage's model is renamed to ``<output>`` at the end and
the checkpoint folder removed (unless ``keep_checkpoints``), so ``<output>`` either is complete or absent.

Several processes (``torchrun``, ``accelerate launch``): each takes ``batch_queries`` lists a batch and DDP averages
their gradients, so a step learns from ``batch_queries x grad_accum x processes`` lists; the few lists at an epoch's
end that cannot give every process a batch sit that epoch out. (A loss that averages over a batch's pairs, such as
ranknet, then weighs each process's half alike: the joint batch's mean exactly when the lists are equally long; split
``grad_accum`` rather than ``batch_queries`` to keep each micro-batch as it was.) The first process alone checks
the output, saves each stage and finishes the folder; the others wait for it (:mod:`rankdistill.util.distributed`).
``tests/training/test_distributed.py`` holds two gloo processes to the one-process model of their joint batch.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.training.losses import LOSSES, LossName, make_loss  # noqa: F401  (names of the former module)
from rankdistill.training.options import (  # noqa: F401  (names of the former module)
    LearningOptions,
    StageOptions,
    TrainOptions,
    load_config,
    parse_options,
    resolve_stages,
)
from rankdistill.util.device import resolve_bf16
from rankdistill.util.distributed import is_main_process, wait_for_everyone, world_size

REQUIRED_COLUMNS = ("qid", "query", "passage", "target", "position")
WINDOW_COLUMNS = ("window_first", "window_last")  # written by ``build --pairs compared``

# the stage defaults, read from the options' fields (defined there, once); kept for code that read this dict
STAGE_DEFAULTS: dict[str, Any] = {
    key: field.get_default(call_default_factory=True) for key, field in LearningOptions.model_fields.items()
}


# ---------------------------------------------------------------------------------------------- data


def load_listwise(paths: list[Path], tokenizer, max_query_length: int, max_passage_length: int):
    """Parquet rows -> a datasets.Dataset of (query, docs, labels), one row per list (a query of one file and one
    candidate source), ordered by position.

    Texts are cut here, once, with the separate query/passage budgets (see :mod:`rankdistill.modeling.cross_encoder`).
    """
    import pyarrow as pa
    from datasets import Dataset

    from rankdistill.distillation import schema
    from rankdistill.modeling.cross_encoder import truncate_pairs

    # optional columns of older sets come as nulls: no windows, one source
    columns = (*schema.REQUIRED_COLUMNS, *schema.OPTIONAL_COLUMNS)
    tables = []
    for file_index, path in enumerate(paths):
        table = schema.read_set(path, columns=columns)
        # integers as int64 for pandas (a null window stays a null)
        table = table.cast(pa.schema([(f.name, pa.int64() if pa.types.is_integer(f.type) else f.type) for f in table.schema]))
        # lists are keyed by (file, qid, source): the same query in two files (e.g. two samples) or from two
        # candidate sources stays two lists
        tables.append(table.append_column("_file", pa.array([file_index] * table.num_rows, pa.int64())))
    frame = pa.concat_tables(tables).to_pandas()
    if frame.empty:
        raise RankdistillError(f"{', '.join(map(str, paths))}: no training rows")
    bad = frame[frame["target"].isna()]
    if len(bad):
        raise RankdistillError(f"{paths[0]}: query {bad['qid'].iloc[0]} has a candidate without a target (null)")
    queries, passages = truncate_pairs(
        tokenizer, frame["query"].tolist(), frame["passage"].tolist(), max_query_length, max_passage_length
    )
    frame = frame.assign(query=queries, passage=passages)
    keys = list(zip(frame["_file"], frame["qid"], frame["source"].fillna("")))
    order = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    frame = frame.assign(_q=[order[key] for key in keys]).sort_values(["_q", "position"], kind="stable")
    # a set built with --pairs compared: each label is (target, first, last[, first, last ...]), -1 = no window
    compared = bool(frame["window_first"].notna().any())
    ranges = _window_ranges(frame) if compared else None
    rows = {"query": [], "docs": [], "labels": []}
    for _, group in frame.groupby("_q", sort=True):
        rows["query"].append(group["query"].iloc[0])
        rows["docs"].append(group["passage"].tolist())
        targets = group["target"].astype(float).tolist()
        if ranges is not None:
            rows["labels"].append([[t, *ranges[i]] for t, i in zip(targets, group.index)])
        else:
            rows["labels"].append(targets)
    stats = {"queries": int(frame["qid"].nunique()), "lists": len(rows["query"]), "pairs": int(len(frame)),
             "max_list": max(map(len, rows["docs"])), "teacher_pairs": "compared" if compared else "all"}
    return Dataset.from_dict(rows), stats


def _window_ranges(frame) -> dict[Any, list[float]]:
    """Row index -> its teacher-window ranges, flat and padded with -1 to the set's most ranges per passage.

    ``window_ranges`` when a passage has several (a fused list), else ``(window_first, window_last)``, else none.
    """
    flat: dict[Any, list[float]] = {}
    for index, first, last, several in zip(frame.index, frame["window_first"], frame["window_last"],
                                           frame["window_ranges"]):
        if several is not None and len(several):
            flat[index] = [float(v) for v in several]
        elif first == first and first is not None:  # not NaN
            flat[index] = [float(first), float(last)]
        else:
            flat[index] = []
    width = max(2, max(len(v) for v in flat.values()))
    return {index: v + [-1.0] * (width - len(v)) for index, v in flat.items()}


# ---------------------------------------------------------------------------------------------- training


def train(
    data: str | Path | list[str | Path] | None = None,
    *,
    model: str | None = None,
    output: str | Path,
    head: str | None = None,
    loss: str | None = None,
    loss_kwargs: dict[str, Any] | None = None,
    epochs: float | None = None,
    max_steps: int | None = None,
    learning_rate: float | None = None,
    gate_learning_rate: float | None = None,
    batch_queries: int | None = None,
    grad_accum: int | None = None,
    max_query_length: int | None = None,
    max_passage_length: int | None = None,
    warmup_ratio: float | None = None,
    weight_decay: float | None = None,
    seed: int | None = None,
    bf16: bool | str | None = None,
    resume: bool | None = None,
    overwrite: bool | None = None,
    save_steps: int | None = None,
    logging_steps: int | None = None,
    keep_checkpoints: bool | None = None,
    stages: list[dict[str, Any]] | None = None,
    metrics: dict[str, Any] | None = None,
    callbacks: list | None = None,
) -> Path:
    """Train a cross-encoder and save it to ``output``.

    Every option is a field of :class:`~rankdistill.training.options.TrainOptions` (described and defaulted
    there); ``None`` means "not given": the field's default, and in a stage the top-level value.

    Args:
        data: parquet file(s) from ``rankdistill build`` (one row per query-candidate, grouped by qid, ``target``
            higher = better).
        model: a short name (``minilm-l6``, the default), a model folder or a hub id.
        output: the folder to save the model in.
        head: ``cls`` (default; the architecture's classification head), ``similarity`` (scaled cosine of the
            query's and passage's mean tokens, :mod:`rankdistill.modeling.heads`) or ``gated`` (that head on an
            encoder whose cross-attention starts shut, :mod:`rankdistill.modeling.gated`: the untrained model is the
            backbone's bi-encoder; for bi-encoder checkpoints and few queries).
        loss: a name of :data:`rankdistill.training.losses.LOSSES` (default ranknet, the paper's distillation loss).
        loss_kwargs: the loss's own arguments, e.g. ``{"weighting": "discount"}`` for ranknet.
        epochs, max_steps, learning_rate, gate_learning_rate, batch_queries, grad_accum, warmup_ratio,
            weight_decay, seed, bf16, save_steps, logging_steps: the learning knobs of
            :class:`~rankdistill.training.options.LearningOptions` (``gate_learning_rate``: the gated head's
            gates; ``bf16``: None = on with a bf16 GPU, "auto" = also on CPUs with native bf16).
        max_query_length, max_passage_length: the token budgets, cut separately (default 32/256).
        resume: continue from the last checkpoint under ``<output>.checkpoints`` (finished stages are kept).
        overwrite: replace an existing ``output``.
        keep_checkpoints: keep ``<output>.checkpoints`` after success.
        stages: per-stage dicts of :class:`~rankdistill.training.options.StageOptions` keys (``data``, ``loss``,
            ``epochs`` ...); stage i+1 starts from stage i's weights. The paper's recipe is
            ``[{data: labels.parquet, loss: lce}, {data: teacher.parquet, loss: ranknet}]``.
        metrics: figures for the model card.
        callbacks: extra ``transformers.TrainerCallback`` objects.

    Returns:
        The model folder (``output``): a ``sentence_transformers.CrossEncoder`` with raw scores, its budgets in
        ``rankdistill.json``, ``training_log.json`` and a model card.

    Raises:
        RankdistillError: invalid options, missing or malformed data, an existing output without ``overwrite``,
            leftover checkpoints without ``resume``, a backbone that cannot be loaded.
    """
    values = dict(
        data=data, model=model, output=output, head=head, loss=loss, loss_kwargs=loss_kwargs, epochs=epochs,
        max_steps=max_steps, learning_rate=learning_rate, gate_learning_rate=gate_learning_rate,
        batch_queries=batch_queries, grad_accum=grad_accum,
        max_query_length=max_query_length, max_passage_length=max_passage_length, warmup_ratio=warmup_ratio,
        weight_decay=weight_decay, seed=seed, bf16=bf16, resume=resume, overwrite=overwrite,
        save_steps=save_steps, logging_steps=logging_steps, keep_checkpoints=keep_checkpoints,
        stages=stages, metrics=metrics,
    )
    return train_from_options(parse_options(values), callbacks=callbacks)


def train_from_options(opts: TrainOptions, callbacks: list | None = None) -> Path:
    """Run all stages of validated options (the CLI and :func:`train` both end here).

    Returns:
        The model folder.

    Raises:
        RankdistillError: as :func:`train`.
    """
    from rankdistill.modeling.backbones import resolve_backbone

    stages = resolve_stages(opts)
    output, work = _output_folders(opts)
    backbone = resolve_backbone(opts.model)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    last, summaries = _train_stages(stages, backbone, work, opts, callbacks)
    # under torchrun/accelerate every process trains and the first one alone finishes the folder; the others
    # return once it is in place, so a command run after them (or their own summary) finds it
    if is_main_process():
        _finish(last, output, opts, stages, summaries, seconds=time.perf_counter() - started)
        if not opts.keep_checkpoints:
            shutil.rmtree(work, ignore_errors=True)
    wait_for_everyone()
    return output


def _output_folders(opts: TrainOptions) -> tuple[Path, Path]:
    """``(output, <output>.checkpoints)``, refusing to replace a model or to ignore an unfinished run.

    Under torchrun the first process checks and the others wait for it: had they gone on, one of them could create
    the checkpoint folder before the first looked, and the first would refuse its own run as unfinished.
    """
    if opts.output is None:
        raise RankdistillError("output: give the folder to save the model in")
    output = Path(opts.output)
    work = output.parent / f"{output.name}.checkpoints"
    if is_main_process() and output.exists() and not opts.overwrite:
        raise RankdistillError(f"output {output} already exists; set overwrite=True to replace it, or choose another folder")
    if is_main_process() and work.exists() and not opts.resume:
        raise RankdistillError(
            f"{work} holds checkpoints of an unfinished run: set resume=True to continue it, or delete the folder to start over"
        )
    wait_for_everyone()
    return output, work


def _train_stages(
    stages: list[StageOptions], backbone: str, work: Path, opts: TrainOptions, callbacks: list | None
) -> tuple[Path, list[dict[str, Any]]]:
    """Train the stages in turn, each from the previous one's model; a stage finished before ``resume`` is kept.

    Returns:
        The last stage's model folder and each stage's summary.
    """
    current = backbone
    summaries = []
    for i, stage in enumerate(stages, 1):
        done = work / f"stage-{i}" / "model"
        # a finished stage is not trained again; a folder without its stage.json was being moved to the output when
        # a kill came (``_finish``): its last checkpoint finishes it again
        if opts.resume and (done / "stage.json").is_file():
            summaries.append(json.loads((done / "stage.json").read_text(encoding="utf-8")))
        else:
            shutil.rmtree(done, ignore_errors=True)
            done, summary = _train_stage(i, stage, current, work, opts, callbacks)
            summaries.append(summary)
        current = str(done)
    return Path(current), summaries


def _train_stage(
    index: int, stage: StageOptions, start_model: str, work: Path, opts: TrainOptions, callbacks: list | None
) -> tuple[Path, dict[str, Any]]:
    """One stage: build the model from ``start_model``, train, save to ``work/stage-<i>/model``."""
    from rankdistill.modeling.cross_encoder import build_cross_encoder

    stage_dir = work / f"stage-{index}"
    model = build_cross_encoder(
        start_model, max_query_length=opts.max_query_length, max_passage_length=opts.max_passage_length,
        seed=stage.seed, head=opts.head,
    )
    dataset, stats = load_listwise(stage.data, model.tokenizer, opts.max_query_length, opts.max_passage_length)
    _check_pairs(stage, stats)
    loss = make_loss(stage.loss, model, **stage.loss_kwargs)
    trainer = _trainer_class()(
        model=model, args=_training_arguments(stage, stage_dir), train_dataset=dataset, loss=loss, callbacks=callbacks
    )
    trainer.gate_learning_rate = stage.gate_learning_rate
    checkpoint = _last_checkpoint(stage_dir) if opts.resume else None
    started = time.perf_counter()
    hook = _plain_outputs(model) if world_size() > 1 else None
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    finally:
        if hook is not None:
            hook.remove()
    summary = {
        "stage": index,
        "start_model": start_model,
        "data": [str(p) for p in stage.data],
        **stats,
        "loss": stage.loss,
        "loss_kwargs": stage.loss_kwargs,
        "steps": trainer.state.global_step,
        "processes": world_size(),  # data-parallel: each step takes batch_queries x grad_accum lists in every process
        "steps_per_epoch": _steps_per_epoch(stats["lists"], stage.batch_queries, stage.grad_accum, world_size()),
        "train_seconds": round(time.perf_counter() - started, 1),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "log_history": [dict(entry) for entry in trainer.state.log_history],
    }
    final = stage_dir / "model"
    if trainer.is_world_process_zero():
        _save_stage(model, final, summary, opts)
    trainer.accelerator.wait_for_everyone()
    return final, summary


def _steps_per_epoch(lists: int, batch_queries: int, grad_accum: int, processes: int) -> int:
    """Optimiser steps in one pass over the lists.

    Several processes are dealt whole batches in turn; under DDP sentence-transformers sets ``dataloader_drop_last``
    and accelerate then drops the batches at an epoch's end that would not give every process one (else the
    processes would wait on each other): those few lists are not seen in that epoch.
    """
    batches = math.ceil(lists / batch_queries) if processes == 1 else lists // (batch_queries * processes)
    return math.ceil(batches / grad_accum)


def _plain_outputs(model):
    """Make the model return a plain dict, so that DistributedDataParallel finds the scores in it.

    DDP with ``find_unused_parameters`` (Hugging Face's Trainer turns it on for any model that is not a
    ``PreTrainedModel``) looks for the forward's tensors in lists, tuples, dicts and dataclasses, and treats every
    parameter it cannot reach from them as unused. sentence-transformers' ``CrossEncoder`` returns a
    ``BatchEncoding`` (a ``UserDict``): DDP found no tensor, marked every parameter ready at once, and the backward
    failed ("marked as ready twice"). A forward hook that returns ``dict(output)`` replaces the output.

    Returns:
        The hook's handle (``.remove()`` it after training).
    """
    from collections import UserDict

    return model.register_forward_hook(lambda module, args, output: dict(output) if isinstance(output, UserDict) else None)


def _check_pairs(stage: StageOptions, stats: dict[str, Any]) -> None:
    """A set built with ``pairs='compared'`` carries windows only the pairwise ranknet loss can use."""
    if stats["teacher_pairs"] == "compared" and stage.loss != "ranknet":
        raise RankdistillError(
            f"{stage.data[0]}: built with pairs='compared', which only the pairwise ranknet loss can use (the stage's "
            f"loss is {stage.loss}); use loss ranknet, or rebuild the set with pairs='all'"
        )


def _training_arguments(stage: StageOptions, stage_dir: Path):
    """The stage's options as sentence-transformers' (Hugging Face's) training arguments."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    return CrossEncoderTrainingArguments(
        output_dir=str(stage_dir),
        num_train_epochs=stage.epochs,
        max_steps=stage.max_steps or -1,
        per_device_train_batch_size=stage.batch_queries,
        gradient_accumulation_steps=stage.grad_accum,
        learning_rate=stage.learning_rate,
        warmup_steps=stage.warmup_ratio,  # a float below 1 is a fraction of the steps (transformers >= 5)
        weight_decay=stage.weight_decay,
        lr_scheduler_type="linear",
        bf16=resolve_bf16(stage.bf16),
        use_cpu=not torch.cuda.is_available(),  # what HF's Trainer asks for before it autocasts bf16 on a CPU
        seed=stage.seed,
        data_seed=stage.seed,
        save_strategy="steps",
        save_steps=stage.save_steps,
        save_total_limit=2,  # the latest checkpoint (for resume) and one before it
        logging_strategy="steps",
        logging_steps=stage.logging_steps,
        logging_first_step=True,
        report_to="none",
        dataloader_drop_last=False,
        remove_unused_columns=False,
    )


def _save_stage(model, final: Path, summary: dict[str, Any], opts: TrainOptions) -> None:
    """Save a finished stage's model, budgets and summary to ``final`` atomically (a temp folder renamed)."""
    from rankdistill.modeling.truncation import write_truncation

    tmp = final.parent / "model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    write_truncation(tmp, opts.max_query_length, opts.max_passage_length)
    (tmp / "stage.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, final)


def _last_checkpoint(folder: Path) -> Path | None:
    """The newest *complete* Trainer checkpoint in ``folder``; newer, half-written ones are removed.

    The Trainer writes a checkpoint in place (weights, optimizer, scheduler, RNG states, then
    ``trainer_state.json`` last), so a kill while saving leaves a folder that ``get_last_checkpoint`` would pick and
    resuming would read half-written. A checkpoint counts as complete when its state file parses and names its step.
    """
    if not folder.is_dir():
        return None
    steps = sorted((int(p.name.rpartition("-")[2]), p) for p in folder.glob("checkpoint-*")
                   if p.is_dir() and p.name.rpartition("-")[2].isdigit())
    for step, path in reversed(steps):
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            state = None
        if isinstance(state, dict) and state.get("global_step") == step:
            return path
        shutil.rmtree(path, ignore_errors=True)  # never resumed from, and the Trainer would save into it again
    return None


def _trainer_class():
    """sentence-transformers' CrossEncoderTrainer whose optimiser gives the gated head's gates their own rate.

    Why a subclass rather than ``CrossEncoderTrainingArguments(learning_rate_mapping={r"\\.gates$": rate})``: the
    mapping's parameter group takes the run's weight decay for every parameter whose name is not a bias or a norm,
    so the gates would decay; here they keep weight decay 0, and the other groups stay as the Trainer made them.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer

    class Trainer(CrossEncoderTrainer):
        """CrossEncoderTrainer whose optimizer gives the gated head's gates their own rate, without weight decay."""

        gate_learning_rate = 0.0

        def create_optimizer(self, model=None):
            optimizer = super().create_optimizer(model)
            gates = [p for n, p in (model or self.model).named_parameters() if n.endswith(".gates") and p.requires_grad]
            if gates and not any(g.get("rankdistill_gates") for g in optimizer.param_groups):
                ids = {id(p) for p in gates}
                for group in optimizer.param_groups:
                    group["params"] = [p for p in group["params"] if id(p) not in ids]
                optimizer.add_param_group({"params": gates, "lr": self.gate_learning_rate, "weight_decay": 0.0,
                                           "rankdistill_gates": True})
            return optimizer

    return Trainer


# ---------------------------------------------------------------------------------------------- the saved model


def _finish(last: Path, output: Path, opts: TrainOptions, stages: list[StageOptions], summaries: list[dict[str, Any]],
            seconds: float) -> None:
    """Card, budgets and training log into the last stage's folder, then that folder moved to ``output``."""
    from rankdistill.modeling.backbones import backbone_source
    from rankdistill.modeling.card import write_model_card
    from rankdistill.modeling.cross_encoder import head_name
    from rankdistill.modeling.truncation import write_truncation

    bf16 = [resolve_bf16(stage.bf16) for stage in stages]
    settings = {
        "base_model": backbone_source(opts.model),
        "head": head_name(last),
        "max_query_length": opts.max_query_length,
        "max_passage_length": opts.max_passage_length,
        "max_seq_length": json.loads((last / "tokenizer_config.json").read_text()).get("model_max_length"),
        "bf16": bf16[0] if len(set(bf16)) == 1 else bf16,
        "train_seconds": round(seconds, 1),
    }
    card_stages = [_card_stage(stage, summary) for stage, summary in zip(stages, summaries)]
    write_model_card(last, base_model=settings["base_model"], stages=card_stages, settings=settings, metrics=opts.metrics)
    write_truncation(last, opts.max_query_length, opts.max_passage_length, {"base_model": settings["base_model"]})
    log = {"stages": summaries, "settings": settings}
    (last / "training_log.json").write_text(json.dumps(log, indent=2, default=str) + "\n", encoding="utf-8")
    (last / "stage.json").unlink(missing_ok=True)
    _replace_dir(last, output)


def _card_stage(stage: StageOptions, summary: dict[str, Any]) -> dict[str, Any]:
    """A stage's rows in the model card."""
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    return {
        "data": summary["data"],
        "queries": summary["queries"],
        "pairs": summary["pairs"],
        "loss": stage.loss,
        "loss_kwargs": stage.loss_kwargs,
        "epochs": stage.epochs,
        "max_steps": stage.max_steps,
        "steps": summary["steps"],
        "learning_rate": stage.learning_rate,
        "batch_queries": stage.batch_queries,
        "grad_accum": stage.grad_accum,
        "warmup_ratio": stage.warmup_ratio,
        "weight_decay": stage.weight_decay,
        "seed": stage.seed,
        "first/last logged loss": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
    }


def _replace_dir(src: Path, dst: Path) -> None:
    """Move a finished model folder into place; an old folder is moved aside first, removed last."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    old = None
    if dst.exists():
        old = dst.parent / f".{dst.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    if src.stat().st_dev == dst.parent.stat().st_dev:
        os.replace(src, dst)
    else:  # pragma: no cover - checkpoints live beside the output, so this is rare
        tmp = dst.parent / f".{dst.name}.tmp"
        shutil.copytree(src, tmp)
        os.replace(tmp, dst)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
