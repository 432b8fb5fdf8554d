"""A tiny pipeline whose training queries come with two candidate sources (BM25 and TAS-B lists of the same DL20
queries, each re-ranked by a sliding-window teacher): it builds one list per source, trains and evaluates; the
fused form gives one list per query; the config rejects a mix of both forms."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from helpers.data import write_dl20_subset
from helpers.tiny import tiny_encoder_dir

from rankdistill.data.trec import read_run, write_run
from rankdistill.distillation.schema import read_metadata, read_set
from rankdistill.errors import RankdistillError
from rankdistill.teacher.windows import window_spans
from rankdistill.workflow.config import load_config
from rankdistill.workflow.runner import pipeline

N_QUERIES, DEPTH, WINDOW, STRIDE = 4, 8, 4, 2


def slide(candidates: list[str], preferred: dict[str, int]) -> list[str]:
    """A sliding-window teacher (window 4, stride 2, bottom first) whose every window sorts by ``preferred``."""
    order = list(candidates)
    for start, end in window_spans(len(order), WINDOW, STRIDE):
        order[start:end] = sorted(order[start:end], key=lambda d: preferred.get(d, len(preferred)))
    return order


@pytest.fixture(scope="module")
def two_sources(dl20, tmp_path_factory):
    """4 DL20 queries with their BM25 and TAS-B top-8; each teacher slides over its own list with RankVicuna's order."""
    root = tmp_path_factory.mktemp("tiny-sources")
    data = root / "data"
    data.mkdir()
    bm25_full, tasb_full = read_run(dl20 / "bm25-top100.run", depth=DEPTH), read_run(dl20 / "tasb-top100.run", depth=DEPTH)
    qids = sorted(bm25_full)[:N_QUERIES]
    vicuna = read_run(dl20 / "rankvicuna-7b.run")
    docids: set[str] = set()
    for name, full in (("bm25", bm25_full), ("tasb", tasb_full)):
        first = {q: full[q] for q in qids}
        preferred = {q: {d: i for i, (d, _) in enumerate(vicuna[q])} for q in qids}
        teacher = {q: [(d, float(DEPTH - i)) for i, d in enumerate(slide([d for d, _ in first[q]], preferred[q]))]
                   for q in qids}
        write_run(first, root / f"{name}.run", tag=name)
        write_run(teacher, root / f"teacher-{name}.run", tag=f"teacher-{name}")
        docids |= {d for q in qids for d, _ in first[q]}
    write_dl20_subset(dl20, data, qids, docids)
    return root, data, tiny_encoder_dir(root / "tiny-model"), qids


def config(root: Path, data: Path, model: Path, merge: str) -> dict:
    teacher = {"depth": DEPTH, "window": WINDOW, "stride": STRIDE}
    return {
        "name": "sources",
        "output": str(root / f"out-{merge}"),
        "train": {
            "dataset": str(data),
            "sources": [
                {"name": "bm25", "first_stage": {"run": str(root / "bm25.run")},
                 "teacher": {"run": str(root / "teacher-bm25.run"), **teacher}},
                {"name": "tasb", "first_stage": {"run": str(root / "tasb.run")},
                 "teacher": {"run": str(root / "teacher-tasb.run"), **teacher}},
            ],
            "merge": merge,
            "model": str(model),
            "stages": [{"name": "distill", "loss": "ranknet", "pairs": "compared", "sample_size": DEPTH, "depth": DEPTH,
                        "epochs": 1, "learning_rate": 1e-3, "max_passage_length": 32}],
        },
        "evaluate": {"sets": [{"name": "dl", "dataset": str(data), "first_stage": {"run": str(root / "bm25.run")}}],
                     "depth": DEPTH, "measures": ["nDCG@10"], "zero_shot": False},
    }


