"""Would gates that can reopen help? An experiment on the gated head, kept for its (negative) result.

The gated head clamps each gate to [0, 1], so a gate that one early step pushes below 0 gets no gradient again: in
study-dl20's fold-1 base student 42 of its 72 gates end below 0. This runs ``straight_through_gates.yaml`` with a
straight-through clamp (forward: clamped as before; backward: the gradient passes, so a gate below 0 can come back).
The patch is applied here, not in rankdistill, because it did not change the result (RESULTS section 10).

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/straight_through_gates.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import rankdistill.modeling.gated as gated
from transformers import AttentionInterface

_clamped = gated.gated_attention


def straight_through(module, query, key, value, attention_mask, scaling=None, dropout=0.0, gated_masks=None,
                     gates=None, **kwargs):
    if gates is not None and gates.requires_grad:  # training: the clamp's value, the identity's gradient
        gates = gates + (gates.clamp(0.0, 1.0) - gates).detach()
    return _clamped(module, query, key, value, attention_mask, scaling=scaling, dropout=dropout,
                    gated_masks=gated_masks, gates=gates, **kwargs)


def main() -> None:
    import rankdistill

    config = Path(__file__).with_name("straight_through_gates.yaml")
    dry_run = "--dry-run" in sys.argv
    show = lambda event, text: print(event, text)  # noqa: E731
    # the reference first, unpatched (from study-dl20's cache when that study ran, else trained here); the patch holds
    # for the whole process, so `st` alone trains under it
    rankdistill.study(config, only=["base"], dry_run=dry_run, on_event=show)
    AttentionInterface.register(gated.ATTENTION, straight_through)
    result = rankdistill.study(config, dry_run=dry_run, on_event=show)
    print(f"table: {result.table}")


if __name__ == "__main__":
    main()
