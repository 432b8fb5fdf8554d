"""Can the teacher choose the first stage's fusion weight? An experiment, kept for its (negative) result.

`evaluate.fuse_first_stage` takes a fixed weight, and the right one depends on the first stage (over SPLADE++ ED
w = 1 lifts the student above SPLADE++; over BM25 every weight hurts). Choosing it without judgments would tune
it on a fold's training queries, whose teacher ranking exists: the weight whose fused ranking agrees best with the
teacher (nDCG@10 with the teacher's top 10 as grades 10..1). This measures that on study-dl20's base pipeline:

1. each fold's student re-ranks its own training queries (cached under ``eval/<fold>-train/<set>/``);
2. per fold and candidate set, the agreement of z(student) + w z(first stage) with each recorded RankVicuna-7B run
   (the one over the same first stage, and those over the other four), and the weight it would choose;
3. on the test queries (the CV runs), agreement with the same-first-stage teacher next to nDCG@10 on the NIST
   qrels, per weight, with the first stage and the zero-shot backbone as rows.

It was not adopted (RESULTS section 12): over BM25 the teacher chooses w = 0.25-0.5, which costs 0.006-0.022 nDCG@10,
because RankVicuna's order of BM25's top 100 agrees more with BM25's own order than with the student's.

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/rankdistill pipeline examples/study-dl20-base.yaml
    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/fusion_weight_vs_teacher.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import ir_measures

from rankdistill.data.trec import read_qrels, read_run
from rankdistill.reranking.fusion import fuse_with_first_stage
from rankdistill.reranking.reranker import rerank
from rankdistill.workflow.runner import folds_of

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "msmarco-dl20"
DATASET = "irds:msmarco-passage/trec-dl-2020/judged"
SETS = {"bm25": ("bm25-top100.run", "rankvicuna-7b.run"),
        "splade-pp-ed": ("splade-pp-ed-top100.run", "rankvicuna-7b-splade-pp-ed.run")}
TEACHERS = {"bm25": "rankvicuna-7b.run", "bm25-rm3": "rankvicuna-7b-bm25-rm3.run", "tasb": "rankvicuna-7b-tasb.run",
            "ada2": "rankvicuna-7b-openai-ada2.run", "splade-pp-ed": "rankvicuna-7b-splade-pp-ed.run"}
GRID = (0.0, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)
DEPTH, TOP = 100, 10
NDCG = ir_measures.parse_measure("nDCG@10")


def teacher_grades(teacher: dict) -> dict:
    """The teacher's top 10 as graded pseudo-judgments: its first passage 10, its tenth 1."""
    return {q: {d: TOP - i for i, (d, _) in enumerate(ranked[:TOP])} for q, ranked in teacher.items()}


def ndcg(run: dict, qrels: dict) -> float:
    scored = {q: dict(ranked[:DEPTH]) for q, ranked in run.items() if q in qrels}
    return float(ir_measures.calc_aggregate([NDCG], {q: qrels[q] for q in scored}, scored)[NDCG])


def fused(student: dict, first: dict, weight: float) -> dict:
    return {q: fuse_with_first_stage(docs[:DEPTH], first[q], weight) for q, docs in student.items()}


def choose(curve: dict[float, float]) -> float:
    """The best weight; a tie keeps the smaller one (the student)."""
    best = max(curve.values())
    return min(w for w, v in curve.items() if v >= best - 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "study-dl20-base", help="the pipeline's output")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    config = json.loads((args.out / "config.json").read_text())
    qids = sorted(read_run(DATA / "rankvicuna-7b.run"))
    folds = folds_of(qids, config["evaluate"]["cross_validation"], config["seed"])
    teachers = {name: read_run(DATA / f) for name, f in TEACHERS.items()}
    qrels = read_qrels(DATA / "qrels.txt")
    result: dict = {"training": {}, "test": {}}

    print("1. Weight chosen on each fold's training queries by agreement with each RankVicuna-7B run")
    for i, test_qids in enumerate(folds, 1):
        fold, train = f"fold{i}", sorted(set(qids) - set(test_qids))
        model = args.out / "students" / fold / "model-distill"
        for name, (first_file, _) in SETS.items():
            first = read_run(DATA / first_file)
            out = args.out / "eval" / f"{fold}-train" / name / "student.run"
            if not out.exists():
                out.parent.mkdir(parents=True, exist_ok=True)
                rerank(model, {q: first[q] for q in train}, dataset=DATASET, depth=DEPTH, output=out)
            student = read_run(out)
            for teacher_name, teacher in teachers.items():
                grades = teacher_grades({q: teacher[q] for q in train})
                curve = {w: ndcg(fused(student, first, w), grades) for w in GRID}
                result["training"][f"{fold}/{name}/{teacher_name}"] = {"weight": choose(curve), "curve": curve}
                print(f"  {fold} {name:13s} teacher over {teacher_name:13s} chooses w = {choose(curve):<4g} "
                      f"(agreement w=0 {curve[0.0]:.4f}, best {max(curve.values()):.4f})")

    print("\n2. Test queries (the CV runs): agreement with the same-first-stage teacher vs nDCG@10 on the qrels")
    for name, (first_file, teacher_file) in SETS.items():
        first, grades = read_run(DATA / first_file), teacher_grades(read_run(DATA / teacher_file))
        student = read_run(args.out / "eval" / "cv" / name / "student.run")
        rows = {"first stage": first, "zero-shot": read_run(args.out / "eval" / "cv" / name / "zero-shot" / "teacher.run"),
                **{f"student + {w:g} first stage": fused(student, first, w) for w in GRID}}
        print(f"  {name}: {'run':28s} agreement  nDCG@10")
        for label, run in rows.items():
            run = {q: run[q] for q in qids}
            figures = {"agreement": ndcg(run, grades), "nDCG@10": ndcg(run, qrels)}
            result["test"][f"{name}/{label}"] = figures
            print(f"  {'':{len(name) + 1}s} {label:28s} {figures['agreement']:.4f}     {figures['nDCG@10']:.4f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
