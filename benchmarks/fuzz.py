"""Fuzz every reader (runs, qrels, queries, corpora in TSV/JSONL/BEIR, YAML configs, replay recordings) and the LLM
answer parser with random and mutated bytes, far past what ``make test`` runs.

    .venv/bin/python benchmarks/fuzz.py [--examples 100000] [--seed 0] [--only run,qrels]

The targets, strategies and checks are the test suite's (``tests/helpers/fuzzing.py``): an example passes when the
reader returns a result that keeps its contract or raises a RankdistillError of one line naming the file; the parser
must return a permutation of the window for every answer. ``--examples`` is split evenly over the targets; the
counts printed are of examples actually run (hypothesis stops early only when it has exhausted a strategy). The
first failure stops the run with its input; it exits 1 then.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100_000, help="total examples, split over the targets")
    parser.add_argument("--seed", type=int, default=0, help="hypothesis seed (the same seed runs the same examples)")
    parser.add_argument("--only", default="", help="comma-separated target names (default: all, parser included)")
    args = parser.parse_args()
    os.environ.setdefault("TQDM_DISABLE", "1")  # ir_datasets' encoding fixer draws a bar per file: thousands here
    logging.getLogger("ir_datasets").setLevel(logging.WARNING)  # and logs a line per file

    from helpers.fuzzing import check_permutation, inputs, permutation_inputs, run_example, targets
    from hypothesis import HealthCheck, given, seed, settings

    names = [*sorted(targets()), "llm-answer-parser"]
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    per_target = max(1, -(-args.examples // len(names)))  # rounded up: at least --examples in all
    counts: dict[str, Counter] = {}
    started = time.perf_counter()
    for name in names:
        outcomes: Counter = Counter()
        counts[name] = outcomes
        config = settings(max_examples=per_target, deadline=None, database=None, print_blob=True,
                          suppress_health_check=list(HealthCheck))
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="rankdistill-fuzz-") as folder:
            if name == "llm-answer-parser":
                @seed(args.seed)
                @config
                @given(example=permutation_inputs())
                def fuzz(example):
                    check_permutation(*example)
                    outcomes["ok"] += 1
            else:
                target = targets()[name]

                @seed(args.seed)
                @config
                @given(data=inputs(target.kind))
                def fuzz(data):
                    outcomes[run_example(target, data, Path(folder))] += 1
            try:
                fuzz()
            except Exception as exc:  # hypothesis has shrunk the failing input: its report is in the exception's notes
                traceback.print_exception(exc)
                print(f"FAILED {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
                return 1
        total = sum(outcomes.values())
        print(f"{name:26s} {total:8,d} examples  {outcomes['ok']:7,d} read  {outcomes['error']:7,d} refused  "
              f"{time.perf_counter() - t0:7.1f} s", flush=True)
    grand = sum(sum(c.values()) for c in counts.values())
    print(f"{'total':26s} {grand:8,d} examples, no failure, {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
