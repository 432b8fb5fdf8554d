"""Recipe search on DL20 (the experiments behind RESULTS section 8): 2-fold CV (the pipeline's folds), per-source distillation sets, one student per fold,
re-ranking every candidate set's top-100 of the test fold; writes per-query nDCG@10 to results/NAME.json.

    RECIPE_OUT=/tmp/rs IR_DATASETS_HOME=... .venv/bin/python benchmarks/recipe_search/exp.py NAME '{"sources": ["bm25"], "sample_size": 100, "epochs": 1, ...}'
"""
from __future__ import annotations

import hashlib
import json
import os
import resource
import sys
import time
from pathlib import Path

# sets/, models/, runs/ and results/ go under RECIPE_OUT (default /tmp/rankdistill-recipe-search); every step is
# skipped when its output exists, so a killed run continues where it stopped
HERE = Path(os.environ.get("RECIPE_OUT", "/tmp/rankdistill-recipe-search"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from _common import DL20 as D  # noqa: E402
DATASET = "irds:msmarco-passage/trec-dl-2020/judged"
SOURCES = {  # name -> (first stage, teacher, window, stride, depth)
    "bm25": ("bm25-top100.run", "rankvicuna-7b.run"),
    "rm3": ("bm25-rm3-top100.run", "rankvicuna-7b-bm25-rm3.run"),
    "tasb": ("tasb-top100.run", "rankvicuna-7b-tasb.run"),
    "ada2": ("openai-ada2-top100.run", "rankvicuna-7b-openai-ada2.run"),
    "splade": ("splade-pp-ed-top100.run", "rankvicuna-7b-splade-pp-ed.run"),
    **{f"gpt{i}": ("bm25-top100.run", f"rankgpt-gpt-3.5-turbo-run{i}.run") for i in range(1, 6)},
}
EVAL = {"bm25": "bm25-top100.run", "splade": "splade-pp-ed-top100.run", "tasb": "tasb-top100.run"}


def cpu() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def main(name: str, cfg: dict) -> None:
    for sub in ("sets", "models", "runs", "results"):
        (HERE / sub).mkdir(parents=True, exist_ok=True)
    import ir_measures
    import rankdistill
    from rankdistill.data.trec import read_qrels, read_run
    from rankdistill.workflow.runner import folds_of

    qrels = read_qrels(D / "qrels.txt")
    qids = sorted(read_run(D / "bm25-top100.run"))
    folds = folds_of(qids, 2, cfg.get("split_seed", 0))
    start, c0 = time.time(), cpu()
    per_query: dict[str, dict[str, float]] = {s: {} for s in cfg.get("eval", ["bm25", "splade"])}
    for f, test in enumerate(folds):
        train_q = sorted(set(qids) - set(test))
        qfile = HERE / "sets" / f"q-split{cfg.get('split_seed', 0)}-f{f}.txt"
        qfile.write_text("\n".join(train_q) + "\n")
        sets = []
        for src in cfg["sources"]:
            fs, tr = SOURCES[src]
            opts = dict(sample_size=cfg.get("sample_size", 100), sampling=cfg.get("sampling", "top"),
                        pairs=cfg.get("pairs", "compared"), depth=100)
            key = hashlib.sha1(json.dumps([src, f, cfg.get("split_seed", 0), opts], sort_keys=True).encode()).hexdigest()[:10]
            out = HERE / "sets" / f"{src}-{key}.parquet"
            if not out.exists():
                rankdistill.build(teacher_run=D / tr, first_stage_run=D / fs, dataset=DATASET, output=out, qids=qfile,
                                  targets="rank", teacher_window=20, teacher_stride=10, teacher_depth=100,
                                  progress=False, **opts)
            sets.append(out)
        model_dir = HERE / "models" / f"{name}-f{f}"
        kw = dict(loss=cfg.get("loss", "ranknet"), loss_kwargs=cfg.get("loss_options", {"weighting": "discount"}),
                  epochs=cfg.get("epochs", 1), learning_rate=cfg.get("lr", 2e-5),
                  gate_learning_rate=cfg.get("gate_lr", 1e-2), warmup_ratio=cfg.get("warmup", 0.1),
                  max_query_length=32, max_passage_length=cfg.get("max_passage_length", 128), bf16="auto")
        kw.update(cfg.get("train", {}))
        if not (model_dir / "config.json").exists():
            rankdistill.train(sets, model="minilm-l6", head=cfg.get("head", "gated"), output=model_dir,
                              seed=cfg.get("seed", 0), overwrite=True, **kw)
        for ev in per_query:
            run = HERE / "runs" / f"{name}-f{f}-{ev}.run"
            if not run.exists():
                sub = {q: v for q, v in read_run(D / EVAL[ev]).items() if q in set(test)}
                rankdistill.rerank(model_dir, sub, dataset=DATASET, depth=100, output=run, progress=False)
            scores = read_run(run)
            for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, {q: dict(v) for q, v in scores.items()}):
                if m.query_id in set(test):
                    per_query[ev][m.query_id] = m.value
        print(f"[{name}] fold {f} done {time.time() - start:.0f}s", flush=True)
    res = {"name": name, "cfg": cfg, "wall_s": time.time() - start, "cpu_s": cpu() - c0, "per_query": per_query,
           "mean": {k: sum(v.values()) / len(v) for k, v in per_query.items()}}
    (HERE / "results" / f"{name}.json").write_text(json.dumps(res, indent=1))
    print(name, res["mean"], f"cpu {res['cpu_s']:.0f}s")


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]))
