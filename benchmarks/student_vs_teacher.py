"""Cost per query (top-100) of the distilled student (a cross-encoder) against its teacher (a listwise LLM).

Two parts:
1. Measured here: tiny models built in code with the same width and depth (a Llama causal LM as teacher,
   a BERT cross-encoder as student, both with all-MiniLM-L6-v2's WordPiece tokenizer so token counts are
   realistic) on real DL20 queries and their BM25 top-100. The teacher runs the real sliding window
   (window 20, stride 10, bottom to top: 9 windows), each window a RankVicuna prompt prefilled and 80 tokens
   decoded greedily (forced length: a random model has no reason to stop); the student scores 100 pairs
   with ``rankdistill.reranking.scorer``. Tiny models measure the *structure* of the work (tokens, sequential
   decoding, nine dependent windows), not paper-scale speed.
2. Analytic FLOPs at paper scale (ELECTRA-base/large vs a 7B listwise LLM), with every assumption printed.

    .venv/bin/python benchmarks/student_vs_teacher.py --queries 3 --output benchmarks/results/student_vs_teacher.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DL20, machine  # noqa: E402

WINDOW, STRIDE, DEPTH = 20, 10, 100
DECODED_PER_WINDOW = 80  # "[12] > [3] > ..." is about 4 tokens per identifier, 20 identifiers


def tiny_models(folder: Path, hidden: int, layers: int, heads: int, seed: int = 0) -> tuple[Path, Path]:
    """A cross-encoder (BERT) and a causal LM (Llama) of the same size, sharing MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, LlamaConfig, LlamaForCausalLM

    from rankdistill.modeling.backbones import resolve_backbone

    tok = AutoTokenizer.from_pretrained(resolve_backbone("minilm-l6"))
    common = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads, intermediate_size=4 * hidden)
    torch.manual_seed(seed)
    student = BertForSequenceClassification(BertConfig(vocab_size=tok.vocab_size, num_labels=1, max_position_embeddings=512, **common))
    teacher = LlamaForCausalLM(LlamaConfig(vocab_size=tok.vocab_size, max_position_embeddings=8192, pad_token_id=tok.pad_token_id,
                                           bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id, **common))
    s_dir, t_dir = folder / "student", folder / "teacher"
    for model, path in ((student, s_dir), (teacher, t_dir)):
        model.save_pretrained(path)
        tok.save_pretrained(path)
    return s_dir, t_dir


def measured(n_queries: int, hidden: int, layers: int, heads: int, threads: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rankdistill.data.collection import load_collection
    from rankdistill.data.trec import read_run
    from rankdistill.reranking.scorer import CrossEncoderScorer
    from rankdistill.teacher.parse import parse_permutation
    from rankdistill.teacher.prompts import build_prompt
    from rankdistill.teacher.teach import window_spans

    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="svt-"))
    s_dir, t_dir = tiny_models(work, hidden, layers, heads)
    coll = load_collection(DL20)
    run = read_run(DL20 / "bm25-top100.run", DEPTH)
    qids = list(run)[:n_queries]
    scorer = CrossEncoderScorer(s_dir, dtype="float32", device="cpu", threads=threads)
    tok = AutoTokenizer.from_pretrained(t_dir)
    lm = AutoModelForCausalLM.from_pretrained(t_dir, attn_implementation="sdpa").eval()
    rows = []
    for qid in qids:
        docids = [d for d, _ in run[qid]]
        texts = coll.texts(docids)
        query = coll.queries[qid]
        # student: 100 pairs
        t0 = time.perf_counter()
        scorer.score([query] * len(docids), [texts[d] for d in docids])
        student_s = time.perf_counter() - t0
        real, _ = scorer.token_count([query] * len(docids), [texts[d] for d in docids])
        # teacher: 9 dependent windows, bottom to top
        order = list(docids)
        prefill = decoded = 0
        t0 = time.perf_counter()
        for start, end in window_spans(len(order), WINDOW, STRIDE):
            window = order[start:end]
            prompt = build_prompt("rankvicuna", query, [texts[d] for d in window], max_passage_words=None)
            text = "\n".join(m["content"] for m in prompt.messages)
            ids = tok(text, return_tensors="pt", add_special_tokens=False, verbose=False)
            with torch.inference_mode():
                out = lm.generate(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"], max_new_tokens=DECODED_PER_WINDOW, min_new_tokens=DECODED_PER_WINDOW,
                                  do_sample=False, pad_token_id=tok.pad_token_id)
            answer = tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
            perm, _ = parse_permutation(answer, len(window))
            order[start:end] = [window[i] for i in perm]
            prefill += ids["input_ids"].shape[1]
            decoded += out.shape[1] - ids["input_ids"].shape[1]
        teacher_s = time.perf_counter() - t0
        rows.append({"qid": qid, "student_s": student_s, "teacher_s": teacher_s, "student_tokens": real,
                     "teacher_prefill_tokens": prefill, "teacher_decoded_tokens": decoded, "load1": os.getloadavg()[0]})
        print(f"query {qid}: student {student_s:.2f} s, teacher {teacher_s:.2f} s", file=sys.stderr, flush=True)
    med = lambda k: statistics.median(r[k] for r in rows)  # noqa: E731
    return {"tiny_model": {"hidden": hidden, "layers": layers, "heads": heads, "intermediate": 4 * hidden,
                           "tokenizer": "all-MiniLM-L6-v2 WordPiece (30,522)"},
            "queries": rows, "student_s_per_query_median": med("student_s"), "teacher_s_per_query_median": med("teacher_s"),
            "teacher_over_student": med("teacher_s") / med("student_s"), "student_tokens_median": med("student_tokens"),
            "teacher_prefill_tokens_median": med("teacher_prefill_tokens"),
            "teacher_decoded_tokens_median": med("teacher_decoded_tokens")}


