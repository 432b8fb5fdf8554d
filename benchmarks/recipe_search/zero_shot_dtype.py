"""The zero-shot row in float32 and in bf16 autocast: nDCG@10 and seconds on DL20's BM25 top-100 (RESULTS 15).

The pipeline's zero-shot row (the untrained backbone as a bi-encoder) runs in ``evaluate.dtype``, bf16 autocast on a
CPU with native bf16. This measures what that changes, each dtype in turn, on the same candidates and passage budget:

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/zero_shot_dtype.py \
        --model minilm-l6 --dtype float32 bfloat16
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import ir_measures

from rankdistill.teacher.teach import teach

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "msmarco-dl20"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm-l6", help="short name or folder of a sentence-transformers model")
    parser.add_argument("--dtype", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument("--max-length", type=int, default=128, help="passage tokens, as the student reads")
    parser.add_argument("--run", type=Path, default=DATA / "bm25-top100.run")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    qrels = list(ir_measures.read_trec_qrels(str(DATA / "qrels.txt")))
    rows = {}
    for dtype in args.dtype:
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            result = teach(args.run, dataset="irds:msmarco-passage/trec-dl-2020/judged", output=Path(out),
                           backend="embedding", model=args.model, depth=100, progress=False,
                           backend_options={"max_length": args.max_length, "dtype": dtype})
            seconds = time.perf_counter() - start
        run = {q: dict(docs) for q, docs in result.run.items()}
        judged = [q for q in qrels if q.query_id in run]  # only the run's queries, as the pipeline's evaluation
        ndcg = ir_measures.calc_aggregate([ir_measures.nDCG @ 10], judged, run)[ir_measures.nDCG @ 10]
        rows[dtype] = {"resolved": result.stats["dtype"], "nDCG@10": round(ndcg, 4), "seconds": round(seconds, 1),
                       "passages": result.stats["unique_passages"]}
        print(json.dumps({"model": args.model, "dtype": dtype, **rows[dtype]}), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "max_length": args.max_length, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
