"""First stage, teacher and zero-shot backbone (minilm-l6 as a bi-encoder, 128 tokens) per candidate set, per query."""
import json
from pathlib import Path

import ir_measures
from rankdistill.data.trec import read_qrels, read_run
from rankdistill.teacher.teach import teach

import sys
sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp import D, DATASET, HERE

TEACHER = {"bm25": "rankvicuna-7b.run", "splade": "rankvicuna-7b-splade-pp-ed.run", "tasb": "rankvicuna-7b-tasb.run"}
FS = {"bm25": "bm25-top100.run", "splade": "splade-pp-ed-top100.run", "tasb": "tasb-top100.run"}
qrels = read_qrels(D / "qrels.txt")
out = {}
for ev in FS:
    zs_dir = HERE / "runs" / f"zs-{ev}"
    if not (zs_dir / "teacher.run").exists():
        teach(D / FS[ev], dataset=DATASET, output=zs_dir, backend="embedding", model="minilm-l6", depth=100,
              tag="zero-shot", backend_options={"max_length": 128})
    for system, path in {"first stage": D / FS[ev], "teacher": D / TEACHER[ev], "zero-shot": zs_dir / "teacher.run"}.items():
        run = {q: dict(v) for q, v in read_run(path).items()}
        out.setdefault(ev, {})[system] = {m.query_id: m.value for m in ir_measures.iter_calc([ir_measures.nDCG @ 10], qrels, run)}
(HERE / "results" / "_baselines.json").write_text(json.dumps(out, indent=1))
for ev, d in out.items():
    print(ev, {s: round(sum(v.values()) / len(v), 4) for s, v in d.items()})
