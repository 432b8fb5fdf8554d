"""Train a cross-encoder on a distillation set (parquet from ``rankdistill build``), in one or more stages.

Everything that Hugging Face's Trainer already does well — optimiser, warm-up, bf16, gradient accumulation,
checkpoints and resume, DDP under ``torchrun``/``accelerate`` — comes from sentence-transformers'
``CrossEncoderTrainer``; this module only turns the parquet into listwise examples, picks the loss, chains
stages and saves the result atomically with a model card.

Layout while training: ``<output>.checkpoints/stage-<i>/checkpoint-<step>`` (Trainer checkpoints) and
``stage-<i>/model`` once a stage finishes. The last stage's model is renamed to ``<output>`` at the end and
the checkpoint folder removed (unless ``keep_checkpoints``), so ``<output>`` either is complete or absent.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from rankdistill.errors import RankdistillError

LOSSES = ("ranknet", "lce", "kl", "listnet", "approx-ndcg", "adr-mse", "margin-mse", "bce")
LossName = Literal["ranknet", "lce", "kl", "listnet", "approx-ndcg", "adr-mse", "margin-mse", "bce"]
REQUIRED_COLUMNS = ("qid", "query", "passage", "target", "position")
WINDOW_COLUMNS = ("window_first", "window_last")  # written by ``build --pairs compared``


class StageOptions(BaseModel):
    """Knobs that may differ per stage; ``None`` means "inherit the top-level value"."""

    model_config = ConfigDict(extra="forbid")

    data: list[Path] | None = None
    loss: LossName | None = None
    loss_kwargs: dict[str, Any] | None = None
    epochs: float | None = Field(None, gt=0)
    max_steps: int | None = Field(None, gt=0)
    learning_rate: float | None = Field(None, gt=0)
    gate_learning_rate: float | None = Field(None, ge=0)
    batch_queries: int | None = Field(None, ge=1)
    grad_accum: int | None = Field(None, ge=1)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0)
    seed: int | None = None
    save_steps: int | None = Field(None, ge=1)
    logging_steps: int | None = Field(None, ge=1)

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        if value is None or isinstance(value, (list, tuple)):
            return value
        return [value]


class TrainOptions(StageOptions):
    """All knobs of ``rankdistill train``; the same keys make up the YAML config."""

    model: str = "minilm-l6"
    head: Literal["cls", "similarity", "gated"] = "cls"
    output: Path | None = None
    max_query_length: int = Field(32, ge=1)
    max_passage_length: int = Field(256, ge=1)
    bf16: bool | Literal["auto"] | None = None
    resume: bool = False
    overwrite: bool = False
    keep_checkpoints: bool = False
    stages: list[StageOptions] | None = None
    metrics: dict[str, Any] | None = None


# Top-level defaults that stages inherit when neither the stage nor the top level sets them.
STAGE_DEFAULTS: dict[str, Any] = {
    "loss": "ranknet",
    "loss_kwargs": {},
    "epochs": 1.0,
    "max_steps": None,
    # The paper uses 1e-5 for 10,000 queries x 3 epochs; with tens of queries that barely moves the
    # weights, so the default is the usual cross-encoder fine-tuning rate.
    "learning_rate": 2e-5,
    # head "gated": Adam moves a parameter by about the learning rate a step, so gates that start shut need a
    # rate far above the encoder's to open within a few dozen steps (1e-2 opened them to 0.02-0.09 on DL20)
    "gate_learning_rate": 1e-2,
    "batch_queries": 1,
    "grad_accum": 1,
    "warmup_ratio": 0.1,
    "weight_decay": 0.01,
    "seed": 0,
    "save_steps": 500,
    "logging_steps": 10,
}


def _validation_message(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(TrainOptions.model_fields))
            msg = f"unknown key (allowed: {allowed})"
        elif "input" in err and err["type"] != "missing":
            msg = f"{msg} (got {err['input']!r})"
        parts.append(f"key '{key}': {msg}")
    return f"{where}: " + "; ".join(parts)


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a YAML config into a dict; relative data/output paths are taken relative to the file."""
    from rankdistill.util.config import read_yaml_mapping

    path = Path(path)
    raw = read_yaml_mapping(path)
    base = path.resolve().parent

    def rel(value):
        if value is None:
            return None
        if isinstance(value, (list, tuple)):
            return [rel(v) for v in value]
        p = Path(str(value)).expanduser()
        return str(p if p.is_absolute() else base / p)

    for key in ("data", "output"):
        if key in raw:
            raw[key] = rel(raw[key])
    if isinstance(raw.get("model"), str) and raw["model"].startswith((".", "/")):
        raw["model"] = rel(raw["model"])
    if isinstance(raw.get("stages"), list):
        stages = []
        for stage in raw["stages"]:
            if isinstance(stage, dict):
                stage = {str(k).replace("-", "_"): v for k, v in stage.items()}
                if "data" in stage:
                    stage["data"] = rel(stage["data"])
            stages.append(stage)
        raw["stages"] = stages
    return raw