def encoder_pair_flops(layers: int, hidden: int, inter: int, tokens: int) -> float:
    """One cross-encoder forward over ``tokens``: 2 x weights x tokens + attention (4 n^2 d per layer)."""
    return layers * (2 * (4 * hidden * hidden + 2 * hidden * inter) * tokens + 4 * tokens * tokens * hidden)


def llm_window_flops(layers: int, hidden: int, inter: int, vocab: int, prompt: int, decode: int) -> dict:
    """Prefill of ``prompt`` tokens + ``decode`` generated tokens for a Llama-style LLM (SwiGLU: 3 FFN matrices).

    Causal attention costs about half of the bidirectional 4 n^2 d; the LM head runs on the last prompt
    token and on every decoded token.
    """
    weights = 4 * hidden * hidden + 3 * hidden * inter
    prefill = layers * (2 * weights * prompt + 2 * prompt * prompt * hidden) + 2 * hidden * vocab
    dec = 0.0
    for t in range(prompt, prompt + decode):
        dec += layers * (2 * weights + 4 * t * hidden) + 2 * hidden * vocab
    return {"prefill": prefill, "decode": dec}


def analytic(prompt_tokens: float, pair_tokens_full: int, pair_tokens_dl20: float) -> dict:
    windows = len(range(DEPTH - WINDOW, -STRIDE, -STRIDE)) if DEPTH > WINDOW else 1  # 80, 70, ..., 0 -> 9
    students = {
        "ELECTRA-base (110M; 12 x 768, FFN 3072)": (12, 768, 3072),
        "ELECTRA-large (335M; 24 x 1024, FFN 4096)": (24, 1024, 4096),
    }
    table = []
    for name, (layers, hidden, inter) in students.items():
        for label, tokens in (("32+256+3 = 291 tokens (full budget)", pair_tokens_full), (f"{pair_tokens_dl20:.0f} tokens (DL20 mean)", round(pair_tokens_dl20))):
            flops = DEPTH * encoder_pair_flops(layers, hidden, inter, tokens)
            table.append({"model": name, "tokens_per_pair": label, "tflop_per_query": flops / 1e12})
    # Llama-2-7B / Vicuna-7B: 32 layers, hidden 4096, SwiGLU FFN 11008, vocab 32000
    w = llm_window_flops(32, 4096, 11008, 32000, round(prompt_tokens), DECODED_PER_WINDOW)
    teacher = windows * (w["prefill"] + w["decode"])
    weights_bytes = (32 * (4 * 4096 * 4096 + 3 * 4096 * 11008) + 2 * 32000 * 4096) * 2  # fp16
    table.append({"model": "7B listwise LLM (Llama-2-7B shape: 32 x 4096, FFN 11008, vocab 32000)",
                  "tokens_per_pair": f"{windows} windows x ({prompt_tokens:.0f} prompt + {DECODED_PER_WINDOW} decoded)",
                  "tflop_per_query": teacher / 1e12, "prefill_tflop_per_window": w["prefill"] / 1e12,
                  "decode_tflop_per_window": w["decode"] / 1e12,
                  "decode_steps_per_query": windows * DECODED_PER_WINDOW,
                  "weight_bytes_read_per_query_unbatched_gb": windows * DECODED_PER_WINDOW * weights_bytes / 1e9})
    base = table[0]["tflop_per_query"]
    for row in table:
        row["x_electra_base_full"] = row["tflop_per_query"] / base
    return {"windows_per_query": windows, "table": table}