def write(cfg: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_sources_train_and_evaluate(two_sources):
    root, data, model, qids = two_sources
    result = pipeline(write(config(root, data, model, "none"), root / "none.yaml"))
    table = read_set(root / "out-none" / "students" / "all" / "distill.parquet")
    lists = {(q, s) for q, s in zip(table["qid"].to_pylist(), table["source"].to_pylist())}
    assert lists == {(q, s) for q in qids for s in ("bm25", "tasb")}  # one list per source and query
    assert table.num_rows == 2 * N_QUERIES * DEPTH
    counts = read_metadata(root / "out-none" / "students" / "all" / "distill.parquet")["counts"]
    # window 4 / stride 2 over 8: windows at ranks 5-8, 3-6, 1-4; the pairs that shared one: 6 + 5 + 5 = 16 of 28
    assert counts["lists"] == 8 and counts["pairs"] == 8 * 16
    student = read_run(root / "out-none" / "eval" / "dl" / "bm25" / "student.run")
    assert sorted(student) == sorted(qids)
    assert 0.0 < result.metrics["dl"]["bm25"]["runs"]["student"]["measures"]["nDCG@10"]["mean"] <= 1.0

    fused = pipeline(write(config(root, data, model, "rrf"), root / "rrf.yaml"))
    table = read_set(root / "out-rrf" / "students" / "all" / "distill.parquet")
    assert set(table["source"].to_pylist()) == {"bm25+tasb"} and table["qid"].unique().to_pylist() == qids
    union = {q: len({d for name in ("bm25", "tasb") for d, _ in read_run(root / f"{name}.run")[q]}) for q in qids}
    assert table.num_rows == sum(min(DEPTH, n) for n in union.values())  # one fused list per query, top DEPTH
    assert "dl" in fused.metrics


def test_the_config_takes_one_form(two_sources, tmp_path):
    root, data, model, _ = two_sources
    both = config(root, data, model, "none")
    both["train"]["first_stage"] = {"run": str(root / "bm25.run")}
    with pytest.raises(RankdistillError, match="train: .*give either 'sources' or a single 'first_stage'/'teacher', not both"):
        load_config(write(both, tmp_path / "both.yaml"))
    neither = config(root, data, model, "none")
    del neither["train"]["sources"]
    with pytest.raises(RankdistillError, match="give 'first_stage' .* or 'sources'"):
        load_config(write(neither, tmp_path / "neither.yaml"))
    bad = config(root, data, model, "none")
    bad["train"]["sources"][1]["teacher"] = {"backend": "embedding", "model": "minilm-l6"}
    with pytest.raises(RankdistillError, match="every source needs a listwise teacher .*embedding: tasb"):
        load_config(write(bad, tmp_path / "bad.yaml"))
    single = config(root, data, model, "rrf")
    del single["train"]["sources"]
    single["train"]["first_stage"] = {"run": str(root / "bm25.run")}
    with pytest.raises(RankdistillError, match="merge 'rrf' fuses several sources"):
        load_config(write(single, tmp_path / "single.yaml"))
    relative = config(root, data, model, "none")
    relative["train"]["sources"][0]["first_stage"]["run"] = "bm25.run"  # relative to the YAML file
    assert load_config(write(relative, root / "relative.yaml")).train.sources[0].first_stage.run == root / "bm25.run"


def test_cross_validation_plans_a_multi_source_build_per_fold(two_sources, tmp_path):
    root, data, model, _ = two_sources
    cfg = config(root, data, model, "rrf")
    cfg["output"] = str(tmp_path / "cv")
    cfg["evaluate"] = {"cross_validation": 2, "depth": DEPTH, "measures": ["nDCG@10"], "zero_shot": False}
    plan = pipeline(write(cfg, tmp_path / "cv.yaml"), dry_run=True)
    assert [s for s in plan.ran if s.startswith("build:")] == ["build:fold1:distill", "build:fold2:distill"]
    assert {"rerank:fold1:bm25", "rerank:fold1:tasb"} <= set(plan.ran) and "evaluate:cv" in plan.ran
