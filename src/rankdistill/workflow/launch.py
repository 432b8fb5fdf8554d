"""A pipeline's training stage in several processes (``train.processes: N``): a torchrun job of ``rankdistill train``.

Why the pipeline starts torchrun for its training steps rather than running under torchrun itself: its other
steps are one process's work with their own parallelism (vLLM's tensor parallelism, re-ranking's batching), and
under torchrun each of them would need every other process to wait for it. So the pipeline stays one process, and
each training step becomes ``python -m torch.distributed.run --standalone --nproc-per-node N -m rankdistill --
train --config <options>`` on this machine: one process per GPU, or CPU processes talking over gloo.

The config keeps its meaning whatever N is: a step still learns from ``batch_queries x grad_accum`` lists, which
the processes share (:func:`split_step`). So the student is the one a single process trains (to rounding, and
without dropout: tests/training/test_distributed.py), and its step is not re-run when only N changes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rankdistill.errors import RankdistillError
from rankdistill.util.device import default_threads
from rankdistill.util.distributed import world_size


def split_step(batch_queries: int, grad_accum: int, processes: int) -> tuple[int, int]:
    """Each process's ``(batch_queries, grad_accum)`` so that N processes together take one step's lists.

    The accumulation steps are shared out first: each process then averages whole micro-batches of the same size,
    and DDP's mean of those means is the single process's, whatever the lists' lengths. Else the batch is.

    Raises:
        ValueError: neither is a multiple of ``processes`` (the caller names its keys).
    """
    if grad_accum % processes == 0:
        return batch_queries, grad_accum // processes
    if batch_queries % processes == 0:
        return batch_queries // processes, grad_accum
    raise ValueError(
        f"{processes} processes cannot share a step of batch_queries {batch_queries} x grad_accum {grad_accum} "
        f"lists: make grad_accum or batch_queries a multiple of {processes}"
    )


def refuse_launcher() -> None:
    """A pipeline started under torchrun would run every step once per process on the same folder: refuse it."""
    if world_size() > 1:
        raise RankdistillError(
            "the pipeline runs as one process: start it without torchrun/accelerate and set train.processes: "
            f"{world_size()} to train its students in {world_size()} processes"
        )


def torchrun_command(processes: int, config: Path) -> list[str]:
    """The command that trains ``config``'s options in ``processes`` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes),
            "-m", "rankdistill", "--", "train", "--config", str(config)]


def train(processes: int, data: Path, *, output: Path, **options: Any) -> Path:
    """:func:`rankdistill.training.trainer.train` in ``processes`` processes (1: in this one).

    Args:
        processes: how many processes train (torchrun's ``--nproc-per-node``).
        data, output, options: as ``train()`` takes them; ``batch_queries`` and ``grad_accum`` are one step's, split
            over the processes by :func:`split_step`.

    Returns:
        The model folder.

    Raises:
        RankdistillError: the options do not split, or the training failed (its own error is printed above).
    """
    from rankdistill.training.options import TrainOptions
    from rankdistill.training.trainer import train as train_here

    if processes == 1:
        return train_here(data, output=output, **options)
    defaults = {key: TrainOptions.model_fields[key].get_default() for key in ("batch_queries", "grad_accum")}
    step = {key: options.get(key) or value for key, value in defaults.items()}
    try:
        batch_queries, grad_accum = split_step(step["batch_queries"], step["grad_accum"], processes)
    except ValueError as exc:
        raise RankdistillError(f"train.processes: {exc}") from None
    values = {**options, "data": [str(Path(data).resolve())], "output": str(Path(output).resolve()),
              "batch_queries": batch_queries, "grad_accum": grad_accum}
    if isinstance(values.get("model"), (str, Path)) and Path(values["model"]).exists():  # a folder, not a short name
        values["model"] = str(Path(values["model"]).resolve())
    config = Path(output).parent / f"{Path(output).name}.launch.json"  # JSON is YAML, which ``train --config`` reads
    config.write_text(json.dumps(values, indent=2, default=str) + "\n", encoding="utf-8")
    done = subprocess.run(torchrun_command(processes, config.resolve()), env=_environment(processes))
    if done.returncode != 0:
        raise RankdistillError(
            f"train.processes: the {processes}-process training of {output} failed (exit code {done.returncode}); "
            "its error is above, and rerunning the pipeline continues from its last checkpoint"
        )
    config.unlink(missing_ok=True)
    return Path(output)


def _environment(processes: int) -> dict[str, str]:
    """This process's environment for the job: its rankdistill first on the path, and the cores shared out.

    torchrun gives each process a single thread unless ``OMP_NUM_THREADS`` is set; on CPUs that wastes the rest.
    """
    import rankdistill

    env = dict(os.environ)
    src = str(Path(rankdistill.__file__).resolve().parents[1])  # the same code in a source checkout, too
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    env.setdefault("OMP_NUM_THREADS", str(max(1, default_threads() // processes)))
    return env
