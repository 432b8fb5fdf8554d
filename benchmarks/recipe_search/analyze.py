"""Each result vs the baselines of the same candidate set: mean nDCG@10, delta and paired p vs zero-shot / first stage /
teacher; z-score fusion of the student with the first stage (w in 0.25, 0.5, 1.0) as analysis."""
import json
import sys
from pathlib import Path

import ir_measures
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp import D, EVAL, HERE
from rankdistill.data.trec import read_qrels, read_run
from rankdistill.evaluation.significance import paired_p_value
from rankdistill.reranking.fusion import fuse_with_first_stage

B = json.loads((HERE / "results" / "_baselines.json").read_text())
qrels = read_qrels(D / "qrels.txt")


def fused(name, ev, w):
    fs = read_run(D / EVAL[ev])
    out = {}
    for f in (0, 1):
        for q, v in read_run(HERE / "runs" / f"{name}-f{f}-{ev}.run").items():
            out[q] = dict(fuse_with_first_stage(v, fs[q], w))
    return {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, out)}


def row(label, pq, base):
    qs = sorted(pq)
    a = np.array([pq[q] for q in qs])
    cells = [f"{label:<28}{a.mean():.4f}"]
    for other in ("zero-shot", "first stage", "teacher"):
        b = np.array([base[other][q] for q in qs])
        cells.append(f"{other[:5]} {a.mean() - b.mean():+.4f} (p={paired_p_value(a, b):.3f})")
    print("  ".join(cells))


names = sys.argv[1:] or sorted(p.stem for p in (HERE / "results").glob("*.json") if not p.stem.startswith("_"))
for ev in EVAL:
    if ev not in B:
        continue
    print(f"== {ev}: " + ", ".join(f"{s} {np.mean(list(v.values())):.4f}" for s, v in B[ev].items()))
    for n in names:
        r = json.loads((HERE / "results" / f"{n}.json").read_text())
        if ev not in r["per_query"]:
            continue
        row(n, r["per_query"][ev], B[ev])
        for w in (0.25, 0.5, 1.0):
            row(f"  + {w} first stage", fused(n, ev, w), B[ev])
