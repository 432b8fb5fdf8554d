"""``rankdistill export MODEL_DIR --onnx OUT``: the student as an ONNX graph (sentence-transformers' layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer


def export_command(
    model: Annotated[str, typer.Argument(help="Cross-encoder folder ([CLS] head), hub id or short name.", show_default=False)],
    onnx: Annotated[Path, typer.Option("--onnx", help="Folder to write: a copy of the model with onnx/model.onnx (may be MODEL_DIR itself).")],
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: torch's exporter's).")] = None,
) -> None:
    """Export a cross-encoder to ONNX; the graph is checked against torch with ONNX Runtime."""
    from rich.console import Console

    from rankdistill.serving.onnx import ONNX_FILE, export, export_report

    folder = export(model, onnx=onnx, opset=opset)
    diff = export_report(folder)["max_abs_diff_vs_torch"]
    Console(stderr=True).print(
        f"ONNX model written to [bold]{folder / ONNX_FILE}[/] (max |diff| vs torch on the probe pairs: {diff:.1e})",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export_command)
