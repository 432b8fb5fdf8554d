"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for the teacher tests (stdlib only).

It answers ``POST .../chat/completions`` with a deterministic permutation: it reads the query id and the
passages' document ids from markers in the prompt (queries contain ``qz<qid>``, passages start with
``pz<docid>``, which the tests write into their toy collection) and ranks the window's identifiers by
``preference(qid, docid)``, a hash. Tests compute the expected teacher run from the same rule.

Faults are injected on chosen requests, numbered 1, 2, ... in arrival order:
``"429"`` / ``"429:S"`` (Retry-After S seconds), ``"429-date:S"`` (Retry-After as an HTTP date S s ahead),
``"500"``, ``"503"``, ``"hang"`` (say nothing until well past the client's timeout), ``"trickle"`` (a valid
answer sent one byte per 0.1 s, so only a whole-request deadline stops it), ``"drop"`` (close the
connection without an answer), ``"malformed"`` (HTTP 200, body not JSON), ``"nochoices"`` (HTTP 200 JSON
with an empty ``choices`` list). A callable ``fault(n, request) -> str | None`` may be given instead.

``delay`` (seconds, or ``delay(n, request)``) slows every answer down, e.g. to kill a client mid-run.

Every request is logged to a JSONL file twice: ``event="recv"`` when it arrives and ``event="done"`` when
the server has finished with it (``delivered`` is true only when a valid answer was fully written; ``usage``
is the token count it reported). The log
holds a hash of the messages, never the Authorization header. The server stops by itself after
``lifetime`` seconds. Run it alone with ``python tests/fake_llm_server.py --help``.
"""

from __future__ import annotations

import argparse
import email.utils
import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable

QUERY_MARK = re.compile(r"\bqz([A-Za-z0-9_-]+)")
PASSAGE_MARK = re.compile(r"\[(\d+)\]\s+pz([A-Za-z0-9_-]+)")


def preference(qid: str, docid: str) -> int:
    """The fake teacher's taste: a fixed pseudo-random score per (query, document)."""
    return int.from_bytes(hashlib.sha256(f"{qid}/{docid}".encode()).digest()[:8], "big")


def rank_window(qid: str, docids: list[str]) -> list[int]:
    """0-based best-first order of a window whose passages are ``docids`` (in prompt order)."""
    return sorted(range(len(docids)), key=lambda i: -preference(qid, docids[i]))


def parse_prompt(messages: list[dict[str, str]]) -> tuple[str | None, list[str]]:
    """(qid, docids in identifier order) from the markers in a chat prompt."""
    text = "\n".join(str(m.get("content", "")) for m in messages)
    q = QUERY_MARK.search(text)
    found: dict[int, str] = {}
    for match in PASSAGE_MARK.finditer(text):
        found.setdefault(int(match.group(1)), match.group(2))
    docids = [found[k] for k in sorted(found)]
    return (q.group(1) if q else None), docids


