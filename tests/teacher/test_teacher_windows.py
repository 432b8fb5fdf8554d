"""Which passages a sliding-window teacher compared: the replay, the build option and the RankNet pair mask."""

from __future__ import annotations

import math
import random

import pyarrow.parquet as pq
import pytest
import torch

from rankdistill.errors import RankdistillError
from rankdistill.training.losses import compared_mask, ranknet_loss
from rankdistill.teacher.windows import replay_windows, window_spans


def sliding_window_run(candidates, judge, window, stride):
    """A teacher that ranks each window by ``judge`` (higher first), bottom to top, and records what it compared."""
    order = list(candidates)
    compared = set()
    for start, end in window_spans(len(order), window, stride):
        order[start:end] = sorted(order[start:end], key=lambda d: -judge[d])
        compared |= {frozenset((a, b)) for a in order[start:end] for b in order[start:end] if a != b}
    return order, compared


@pytest.mark.parametrize("n, window, stride", [(100, 20, 10), (25, 20, 10), (30, 6, 3), (7, 20, 10), (40, 10, 10)])
def test_replay_finds_exactly_the_compared_pairs(n, window, stride):
    rng = random.Random(n * 31 + window)
    candidates = [f"d{i}" for i in range(n)]
    judge = {d: rng.random() for d in candidates}
    ranked, compared = sliding_window_run(candidates, judge, window, stride)
    spans = replay_windows(candidates, ranked, window, stride)
    assert spans is not None and set(spans) == set(candidates)
    met = {frozenset((a, b)) for a in candidates for b in candidates
           if a != b and spans[a][0] <= spans[b][1] and spans[b][0] <= spans[a][1]}
    assert met == compared
    if (n, window, stride) == (100, 20, 10):
        assert len(compared) < 1500 < math.comb(100, 2)  # far fewer than all pairs: most order is the first stage's


def test_replay_rejects_a_ranking_no_window_could_make():
    candidates = [f"d{i}" for i in range(30)]
    # the first candidate is only ever in the top window (0-20): it cannot end at position 29
    ranked = candidates[1:] + candidates[:1]
    assert replay_windows(candidates, ranked, 20, 10) is None
    assert replay_windows(candidates, candidates[:-1], 20, 10) is None  # not the same passages
    assert replay_windows(candidates, candidates[::-1], 30, 10) is not None  # one window may reverse anything


def test_compared_mask_and_ranknet_keep_only_the_teachers_pairs():
    # passages 0,1 shared window 0; passage 2 was only in window 1; passage 3 has no window (cross negative)
    windows = torch.tensor([[[0.0, 1.0], [0.0, 0.0], [1.0, 1.0], [-1.0, -1.0]]])
    met = compared_mask(windows)[0]
    assert met.int().tolist() == [[1, 1, 1, 1], [1, 1, 0, 1], [1, 0, 1, 1], [1, 1, 1, 1]]
    scores = torch.tensor([[0.5, 2.0, -1.0, 0.3]])
    targets = torch.tensor([[4.0, 3.0, 2.0, 0.0]])
    mask = torch.ones(1, 4, dtype=torch.bool)
    sp = torch.nn.functional.softplus
    # pairs with t_i > t_j that met: (0,1) (0,2) (0,3) (1,3) (2,3); (1,2) never shared a window
    expected = sum(sp(-(scores[0, i] - scores[0, j])) for i, j in [(0, 1), (0, 2), (0, 3), (1, 3), (2, 3)]) / 5
    assert ranknet_loss(scores, targets, mask, windows=windows).item() == pytest.approx(expected.item(), rel=1e-6)
    every = sum(sp(-(scores[0, i] - scores[0, j])) for i in range(4) for j in range(i + 1, 4)) / 6
    assert ranknet_loss(scores, targets, mask).item() == pytest.approx(every.item(), rel=1e-6)


def test_ranknet_loss_module_reads_window_labels(tiny_scorer_model):
    from rankdistill.training.losses import make_loss

    loss = make_loss("ranknet", tiny_scorer_model)
    docs = [["1.0", "3.0", "-2.0"]]
    plain = loss([["q"], docs], [torch.tensor([3.0, 2.0, 1.0])])
    # passage 2 shares no window with passage 1: only (0,1) and (0,2) remain
    windowed = loss([["q"], docs], [torch.tensor([[3.0, 0, 1], [2.0, 0, 0], [1.0, 1, 1]])])
    sp = torch.nn.functional.softplus
    s = [1.0, 3.0, -2.0]
    assert plain.item() == pytest.approx(float((sp(torch.tensor(s[1] - s[0])) + sp(torch.tensor(s[2] - s[0]))
                                                 + sp(torch.tensor(s[2] - s[1]))) / 3), rel=1e-6)
    assert windowed.item() == pytest.approx(float((sp(torch.tensor(s[1] - s[0])) + sp(torch.tensor(s[2] - s[0]))) / 2),
                                            rel=1e-6)
    with pytest.raises(RankdistillError, match="--pairs compared"):
        make_loss("kl", tiny_scorer_model)([["q"], docs], [torch.tensor([[3.0, 0, 1], [2.0, 0, 0], [1.0, 1, 1]])])


@pytest.fixture()
def tiny_scorer_model():
    """A stand-in CrossEncoder whose score is the passage text read as a number (the losses only call
    ``preprocess`` and ``forward``)."""

    class Fixed(torch.nn.Module):
        num_labels = 1
        device = torch.device("cpu")

        def preprocess(self, pairs, **kwargs):
            return {"x": torch.tensor([float(p) for _, p in pairs])}

        def forward(self, features, **kwargs):
            return {"scores": features["x"].unsqueeze(-1)}

    return Fixed()


def test_build_pairs_compared_on_rankvicuna(dl20, irds_home, tmp_path):
    """RankVicuna's DL20 run is a window-20 / stride-10 ranking of the BM25 top-100: every query replays."""
    from rankdistill.distillation.builder import build

    out = build(teacher_run=dl20 / "rankvicuna-7b.run", first_stage_run=dl20 / "bm25-top100.run",
                dataset="irds:msmarco-passage/trec-dl-2020/judged", output=tmp_path / "set.parquet",
                depth=100, sample_size=100, pairs="compared", cross_negatives=2, progress=False)
    table = pq.read_table(out).to_pandas()
    one = table[table.qid == table.qid.iloc[0]]
    own = one[one.window_first.notna()]
    assert len(own) == 100 and one.window_first.isna().sum() == 2  # the 2 cross negatives have no window
    assert own.window_first.min() == 0 and own.window_last.max() == 8  # 9 windows over 100 passages
    met = compared_mask(torch.tensor(own[["window_first", "window_last"]].to_numpy(dtype="float32"))[None])[0]
    assert (met.sum().item() - 100) // 2 == 1350  # pairs that shared a window, out of 4,950

    with pytest.raises(RankdistillError, match=r"not a sliding-window re-ranking \(window 10, stride 5"):
        build(teacher_run=dl20 / "rankvicuna-7b.run", first_stage_run=dl20 / "bm25-top100.run",
              dataset="irds:msmarco-passage/trec-dl-2020/judged", output=tmp_path / "bad.parquet", pairs="compared",
              teacher_window=10, teacher_stride=5, progress=False)
    with pytest.raises(RankdistillError, match="pairs 'compared' needs the teacher run and the first-stage run"):
        build(teacher_run=dl20 / "rankvicuna-7b.run", dataset="irds:msmarco-passage/trec-dl-2020/judged",
              output=tmp_path / "bad.parquet", pairs="compared", targets="relevance", progress=False)