def parse_options(values: dict[str, Any], where: str = "train options") -> TrainOptions:
    try:
        return TrainOptions.model_validate(values)
    except ValidationError as exc:
        raise RankdistillError(_validation_message(exc, where)) from None


def resolve_stages(opts: TrainOptions) -> list[dict[str, Any]]:
    """Each stage's full settings: stage value, else top-level value, else the default."""
    stage_list = opts.stages or [StageOptions()]
    resolved = []
    for i, stage in enumerate(stage_list, 1):
        settings = {}
        for key, default in STAGE_DEFAULTS.items():
            value = getattr(stage, key)
            if value is None:
                value = getattr(opts, key)
            settings[key] = default if value is None else value
        data = stage.data if stage.data is not None else opts.data
        if not data:
            where = f"stages.{i - 1}.data" if opts.stages else "data"
            raise RankdistillError(f"key '{where}': no training data given (a parquet file from `rankdistill build`)")
        settings["data"] = [Path(p) for p in data]
        resolved.append(settings)
    return resolved


# ---------------------------------------------------------------------------------------------- data


def load_listwise(paths: list[Path], tokenizer, max_query_length: int, max_passage_length: int):
    """Parquet rows -> a datasets.Dataset of (query, docs, labels), one row per query, ordered by position.

    Texts are cut here, once, with the separate query/passage budgets (see :mod:`rankdistill.modeling.cross_encoder`).
    """
    import pyarrow as pa
    from datasets import Dataset

    from rankdistill.distillation import schema
    from rankdistill.modeling.cross_encoder import truncate_pairs

    columns = (*schema.REQUIRED_COLUMNS, *schema.WINDOW_COLUMNS)  # window columns of older sets come as nulls
    tables = []
    for file_index, path in enumerate(paths):
        table = schema.read_set(path, columns=columns)
        # integers as int64 for pandas (a null window stays a null)
        table = table.cast(pa.schema([(f.name, pa.int64() if pa.types.is_integer(f.type) else f.type) for f in table.schema]))
        # lists are keyed by (file, qid): the same query in two files (e.g. two samples) stays two lists
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
    keys = list(zip(frame["_file"], frame["qid"]))
    order = {key: i for i, key in enumerate(dict.fromkeys(keys))}
    frame = frame.assign(_q=[order[key] for key in keys]).sort_values(["_q", "position"], kind="stable")
    # a set built with --pairs compared: each label is (target, first window, last window), -1 = no window
    compared = bool(frame["window_first"].notna().any())
    rows = {"query": [], "docs": [], "labels": []}
    for _, group in frame.groupby("_q", sort=True):
        rows["query"].append(group["query"].iloc[0])
        rows["docs"].append(group["passage"].tolist())
        targets = group["target"].astype(float).tolist()
        if compared:
            first = group["window_first"].fillna(-1).astype(float).tolist()
            last = group["window_last"].fillna(-1).astype(float).tolist()
            rows["labels"].append([list(t) for t in zip(targets, first, last)])
        else:
            rows["labels"].append(targets)
    stats = {"queries": len(rows["query"]), "pairs": int(len(frame)), "max_list": max(map(len, rows["docs"])),
             "teacher_pairs": "compared" if compared else "all"}
    return Dataset.from_dict(rows), stats


