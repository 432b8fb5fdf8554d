"""Should the student learn the pairs its teacher left in the first stage's order? An experiment on the demo recipe.

A sliding-window LLM ranker keeps much of the order it is given. On DL20's BM25 top-100, of the pairs within 20 BM25
ranks of each other RankVicuna-7B keeps 73% in BM25's order; on the judged pairs among those (different NIST
grades) the untrained backbone orders the kept ones better than the teacher (74.5% vs 70.9% right) and the swapped
ones worse (74.1% vs 78.1%) (``--analysis``). So the teacher's evidence is in what it moved, and a student taught
the kept pairs is taught BM25's order. This trains the demo recipe (study-dl20-base, 2-fold CV) with RankNet's
compared pairs weighted ``--kept-weight`` when the teacher kept the first stage's order (1 = the recipe as it is):

- the training lists are handed to the loss in first-stage order (``position`` renumbered by ``first_stage_rank``), so
  a pair i < j with t_i > t_j is one the teacher kept;
- ``ranknet_loss`` multiplies those pairs' weights by ``--kept-weight``.

Both are patches applied in this process only, not rankdistill's behaviour (RESULTS section 12).

    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/kept_pairs.py --analysis
    IR_DATASETS_HOME=$PWD/out/ir_datasets .venv/bin/python benchmarks/recipe_search/kept_pairs.py --kept-weight 0.25
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "msmarco-dl20"
BASE = ROOT / "examples" / "study-dl20-base.yaml"


def analysis(zero_shot: Path) -> None:
    """How often RankVicuna keeps BM25's order, and who is right on the judged pairs it kept or swapped."""
    from rankdistill.data.trec import read_qrels, read_run

    first, teacher = read_run(DATA / "bm25-top100.run"), read_run(DATA / "rankvicuna-7b.run")
    qrels, backbone = read_qrels(DATA / "qrels.txt"), read_run(zero_shot)
    kept = swapped = 0
    right = {(k, who): 0 for k in ("kept", "swapped") for who in ("teacher", "zero-shot")}
    judged = {"kept": 0, "swapped": 0}
    for qid in teacher:
        ranks = [{d: i for i, (d, _) in enumerate(run[qid][:100])} for run in (first, teacher, backbone)]
        fs, tr, zs = ranks
        grades = qrels.get(qid, {})
        for a, b in itertools.combinations(fs, 2):
            if abs(fs[a] - fs[b]) >= 20:  # pairs the 20-passage window could have compared
                continue
            kind = "kept" if (fs[a] < fs[b]) == (tr[a] < tr[b]) else "swapped"
            kept, swapped = kept + (kind == "kept"), swapped + (kind == "swapped")
            if a in grades and b in grades and grades[a] != grades[b]:
                judged[kind] += 1
                right[kind, "teacher"] += (tr[a] < tr[b]) == (grades[a] > grades[b])
                right[kind, "zero-shot"] += (zs[a] < zs[b]) == (grades[a] > grades[b])
    print(f"pairs within 20 BM25 ranks: {kept + swapped}, RankVicuna keeps BM25's order in {kept / (kept + swapped):.1%}")
    for kind in ("kept", "swapped"):
        print(f"judged pairs it {kind}: {judged[kind]}, right: teacher {right[kind, 'teacher'] / judged[kind]:.1%}, "
              f"zero-shot backbone {right[kind, 'zero-shot'] / judged[kind]:.1%}")


