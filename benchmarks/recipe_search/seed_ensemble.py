"""Do two students beat one? Students of one recipe trained with other seeds or on other fold splits, averaged.

Each fold's students differ only in the training seed (head init, data order, dropout: ``train.stages.0.seed``); the
ensemble ranks each query's top 100 by the mean of the students' per-query z-scores (``rankdistill fuse``), and over SPLADE++ also fused
with SPLADE++'s score at weight 1, as study-dl20 fuses a single student. It costs twice the training and twice the
re-ranking of one student. Figures: RESULTS section 12.

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/rankdistill pipeline examples/study-dl20-base.yaml
    sed 's#output: ../out/study-dl20-base#&-trainseed1#; s#      bf16: auto#&\\n      seed: 1#' \\
        examples/study-dl20-base.yaml > examples/.trainseed1.yaml
    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/rankdistill pipeline examples/.trainseed1.yaml
    .venv/bin/python benchmarks/recipe_search/seed_ensemble.py out/study-dl20-base out/study-dl20-base-trainseed1

Two fold splits (``seed: 0`` and ``seed: 1``) give each query two students that never saw it, each trained on a
different 27 of the other 53 queries: their ensemble is a bagged student, still judged only on unseen queries
(RESULTS section 14, the 3-epoch mpnet recipe; the first output holds the zero-shot row):

    .venv/bin/python benchmarks/recipe_search/seed_ensemble.py out/mpnet-cv-e3 out/mpnet-cv-e3-seed1 \
        --set bm25-top100=bm25-top100.run --set splade-pp-ed=splade-pp-ed-top100.run
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ir_measures
import numpy as np
from scipy.stats import kendalltau

from rankdistill.data.trec import read_qrels, read_run
from rankdistill.evaluation.significance import paired_p_value
from rankdistill.reranking.fusion import fuse_runs, fuse_with_first_stage

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "msmarco-dl20"
SETS = {"bm25": "bm25-top100.run", "splade-pp-ed": "splade-pp-ed-top100.run"}
DEPTH = 100
NDCG = ir_measures.parse_measure("nDCG@10")


def per_query(run: dict, qrels: dict) -> dict[str, float]:
    """nDCG@10 of every qrels query (0 where the run has none) over the run's top ``DEPTH``."""
    scored = {q: dict(ranked[:DEPTH]) if isinstance(ranked, list) else ranked for q, ranked in run.items()}
    values = {m.query_id: m.value for m in ir_measures.iter_calc([NDCG], qrels, scored)}
    return {q: values.get(q, 0.0) for q in qrels}


def paired(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """Mean of ``a`` minus mean of ``b`` over ``b``'s queries, and the paired t-test's two-sided p (the package's
    test, which the pipeline's reports use)."""
    qs = sorted(b)
    x, y = np.array([a[q] for q in qs]), np.array([b[q] for q in qs])
    return {"delta": float(x.mean() - y.mean()), "p": paired_p_value(x, y)}


def recipe_parser(doc: str, outputs: str | None = "pipeline output folders of one recipe, other fold seeds; the first "
                  "holds the zero-shot row") -> argparse.ArgumentParser:
    """The arguments the recipe_search scripts share: the pipeline outputs they read (when ``outputs`` is their help)
    and ``--json``, where every figure is written."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if outputs:
        parser.add_argument("outputs", nargs="+", type=Path, help=outputs)
    parser.add_argument("--json", type=Path, help="write every figure here")
    return parser


def agreement(a: dict, b: dict, qids: list[str]) -> dict[str, float]:
    """How alike two students rank: mean Kendall tau of their scores of each query's top ``DEPTH``, top-10 overlap."""
    taus, overlaps = [], []
    for q in qids:
        sa, sb = dict(a[q][:DEPTH]), dict(b[q][:DEPTH])
        docs = list(sa)
        taus.append(kendalltau([sa[d] for d in docs], [sb.get(d, float("-inf")) for d in docs]).statistic)
        overlaps.append(len({d for d, _ in a[q][:10]} & {d for d, _ in b[q][:10]}) / 10)
    return {"tau": float(np.mean(taus)), "overlap": float(np.mean(overlaps)), "depth": DEPTH}


def main() -> None:
    parser = recipe_parser(__doc__, "pipeline output folders (same folds, other seeds)")
    parser.add_argument("--zero-shot-from", type=Path, help="output whose zero-shot row to use (default: the first; the "
                        "untrained backbone scores each query alike in every split)")
    parser.add_argument("--set", action="append", metavar="NAME=RUN", help="candidate set NAME of the outputs and its "
                        "first-stage run in ../shared/data/msmarco-dl20 (default: bm25 and splade-pp-ed)")
    args = parser.parse_args()
    sets = dict(item.split("=", 1) for item in args.set) if args.set else SETS
    qrels = read_qrels(DATA / "qrels.txt")
    result: dict = {}
    for name, first_file in sets.items():
        first = read_run(DATA / first_file)
        students = [read_run(out / "eval" / "cv" / name / "student.run") for out in args.outputs]
        zero_shot = read_run((args.zero_shot_from or args.outputs[0]) / "eval" / "cv" / name / "zero-shot" / "teacher.run")
        qids = sorted(students[0])
        qr = {q: qrels[q] for q in qids if q in qrels}
        # the students' z-scores summed (ranks as their mean): what `rankdistill fuse` writes
        fused = fuse_runs(students, depth=DEPTH, names=[str(out) for out in args.outputs])
        ensemble = {q: dict(fused[q][:DEPTH]) for q in qids}
        rows = {"first stage": first, "zero-shot": zero_shot,
                **{f"student {i + 1}": s for i, s in enumerate(students)}, "ensemble": ensemble}
        if not name.startswith("bm25"):
            rows["student 1 + first stage"] = {q: dict(fuse_with_first_stage(students[0][q][:DEPTH], first[q], 1.0))
                                               for q in qids}
            rows["ensemble + first stage"] = {
                q: dict(fuse_with_first_stage(list(ensemble[q].items()), first[q], 1.0)) for q in qids}
        values = {label: per_query({q: run[q] for q in qids}, qr) for label, run in rows.items()}
        result[name] = {"agreement": agreement(students[0], students[1], qids)} if len(students) > 1 else {}
        print(f"{name}:" + (" students 1 and 2: Kendall tau {tau:.3f} over the top {depth}, top-10 overlap "
                            "{overlap:.3f}".format(**result[name]["agreement"]) if result[name] else ""))
        for label, v in values.items():
            mean = float(np.mean(list(v.values())))
            line = {"nDCG@10": mean}
            fused = label == "ensemble + first stage"
            for base in (("student 1 + first stage", "first stage") if fused else ("student 1", "zero-shot")):
                if label.startswith("ensemble"):
                    line[f"vs {base}"] = paired(v, {q: values[base][q] for q in qr})
            result[name][label] = line
            extra = "".join(f"  vs {k[3:]}: {x['delta']:+.4f} (p = {x['p']:.3f})" for k, x in line.items() if k != "nDCG@10")
            print(f"  {label:26s} {mean:.4f}{extra}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
