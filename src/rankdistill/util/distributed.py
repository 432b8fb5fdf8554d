"""Which process of a ``torchrun``/``accelerate launch`` job this is, and a barrier between them.

Every process of a data-parallel job trains; only the first checks and writes the folders they share, and the
others wait for it at :func:`wait_for_everyone` rather than racing it (a second process creating the checkpoint
folder before the first had checked it was the bug this module came from). A plain, single process is rank 0 of
a world of one, and the barrier is a no-op.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """The job's number of processes (``WORLD_SIZE``, set by torchrun and accelerate; 1 without a launcher)."""
    return max(1, int(os.environ.get("WORLD_SIZE", "1")))


def is_main_process() -> bool:
    """True in the process that writes shared files: global rank 0 (``RANK``), the only one without a launcher."""
    return int(os.environ.get("RANK", "0")) == 0


def wait_for_everyone() -> None:
    """Block until every process of the job has reached this call; returns at once in a single process.

    Through accelerate's ``PartialState`` rather than ``torch.distributed.init_process_group`` by hand: it picks
    the backend and device that Hugging Face's Trainer will (NCCL with this process's GPU, gloo on CPUs), and the
    Trainer then reuses the same process group.
    """
    if world_size() == 1:
        return
    import torch
    from accelerate import PartialState

    PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