def messages_hash(messages: list[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(messages, ensure_ascii=False, sort_keys=True).encode()).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers; every answer carries Content-Length
    disable_nagle_algorithm = True  # headers and body are two writes: without this, delayed ACKs add ~40 ms
    server: "_Server"

    def log_message(self, *args: Any) -> None:  # quiet: the JSONL log is the record
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> bool:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return True
        except OSError:  # the client gave up (timeout) and closed the socket
            self.close_connection = True
            return False

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":
            self._send(200, json.dumps({"object": "list", "data": [{"id": self.server.model, "object": "model"}]}).encode())
        else:
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())

    def do_POST(self) -> None:  # noqa: N802
        srv = self.server
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/v1/chat/completions":
            self._send(404, json.dumps({"error": {"message": f"no route {self.path}"}}).encode())
            return
        try:
            request = json.loads(raw)
            messages = request["messages"]
        except (ValueError, KeyError, TypeError):
            self._send(400, json.dumps({"error": {"message": "body is not a chat-completions request"}}).encode())
            return
        qid, docids = parse_prompt(messages)
        auth = self.headers.get("Authorization")
        with srv.lock:
            srv.count += 1
            n = srv.count
            srv.in_flight += 1
            srv.max_in_flight = max(srv.max_in_flight, srv.in_flight)
        fault = srv.fault_for(n, request)
        record = {
            "n": n,
            "prompt_sha": messages_hash(messages),
            "qid": qid,
            "docids": docids,
            "model": request.get("model"),
            "temperature": request.get("temperature"),
            "max_tokens": request.get("max_tokens"),
            "auth": "missing" if auth is None else ("ok" if srv.expected_key is None or auth == f"Bearer {srv.expected_key}" else "wrong"),
            "fault": fault,
        }
        srv.write_log({"event": "recv", "t": time.monotonic(), **record})
        status, delivered, usage = 0, False, None
        try:
            if srv.expected_key is not None and auth != f"Bearer {srv.expected_key}":
                given = (auth or "").removeprefix("Bearer ")
                # Real APIs echo (part of) the wrong key: the client must not pass it on to the user.
                msg = f"Incorrect API key provided: {given}" if given else "You didn't provide an API key."
                status = 401
                self._send(401, json.dumps({"error": {"message": msg, "type": "invalid_request_error"}}).encode())
                return
            delay = srv.delay(n, request) if callable(srv.delay) else srv.delay
            if delay:
                srv.stopping.wait(delay)
            if fault is not None and fault.startswith("429"):
                seconds = fault.partition(":")[2] or "1"
                if fault.startswith("429-date"):
                    value = email.utils.formatdate(time.time() + float(seconds), usegmt=True)
                else:
                    value = seconds
                status = 429
                self._send(429, json.dumps({"error": {"message": "Rate limit reached, slow down"}}).encode(), {"Retry-After": value})
            elif fault in ("500", "503"):
                status = int(fault)
                self._send(status, json.dumps({"error": {"message": "The server had an error"}}).encode())
            elif fault == "hang":
                srv.stopping.wait(srv.hang_seconds)
                status = -1
                self.close_connection = True
            elif fault == "trickle":  # a valid answer, one byte per 0.1 s: each read is quick, the whole is not
                status = 200
                body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "[1]"}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    for k in range(len(body)):
                        if srv.stopping.wait(0.1):
                            break
                        self.wfile.write(body[k : k + 1])
                        self.wfile.flush()
                except OSError:
                    pass
                self.close_connection = True
            elif fault == "drop":
                status = -1
                self.close_connection = True
            elif fault == "malformed":
                status = 200
                self._send(200, b"<html>502 Bad Gateway</html>")
            elif fault == "nochoices":
                status = 200
                self._send(200, json.dumps({"id": f"x{n}", "object": "chat.completion", "choices": []}).encode())
            else:
                if qid is None or not docids:
                    status = 400
                    self._send(400, json.dumps({"error": {"message": "prompt has no qz/pz markers"}}).encode())
                    return
                order = rank_window(qid, docids)
                text = " > ".join(f"[{i + 1}]" for i in order)
                body = {
                    "id": f"chatcmpl-{n}",
                    "object": "chat.completion",
                    "model": request.get("model"),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                    "usage": {
                        "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
                        "completion_tokens": 2 * len(order),
                        "total_tokens": 0,
                    },
                }
                status, usage = 200, body["usage"]
                delivered = self._send(200, json.dumps(body).encode())
        finally:
            with srv.lock:
                srv.in_flight -= 1
            srv.write_log({"event": "done", "t": time.monotonic(), **record, "status": status, "delivered": delivered,
                           "usage": usage})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (timeout, SIGKILL) is expected here; anything else is printed."""
        import sys

        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class FakeLLMServer:
    """Start with ``with FakeLLMServer(log_path) as server: ... server.base_url ...``."""

    def __init__(
        self,
        log_path: str | Path,
        *,
        faults: dict[int, str] | Callable[[int, dict], str | None] | None = None,
        delay: float | Callable[[int, dict], float] = 0.0,
        hang_seconds: float = 30.0,
        lifetime: float = 120.0,
        expected_key: str | None = None,
        model: str = "fake-ranker",
    ):
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("")
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.lock = threading.Lock()
        httpd.log_lock = threading.Lock()
        httpd.count = 0
        httpd.in_flight = 0
        httpd.max_in_flight = 0
        httpd.delay = delay
        httpd.hang_seconds = hang_seconds
        httpd.expected_key = expected_key
        httpd.model = model
        httpd.stopping = threading.Event()
        httpd.fault_for = self._fault_for
        httpd.write_log = self._write_log
        self._faults = faults or {}
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._timer = threading.Timer(lifetime, self.stop)
        self._timer.daemon = True
        self._stopped = False

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    @property
    def max_in_flight(self) -> int:
        return self._httpd.max_in_flight

    def _fault_for(self, n: int, request: dict) -> str | None:
        if callable(self._faults):
            return self._faults(n, request)
        return self._faults.get(n)

    def _write_log(self, record: dict) -> None:
        with self._httpd.log_lock, self.log_path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def records(self, event: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]
        return [r for r in lines if event is None or r["event"] == event]

    def start(self) -> "FakeLLMServer":
        self._thread.start()
        self._timer.start()
        return self

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._timer.cancel()
        self._httpd.stopping.set()  # wakes hanging and delayed handlers
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> "FakeLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", required=True, help="JSONL request log")
    parser.add_argument("--port-file", help="write the base URL here once listening")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    parser.add_argument("--lifetime", type=float, default=120.0, help="stop after this many seconds")
    parser.add_argument("--fault", action="append", default=[], metavar="N=KIND", help="e.g. 3=429:1, 5=hang")
    args = parser.parse_args()
    faults = {int(k): v for k, _, v in (f.partition("=") for f in args.fault)}
    server = FakeLLMServer(args.log, faults=faults, delay=args.delay, lifetime=args.lifetime).start()
    if args.port_file:
        Path(args.port_file).write_text(server.base_url)
    print(server.base_url, flush=True)
    server._thread.join()


if __name__ == "__main__":
    main()


# -- toy data and the expected teacher, computed independently of rankdistill.teacher -------------------


def write_toy_collection(folder: Path, *, n_queries: int = 3, n_candidates: int = 30, n_docs: int = 45, seed: int = 0) -> Path:
    """queries.tsv, passages.tsv (with qz/pz markers) and a first-stage run.trec in ``folder``; returns the run path.

    Candidate lists overlap across queries and start in a seeded random order (not the fake teacher's).
    """
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    docids = [f"d{k:03d}" for k in range(n_docs)]
    (folder / "queries.tsv").write_text("".join(f"q{q}\tqzq{q} what do passages say about topic {q}\n" for q in range(n_queries)))
    (folder / "passages.tsv").write_text("".join(f"{d}\tpz{d} passage {d} text with some words [{k}] about things\n" for k, d in enumerate(docids)))
    lines = []
    for q in range(n_queries):
        for rank, d in enumerate(rng.sample(docids, n_candidates), 1):
            lines.append(f"q{q} Q0 {d} {rank} {float(n_candidates - rank + 1)} bm25\n")
    run = folder / "run.trec"
    run.write_text("".join(lines))
    return run


def first_stage(run_path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in Path(run_path).read_text().splitlines():
        qid, _, docid, _rank, _score, _tag = line.split()
        out.setdefault(qid, []).append(docid)
    return out


def expected_teacher(candidates: list[str], qid: str, *, window: int, stride: int) -> tuple[list[str], list[list[str]]]:
    """The fake teacher's sliding-window result: (final order, the window contents in the order asked).

    Windows walk bottom-up: starts n-window, n-window-stride, ..., 0 (only lists where that ends at 0 exactly,
    so RankGPT's and rank_llm's loops agree).
    """
    n = len(candidates)
    assert n >= window and (n - window) % stride == 0, "pick n, window, stride so the windows tile exactly"
    order = list(candidates)
    asked = []
    for start in range(n - window, -1, -stride):
        win = order[start : start + window]
        asked.append(list(win))
        order[start : start + window] = [win[i] for i in rank_window(qid, win)]
    return order, asked


def read_trec(path: Path) -> dict[str, list[str]]:
    """qid -> docids in rank order (checks ranks are 1..n and scores strictly decrease)."""
    out: dict[str, list[tuple[int, float, str]]] = {}
    for line in Path(path).read_text().splitlines():
        qid, _, docid, rank, score, _tag = line.split()
        out.setdefault(qid, []).append((int(rank), float(score), docid))
    result = {}
    for qid, rows in out.items():
        assert [r for r, _, _ in rows] == list(range(1, len(rows) + 1)), f"ranks of {qid} are not 1..n"
        scores = [s for _, s, _ in rows]
        assert all(a > b for a, b in zip(scores, scores[1:])), f"scores of {qid} do not strictly decrease"
        result[qid] = [d for _, _, d in rows]
    return result
