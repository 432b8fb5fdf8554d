"""Students trained on other RankVicuna lists against students trained on its BM25 lists (RESULTS 20 and 21).

Section 13's 1-epoch mpnet recipe trained on the BM25 lists (``out/mpnet-cv``) against the same recipe, same seed-0
folds, trained on other lists: on RankVicuna's SPLADE++ lists (``benchmarks/results/mpnet-cv-splade/config.yaml``:
over SPLADE++'s candidates the teacher is +0.065 above the untrained mpnet, RESULTS 18) or on all five first stages'
lists (``benchmarks/results/mpnet-cv-all5/config.yaml``). The BM25-trained students first re-rank their test fold's
SPLADE++ top-100 (kept under --out; a rerun skips them); then every student is compared on both candidate sets.

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/rankdistill pipeline benchmarks/results/mpnet-cv-splade/config.yaml
    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/other_lists.py \\
        --json benchmarks/results/recipe_search/splade_trained_mpnet_e1.json
    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/other_lists.py \\
        --trained all-five=out/mpnet-cv-all5 --json benchmarks/results/recipe_search/all_five_trained_mpnet_e1.json
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from rankdistill.data.trec import read_qrels, read_run, write_run
from rankdistill.reranking.reranker import rerank

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_ensemble import DATA, DEPTH, paired, per_query, recipe_parser  # noqa: E402  (the recipe_search scripts' one nDCG@10 per query, paired test and arguments)

DATASET = "irds:msmarco-passage/trec-dl-2020/judged"


def bm25_students_on_splade(bm25_out: Path, out: Path) -> dict:
    """Each fold's BM25-trained student re-ranking its own test queries' SPLADE++ top-100, the folds merged."""
    splade = read_run(DATA / "splade-pp-ed-top100.run")
    merged: dict = {}
    for fold in ("fold1", "fold2"):
        run_file = out / f"{fold}-student.run"
        if not run_file.exists():
            test = set(read_run(bm25_out / "eval" / fold / "bm25-top100" / "first-stage.run"))
            first = out / f"{fold}-first-stage.run"
            write_run({q: docs for q, docs in splade.items() if q in test}, first, tag="splade-pp-ed")
            start = time.perf_counter()
            rerank(bm25_out / "students" / fold / "model-distill", first, dataset=DATASET, depth=DEPTH, output=run_file)
            print(f"{fold}: re-ranked in {time.perf_counter() - start:.0f} s", flush=True)
        merged.update(read_run(run_file))
    return merged


def main() -> None:
    parser = recipe_parser(__doc__, outputs=None)
    parser.add_argument("--bm25-trained", type=Path, default=Path("out/mpnet-cv"))
    parser.add_argument("--trained", default="SPLADE++=out/mpnet-cv-splade", metavar="LABEL=DIR",
                        help="the pipeline output whose students were trained on other lists, and what they were")
    parser.add_argument("--zero-shot-from", type=Path, default=Path("out/mpnet-cv-e3"))
    parser.add_argument("--out", type=Path, default=Path("out/mpnet-cv-on-splade"))
    args = parser.parse_args()
    label, trained = args.trained.split("=", 1)
    other = f"{label}-trained student"
    args.out.mkdir(parents=True, exist_ok=True)
    qrels_all = read_qrels(DATA / "qrels.txt")
    result: dict = {}
    for name, first_file, teacher_file in (("bm25-top100", "bm25-top100.run", "rankvicuna-7b.run"),
                                           ("splade-pp-ed", "splade-pp-ed-top100.run", "rankvicuna-7b-splade-pp-ed.run")):
        first = read_run(DATA / first_file)
        qrels = {q: qrels_all[q] for q in first if q in qrels_all}
        bm25_trained = (read_run(args.bm25_trained / "eval" / "cv" / name / "student.run") if name == "bm25-top100"
                        else bm25_students_on_splade(args.bm25_trained, args.out))
        runs = {"first stage": first, "teacher": read_run(DATA / teacher_file),
                "zero-shot": read_run(args.zero_shot_from / "eval" / "cv" / name / "zero-shot" / "teacher.run"),
                "BM25-trained student": bm25_trained,
                other: read_run(Path(trained) / "eval" / "cv" / name / "student.run")}
        values = {label: per_query(run, qrels) for label, run in runs.items()}
        qs = sorted(qrels)
        result[name] = {"ndcg10": {k: float(np.mean([v[q] for q in qs])) for k, v in values.items()},
                        f"{label}-trained vs": {b: paired(values[other], values[b])
                                                for b in ("BM25-trained student", "zero-shot", "first stage")},
                        "BM25-trained vs zero-shot": paired(values["BM25-trained student"], values["zero-shot"])}
        print(f"{name} ({len(qs)} q): " + ", ".join(f"{k} {v:.4f}" for k, v in result[name]["ndcg10"].items()))
        print(f"  {label}-trained vs " + "; ".join(f"{k}: {t['delta']:+.4f} (p = {t['p']:.3f})"
                                                  for k, t in result[name][f"{label}-trained vs"].items()))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written to {args.json}")


if __name__ == "__main__":
    main()
