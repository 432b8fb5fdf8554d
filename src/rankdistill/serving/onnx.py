"""Export a ``[CLS]``-head cross-encoder to ONNX, in sentence-transformers' layout (``OUT/onnx/model.onnx``).

sentence-transformers exports through Optimum (``CrossEncoder(path, backend="onnx")``, then
``export_optimized_onnx_model``), but Optimum's ONNX exporter (optimum-onnx 0.1) needs transformers < 4.58,
and rankdistill runs on transformers 5. So the graph comes from torch's own exporter
(``torch.onnx.export(dynamo=True)``, onnxscript) with the input and output names Optimum uses
(``input_ids``, ``attention_mask``, ``token_type_ids`` -> ``logits``), dynamic batch and sequence axes,
next to a copy of the model folder: where Optimum is installed, ``CrossEncoder(OUT, backend="onnx")`` loads it,
and ONNX Runtime runs it anywhere. Every export is checked against the torch model with ONNX Runtime.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from rankdistill.errors import RankdistillError

ONNX_FILE = Path("onnx") / "model.onnx"
REPORT_FILE = Path("onnx") / "rankdistill-export.json"
INSTALL_HINT = "install the onnx extra: pip install 'rankdistill[onnx]'"
TOLERANCE = 1e-4
# probe pairs of different lengths: padded in one batch, so the check covers the attention mask
PROBES = [
    ("what is the price of water", "The price of water in the city rose this year."),
    ("who keeps public records", "Public records are kept by the court of the state, one record a year, for people."),
    ("fast model", "A small model."),
]


def _load(model: str | Path):
    import torch
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
    from transformers import logging as hf_logging

    from rankdistill.modeling.backbones import resolve_backbone
    from rankdistill.modeling.cross_encoder import has_similarity_head

    path = resolve_backbone(model)
    if Path(path).is_dir() and has_similarity_head(path):
        raise RankdistillError(
            f"{model}: ONNX export covers [CLS]-head cross-encoders; this model uses rankdistill's similarity head "
            "(train with head 'cls' to export it, or serve it as it is with rankdistill serve)"
        )
    config = AutoConfig.from_pretrained(path)
    archs = getattr(config, "architectures", None) or []
    if not any(a.endswith("ForSequenceClassification") for a in archs) or getattr(config, "num_labels", 1) != 1:
        raise RankdistillError(
            f"{model}: not a one-score cross-encoder (architectures {archs or 'none'}, {config.num_labels} labels); "
            "export a model trained with rankdistill train"
        )
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        net = AutoModelForSequenceClassification.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    finally:
        hf_logging.set_verbosity(level)
    return path, net.eval(), AutoTokenizer.from_pretrained(path)


def _inputs(tokenizer, net, pairs):
    import torch

    names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in tokenizer.model_input_names]
    if "token_type_ids" in names and getattr(net.config, "type_vocab_size", 2) < 2:
        names.remove("token_type_ids")
    enc = tokenizer([q for q, _ in pairs], [p for _, p in pairs], padding=True, return_tensors="pt")
    return {n: enc[n].to(torch.int64) for n in names}


def _export_graph(net, inputs, path: Path, opset: int | None) -> None:
    import torch

    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    noisy = logging.getLogger("torch.onnx")  # "torchvision is not installed" lines, nothing to act on
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                net, (), str(path), kwargs=inputs, input_names=list(inputs), output_names=["logits"],
                dynamic_shapes={n: {0: batch, 1: sequence} for n in inputs}, opset_version=opset, dynamo=True,
                external_data=False, verbose=False,
            )
    except ImportError as exc:
        raise RankdistillError(f"ONNX export needs onnx and onnxscript ({exc.name} is missing); {INSTALL_HINT}") from exc
    finally:
        noisy.setLevel(level)


def _check_opset(opset: int) -> None:
    """An opset the installed onnx knows (its exporter would fail with a traceback on any other)."""
    try:
        from onnx.defs import onnx_opset_version
    except ImportError as exc:
        raise RankdistillError(f"ONNX export needs onnx ({exc.name} is missing); {INSTALL_HINT}") from exc
    newest = onnx_opset_version()
    if not 1 <= opset <= newest:
        raise RankdistillError(f"opset must lie between 1 and {newest} (the newest the installed onnx knows), got {opset}")


def _check(net, inputs, path: Path) -> float:
    """Max |ONNX Runtime - torch| over the probe batch; raises past the tolerance."""
    import numpy as np
    import torch

    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise RankdistillError(f"checking the export needs onnxruntime; {INSTALL_HINT}") from exc
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's own error types (InvalidGraph, Fail, ...) share no useful base
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise RankdistillError(f"ONNX Runtime cannot load the exported graph ({detail}); leave opset unset or "
                               "choose one onnxruntime supports") from None
    got = session.run(["logits"], {n: t.numpy() for n, t in inputs.items()})[0]
    with torch.inference_mode():
        want = net(**inputs).logits.float().numpy()
    diff = float(np.abs(got - want).max())
    if not diff <= TOLERANCE:
        raise RankdistillError(f"the ONNX graph scores differ from torch by {diff:.2e} (> {TOLERANCE}) on the probe pairs; "
                               "report this with the model's architecture")
    return diff


def export(model: str | Path, *, onnx: str | Path, opset: int | None = None) -> Path:
    """Export ``model`` to ONNX in folder ``onnx``, checked against the torch model with ONNX Runtime.

    The folder is written in a temporary place beside it and moved in at the end, so a failed export leaves
    nothing half-written.

    Args:
        model: a ``[CLS]``-head cross-encoder folder, hub id or short name.
        onnx: the folder to write: a copy of the model folder with ``onnx/model.onnx`` added. It may be the model
            folder itself, which then gains ``onnx/``; an existing, non-empty other folder is refused.
        opset: the ONNX opset (default: torch's exporter's).

    Returns:
        The folder; ``onnx/rankdistill-export.json`` in it records the check (:func:`export_report`).

    Raises:
        RankdistillError: the model has rankdistill's similarity head or is not a one-score cross-encoder,
            ``onnx`` is taken, onnx/onnxscript/onnxruntime are missing, or the graph's scores differ from torch's.
    """
    import torch

    if opset is not None:
        _check_opset(opset)
    path, net, tokenizer = _load(model)
    out = Path(onnx).expanduser()
    same = Path(path).is_dir() and out.exists() and out.resolve() == Path(path).resolve()
    if out.exists() and not same and (not out.is_dir() or any(out.iterdir())):
        raise RankdistillError(f"{out} already exists and is not empty; give a new folder (or the model folder itself)")
    out.parent.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(tokenizer, net, PROBES)
    with tempfile.TemporaryDirectory(prefix=".rankdistill-export-", dir=out.parent) as tmp:
        stage = Path(tmp) / "model"
        if same:
            stage.mkdir()
        elif Path(path).is_dir():
            # not this export's own staging folder, should OUT lie inside the model folder
            shutil.copytree(path, stage, ignore=shutil.ignore_patterns("onnx", ".git", "checkpoint-*", ".rankdistill-export-*"))
        else:  # a hub id: the weights and tokenizer as loaded
            net.save_pretrained(stage)
            tokenizer.save_pretrained(stage)
        (stage / ONNX_FILE).parent.mkdir(parents=True, exist_ok=True)
        _export_graph(net, inputs, stage / ONNX_FILE, opset)
        diff = _check(net, inputs, stage / ONNX_FILE)
        report = {"source": str(model), "onnx_file": str(ONNX_FILE), "inputs": list(inputs), "output": "logits",
                  "max_abs_diff_vs_torch": diff, "probe_pairs": len(PROBES), "torch": torch.__version__}
        (stage / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if same:
            (out / "onnx").mkdir(exist_ok=True)
            for name in (ONNX_FILE, REPORT_FILE):
                os.replace(stage / name, out / name)
        else:
            if out.exists():
                out.rmdir()  # empty, checked above
            os.replace(stage, out)
    return out


def export_report(folder: str | Path) -> dict:
    """What :func:`export` recorded about an exported folder."""
    return json.loads((Path(folder) / REPORT_FILE).read_text(encoding="utf-8"))
