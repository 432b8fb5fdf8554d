"""Held-back judgment of fused half-students: students trained on halves of the DL20 queries, fused, on other sets.

The 2-fold CV of the best recipe (RESULTS 14) leaves, per split, two students each trained on 27 of the 54 DL20
queries; fused by their per-query z-scores (``rankdistill fuse``) they cost what one student on all 54 queries costs.
This re-ranks each held-back set's BM25 top 100 (from the held-back pipeline's output) with each given student,
fuses them, and compares, with paired t-tests (Holm over the sets), against the zero-shot backbone and the student
trained on all 54 queries that the held-back pipeline judged (RESULTS 16). Each student's run is kept under --out,
so a rerun skips what is done.

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/heldback_ensemble.py \\
        out/mpnet-cv-e3/students/fold1/model-distill out/mpnet-cv-e3/students/fold2/model-distill \\
        --heldback out/heldback-mpnet-e3 --out out/heldback-halves \\
        --json benchmarks/results/recipe_search/heldback_halves_mpnet_e3.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from rankdistill.data.trec import read_qrels, read_run
from rankdistill.evaluation.significance import holm
from rankdistill.reranking.fusion import fuse_runs
from rankdistill.reranking.reranker import rerank

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_ensemble import DEPTH, paired, per_query, recipe_parser  # noqa: E402  (the recipe_search scripts' one nDCG@10 per query, paired test and arguments)


def main() -> None:
    parser = recipe_parser(__doc__, outputs=None)
    parser.add_argument("students", nargs="+", type=Path, help="student model folders (two or more)")
    parser.add_argument("--heldback", type=Path, required=True, help="the held-back pipeline's output folder")
    parser.add_argument("--out", type=Path, required=True, help="where each student's runs are kept")
    parser.add_argument("--sets", nargs="+", default=["noveleval", "vaswani", "cacm", "cisi"])
    args = parser.parse_args()
    config = json.loads((args.heldback / "config.json").read_text())
    datasets = {s["name"]: s["dataset"] for s in config["evaluate"]["sets"]}
    result: dict = {}
    for name in args.sets:
        evald = args.heldback / "eval" / name / "bm25"
        first_file = args.heldback / name / "bm25.run"
        qrels_all = read_qrels(args.heldback / "eval" / name / "qrels.txt")
        first = read_run(first_file)
        qrels = {q: qrels_all[q] for q in first if q in qrels_all}
        runs = []
        for i, model in enumerate(args.students):
            out = args.out / name / f"student-{i + 1}.run"
            if not out.exists():
                start = time.perf_counter()
                rerank(model, first_file, dataset=datasets[name], depth=DEPTH, output=out)
                print(f"{name}: student {i + 1} re-ranked in {time.perf_counter() - start:.0f} s", flush=True)
            runs.append(read_run(out))
        fused = fuse_runs(runs, depth=DEPTH, names=[str(s) for s in args.students])
        rows = {"bm25": first, "zero-shot": read_run(evald / "zero-shot" / "teacher.run"),
                "student (all 54 q)": read_run(evald / "student.run"),
                **{f"half-student {i + 1}": r for i, r in enumerate(runs)}, "fused half-students": fused}
        values = {label: per_query(run, qrels) for label, run in rows.items()}
        line = {label: float(np.mean(list(v.values()))) for label, v in values.items()}
        tests = {base: paired(values["fused half-students"], values[base])
                 for base in ("zero-shot", "student (all 54 q)", "bm25")}
        result[name] = {"queries": len(qrels), "ndcg10": line, "fused vs": tests}
    for base in ("zero-shot", "student (all 54 q)", "bm25"):
        corrected = holm([result[n]["fused vs"][base]["p"] for n in result])
        for n, p in zip(result, corrected):
            result[n]["fused vs"][base]["p_holm"] = p
    for name, r in result.items():
        print(f"{name} ({r['queries']} queries): " + ", ".join(f"{k} {v:.4f}" for k, v in r["ndcg10"].items()))
        print("  fused vs " + "; ".join(f"{k}: {v['delta']:+.4f} (p = {v['p']:.3f}, Holm {v['p_holm']:.3f})"
                                        for k, v in r["fused vs"].items()))
    if args.json:
        args.json.write_text(json.dumps({"students": [str(s) for s in args.students], "sets": result}, indent=2))


if __name__ == "__main__":
    main()
