"""Load test of ``rankdistill serve`` on 127.0.0.1, next to ``rerank``'s scoring engine on the same pairs.

Requests: the 54 DL20 queries, each with its BM25 top-100 (100 documents), ``--passes`` times (default once) in a seeded
shuffled order, sent by ``--clients`` concurrent clients (httpx, asyncio, one connection each) to a server
started as ``python -m rankdistill serve MODEL`` in its own process with its defaults (dtype auto: bf16 on this
CPU). Bounded: a fixed number of requests, loopback only, every call with a timeout.

``rerank`` is measured in the same run, before and after the server, each time in a fresh process:
``CrossEncoderScorer.score`` (what ``rankdistill rerank`` calls) on the same 5,400 pairs with the same model and
defaults, scoring only (loading excluded). Both sides get a short warm-up first. The server's pairs/s are
all pairs answered / wall time from the first request to the last answer, so they include HTTP, JSON,
tokenisation, batching, and the load client itself on the same 2 cores.

    .venv/bin/python benchmarks/serve_load.py --output benchmarks/results/serve_load.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dl20_pairs, machine, minilm_cross_encoder  # noqa: E402


def _requests(limit: int | None) -> list[dict]:
    """One request per DL20 query: its text and its BM25 top-100 passages, in run order."""
    ids, pairs = dl20_pairs()
    by_query: dict[str, dict] = {}
    for (qid, _docid), (query, passage) in zip(ids, pairs):
        by_query.setdefault(qid, {"qid": qid, "query": query, "documents": []})["documents"].append(passage)
    return list(by_query.values())[:limit]


def rerank_worker(spec: dict) -> dict:
    """In a fresh process: rerank's engine on every pair of the requests, after a warm-up."""
    import numpy as np

    from rankdistill.reranking.scorer import CrossEncoderScorer

    requests = _requests(spec["limit"])
    queries = [r["query"] for r in requests for _ in r["documents"]]
    passages = [d for r in requests for d in r["documents"]]
    scorer = CrossEncoderScorer(spec["model"], dtype=spec["dtype"])
    scorer.score(queries[: spec["warmup_pairs"]], passages[: spec["warmup_pairs"]])
    t0 = time.perf_counter()
    scores = scorer.score(queries, passages)
    seconds = time.perf_counter() - t0
    np.save(spec["scores"], scores)
    return {"pairs": len(queries), "seconds": seconds, "pairs_per_s": len(queries) / seconds, "dtype": scorer.dtype,
            "batch_tokens": scorer.batch_tokens, "streams": scorer.workers}


def _run_rerank(spec: dict) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, __file__, "--rerank-worker", json.dumps(spec)], capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"rerank worker failed:\n{proc.stderr[-3000:]}")
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "load1_before": load, "load1_after": os.getloadavg()[0]}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _load(base: str, bodies: list[dict], clients: int) -> tuple[float, list[float], list[dict]]:
    """``clients`` concurrent callers work through ``bodies``; returns wall seconds, latencies, responses."""
    import httpx

    queue = list(enumerate(bodies))
    latencies: list[float] = [0.0] * len(bodies)
    answers: list[dict] = [{}] * len(bodies)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=600, limits=limits) as client:

        async def caller():
            while queue:
                i, body = queue.pop(0)
                t0 = time.perf_counter()
                response = await client.post("/v1/rerank", json=body)
                latencies[i] = time.perf_counter() - t0
                response.raise_for_status()
                answers[i] = response.json()

        t0 = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        wall = time.perf_counter() - t0
    return wall, latencies, answers


