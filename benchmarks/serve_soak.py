"""Soak test of ``rankdistill serve`` on 127.0.0.1: a few minutes of mixed, partly abusive traffic.

The server runs as ``python -m rankdistill serve MODEL`` in its own process, with tight limits so abuse trips them
(``--max-documents 60 --max-request-tokens 12288 --max-body-bytes 262144 --body-timeout-s 4``). For ``--seconds``
(default 120), ``--clients`` concurrent callers send a seeded mix of:

- valid requests of 1 to 40 DL20 passages of one query (its BM25 top-40, drawn and shuffled), in the three shapes
  (``/v1/rerank``, ``/v2/rerank``, TEI's ``/rerank`` with and without ``raw_scores``); some trickle their body in
  three pieces (slow but in time);
- malformed ones (broken JSON, wrong types, no documents), too many documents (422), oversized bodies and too many
  tokens (413), stalled bodies (408), callers that hang up 50 ms after sending;
- every 15 s a burst of 24 small valid requests at once; and ``GET /health`` every 0.5 s throughout.

Every valid answer is checked against ``rerank``'s scores (``CrossEncoderScorer.score``, the engine ``rankdistill
rerank`` runs, on the same model and dtype, computed once for the 54 x 40 pairs before the server starts): the same
ranking, scores within 1e-4 (through a sigmoid for TEI without ``raw_scores``). Reported: requests by kind and status,
p50/p99 latency of the valid ones, the server's RSS at the start (after warm-up) and end and its peak, /health's
slowest answer, and the checks; the script exits 1 when a check fails (any 5xx, an unexpected status, a lost
answer, a wrong score, a failed health poll).

    .venv/bin/python benchmarks/serve_soak.py --output benchmarks/results/serve_soak.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, dl20_pairs, machine, minilm_cross_encoder  # noqa: E402

DEPTH = 40  # passages per query in the pool valid requests draw from
LIMITS = {"max_documents": 60, "max_request_tokens": 12288, "max_body_bytes": 262144, "body_timeout_s": 4}
EXPECTED = {  # the status each kind must get
    "valid": 200, "slow_valid": 200, "burst": 200, "malformed_json": 422, "wrong_types": 422, "no_documents": 422,
    "too_many_documents": 422, "oversized_body": 413, "too_many_tokens": 413, "stalled_body": 408,
}
MIX = [("valid", 55), ("slow_valid", 5), ("malformed_json", 5), ("wrong_types", 5), ("no_documents", 3),
       ("too_many_documents", 5), ("oversized_body", 5), ("too_many_tokens", 5), ("stalled_body", 2), ("hang_up", 10)]


def _pool() -> list[dict]:
    """Per DL20 query: its text and its BM25 top-``DEPTH`` passages."""
    ids, pairs = dl20_pairs()
    pool: dict[str, dict] = {}
    for (qid, _), (query, passage) in zip(ids, pairs):
        entry = pool.setdefault(qid, {"query": query, "documents": []})
        if len(entry["documents"]) < DEPTH:
            entry["documents"].append(passage)
    return list(pool.values())


def _reference(model: str, dtype: str, pool: list[dict]):
    """rerank's scores of every pool pair, as ``{(query, passage): score}``."""
    from rankdistill.reranking.scorer import CrossEncoderScorer

    scorer = CrossEncoderScorer(model, dtype=dtype, device="cpu")
    queries = [e["query"] for e in pool for _ in e["documents"]]
    passages = [d for e in pool for d in e["documents"]]
    t0 = time.perf_counter()
    scores = scorer.score(queries, passages)
    return dict(zip(zip(queries, passages), map(float, scores))), scorer.dtype, time.perf_counter() - t0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