# ---------------------------------------------------------------------------------------------- losses


def make_loss(name: str, model, kwargs: dict[str, Any] | None = None):
    """The loss by name (rankdistill.training.losses: sentence-transformers' own where it has the formula)."""
    from rankdistill.training.losses import make_loss as _make

    kwargs = dict(kwargs or {})
    try:
        return _make(name, model, **kwargs)
    except TypeError as exc:
        raise RankdistillError(f"loss {name!r}: bad loss_kwargs {kwargs} ({exc})") from exc


# ---------------------------------------------------------------------------------------------- training


def _last_checkpoint(folder: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    return Path(found) if folder.is_dir() and (found := get_last_checkpoint(str(folder))) else None


def _bf16(flag: bool | str | None) -> bool:
    """None: on with a bf16 GPU. "auto": also on a CPU with native bf16 dot products (AVX512_BF16 or AMX),
    where autocast trained the demo's student 1.18x faster than fp32 (12 steps, 2 rounds, quiet 2-core
    machine). True: the same, and an error on CPUs that would only emulate bf16."""
    import torch

    from rankdistill.util.device import cpu_has_native_bf16

    gpu = torch.cuda.is_available()
    if flag is None:
        return gpu and torch.cuda.is_bf16_supported()
    if flag == "auto":
        return torch.cuda.is_bf16_supported() if gpu else cpu_has_native_bf16()
    if flag and not gpu and not cpu_has_native_bf16():
        raise RankdistillError(
            "bf16 needs a GPU or a CPU with native bf16 (avx512_bf16 / amx_bf16); use bf16: auto, or --no-bf16"
        )
    return bool(flag)


def _trainer_class():
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


def _train_stage(
    index: int,
    stage: dict[str, Any],
    start_model: str,
    work: Path,
    opts: TrainOptions,
    resume: bool,
    callbacks: list | None,
) -> tuple[Path, dict[str, Any]]:
    """One stage: build the model from ``start_model``, train, save to ``work/stage-<i>/model``."""
    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainingArguments

    from rankdistill.modeling.cross_encoder import build_cross_encoder, write_truncation

    stage_dir = work / f"stage-{index}"
    final = stage_dir / "model"
    model = build_cross_encoder(
        start_model, max_query_length=opts.max_query_length, max_passage_length=opts.max_passage_length,
        seed=stage["seed"], head=opts.head,
    )
    dataset, stats = load_listwise(stage["data"], model.tokenizer, opts.max_query_length, opts.max_passage_length)
    if stats["teacher_pairs"] == "compared" and stage["loss"] != "ranknet":
        raise RankdistillError(
            f"{stage['data'][0]}: built with --pairs compared, which only the pairwise ranknet loss can use (the stage's "
            f"loss is {stage['loss']}); use loss ranknet, or rebuild the set with --pairs all"
        )
    loss = make_loss(stage["loss"], model, stage["loss_kwargs"])
    per_epoch = math.ceil(stats["queries"] / stage["batch_queries"] / stage["grad_accum"])
    args = CrossEncoderTrainingArguments(
        output_dir=str(stage_dir),
        num_train_epochs=stage["epochs"],
        max_steps=stage["max_steps"] or -1,
        per_device_train_batch_size=stage["batch_queries"],
        gradient_accumulation_steps=stage["grad_accum"],
        learning_rate=stage["learning_rate"],
        warmup_steps=stage["warmup_ratio"],  # a float below 1 is a fraction of the steps (transformers >= 5)
        weight_decay=stage["weight_decay"],
        lr_scheduler_type="linear",
        bf16=_bf16(opts.bf16),
        use_cpu=not torch.cuda.is_available(),  # what HF's Trainer asks for before it autocasts bf16 on a CPU
        seed=stage["seed"],
        data_seed=stage["seed"],
        save_strategy="steps",
        save_steps=stage["save_steps"],
        save_total_limit=2,  # the latest checkpoint (for --resume) and one before it
        logging_strategy="steps",
        logging_steps=stage["logging_steps"],
        logging_first_step=True,
        report_to="none",
        dataloader_drop_last=False,
        remove_unused_columns=False,
    )
    trainer = _trainer_class()(model=model, args=args, train_dataset=dataset, loss=loss, callbacks=callbacks)
    trainer.gate_learning_rate = stage["gate_learning_rate"]
    checkpoint = _last_checkpoint(stage_dir) if resume else None
    started = time.perf_counter()
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    seconds = time.perf_counter() - started
    log = [dict(entry) for entry in trainer.state.log_history]
    summary = {
        "stage": index,
        "start_model": start_model,
        "data": [str(p) for p in stage["data"]],
        **stats,
        "loss": stage["loss"],
        "loss_kwargs": stage["loss_kwargs"],
        "steps": trainer.state.global_step,
        "steps_per_epoch": per_epoch,
        "train_seconds": round(seconds, 1),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "log_history": log,
    }
    if trainer.is_world_process_zero():
        tmp = stage_dir / "model.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        model.save_pretrained(str(tmp))
        write_truncation(tmp, opts.max_query_length, opts.max_passage_length)
        (tmp / "stage.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
        os.replace(tmp, final)
    trainer.accelerator.wait_for_everyone()
    return final, summary


def train(
    data: str | Path | list[str | Path] | None = None,
    *,
    model: str = "minilm-l6",
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
    max_query_length: int = 32,
    max_passage_length: int = 256,
    warmup_ratio: float | None = None,
    weight_decay: float | None = None,
    seed: int | None = None,
    bf16: bool | str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    save_steps: int | None = None,
    logging_steps: int | None = None,
    keep_checkpoints: bool = False,
    stages: list[dict[str, Any]] | None = None,
    metrics: dict[str, Any] | None = None,
    callbacks: list | None = None,
) -> Path:
    """Train a cross-encoder and save it to ``output``; returns the model folder.

    ``data``: parquet file(s) from ``rankdistill build`` (one row per query-candidate, grouped by qid,
    ``target`` higher = better). ``model``: a short name (``minilm-l6``), a model folder or a hub id.
    ``head``: ``cls`` (default; the architecture's classification head), ``similarity`` (scaled cosine of
    the query's and passage's mean tokens, :mod:`rankdistill.modeling.heads`) or ``gated`` (that head on an encoder whose
    cross-attention starts shut, :mod:`rankdistill.modeling.gated`: the untrained model is the backbone's bi-encoder; for
    bi-encoder checkpoints and few queries). ``gate_learning_rate``: the gated head's gates' rate.
    ``loss``: one of :data:`LOSSES` (default ranknet, the paper's distillation loss). Defaults of the
    ``None`` knobs are in :data:`STAGE_DEFAULTS`. ``stages``: a list of dicts with the per-stage keys of
    :class:`StageOptions` (``data``, ``loss``, ``epochs`` ...); stage i+1 starts from stage i's weights —
    the paper's recipe is ``[{data: labels.parquet, loss: lce}, {data: teacher.parquet, loss: ranknet}]``.
    ``resume``: continue from the last checkpoint under ``<output>.checkpoints`` (finished stages are kept).
    ``bf16``: None = on when a bf16-capable GPU is present; "auto" = also on CPUs with native bf16. ``metrics``: figures for the model card.
    ``callbacks``: extra ``transformers.TrainerCallback`` objects.
    """
    values = {
        k: v
        for k, v in dict(
            data=data, model=model, output=output, head=head, loss=loss, loss_kwargs=loss_kwargs, epochs=epochs,
            max_steps=max_steps, learning_rate=learning_rate, gate_learning_rate=gate_learning_rate,
            batch_queries=batch_queries, grad_accum=grad_accum,
            max_query_length=max_query_length, max_passage_length=max_passage_length, warmup_ratio=warmup_ratio,
            weight_decay=weight_decay, seed=seed, bf16=bf16, resume=resume, overwrite=overwrite,
            save_steps=save_steps, logging_steps=logging_steps, keep_checkpoints=keep_checkpoints,
            stages=stages, metrics=metrics,
        ).items()
        if v is not None
    }
    return train_from_options(parse_options(values), callbacks=callbacks)


def train_from_options(opts: TrainOptions, callbacks: list | None = None) -> Path:
    """Run all stages of validated options (the CLI and :func:`train` both end here)."""
    from rankdistill.modeling.backbones import backbone_source, resolve_backbone
    from rankdistill.modeling.cross_encoder import head_name, write_model_card, write_truncation

    if opts.output is None:
        raise RankdistillError("key 'output': give the folder to save the model in (--output)")
    output = Path(opts.output)
    stages = resolve_stages(opts)
    # under torchrun/accelerate every process runs this; only the first checks and writes shared folders
    main_process = int(os.environ.get("RANK", "0")) == 0
    if main_process and output.exists() and not opts.overwrite:
        raise RankdistillError(f"output {output} already exists; pass --overwrite to replace it or choose another folder")
    work = output.parent / f"{output.name}.checkpoints"
    if main_process and work.exists() and not opts.resume:
        raise RankdistillError(
            f"{work} holds checkpoints of an unfinished run: pass --resume to continue it, or delete the folder to start over"
        )
    backbone = resolve_backbone(opts.model)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    current = backbone
    summaries = []
    for i, stage in enumerate(stages, 1):
        done = work / f"stage-{i}" / "model"
        if opts.resume and done.is_dir():  # a finished stage is not trained again
            summaries.append(json.loads((done / "stage.json").read_text(encoding="utf-8")))
            current = str(done)
            continue
        final, summary = _train_stage(i, stage, current, work, opts, opts.resume, callbacks)
        summaries.append(summary)
        current = str(final)
    total = time.perf_counter() - started
    if not main_process:
        return output

    last = Path(current)
    settings = {
        "base_model": backbone_source(opts.model),
        "head": head_name(last),
        "max_query_length": opts.max_query_length,
        "max_passage_length": opts.max_passage_length,
        "max_seq_length": json.loads((last / "tokenizer_config.json").read_text()).get("model_max_length"),
        "bf16": _bf16(opts.bf16),
        "train_seconds": round(total, 1),
    }
    card_stages = []
    for stage, summary in zip(stages, summaries):
        losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
        card_stages.append(
            {
                "data": summary["data"],
                "queries": summary["queries"],
                "pairs": summary["pairs"],
                "loss": stage["loss"],
                "loss_kwargs": stage["loss_kwargs"],
                "epochs": stage["epochs"],
                "max_steps": stage["max_steps"],
                "steps": summary["steps"],
                "learning_rate": stage["learning_rate"],
                "batch_queries": stage["batch_queries"],
                "grad_accum": stage["grad_accum"],
                "warmup_ratio": stage["warmup_ratio"],
                "weight_decay": stage["weight_decay"],
                "seed": stage["seed"],
                "first/last logged loss": [round(losses[0], 4), round(losses[-1], 4)] if losses else None,
            }
        )
    write_model_card(last, base_model=settings["base_model"], stages=card_stages, settings=settings, metrics=opts.metrics)
    write_truncation(last, opts.max_query_length, opts.max_passage_length, {"base_model": settings["base_model"]})
    (last / "training_log.json").write_text(json.dumps({"stages": summaries, "settings": settings}, indent=2, default=str) + "\n", encoding="utf-8")
    (last / "stage.json").unlink(missing_ok=True)
    _replace_dir(last, output)
    if not opts.keep_checkpoints:
        shutil.rmtree(work, ignore_errors=True)
    return output


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
