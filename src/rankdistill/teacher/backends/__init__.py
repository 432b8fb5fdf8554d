"""Teacher backends behind one interface; each module is imported only when asked for.

vllm and the HTTP client are heavy or optional, so ``make_backend`` imports lazily and turns a missing
optional extra into a one-line ``RankdistillError``.
"""

from __future__ import annotations

import importlib
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Backend, Generation

# name -> (module, class)
BACKENDS: dict[str, tuple[str, str]] = {
    "hf": ("rankdistill.teacher.backends.hf", "HFBackend"),
    "vllm": ("rankdistill.teacher.backends.vllm", "VLLMBackend"),
    "openai": ("rankdistill.teacher.backends.openai", "OpenAIBackend"),
    "replay": ("rankdistill.teacher.backends.replay", "ReplayBackend"),
}

__all__ = ["BACKENDS", "Backend", "Generation", "make_backend"]


def make_backend(name: str, **options: Any) -> Backend:
    """Build backend ``name`` with keyword ``options`` (those set to None are left to the defaults)."""
    if name not in BACKENDS:
        raise RankdistillError(f"unknown teacher backend {name!r}; choose one of {', '.join(BACKENDS)}")
    module_name, class_name = BACKENDS[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if name == "vllm" and exc.name and exc.name.split(".")[0] == "vllm":
            raise RankdistillError(
                "the vllm backend needs vLLM: pip install rankdistill[vllm] (Linux with a CUDA GPU)"
            ) from exc
        raise
    cls = getattr(module, class_name)
    return cls(**{k: v for k, v in options.items() if v is not None})