def patch(kept_weight: float) -> None:
    """Lists in first-stage order for the loss, and kept pairs weighted ``kept_weight`` in RankNet."""
    import rankdistill.training.losses.ranknet as ranknet
    import rankdistill.training.trainer as trainer
    from rankdistill.distillation import schema

    read_set = schema.read_set

    def first_stage_order(path, qids=None, columns=None):
        import pyarrow as pa

        columns = list(columns or read_set(path).column_names)
        frame = read_set(path, qids, columns=[*columns, "first_stage_rank"]).to_pandas()
        if frame["first_stage_rank"].isna().any():
            raise SystemExit(f"{path}: a row without first_stage_rank")
        key = ["qid", "source"] if "source" in frame else ["qid"]
        frame["position"] = frame.groupby(key, dropna=False)["first_stage_rank"].rank(method="first").astype("int64") - 1
        return pa.Table.from_pandas(frame[columns], preserve_index=False)

    load_listwise = trainer.load_listwise

    def load_in_first_stage_order(*args, **kwargs):
        schema.read_set = first_stage_order
        try:
            return load_listwise(*args, **kwargs)
        finally:
            schema.read_set = read_set

    trainer.load_listwise = load_in_first_stage_order

    def weighted(scores, targets, mask, sigma=1.0, windows=None, weighting="none"):
        if weighting != "discount":
            raise SystemExit("this experiment patches the discount-weighted RankNet of the demo recipe")
        pairs = ranknet.pair_mask(targets, mask)
        if windows is not None:
            pairs = pairs & ranknet.compared_mask(windows)
        n = scores.shape[1]
        above = torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1)  # i before j in first-stage order
        diffs = scores[:, :, None] - scores[:, None, :]
        losses = torch.nn.functional.softplus(-sigma * diffs)
        discount = 1.0 / torch.log2(1.0 + ranknet.target_ranks(targets, mask))
        weights = (discount[:, :, None] - discount[:, None, :]).abs() * pairs
        weights = torch.where(above[None], weights * kept_weight, weights)  # t_i > t_j and i first: the teacher kept it
        return (losses * weights).sum() / weights.sum().clamp(min=1e-12)

    ranknet.ranknet_loss = weighted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kept-weight", type=float, help="weight of the compared pairs the teacher kept in order")
    parser.add_argument("--analysis", action="store_true", help="only count kept and swapped pairs (needs the base run)")
    parser.add_argument("--out", type=Path, help="output folder (default out/kept-pairs-<weight>)")
    args = parser.parse_args()
    if args.analysis:
        analysis(ROOT / "out" / "study-dl20-base" / "eval" / "cv" / "bm25" / "zero-shot" / "teacher.run")
        return
    if args.kept_weight is None:
        parser.error("give --kept-weight (or --analysis)")
    from rankdistill.workflow.config import load_config
    from rankdistill.workflow.runner import pipeline

    patch(args.kept_weight)
    config = load_config(BASE)
    out = args.out or ROOT / "out" / f"kept-pairs-{args.kept_weight:g}"
    result = pipeline(config.model_copy(update={"output": out}), on_event=lambda event, text: print(event, text))
    compare(result.metrics["cv"], ROOT / "out" / "study-dl20-base" / "eval" / "cv", out / "kept-pairs.json")


def compare(metrics: dict, base: Path, output: Path) -> None:
    """nDCG@10 of each row, and the student against the base recipe's student and the zero-shot backbone (paired
    t-tests over the 54 queries; the base pipeline must have run into ``base``)."""
    from rankdistill.evaluation.significance import paired_p_value

    figures: dict = {}
    for c, summary in metrics.items():
        per_query = {run: entry["per_query"]["nDCG@10"] for run, entry in summary["runs"].items()}
        base_student = json.loads((base / c / "metrics.json").read_text())["runs"]["student"]["per_query"]["nDCG@10"]
        qids = sorted(per_query["student"])
        student = [per_query["student"][q] for q in qids]
        figures[c] = {run: sum(v.values()) / len(v) for run, v in per_query.items()}
        figures[c]["base student"] = sum(base_student[q] for q in qids) / len(qids)
        for label, other in (("base student", base_student), ("zero-shot", per_query["zero-shot"])):
            figures[c][f"student vs {label}: p"] = paired_p_value(student, [other[q] for q in qids])
    output.write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
