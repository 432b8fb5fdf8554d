"""Distil RankVicuna-7B into a MiniLM-L6 cross-encoder on TREC DL 2020, 2-fold over its 54 queries.

    .venv/bin/python benchmarks/distill_dl20.py --out /tmp/distill-dl20 [--configs ranknet,lce,kl,adr-mse]

Folds: the 54 judged qids sorted as strings, alternating (fold 0 = even positions, fold 1 = odd). Each
fold trains on one half's teacher lists (``rankdistill build``: ``--sampling random`` k of depth 100,
rank targets) and re-ranks the *other* half's BM25 top-100; the two halves' re-rankings together give a
run over all 54 queries. nDCG@10 (ir_measures, NIST qrels) per fold and overall against BM25 and the
teacher on the same queries, paired t-test (``rankdistill.evaluation.significance``) on per-query nDCG@10.

Configs: ``ranknet`` (the paper's distillation loss), ``kl`` (temperature 10: rank targets 1..100 with
tau 1 put almost all mass on the top passage), ``adr-mse`` — all three on the same teacher lists — and
``lce`` on qrels: ``single-relevant`` lists (one passage of grade >= 2 + 7 BM25 hard negatives), three
samples per query (seeds 0-2) so it sees about as many pairs as the distillation runs.

Scoring uses ``CrossEncoder.predict`` on texts cut with ``rankdistill.modeling.cross_encoder.truncate_pairs`` (the same
separate query/passage truncation as training). Every finished fold is kept (model, run), so a rerun
skips what is done. Wall and CPU times are measured per training and per re-ranking.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

DL20 = Path(__file__).resolve().parents[2] / "shared" / "data" / "msmarco-dl20"


def ndcg10(run: dict[str, list[tuple[str, float]]], qrels) -> dict[str, float]:
    import ir_measures
    from ir_measures import nDCG

    flat = {q: {d: float(s) for d, s in docs} for q, docs in run.items()}
    return {m.query_id: m.value for m in ir_measures.iter_calc([nDCG @ 10], qrels, flat)}


def paired(a: dict[str, float], b: dict[str, float], qids: list[str]) -> float:
    from rankdistill.evaluation.significance import paired_p_value

    return paired_p_value([a[q] for q in qids], [b[q] for q in qids])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=DL20)
    parser.add_argument("--configs", default="ranknet,lce,kl,adr-mse")
    parser.add_argument("--sample-size", type=int, default=20)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--max-passage-length", type=int, default=128)
    parser.add_argument("--max-query-length", type=int, default=32)
    parser.add_argument("--epochs", type=float, default=2.0)
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--folds", default="0,1", help="Which folds to train (0 trains on the even-position qids).")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from rankdistill.distillation.builder import build
    from rankdistill.data.collection import load_collection
    from rankdistill.modeling.cross_encoder import load_cross_encoder, truncate_pairs
    from rankdistill.data.trec import read_qrels, read_run, write_run
    from rankdistill.training.trainer import train

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    coll = load_collection(str(args.data))
    qrels = read_qrels(args.data / "qrels.txt")
    bm25 = read_run(args.data / "bm25-top100.run")
    teacher_path = args.data / "rankvicuna-7b.run"
    teacher = read_run(teacher_path)
    qids = sorted(coll.queries)
    folds = [qids[0::2], qids[1::2]]
    (out / "folds.json").write_text(json.dumps({"rule": "sorted qids (as strings), alternating", "folds": folds}, indent=1))
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def teacher_set(train_qids: list[str], fold: int) -> list[Path]:
        path = out / "data" / f"teacher-fold{fold}.parquet"
        if not path.exists():
            build(
                teacher_run=teacher_path, first_stage_run=args.data / "bm25-top100.run", dataset=str(args.data),
                output=path, depth=args.depth, sample_size=args.sample_size, sampling="random", targets="rank",
                seed=args.seed, qids=train_qids, progress=False,
            )
        return [path]

    def qrels_sets(train_qids: list[str], fold: int) -> list[Path]:
        paths = []
        for seed in range(3):
            path = out / "data" / f"qrels-fold{fold}-seed{seed}.parquet"
            if not path.exists():
                build(
                    first_stage_run=args.data / "bm25-top100.run", dataset=str(args.data), output=path,
                    depth=args.depth, sample_size=8, sampling="single-relevant", targets="relevance",
                    negatives="first-stage", relevant_grade=2, seed=args.seed + seed, qids=train_qids, progress=False,
                )
            paths.append(path)
        return paths

    configs = {
        "ranknet": dict(loss="ranknet", data=teacher_set),
        "kl": dict(loss="kl", loss_kwargs={"temperature": 10.0}, data=teacher_set),
        "adr-mse": dict(loss="adr-mse", data=teacher_set),
        "lce": dict(loss="lce", data=qrels_sets),
    }
    for name in args.configs.split(","):
        cfg = configs[name]
        for fold in (int(f) for f in args.folds.split(",")):
            key = f"{name}/fold{fold}"
            run_path = out / "runs" / f"{name}-fold{fold}.run"
            if key in results and run_path.exists():
                continue
            train_q, test_q = folds[fold], folds[1 - fold]
            data = cfg["data"](train_q, fold)
            model_dir = out / "models" / f"{name}-fold{fold}"
            t0, c0 = time.perf_counter(), time.process_time()
            if not model_dir.exists():
                train(
                    data, model="minilm-l6", output=model_dir, loss=cfg["loss"], loss_kwargs=cfg.get("loss_kwargs"),
                    epochs=args.epochs, learning_rate=args.learning_rate, batch_queries=1, grad_accum=1,
                    max_query_length=args.max_query_length, max_passage_length=args.max_passage_length,
                    warmup_ratio=0.1, seed=args.seed, logging_steps=5, save_steps=10_000, resume=True,
                )
            train_wall, train_cpu = time.perf_counter() - t0, time.process_time() - c0
            log = json.loads((model_dir / "training_log.json").read_text())["stages"][0]
            losses = [e["loss"] for e in log["log_history"] if "loss" in e]
            # re-rank the held-out half's BM25 top-100
            model = load_cross_encoder(model_dir, device="cpu")
            pairs_q, pairs_p, owners = [], [], []
            for q in test_q:
                texts = coll.texts([d for d, _ in bm25[q]])
                for d, _ in bm25[q]:
                    pairs_q.append(coll.queries[q])
                    pairs_p.append(texts[d])
                    owners.append((q, d))
            cq, cp = truncate_pairs(model.tokenizer, pairs_q, pairs_p, args.max_query_length, args.max_passage_length)
            t1, c1 = time.perf_counter(), time.process_time()
            scores = model.predict(list(zip(cq, cp)), batch_size=32, show_progress_bar=True)
            rerank_wall, rerank_cpu = time.perf_counter() - t1, time.process_time() - c1
            run: dict[str, list[tuple[str, float]]] = {}
            for (q, d), s in zip(owners, scores.tolist()):
                run.setdefault(q, []).append((d, float(s)))
            run = {q: sorted(v, key=lambda x: -x[1]) for q, v in run.items()}
            run_path.parent.mkdir(parents=True, exist_ok=True)
            write_run(run, run_path, tag=f"minilm-{name}-fold{fold}")
            results[key] = {
                "train_queries": log["queries"], "train_pairs": log["pairs"], "steps": log["steps"],
                "train_wall_s": round(train_wall, 1), "train_cpu_s": round(train_cpu, 1),
                "rerank_pairs": len(owners), "rerank_wall_s": round(rerank_wall, 1), "rerank_cpu_s": round(rerank_cpu, 1),
                "rerank_pairs_per_s": round(len(owners) / rerank_wall, 1),
                "first_losses": losses[:3], "last_losses": losses[-3:],
            }
            results_path.write_text(json.dumps(results, indent=1))
            print(key, results[key], flush=True)

    # ---- evaluation
    base = {"bm25": ndcg10(bm25, qrels), "teacher": ndcg10(teacher, qrels)}
    per_query = dict(base)
    for name in configs:
        parts = [out / "runs" / f"{name}-fold{f}.run" for f in (0, 1)]
        if all(p.exists() for p in parts):
            run = {**read_run(parts[0]), **read_run(parts[1])}
            per_query[name] = ndcg10(run, qrels)
    table = []
    for name, values in per_query.items():
        row = {"run": name}
        for label, qs in (("fold0_test", folds[1]), ("fold1_test", folds[0]), ("all", qids)):
            have = [q for q in qs if q in values]
            # a query without any judged passage in the run gets 0 (ir_measures leaves it out)
            mean = sum(values.get(q, 0.0) for q in qs) / len(qs)
            row[label] = round(mean, 4)
            if name not in base and len(have) == len(qs):
                row[f"p_vs_bm25_{label}"] = round(paired(values, base["bm25"], qs), 4)
                row[f"p_vs_teacher_{label}"] = round(paired(values, base["teacher"], qs), 4)
        table.append(row)
    (out / "ndcg10.json").write_text(json.dumps({"table": table, "per_query": per_query}, indent=1))
    for row in table:
        print(json.dumps(row))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
