"""ONNX Runtime (fp32, all graph optimisations) vs torch fp32/bf16 on the same batches, interleaved.

Needs onnxruntime and onnx (pip install onnxruntime onnx; not project dependencies: the backend is not
shipped). Usage: python benchmarks/onnx_vs_torch.py MODEL_DIR N_PAIRS REPEATS  (N random DL20 pairs, seed 0).
"""
import sys, os, time, json, statistics
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
import numpy as np, torch
from _common import dl20_pairs
from rankdistill.reranking.batching import make_batches
from rankdistill.reranking.scorer import CrossEncoderScorer
model = sys.argv[1]; n = int(sys.argv[2]); reps = int(sys.argv[3])
torch.set_num_threads(2)
_, pairs = dl20_pairs()
import random; random.Random(0).shuffle(pairs); pairs = pairs[:n]
q = [a for a, _ in pairs]; p = [b for _, b in pairs]
sc = {dt: CrossEncoderScorer(model, dtype=dt, device="cpu", max_query_length=32, max_passage_length=256) for dt in ("float32", "bfloat16")}
m = sc["float32"].model
import onnxruntime as ort
path = os.path.join(__import__("tempfile").mkdtemp(prefix="ort-"), "model.onnx")
if not os.path.exists(path):
    ids = torch.ones(2, 16, dtype=torch.long)
    torch.onnx.export(m, (ids, ids, torch.zeros_like(ids)), path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["logits"], dynamic_axes={k: {0: "b", 1: "n"} for k in ["input_ids", "attention_mask", "token_type_ids"]},
                      opset_version=17, dynamo=False)
so = ort.SessionOptions(); so.intra_op_num_threads = 2; so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
enc = sc["float32"].encoder
def ort_score():
    ids, types = enc.encode(q, p)
    out = np.zeros(len(q), np.float32)
    for b in make_batches(ids, types, 4096, enc.pad_id):
        out[b.index] = sess.run(None, {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "token_type_ids": b.token_type_ids})[0][:, 0]
    return out
fns = {"onnxruntime fp32": ort_score, "torch fp32": lambda: sc["float32"].score(q, p), "torch bf16": lambda: sc["bfloat16"].score(q, p)}
res = {k: [] for k in fns}; outs = {}
for r in range(reps):
    for k, f in fns.items():
        l = os.getloadavg()[0]; t0 = time.perf_counter(); outs[k] = f(); dt = time.perf_counter() - t0
        res[k].append((n / dt, l)); print(r, k, round(n / dt, 1), "load", round(l, 2), flush=True)
summary = {k: {"pairs_per_s_median": statistics.median(x for x, _ in v), "all": v,
               "max_abs_diff_vs_torch_fp32": float(np.abs(outs[k] - outs["torch fp32"]).max())} for k, v in res.items()}
print(json.dumps({"pairs": n, "repeats": reps, "onnxruntime": ort.__version__, "results": summary}, indent=1))
