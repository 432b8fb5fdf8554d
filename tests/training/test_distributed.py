"""Data-parallel training: two torchrun processes (gloo on CPU) train the model one process trains with their
joint batch.

Why the two runs are comparable: both go through the same Trainer data loader, one permutation of the lists per
seed. With one process and ``batch_queries=4``, step k takes lists P[4k:4k+4]; with two processes and
``batch_queries=2``, rank 0 takes P[4k:4k+2] and rank 1 P[4k+2:4k+4] (accelerate deals whole batches out in
turn), and DDP averages their gradients. The RankNet loss is a mean over the batch's pairs, and every list of
this set has the same pairs, so the average of the two halves' gradients *is* the joint batch's gradient. The
model has no dropout: each process would draw its own masks, so with dropout the runs are equal in distribution
only.

Why not equal to the last bit: the two forwards and the all-reduce add in another order, and AdamW's first steps
(m / sqrt(v), about +-lr whatever the gradient's size) turn rounding-sized differences in tiny gradients into
lr-sized steps. One process alone moves as much when only its thread count or its forward's mini-batches change
(about 1e-3 on these scores; see the test's tolerance), and a run that dropped the other process's lists moves
by about 1 (the control below).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sentence_transformers")

import rankdistill  # noqa: E402
from helpers.data import WORDS, write_set  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402
from rankdistill.training.trainer import train  # noqa: E402

STEPS, LR = 6, 3e-3  # 8 lists, 4 per step: three epochs, so later epochs' permutations are compared too
# scores span about 6 and training moves them by about 4; one process changing only its threads or its forward's
# mini-batches differs by 1e-3 to 2e-3 (rounding, amplified by AdamW); a run without the second process's lists
# differs by about 1. 0.02 sits ten times above the first and fifty times below the second.
TOLERANCE = 0.02


def _scores(model: Path, pairs: list[tuple[str, str]]) -> np.ndarray:
    import torch
    from sentence_transformers import CrossEncoder

    return CrossEncoder(str(model), device="cpu", activation_fn=torch.nn.Identity()).predict(pairs)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A text-sensitive tiny BERT without dropout, and 8 lists of 8 passages with the same targets each."""
    root = tmp_path_factory.mktemp("ddp")
    encoder = tiny_scoring_dir(root / "encoder")
    config = json.loads((encoder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(config))
    return {"root": root, "encoder": encoder, "data": write_set(root / "train.parquet", queries=8, docs=8)}


@pytest.mark.slow
def test_two_processes_train_the_model_of_one_with_their_joint_batch(tiny):
    root, encoder, data = tiny["root"], tiny["encoder"], tiny["data"]
    common = dict(model=str(encoder), max_steps=STEPS, learning_rate=LR, warmup_ratio=0.0, seed=0, save_steps=1000,
                  logging_steps=1)
    one = train(data, output=root / "one", batch_queries=4, **common)
    half = train(data, output=root / "half", batch_queries=2, **common)  # what one process alone would learn
    # the processes import the rankdistill this test imported (a worktree's, not only the installed one)
    src = str(Path(rankdistill.__file__).resolve().parents[1])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    two = root / "two"
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "rankdistill",
         "--", "train", str(data), "--output", str(two), "--model", str(encoder), "--batch-queries", "2",
         "--max-steps", str(STEPS), "--lr", str(LR), "--warmup-ratio", "0", "--seed", "0", "--save-steps", "1000",
         "--logging-steps", "1"],
        env=env, cwd=root, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout.count(f"Trained {two}") == 1  # one summary: the first process's
    assert not (root / "two.checkpoints").exists()

    log = json.loads((two / "training_log.json").read_text())["stages"][0]
    assert (log["processes"], log["steps"], log["steps_per_epoch"]) == (2, STEPS, 2)
    one_log = json.loads((one / "training_log.json").read_text())["stages"][0]
    assert one_log["processes"] == 1
    # the same lists in the same steps: the first process logs the joint batch's loss (mean of the two halves')
    np.testing.assert_allclose([e["loss"] for e in log["log_history"] if "loss" in e],
                               [e["loss"] for e in one_log["log_history"] if "loss" in e], atol=1e-3)

    pairs = [(f"what is the {w}", f"{g} {w} {v}") for w in WORDS[:6] for g in ("good", "bad") for v in WORDS[6:9]]
    base, a, b, c = (_scores(m, pairs) for m in (encoder, one, two, half))
    assert np.abs(a - base).max() > 100 * TOLERANCE  # training moved the scores far
    assert np.abs(b - a).max() <= TOLERANCE
    # the check can fail: half the lists per step (the second process's gradients ignored) is far outside it
    assert np.abs(c - a).max() > 10 * TOLERANCE
