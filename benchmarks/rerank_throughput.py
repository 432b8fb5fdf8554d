"""Throughput, memory and quality of ``rankdistill`` re-ranking vs sentence-transformers' CrossEncoder.predict.

On the DL20 BM25 top-100 (5,400 pairs) with the same weights: all-MiniLM-L6-v2 with an untrained one-score
head (initialised under a fixed seed) unless ``--model`` names a trained cross-encoder. Every configuration
runs in its own subprocess (clean peak RSS from ``getrusage``), configurations are interleaved over
``--repeats`` rounds and medians are reported, each with the 1-minute load average taken when it ran.

    .venv/bin/python benchmarks/rerank_throughput.py --repeats 3 --output benchmarks/results/rerank_throughput.json

Timed: scoring only (tokenisation, batching, forward passes), model loading excluded, for both sides.
rankdistill runs with explicit 32/256 budgets and CrossEncoder with max_length 512, so no pair within the
budgets is cut by either; max |diff| is taken over those pairs (a pair beyond them is cut by rankdistill only).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DL20, dl20_pairs, encoder_flops, machine, minilm_cross_encoder  # noqa: E402


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(spec: dict) -> dict:
    """One configuration in a fresh process: returns timing and memory; writes the scores to spec['scores']."""
    import numpy as np
    import torch

    torch.set_num_threads(spec["threads"])
    _, pairs = dl20_pairs(spec.get("limit"))
    queries, passages = [q for q, _ in pairs], [p for _, p in pairs]
    base = _rss_mb()
    if spec["kind"] == "matmul":
        out = {}
        n = spec.get("size", 2048)
        for name in ("float32", "bfloat16"):
            a = torch.randn(n, n).to(getattr(torch, name))
            b = torch.randn(n, n).to(getattr(torch, name))
            torch.matmul(a, b)  # warm-up (oneDNN primitive creation)
            reps, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < 3.0:
                torch.matmul(a, b)
                reps += 1
            out[f"matmul_gflops_{name}"] = 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9
        return out
    if spec["kind"] == "rankdistill":
        from rankdistill.reranking.scorer import CrossEncoderScorer

        # explicit 32/256 budgets (not a model's stored ones), so both sides see the same, uncut pairs
        scorer = CrossEncoderScorer(spec["model"], dtype=spec["dtype"], device="cpu", batch_tokens=spec.get("batch_tokens"),
                                    threads=spec["threads"], max_query_length=32, max_passage_length=256,
                                    compile=spec.get("compile", False), fast_cpu=spec.get("fast_cpu", True))
        loaded = _rss_mb()
        first_pass = None
        if spec.get("compile"):  # the first pass compiles (once per process): timed apart, then the steady state
            t0 = time.perf_counter()
            scorer.score(queries, passages)
            first_pass = time.perf_counter() - t0
        t0 = time.perf_counter()
        scores = scorer.score(queries, passages)
        seconds = time.perf_counter() - t0
        real, padded = scorer.token_count(queries, passages)
        extra = {"batch_tokens": scorer.batch_tokens, "padded_tokens": padded, "real_tokens": real}
        if first_pass is not None:
            extra.update(first_pass_seconds=first_pass, first_pass_pairs_per_s=len(queries) / first_pass)
    else:
        from rankdistill.modeling.backbones import resolve_backbone
        from rankdistill.modeling.cross_encoder import load_cross_encoder

        # the same CrossEncoder either way; load_cross_encoder also admits rankdistill's similarity head
        ce = load_cross_encoder(resolve_backbone(spec["model"]), activation_fn=torch.nn.Identity(), device="cpu", max_length=512)
        loaded = _rss_mb()
        t0 = time.perf_counter()
        scores = ce.predict(pairs, batch_size=spec["batch_size"], show_progress_bar=False)
        seconds = time.perf_counter() - t0
        extra = {"batch_size": spec["batch_size"], "max_length": ce.max_length}
    np.save(spec["scores"], np.asarray(scores, dtype=np.float32))
    peak = _peak_mb()
    return {"seconds": seconds, "pairs": len(pairs), "pairs_per_s": len(pairs) / seconds, "rss_start_mb": base,
            "rss_loaded_mb": loaded, "peak_rss_mb": peak, "peak_minus_loaded_mb": peak - loaded, **extra}


def profile(args) -> None:
    """Where the time goes: torch.profiler over one scoring pass (after a warm-up), top ops by self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    from rankdistill.reranking.scorer import CrossEncoderScorer

    model = args.model or str(minilm_cross_encoder(Path(tempfile.mkdtemp(prefix="rerank-prof-")) / "minilm-untrained-head"))
    _, pairs = dl20_pairs(args.limit or 400)
    queries, passages = [q for q, _ in pairs], [p for _, p in pairs]
    scorer = CrossEncoderScorer(model, dtype=args.profile, device="cpu", threads=args.threads, max_query_length=32, max_passage_length=256)
    scorer.workers = 1  # one stream of batches on all threads: torch.profiler does not see ops run in pool threads
    scorer.score(queries[:50], passages[:50])  # warm-up: oneDNN primitives, allocator
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        scorer.score(queries, passages)
        seconds = time.perf_counter() - t0
    print(f"{args.profile}: {len(pairs)} pairs, {len(pairs) / seconds:.1f} pairs/s under the profiler, load {os.getloadavg()[0]:.2f}")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