def serve_and_load(args, model: str, requests: list[dict]) -> dict:
    import httpx
    import numpy as np

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = tempfile.NamedTemporaryFile("w+", prefix="serve-load-", suffix=".log", delete=False)
    command = [sys.executable, "-m", "rankdistill", "serve", model, "--port", str(port), "--dtype", args.dtype,
               "--log-level", "warning", *(["--max-batch-tokens", str(args.max_batch_tokens)] if args.max_batch_tokens else [])]
    env = {k: v for k, v in os.environ.items() if k != "RANKDISTILL_API_KEY"}
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + Path(log.name).read_text()[-3000:])
            time.sleep(0.5)
        strip = lambda r: {"query": r["query"], "documents": r["documents"]}  # noqa: E731
        for r in requests[: args.warmup_requests]:  # warm-up: oneDNN primitives, allocator
            httpx.post(base + "/v1/rerank", json=strip(r), timeout=600).raise_for_status()
        order = [i for _ in range(args.passes) for i in range(len(requests))]
        random.Random(0).shuffle(order)
        bodies = [strip(requests[i]) for i in order]
        load = os.getloadavg()[0]
        health_before = httpx.get(base + "/health").json()
        wall, latencies, answers = asyncio.run(_load(base, bodies, args.clients))
        health_after = httpx.get(base + "/health").json()
        load_after = os.getloadavg()[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    pairs = sum(len(b["documents"]) for b in bodies)
    # scores per request, back in document order, for the comparison with rerank's
    per_request = []
    for i, answer in zip(order, answers):
        got = np.zeros(len(requests[i]["documents"]), dtype=np.float32)
        for r in answer["results"]:
            got[r["index"]] = r["relevance_score"]
        per_request.append((i, got))
    lat = np.array(latencies)
    groups = health_after["groups"] - health_before["groups"]
    return {
        "requests": len(bodies), "clients": args.clients, "documents_per_request": len(requests[0]["documents"]),
        "pairs": pairs, "seconds": wall, "requests_per_s": len(bodies) / wall, "pairs_per_s": pairs / wall,
        "latency_p50_s": float(np.percentile(lat, 50)), "latency_p90_s": float(np.percentile(lat, 90)),
        "latency_p99_s": float(np.percentile(lat, 99)), "latency_max_s": float(lat.max()),
        "request_groups": groups, "requests_per_group": len(bodies) / max(1, groups),
        "load1_before": load, "load1_after": load_after, "command": " ".join(Path(c).name if c == sys.executable else c for c in command),
        "_per_request": per_request,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rerank-worker", help=argparse.SUPPRESS)
    parser.add_argument("--model", help="trained cross-encoder folder (default: MiniLM-L6 with an untrained, seeded head)")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--passes", type=int, default=1, help="each of the 54 queries is sent this many times")
    parser.add_argument("--limit", type=int, default=None, help="first N queries only (development)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-batch-tokens", type=int, default=None, help="server's dynamic batch budget (default: its own)")
    parser.add_argument("--warmup-requests", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "serve_load.json")
    args = parser.parse_args()
    if args.rerank_worker:
        print(json.dumps(rerank_worker(json.loads(args.rerank_worker))))
        return

    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="serve-load-"))
    model = args.model or str(minilm_cross_encoder(work / "minilm-untrained-head"))
    head = "trained model " + args.model if args.model else "all-MiniLM-L6-v2 + untrained one-score head (seed 0)"
    requests = _requests(args.limit)
    spec = {"model": model, "dtype": args.dtype, "limit": args.limit, "warmup_pairs": 100 * args.warmup_requests}

    print("rerank engine (before the server) ...", file=sys.stderr, flush=True)
    before = _run_rerank({**spec, "scores": str(work / "rerank-before.npy")})
    print(f"  {before['pairs_per_s']:.1f} pairs/s (load {before['load1_before']:.2f})", file=sys.stderr, flush=True)
    print(f"server, {args.clients} clients, {args.passes * len(requests)} requests ...", file=sys.stderr, flush=True)
    served = serve_and_load(args, model, requests)
    print(f"  {served['pairs_per_s']:.1f} pairs/s (load {served['load1_before']:.2f})", file=sys.stderr, flush=True)
    print("rerank engine (after the server) ...", file=sys.stderr, flush=True)
    after = _run_rerank({**spec, "scores": str(work / "rerank-after.npy")})
    print(f"  {after['pairs_per_s']:.1f} pairs/s (load {after['load1_before']:.2f})", file=sys.stderr, flush=True)

    reference = np.load(work / "rerank-before.npy")
    offsets = np.cumsum([0] + [len(r["documents"]) for r in requests])
    diffs, same_order = [], 0
    for i, got in served.pop("_per_request"):
        want = reference[offsets[i] : offsets[i + 1]]
        diffs.append(float(np.abs(got - want).max()))
        same_order += int(list(np.argsort(-got, kind="stable")) == list(np.argsort(-want, kind="stable")))
    rerank_rate = statistics.mean([before["pairs_per_s"], after["pairs_per_s"]])
    ratio = served["pairs_per_s"] / rerank_rate
    report = {
        "machine": machine(), "model": head, "dtype": before["dtype"], "rerank_before": before, "rerank_after": after,
        "rerank_pairs_per_s_mean": rerank_rate, "serve": served, "serve_vs_rerank_pairs_per_s": ratio,
        "max_abs_diff_vs_rerank": max(diffs), "requests_with_rerank_order": same_order, "target_ratio": 0.8,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{head}; {before['dtype']}; DL20 BM25 top-100: {len(requests)} queries x {served['documents_per_request']} documents")
    print(f"rerank engine: {before['pairs_per_s']:.1f} / {after['pairs_per_s']:.1f} pairs/s (before / after the server; "
          f"{before['pairs']} pairs, load {before['load1_before']:.2f} / {after['load1_before']:.2f})")
    print(f"serve: {served['requests']} requests from {served['clients']} clients in {served['seconds']:.1f} s: "
          f"{served['requests_per_s']:.2f} requests/s, {served['pairs_per_s']:.1f} pairs/s, latency p50 {served['latency_p50_s']:.2f} s, "
          f"p99 {served['latency_p99_s']:.2f} s; {served['requests_per_group']:.1f} requests batched together (load {served['load1_before']:.2f})")
    print(f"serve / rerank pairs/s: {ratio:.2f} (target >= 0.80: {'met' if ratio >= 0.8 else 'NOT met'}); "
          f"max |score diff| vs rerank {max(diffs):.1e}, same order in {same_order}/{len(diffs)} requests")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