def prompt_tokens_from_records() -> tuple[float, str]:
    """Mean tokens of the 54 recorded RankVicuna 20-passage prompts, counted with MiniLM's WordPiece tokenizer."""
    from transformers import AutoTokenizer

    from rankdistill.modeling.backbones import resolve_backbone

    records = json.loads((DL20 / "llm-responses-rankvicuna-dl20-top20.json").read_text(encoding="utf-8"))
    tok = AutoTokenizer.from_pretrained(resolve_backbone("minilm-l6"))
    counts = [len(tok(r["prompt"], add_special_tokens=False)["input_ids"]) for r in records]
    return statistics.mean(counts), f"mean of {len(counts)} recorded RankVicuna DL20 prompts (WordPiece count as a proxy for Llama's tokenizer)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "student_vs_teacher.json")
    args = parser.parse_args()

    prompt, prompt_note = prompt_tokens_from_records()
    meas = measured(args.queries, args.hidden, args.layers, args.heads, args.threads)
    dl20_pair = meas["student_tokens_median"] / DEPTH
    ana = analytic(prompt, 291, dl20_pair)
    assumptions = [
        f"depth {DEPTH}, window {WINDOW}, stride {STRIDE}, bottom to top: {ana['windows_per_query']} windows per query",
        f"teacher prompt = {prompt:.0f} tokens: {prompt_note}",
        f"teacher output = {DECODED_PER_WINDOW} decoded tokens per window (20 identifiers x ~4 tokens)",
        "student: one forward per (query, passage) pair, 100 pairs; query <= 32 and passage <= 256 tokens + 3 special",
        "FLOPs = 2 x weight matrices x tokens + attention (bidirectional 4 n^2 d per layer, causal half); "
        "embeddings, norms, softmax ignored; KV cache during decoding",
        "LLM decoding is memory-bound: unbatched, each decoded token reads all fp16 weights once",
        "no GPU was lent to this task: nothing here was measured on a GPU",
    ]
    report = {"machine": machine(), "command": " ".join([Path(sys.executable).name, *sys.argv]), "measured_tiny": meas,
              "analytic": ana, "assumptions": assumptions}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")

    m = meas
    print(f"\nMeasured, tiny models ({args.layers} layers x {args.hidden}), median of {len(m['queries'])} DL20 queries, top-100:")
    print(f"  student (cross-encoder): {m['student_s_per_query_median']:.3f} s/query, {m['student_tokens_median']} tokens")
    print(f"  teacher (listwise LM):   {m['teacher_s_per_query_median']:.3f} s/query, {m['teacher_prefill_tokens_median']} prompt + "
          f"{m['teacher_decoded_tokens_median']} decoded tokens")
    print(f"  teacher / student: {m['teacher_over_student']:.1f}x")
    print("\nAnalytic FLOPs per query at paper scale:")
    for row in ana["table"]:
        print(f"  {row['model']:72} {row['tokens_per_pair']:44} {row['tflop_per_query']:8.2f} TFLOP  {row['x_electra_base_full']:7.1f}x")
    print("Assumptions:\n  - " + "\n  - ".join(assumptions))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
