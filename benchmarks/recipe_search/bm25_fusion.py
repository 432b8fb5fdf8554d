"""The student fused with BM25 at a small fixed weight, over DL20's fold splits and on the held-back sets (RESULTS 19).

``benchmarks/effectiveness_dl20.py`` has printed, since 2026-12-02, an analysis row "student + 0.2 bm25": the
student's per-query z-score plus 0.2 times BM25's (``rankdistill fuse -w 1 -w 0.2``). Its weight was fixed then, on
MiniLM's zero-shot row, before any mpnet student existed. On the 3-epoch mpnet recipe's seed 0 split it printed
0.6599, above the teacher. This script tests that observation on data not yet looked at, as fixed beforehand in
RESULTS 19: the seed 1 and seed 2 splits' students, and the student trained on all 54 queries on the held-back sets.
Each is compared with the zero-shot backbone, and with the backbone fused with BM25 the same way (the fair baseline:
it shows whether the gain is the teacher's or BM25's).

    .venv/bin/python benchmarks/recipe_search/bm25_fusion.py out/mpnet-cv-e3 out/mpnet-cv-e3-seed1 out/mpnet-cv-e3-seed2 \\
        --heldback out/heldback-mpnet-e3 --json benchmarks/results/recipe_search/bm25_fusion_mpnet_e3.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from rankdistill.data.trec import read_qrels, read_run
from rankdistill.evaluation.significance import holm
from rankdistill.reranking.fusion import fuse_runs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_ensemble import DATA, DEPTH, paired, per_query, recipe_parser  # noqa: E402  (the recipe_search scripts' one nDCG@10 per query, paired test and arguments)

WEIGHT = 0.2  # fixed 2026-12-02 in effectiveness_dl20.py's FUSIONS, on MiniLM's zero-shot row


def fused(run: dict, first: dict) -> dict:
    """``run``'s z-score plus WEIGHT times the first stage's, over the first stage's top DEPTH."""
    return fuse_runs([first, run], [WEIGHT, 1.0], depth=DEPTH, names=["first stage", "re-ranker"])


def rows(first: dict, zero: dict, students: dict[str, dict], qrels: dict, teacher: dict | None = None) -> dict:
    """nDCG@10 per query of every system, the fused ones included."""
    values = {"first stage": per_query(first, qrels), "zero-shot": per_query(zero, qrels),
              f"zero-shot + {WEIGHT} bm25": per_query(fused(zero, first), qrels)}
    if teacher is not None:
        values["teacher"] = per_query(teacher, qrels)
    for label, run in students.items():
        values[label] = per_query(run, qrels)
        values[f"{label} + {WEIGHT} bm25"] = per_query(fused(run, first), qrels)
    return values


def main() -> None:
    parser = recipe_parser(__doc__)
    parser.add_argument("--heldback", type=Path, help="the held-back pipeline's output folder (student on all 54 q)")
    parser.add_argument("--sets", nargs="+", default=["noveleval", "vaswani", "cacm", "cisi"])
    args = parser.parse_args()
    result: dict = {"weight": WEIGHT, "dl20": {}, "heldback": {}}

    first = read_run(DATA / "bm25-top100.run")
    qrels_all = read_qrels(DATA / "qrels.txt")
    qrels = {q: qrels_all[q] for q in first if q in qrels_all}
    zero = read_run(args.outputs[0] / "eval" / "cv" / "bm25-top100" / "zero-shot" / "teacher.run")
    students = {f"student {out.name}": read_run(out / "eval" / "cv" / "bm25-top100" / "student.run")
                for out in args.outputs}
    values = rows(first, zero, students, qrels, teacher=read_run(DATA / "rankvicuna-7b.run"))
    print(f"DL20 BM25 top-100 ({len(qrels)} queries), nDCG@10; fused = z(re-ranker) + {WEIGHT} z(BM25)")
    for label in ("first stage", "zero-shot", f"zero-shot + {WEIGHT} bm25", "teacher"):
        print(f"  {label:44s} {np.mean(list(values[label].values())):.4f}")
    for label in students:
        for name in (label, f"{label} + {WEIGHT} bm25"):
            tests = {base: paired(values[name], values[base])
                     for base in ("zero-shot", f"zero-shot + {WEIGHT} bm25", "teacher")}
            mean = float(np.mean(list(values[name].values())))
            result["dl20"][name] = {"ndcg10": mean, "vs": tests}
            print(f"  {name:44s} {mean:.4f}  " + "; ".join(f"vs {b}: {t['delta']:+.4f} (p = {t['p']:.3f})"
                                                           for b, t in tests.items()))
    result["dl20"].update({label: {"ndcg10": float(np.mean(list(values[label].values())))}
                           for label in ("first stage", "zero-shot", f"zero-shot + {WEIGHT} bm25", "teacher")})

    if args.heldback is not None:
        for name in args.sets:
            evald = args.heldback / "eval" / name / "bm25"
            first = read_run(args.heldback / name / "bm25.run")
            qrels_all = read_qrels(args.heldback / "eval" / name / "qrels.txt")
            qrels = {q: qrels_all[q] for q in first if q in qrels_all}
            values = rows(first, read_run(evald / "zero-shot" / "teacher.run"),
                          {"student": read_run(evald / "student.run")}, qrels)
            label = f"student + {WEIGHT} bm25"
            result["heldback"][name] = {
                "queries": len(qrels),
                "ndcg10": {k: float(np.mean(list(v.values()))) for k, v in values.items()},
                "fused student vs": {b: paired(values[label], values[b])
                                     for b in ("zero-shot", f"zero-shot + {WEIGHT} bm25", "student")},
            }
        for base in ("zero-shot", f"zero-shot + {WEIGHT} bm25", "student"):
            corrected = holm([r["fused student vs"][base]["p"] for r in result["heldback"].values()])
            for r, p in zip(result["heldback"].values(), corrected):
                r["fused student vs"][base]["p_holm"] = p
        for name, r in result["heldback"].items():
            print(f"{name} ({r['queries']} queries): " + ", ".join(f"{k} {v:.4f}" for k, v in r["ndcg10"].items()))
            print("  fused student vs " + "; ".join(f"{k}: {v['delta']:+.4f} (p = {v['p']:.3f}, Holm {v['p_holm']:.3f})"
                                                   for k, v in r["fused student vs"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
