"""One recipe over several fold splits: each split's student (and student fused with the first stage) beside the
zero-shot backbone and the first stage, and the mean over splits per query, with paired t-tests (RESULTS 17).

Every split re-ranks all 54 queries, each by a student that never saw it; the per-query mean over splits is the
recipe's expected figure with the split's luck averaged out (it is not an ensemble: each split's run is measured
alone, then the values are averaged).

    .venv/bin/python benchmarks/recipe_search/split_spread.py out/mpnet-cv-e3 out/mpnet-cv-e3-seed1 out/mpnet-cv-e3-seed2
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rankdistill.data.trec import read_qrels, read_run

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_ensemble import DATA, paired, per_query, recipe_parser  # noqa: E402  (the recipe_search scripts' one nDCG@10 per query, paired test and arguments)

SETS = {"bm25-top100": "bm25-top100.run", "splade-pp-ed": "splade-pp-ed-top100.run"}


def compare(a: dict[str, float], b: dict[str, float]) -> str:
    test = paired(a, b)
    return f"{test['delta']:+.4f} (p = {test['p']:.4f})"


def main() -> None:
    parser = recipe_parser(__doc__)
    args = parser.parse_args()
    qrels_all = read_qrels(DATA / "qrels.txt")
    result: dict = {}
    for name, first_file in SETS.items():
        first_path = DATA / first_file
        qrels = {q: qrels_all[q] for q in read_run(first_path) if q in qrels_all}
        base = {"first stage": per_query(read_run(first_path), qrels),
                "zero-shot": per_query(read_run(args.outputs[0] / "eval" / "cv" / name / "zero-shot" / "teacher.run"), qrels)}
        systems: dict[str, list[dict[str, float]]] = {"student": [], "student+first-stage": []}
        for out in args.outputs:
            for system in systems:
                systems[system].append(per_query(read_run(out / "eval" / "cv" / name / f"{system}.run"), qrels))
        print(f"{name}: first stage {np.mean(list(base['first stage'].values())):.4f}, "
              f"zero-shot {np.mean(list(base['zero-shot'].values())):.4f}")
        result[name] = {k: float(np.mean(list(v.values()))) for k, v in base.items()}
        for system, splits in systems.items():
            mean = {q: float(np.mean([s[q] for s in splits])) for q in qrels}
            rows = [(out.name, s) for out, s in zip(args.outputs, splits)] + [(f"mean of {len(splits)} splits", mean)]
            for label, values in rows:
                figure = float(np.mean(list(values.values())))
                print(f"  {system:20s} {label:26s} {figure:.4f}  vs zero-shot {compare(values, base['zero-shot'])}"
                      f"  vs first stage {compare(values, base['first stage'])}")
                result[name][f"{system} {label}"] = figure
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
