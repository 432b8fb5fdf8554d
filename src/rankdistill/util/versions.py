"""The package versions recorded with every result (stage manifests, reports): the ones that decide its figures."""

from __future__ import annotations

import platform
from importlib import metadata

VERSIONED = ("rankdistill", "torch", "transformers", "sentence-transformers", "ir_datasets", "ir-measures", "bm25s",
             "numpy", "scipy", "matplotlib")


def versions() -> dict[str, str]:
    """``python`` and each installed package of ``VERSIONED`` -> its version (packages not installed are left out)."""
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found