def _run_worker(spec: dict) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{spec['name']} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load1_before"] = load
    result["load1_after"] = os.getloadavg()[0]
    return result


def ndcg10(ids, scores, qrels) -> float:
    import ir_measures

    from rankdistill.data.trec import run_from_scores

    by_q: dict[str, dict[str, float]] = {}
    for (qid, docid), s in zip(ids, scores):
        by_q.setdefault(qid, {})[docid] = float(s)
    run = run_from_scores(by_q)
    flat = {qid: {d: s for d, s in docs} for qid, docs in run.items()}
    return ir_measures.calc_aggregate([ir_measures.nDCG @ 10], qrels, flat)[ir_measures.nDCG @ 10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="trained cross-encoder folder (default: MiniLM-L6 with an untrained, seeded head)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="first N pairs only (development)")
    parser.add_argument("--fp16-limit", type=int, default=540, help="pairs for float16 (slow on CPU; 0 = skip)")
    parser.add_argument("--st-batch-sizes", default="32,16", help="CrossEncoder.predict batch sizes: its default, a tuned one")
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--compiled", default="bfloat16", help="dtypes to also run with --compile ('' = none)")
    parser.add_argument("--hf-forward", default="bfloat16",
                        help="dtypes to also run with the Hugging Face forward instead of rankdistill.reranking.cpu_forward ('' = none)")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--profile", choices=["float32", "bfloat16", "float16"], help="only profile rankdistill scoring in this dtype (torch.profiler)")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "rerank_throughput.json")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    if args.profile:
        profile(args)
        return

    import numpy as np
    from transformers import AutoConfig, AutoTokenizer

    from rankdistill.data.trec import read_qrels

    work = Path(tempfile.mkdtemp(prefix="rerank-bench-"))
    model = args.model or str(minilm_cross_encoder(work / "minilm-untrained-head"))
    head = "trained model " + args.model if args.model else "all-MiniLM-L6-v2 + untrained one-score head (seed 0)"
    ids, pairs = dl20_pairs(args.limit)
    qrels = read_qrels(DL20 / "qrels.txt")
    config = AutoConfig.from_pretrained(model)
    tok = AutoTokenizer.from_pretrained(model)
    lengths = [len(x) for x in tok([q for q, _ in pairs], [p for _, p in pairs])["input_ids"]]
    # pairs within the 32/256 budgets: only for them must our tokens (and fp32 scores) equal predict's
    qlen = np.array([len(x) for x in tok([q for q, _ in pairs], add_special_tokens=False)["input_ids"]])
    plen = np.array([len(x) for x in tok([p for _, p in pairs], add_special_tokens=False)["input_ids"]])
    fits = (qlen <= 32) & (plen <= 256)
    flops = encoder_flops(config, lengths)

    specs = []
    for dtype in args.dtypes.split(","):
        specs.append({"name": f"rankdistill {dtype}", "kind": "rankdistill", "dtype": dtype})
    for dtype in filter(None, args.hf_forward.split(",")):
        specs.append({"name": f"rankdistill {dtype}, HF forward", "kind": "rankdistill", "dtype": dtype, "fast_cpu": False})
    for dtype in filter(None, args.compiled.split(",")):
        specs.append({"name": f"rankdistill {dtype} --compile", "kind": "rankdistill", "dtype": dtype, "compile": True})
    for bs in [int(b) for b in args.st_batch_sizes.split(",")]:
        specs.append({"name": f"CrossEncoder.predict bs={bs}", "kind": "st", "batch_size": bs})
    specs.append({"name": "matmul peak", "kind": "matmul"})
    for spec in specs:
        spec.update(model=model, threads=args.threads, limit=args.limit, scores=str(work / f"{len(spec['name'])}-{abs(hash(spec['name']))}.npy"))
    fp16 = {"name": "rankdistill float16", "kind": "rankdistill", "dtype": "float16", "model": model, "threads": args.threads,
            "limit": min(args.fp16_limit, len(pairs)), "scores": str(work / "fp16.npy")} if args.fp16_limit else None

    results: dict[str, list[dict]] = {s["name"]: [] for s in specs}
    scores: dict[str, np.ndarray] = {}
    fp16_result = None
    if fp16:  # once, first: slow on CPU, timing only
        fp16_result = _run_worker(fp16)
        print(f"float16 on {fp16['limit']} pairs: {fp16_result['pairs_per_s']:.1f} pairs/s", file=sys.stderr, flush=True)
    for rep in range(args.repeats):
        for spec in specs:  # interleaved: every configuration once per round
            res = _run_worker(spec)
            results[spec["name"]].append(res)
            if spec["kind"] != "matmul":
                scores[spec["name"]] = np.load(spec["scores"])
            print(f"round {rep + 1}: {spec['name']}: " + (f"{res['pairs_per_s']:.1f} pairs/s" if "pairs_per_s" in res else
                  f"{res['matmul_gflops_float32']:.0f} / {res['matmul_gflops_bfloat16']:.0f} GFLOP/s fp32/bf16")
                  + f" (load {res['load1_before']:.2f})", file=sys.stderr, flush=True)
        # a summary after every round: an interrupted benchmark still leaves the rounds it finished
        summarize(args, specs, results, scores, fp16, fp16_result, ids, qrels, config, lengths, flops, head, pairs, rep + 1, fits)


def summarize(args, specs, results, scores, fp16, fp16_result, ids, qrels, config, lengths, flops, head, pairs, rounds, fits) -> None:
    import numpy as np

    med = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    peak = {k: med(results["matmul peak"], f"matmul_gflops_{k}") for k in ("float32", "bfloat16")}
    st_names = [s["name"] for s in specs if s["kind"] == "st"]
    reference = scores[st_names[0]]  # CrossEncoder.predict fp32 at its default batch size
    base_rate = med(results[st_names[0]], "pairs_per_s")
    table = []
    for spec in specs:
        if spec["kind"] == "matmul":
            continue
        rows = results[spec["name"]]
        rate = med(rows, "pairs_per_s")
        dtype = spec.get("dtype", "float32")
        gflops = flops / med(rows, "seconds") / 1e9
        table.append({
            "config": spec["name"], "pairs": rows[0]["pairs"], "pairs_per_s_median": rate,
            "pairs_per_s_all": [r["pairs_per_s"] for r in rows], "load1_all": [r["load1_before"] for r in rows],
            "speedup_vs_predict_default": rate / base_rate, "peak_rss_mb": med(rows, "peak_rss_mb"),
            "peak_minus_loaded_mb": med(rows, "peak_minus_loaded_mb"),
            "max_abs_diff_vs_predict_fp32": float(np.abs(scores[spec["name"]] - reference)[fits].max()),
            "max_abs_diff_vs_predict_fp32_incl_cut_pairs": float(np.abs(scores[spec["name"]] - reference).max()),
            "ndcg10": ndcg10(ids, scores[spec["name"]], qrels), "achieved_gflops": gflops,
            "fraction_of_matmul_peak": gflops / peak["bfloat16" if dtype == "bfloat16" else "float32"],
            **{k: rows[0][k] for k in ("batch_tokens", "padded_tokens", "real_tokens", "batch_size", "max_length") if k in rows[0]},
        })
        if "first_pass_pairs_per_s" in rows[0]:  # compiled: the first pass pays the compile
            first = med(rows, "first_pass_pairs_per_s")
            table[-1].update(first_pass_seconds_median=med(rows, "first_pass_seconds"), first_pass_pairs_per_s_median=first,
                             first_pass_speedup_vs_predict_default=first / base_rate)
    if fp16_result:
        n = fp16["limit"]
        sub = np.load(fp16["scores"])
        table.append({"config": f"rankdistill float16 (first {n} pairs only)", "pairs": n,
                      "pairs_per_s_median": fp16_result["pairs_per_s"], "pairs_per_s_all": [fp16_result["pairs_per_s"]],
                      "load1_all": [fp16_result["load1_before"]], "speedup_vs_predict_default": fp16_result["pairs_per_s"] / base_rate,
                      "peak_rss_mb": fp16_result["peak_rss_mb"], "peak_minus_loaded_mb": fp16_result["peak_minus_loaded_mb"],
                      "max_abs_diff_vs_predict_fp32": float(np.abs(sub - reference[:n])[fits[:n]].max()), "ndcg10": None,
                      "achieved_gflops": encoder_flops(config, lengths[:n]) / fp16_result["seconds"] / 1e9})
    report = {"machine": machine(), "model": head, "pairs": len(pairs), "repeats": rounds,
              "pairs_beyond_32_256_budgets": int((~fits).sum()), "real_tokens": sum(lengths), "mean_tokens_per_pair": sum(lengths) / len(lengths), "model_gflop": flops / 1e9,
              "matmul_peak_gflops": peak, "matmul_all": results["matmul peak"], "threads": args.threads,
              "command": " ".join([Path(sys.executable).name, *sys.argv]), "results": table}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{head}; {len(pairs)} DL20 pairs ({int((~fits).sum())} beyond 32/256 tokens: cut by rankdistill, not by "
          f"predict, left out of max|diff|), {sum(lengths) / len(lengths):.1f} tokens/pair, {flops / 1e9:.0f} GFLOP; "
          f"matmul peak fp32 {peak['float32']:.0f}, bf16 {peak['bfloat16']:.0f} GFLOP/s; medians of {rounds} rounds")
    head_row = f"{'config':44} {'pairs/s':>8} {'x pred':>7} {'peak MB':>8} {'+MB':>6} {'max|diff|':>10} {'nDCG@10':>8} {'GFLOP/s':>8} {'%peak':>6} load1"
    print(head_row)
    for r in table:
        nd = f"{r['ndcg10']:.4f}" if r["ndcg10"] is not None else "–"
        pk = f"{100 * r['fraction_of_matmul_peak']:.0f}" if "fraction_of_matmul_peak" in r else "–"
        print(f"{r['config']:44} {r['pairs_per_s_median']:8.1f} {r['speedup_vs_predict_default']:7.2f} {r['peak_rss_mb']:8.0f} "
              f"{r['peak_minus_loaded_mb']:6.0f} {r['max_abs_diff_vs_predict_fp32']:10.2e} {nd:>8} {r['achieved_gflops']:8.1f} {pk:>6} "
              + ",".join(f"{x:.1f}" for x in r["load1_all"]))
        if "first_pass_pairs_per_s_median" in r:
            print(f"{'  first pass, compile included':44} {r['first_pass_pairs_per_s_median']:8.1f} "
                  f"{r['first_pass_speedup_vs_predict_default']:7.2f}  ({r['first_pass_seconds_median']:.1f} s)")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
