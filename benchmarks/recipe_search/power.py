"""How large a gain 54 DL20 queries can show: the power of the paired t-test behind issue 19's effectiveness line.

For each comparison against the zero-shot backbone (the teacher; each fold split's student; the mean over splits) it
prints the observed mean difference of nDCG@10, the standard deviation of the per-query differences, the p-value,
the smallest difference that test would find with 80% power at alpha 0.05 over these queries (at the observed
deviation), and the number of queries at which the observed difference would be found with 80% power.

    .venv/bin/python benchmarks/recipe_search/power.py out/mpnet-cv-e3 out/mpnet-cv-e3-seed1 out/mpnet-cv-e3-seed2 \
        --json benchmarks/results/recipe_search/power_mpnet_e3.json
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import brentq
from scipy.stats import nct, t

from rankdistill.data.trec import read_qrels, read_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_ensemble import DATA, paired, per_query, recipe_parser  # noqa: E402  (the recipe_search scripts' one nDCG@10 per query, paired test and arguments)

SETS = {"bm25-top100": ("bm25-top100.run", "rankvicuna-7b.run"),
        "splade-pp-ed": ("splade-pp-ed-top100.run", "rankvicuna-7b-splade-pp-ed.run")}
ALPHA, POWER = 0.05, 0.8


def power(delta: float, sd: float, n: int) -> float:
    """Power of the two-sided paired t-test at ALPHA for a true mean difference ``delta`` over ``n`` queries."""
    df, crit = n - 1, t.ppf(1 - ALPHA / 2, n - 1)
    shift = delta / sd * math.sqrt(n)
    if abs(shift) > crit + 10:  # scipy's noncentral t gives NaN this far out, where the power is 1 to 1e-20
        return 1.0
    return float(nct.sf(crit, df, shift) + nct.cdf(-crit, df, shift))


def detectable(sd: float, n: int) -> float:
    """The smallest mean difference the test finds with POWER over ``n`` queries at deviation ``sd``."""
    return float(brentq(lambda d: power(d, sd, n) - POWER, 1e-9, 20 * sd / math.sqrt(n)))


def queries_needed(delta: float, sd: float, limit: int = 100_000) -> int | None:
    """The fewest queries at which a true difference ``delta`` is found with POWER (None beyond ``limit``)."""
    if delta <= 0:
        return None
    low, high = 2, 2
    while power(delta, sd, high) < POWER:
        low, high = high, high * 2
        if high > limit:
            return None
    while low < high:  # power grows with n: the first n that reaches POWER
        mid = (low + high) // 2
        low, high = (mid + 1, high) if power(delta, sd, mid) < POWER else (low, mid)
    return low


def row(a: dict[str, float], b: dict[str, float]) -> dict:
    test = paired(a, b)
    sd = float(np.std([a[q] - b[q] for q in b], ddof=1))
    return {"queries": len(b), **test, "sd": sd, "detectable_80": detectable(sd, len(b)),
            "queries_for_delta_80": queries_needed(test["delta"], sd)}


def main() -> None:
    parser = recipe_parser(__doc__)
    args = parser.parse_args()
    qrels_all = read_qrels(DATA / "qrels.txt")
    result: dict = {}
    for name, (first_file, teacher_file) in SETS.items():
        qrels = {q: qrels_all[q] for q in read_run(DATA / first_file) if q in qrels_all}
        zero = per_query(read_run(args.outputs[0] / "eval" / "cv" / name / "zero-shot" / "teacher.run"), qrels)
        systems = {"teacher": per_query(read_run(DATA / teacher_file), qrels)}
        students = [per_query(read_run(out / "eval" / "cv" / name / "student.run"), qrels) for out in args.outputs]
        systems.update({f"student {out.name}": s for out, s in zip(args.outputs, students)})
        systems[f"student, mean of {len(students)} splits"] = {q: float(np.mean([s[q] for s in students])) for q in qrels}
        result[name] = {system: row(values, zero) for system, values in systems.items()}
        print(f"{name}: vs the zero-shot backbone ({np.mean(list(zero.values())):.4f}), {len(qrels)} queries, "
              f"two-sided paired t-test, alpha {ALPHA}, power {POWER}")
        print(f"  {'system':34s} {'delta':>8s} {'sd':>7s} {'p':>7s} {'detectable':>10s} {'queries for delta':>18s}")
        for system, r in result[name].items():
            need = r["queries_for_delta_80"]
            print(f"  {system:34s} {r['delta']:+8.4f} {r['sd']:7.4f} {r['p']:7.3f} {r['detectable_80']:10.4f} "
                  f"{need if need is not None else '-':>18}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