class Soak:
    """The traffic, its outcomes and the checks of every valid answer."""

    def __init__(self, base: str, pool: list[dict], reference: dict, seed: int):
        self.base = base
        self.host, self.port = base.removeprefix("http://").split(":")
        self.pool = pool
        self.reference = reference
        self.rng = random.Random(seed)
        self.outcomes: Counter = Counter()  # (kind, status or error name)
        self.latencies: list[float] = []  # valid requests, seconds
        self.checked = 0
        self.max_diff = 0.0
        self.failures: list[str] = []
        self.health_polls = 0
        self.health_max_s = 0.0

    # --- what a request is -------------------------------------------------------------------------------------
    def _valid(self, k_max: int = DEPTH) -> tuple[str, dict, dict]:
        """(path, body, check): a query with k of its pool passages, shuffled, in one of the three shapes."""
        entry = self.rng.choice(self.pool)
        docs = self.rng.sample(entry["documents"], self.rng.randint(1, min(k_max, len(entry["documents"]))))
        shape = self.rng.choice(["v1", "v2", "tei", "tei_raw"])
        if shape == "v1":
            return "/v1/rerank", {"query": entry["query"], "documents": docs, "return_documents": True}, {"shape": shape, "docs": docs, "query": entry["query"]}
        if shape == "v2":
            return "/v2/rerank", {"model": "m", "query": entry["query"], "documents": docs}, {"shape": shape, "docs": docs, "query": entry["query"]}
        body = {"query": entry["query"], "texts": docs, "raw_scores": shape == "tei_raw", "truncate": True}
        return "/rerank", body, {"shape": shape, "docs": docs, "query": entry["query"]}

    def _check(self, check: dict, answer) -> None:
        """The answer ranks every document as rerank's scores do, with the same scores (sigmoid for plain TEI)."""
        import numpy as np

        want = np.array([self.reference[(check["query"], d)] for d in check["docs"]])
        if check["shape"] == "tei":
            want = 1 / (1 + np.exp(-want))
        results = answer if check["shape"].startswith("tei") else answer["results"]
        key = "score" if check["shape"].startswith("tei") else "relevance_score"
        got = np.full(len(want), np.nan)
        for r in results:
            got[r["index"]] = r[key]
        if np.isnan(got).any():
            self.failures.append(f"{check['shape']}: answer lacks documents")
            return
        diff = float(np.abs(got - want).max())
        self.max_diff = max(self.max_diff, diff)
        scores = [r[key] for r in results]
        if diff > 1e-4 or scores != sorted(scores, reverse=True):
            self.failures.append(f"{check['shape']}: scores differ from rerank's by {diff:.2e} or are out of order")
        self.checked += 1

    # --- sending --------------------------------------------------------------------------------------------------
    async def _post(self, client, kind: str, path: str, check: dict | None = None, **kwargs) -> None:
        t0 = time.perf_counter()
        try:
            response = await client.post(path, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a lost answer is a finding, counted and reported
            self.outcomes[(kind, type(exc).__name__)] += 1
            self.failures.append(f"{kind}: no answer ({type(exc).__name__}: {exc})")
            return
        self.outcomes[(kind, response.status_code)] += 1
        if response.status_code != EXPECTED[kind]:
            self.failures.append(f"{kind}: status {response.status_code}: {response.text[:200]}")
            return
        if response.status_code != 200 and "detail" not in response.json():
            self.failures.append(f"{kind}: an error without a JSON detail")
        if check is not None:
            self.latencies.append(time.perf_counter() - t0)
            self._check(check, response.json())

    async def _raw(self, kind: str, body: bytes, pieces: list[bytes], pause: float, check: dict | None) -> None:
        """A request over a raw connection whose body arrives in ``pieces`` with ``pause`` s between them."""
        t0 = time.perf_counter()
        reader, writer = await asyncio.open_connection(self.host, int(self.port))
        try:
            path = "/rerank" if check is None or check["shape"].startswith("tei") else "/v1/rerank"
            writer.write(f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode())
            for piece in pieces:
                writer.write(piece)
                await writer.drain()
                await asyncio.sleep(pause)
            data = await asyncio.wait_for(reader.read(), 120)
        except Exception as exc:  # noqa: BLE001
            self.outcomes[(kind, type(exc).__name__)] += 1
            self.failures.append(f"{kind}: no answer ({type(exc).__name__}: {exc})")
            return
        finally:
            writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status = int(head.split()[1]) if head else 0
        self.outcomes[(kind, status)] += 1
        if status != EXPECTED[kind]:
            self.failures.append(f"{kind}: status {status}: {payload[:200]!r}")
        elif check is not None:
            self.latencies.append(time.perf_counter() - t0)
            self._check(check, json.loads(payload))

    async def one(self, client, kind: str) -> None:
        """Send one request of ``kind``."""
        if kind in ("valid", "hang_up"):
            path, body, check = self._valid()
            if kind == "hang_up":  # sent, then the caller gives up before any answer can come
                try:
                    await client.post(path, json=body, timeout=0.05)
                    self.outcomes[(kind, "answered")] += 1
                except Exception:  # noqa: BLE001
                    self.outcomes[(kind, "hung up")] += 1
                return
            await self._post(client, kind, path, check, json=body)
        elif kind == "slow_valid":
            path, body, check = self._valid(k_max=10)
            raw = json.dumps(body).encode()
            third = len(raw) // 3 + 1
            await self._raw(kind, raw, [raw[i : i + third] for i in range(0, len(raw), third)], 0.4, check)
        elif kind == "stalled_body":
            raw = json.dumps(self._valid()[1]).encode()
            await self._raw(kind, raw, [raw[: len(raw) // 2]], LIMITS["body_timeout_s"] + 2, None)
        elif kind == "malformed_json":
            await self._post(client, kind, self.rng.choice(["/v1/rerank", "/v2/rerank", "/rerank"]),
                             content=b'{"query": "q", "documents": ["a", ', headers={"content-type": "application/json"})
        elif kind == "wrong_types":
            body = self.rng.choice([{"query": 3, "documents": ["a"]}, {"query": "q", "texts": "a"},
                                    {"query": "q", "documents": [5]}, ["q", "a"]])
            await self._post(client, kind, "/rerank" if "texts" in body else "/v1/rerank", json=body)
        elif kind == "no_documents":
            await self._post(client, kind, "/v2/rerank", json={"query": "q", "documents": []})
        elif kind == "too_many_documents":
            await self._post(client, kind, "/v1/rerank", json={"query": "q", "documents": ["a b c"] * (LIMITS["max_documents"] + 1)})
        elif kind == "oversized_body":
            await self._post(client, kind, "/v1/rerank", json={"query": "q", "documents": ["x" * 4096] * 70})
        elif kind == "too_many_tokens":  # under the body and document limits; each text cut to the model's budget
            long = " ".join(self.rng.choice(self.pool)["documents"][:6])
            await self._post(client, kind, "/rerank", json={"query": "q", "texts": [long] * 55})

    # --- the schedule ---------------------------------------------------------------------------------------------
    async def run(self, seconds: float, clients: int) -> float:
        import httpx

        kinds, weights = zip(*MIX)
        deadline = time.monotonic() + seconds
        limits = httpx.Limits(max_connections=clients + 32, max_keepalive_connections=clients + 32)
        async with httpx.AsyncClient(base_url=self.base, timeout=120, limits=limits) as client:

            async def caller() -> None:
                while time.monotonic() < deadline:
                    await self.one(client, self.rng.choices(kinds, weights)[0])

            async def bursts() -> None:
                while True:
                    await asyncio.sleep(15)
                    if time.monotonic() >= deadline:
                        return
                    batch = [self._valid(k_max=5) for _ in range(24)]
                    await asyncio.gather(*(self._post(client, "burst", p, c, json=b) for p, b, c in batch))

            async def health() -> None:
                while time.monotonic() < deadline:
                    t0 = time.perf_counter()
                    try:
                        ok = (await client.get("/health", timeout=5)).status_code == 200
                    except Exception:  # noqa: BLE001
                        ok = False
                    self.health_polls += 1
                    self.health_max_s = max(self.health_max_s, time.perf_counter() - t0)
                    if not ok:
                        self.failures.append("/health did not answer 200 within 5 s")
                    await asyncio.sleep(0.5)

            t0 = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(clients)), bursts(), health())
            return time.perf_counter() - t0


def _start_server(model: str, dtype: str, port: int, log) -> subprocess.Popen:
    command = [sys.executable, "-m", "rankdistill", "serve", model, "--port", str(port), "--dtype", dtype,
               "--log-level", "warning", *(x for key, value in LIMITS.items() for x in (f"--{key.replace('_', '-')}", str(value)))]
    env = {k: v for k, v in os.environ.items() if k != "RANKDISTILL_API_KEY"}
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="cross-encoder folder (default: MiniLM-L6 with an untrained, seeded head)")
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="first N queries only (development)")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "serve_soak.json")
    args = parser.parse_args()

    import httpx
    import numpy as np

    work = Path(tempfile.mkdtemp(prefix="serve-soak-"))
    model = args.model or str(minilm_cross_encoder(work / "minilm-untrained-head"))
    head = "trained model " + args.model if args.model else "all-MiniLM-L6-v2 + untrained one-score head (seed 0)"
    pool = _pool()[: args.limit]
    print(f"rerank's scores for {sum(len(e['documents']) for e in pool)} pool pairs ...", file=sys.stderr, flush=True)
    reference, dtype, reference_s = _reference(model, args.dtype, pool)

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = work / "server.log"
    with log_path.open("w") as log:
        proc = _start_server(model, args.dtype, port, log)
        try:
            deadline = time.monotonic() + 180
            while True:
                try:
                    if httpx.get(base + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("server did not start:\n" + log_path.read_text()[-3000:])
                time.sleep(0.5)
            for entry in pool[:3]:  # warm-up: oneDNN primitives, the allocator
                httpx.post(base + "/v1/rerank", json=entry, timeout=300).raise_for_status()
            rss_start = _rss_mib(proc.pid)
            soak = Soak(base, pool, reference, args.seed)
            rss_samples = [rss_start]

            async def sample_rss() -> None:
                while proc.poll() is None:
                    await asyncio.sleep(2)
                    rss_samples.append(_rss_mib(proc.pid))

            async def soak_and_sample() -> float:
                sampler = asyncio.ensure_future(sample_rss())
                try:
                    return await soak.run(args.seconds, args.clients)
                finally:
                    sampler.cancel()

            print(f"soak: {args.seconds:g} s, {args.clients} clients + bursts + /health polls ...", file=sys.stderr, flush=True)
            wall = asyncio.run(soak_and_sample())
            time.sleep(1)
            rss_end = _rss_mib(proc.pid)
            health = httpx.get(base + "/health", timeout=5).json()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    server_log = log_path.read_text()
    if "Traceback" in server_log or "ERROR" in server_log:
        soak.failures.append("the server logged an error:\n" + server_log[-2000:])
    five_xx = sum(n for (_, status), n in soak.outcomes.items() if isinstance(status, int) and status >= 500)
    lat = np.array(soak.latencies)
    by_kind = {kind: {str(status): n for (k, status), n in sorted(soak.outcomes.items(), key=str) if k == kind}
               for kind in dict(MIX) | {"burst": 0}}
    report = {
        "machine": machine(), "model": head, "dtype": dtype, "limits": LIMITS, "seconds": wall, "clients": args.clients,
        "requests": sum(soak.outcomes.values()), "by_kind": by_kind, "five_xx": five_xx,
        "valid_answered": len(lat), "answers_checked": soak.checked, "max_abs_diff_vs_rerank": soak.max_diff,
        "latency_valid_p50_s": float(np.percentile(lat, 50)), "latency_valid_p99_s": float(np.percentile(lat, 99)),
        "rss_start_mib": rss_start, "rss_end_mib": rss_end, "rss_max_mib": max(rss_samples),
        "rss_every_2s_mib": [round(x) for x in rss_samples],
        "health_polls": soak.health_polls, "health_max_s": soak.health_max_s, "server_counters": health,
        "reference_seconds": reference_s, "failures": soak.failures, "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    print(f"\n{head}; {dtype}; {wall:.0f} s, {args.clients} clients, limits {LIMITS}")
    for kind, statuses in by_kind.items():
        print(f"  {kind:<20} {', '.join(f'{s}: {n}' for s, n in statuses.items())}")
    print(f"valid answers {len(lat)}: latency p50 {report['latency_valid_p50_s']:.2f} s, p99 {report['latency_valid_p99_s']:.2f} s; "
          f"{soak.checked} checked against rerank (max |diff| {soak.max_diff:.1e})")
    print(f"5xx: {five_xx}; server RSS {rss_start:.0f} MiB at start, {rss_end:.0f} MiB at end, peak {max(rss_samples):.0f} MiB; "
          f"/health {soak.health_polls} polls, slowest {soak.health_max_s * 1000:.0f} ms; server counters {health}")
    print(f"failures: {len(soak.failures)}" + "".join(f"\n  {f}" for f in soak.failures[:20]))
    print(f"written to {args.output}")
    sys.exit(1 if soak.failures or five_xx else 0)


if __name__ == "__main__":
    main()
