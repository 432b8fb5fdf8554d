"""Every loss against a value computed by hand (plain math) on a tiny ragged batch.

Scores are given directly: the model's ``preprocess``/``forward`` are replaced so that the passage text
"2.0" scores 2.0. The expected values below use only ``math``.
"""

from __future__ import annotations

import math

import pytest
import torch

from rankdistill.errors import RankdistillError
from rankdistill.training.losses import LOSSES, approx_ndcg_loss, kl_loss, make_loss, margin_mse_loss, pad_lists

# batch of two queries with ragged lists: q1 has three passages, q2 two
S1, T1 = [2.0, 0.5, 1.0], [3.0, 1.0, 2.0]
S2, T2 = [0.0, 1.0], [1.0, 0.0]
INPUTS = [["q1", "q2"], [[str(s) for s in S1], [str(s) for s in S2]]]
LABELS = [torch.tensor(T1), torch.tensor(T2)]


def softplus(x: float) -> float:
    return math.log(1.0 + math.exp(x))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def pairs(t: list[float]) -> list[tuple[int, int]]:
    return [(i, j) for i in range(len(t)) for j in range(len(t)) if t[i] > t[j]]


def approx_rank(s: list[float], i: int, tau: float = 1.0) -> float:
    return 1.0 + sum(sigmoid((s[j] - s[i]) / tau) for j in range(len(s)) if j != i)


@pytest.fixture(scope="module")
def fixed_model(tmp_path_factory):
    """A real (tiny) CrossEncoder whose score for a pair is the float written in the passage."""
    from sentence_transformers import CrossEncoder
    from helpers.tiny import tiny_encoder_dir

    model = CrossEncoder(str(tiny_encoder_dir(tmp_path_factory.mktemp("tiny-ce"))), device="cpu")
    weight = torch.nn.Parameter(torch.ones(()))
    model.preprocess = lambda pairs, prompt=None, task=None: {"x": torch.tensor([float(d) for _, d in pairs])}
    model.forward = lambda features, **kw: {"scores": (features["x"] * weight).unsqueeze(-1)}
    model.fixed_weight = weight
    return model


def value(name: str, model, **kwargs) -> float:
    return make_loss(name, model, **kwargs)(INPUTS, LABELS).item()


def test_ranknet_is_the_papers_formula(fixed_model):
    terms = [softplus(-(S1[i] - S1[j])) for i, j in pairs(T1)] + [softplus(-(S2[i] - S2[j])) for i, j in pairs(T2)]
    assert len(terms) == 4
    assert value("ranknet", fixed_model) == pytest.approx(sum(terms) / 4, rel=1e-6)
    # sentence-transformers' default is log2; make_loss must have switched to the natural log
    assert value("ranknet", fixed_model, reduction_log="binary") == pytest.approx(sum(terms) / 4 / math.log(2), rel=1e-6)


def test_lce(fixed_model):
    q1 = -math.log(softmax(S1)[0])  # relevant = largest target = index 0
    q2 = -math.log(softmax(S2)[0])
    assert value("lce", fixed_model) == pytest.approx((q1 + q2) / 2, rel=1e-6)


def test_lce_relevant_is_argmax_of_targets_anywhere(fixed_model):
    loss = make_loss("lce", fixed_model)([["q"], [["0.3", "1.2", "-0.5"]]], [torch.tensor([0.0, 2.0, 0.0])])
    assert loss.item() == pytest.approx(-math.log(softmax([0.3, 1.2, -0.5])[1]), rel=1e-6)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_kl_with_temperature(fixed_model, tau):
    def kl(s, t):
        p, q = softmax([x / tau for x in t]), softmax(s)
        return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))

    expected = (kl(S1, T1) + kl(S2, T2)) / 2
    assert value("kl", fixed_model, temperature=tau) == pytest.approx(expected, rel=1e-6)


def test_listnet_is_cross_entropy(fixed_model):
    def ce(s, t):
        return -sum(pi * math.log(qi) for pi, qi in zip(softmax(t), softmax(s)))

    assert value("listnet", fixed_model) == pytest.approx((ce(S1, T1) + ce(S2, T2)) / 2, rel=1e-6)
    with pytest.raises(RankdistillError, match="does not take temperature"):
        make_loss("listnet", fixed_model, temperature=2.0)


@pytest.mark.parametrize("gain", ["exp", "linear"])
def test_approx_ndcg(fixed_model, gain):
    def g(t):
        return 2**t - 1 if gain == "exp" else t

    def ndcg(s, t):
        dcg = sum(g(t[i]) / math.log2(1 + approx_rank(s, i)) for i in range(len(s)))
        ideal = sorted(t, reverse=True)
        idcg = sum(g(x) / math.log2(1 + k) for k, x in enumerate(ideal, 1))
        return dcg / idcg

    expected = ((1 - ndcg(S1, T1)) + (1 - ndcg(S2, T2))) / 2
    assert value("approx-ndcg", fixed_model, gain=gain) == pytest.approx(expected, rel=1e-6)


def test_approx_ndcg_skips_lists_without_gain():
    scores, mask = pad_lists([torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])])
    targets, _ = pad_lists([torch.tensor([0.0, 0.0]), torch.tensor([1.0, 0.0])])
    only_second = approx_ndcg_loss(scores[1:], targets[1:], mask[1:])
    assert approx_ndcg_loss(scores, targets, mask).item() == pytest.approx(only_second.item())
    r0, r1 = approx_rank([0.0, 1.0], 0), approx_rank([0.0, 1.0], 1)
    assert only_second.item() == pytest.approx(1 - (1 / math.log2(1 + r0)) / 1.0, rel=1e-6)
    assert r1 < r0


def test_adr_mse(fixed_model):
    def terms(s, t):
        true_rank = [1 + sum(t[j] > t[i] for j in range(len(t))) for i in range(len(t))]
        return [(approx_rank(s, i) - true_rank[i]) ** 2 / math.log2(1 + true_rank[i]) for i in range(len(s))]

    all_terms = terms(S1, T1) + terms(S2, T2)
    assert value("adr-mse", fixed_model) == pytest.approx(sum(all_terms) / len(all_terms), rel=1e-6)


def test_margin_mse_all_pairs(fixed_model):
    terms = [((S[i] - S[j]) - (T[i] - T[j])) ** 2 for S, T in ((S1, T1), (S2, T2)) for i, j in pairs(T)]
    assert value("margin-mse", fixed_model) == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_margin_mse_first_matches_sentence_transformers(fixed_model):
    from sentence_transformers.cross_encoder.losses import MarginMSELoss

    s, t = [2.0, 0.5, 1.0], [3.0, 1.0, 2.0]
    hand = sum(((s[0] - s[j]) - (t[0] - t[j])) ** 2 for j in (1, 2)) / 2
    ours = make_loss("margin-mse", fixed_model, pairs="first")([["q"], [[str(x) for x in s]]], [torch.tensor(t)])
    st = MarginMSELoss(fixed_model)([["q"], ["2.0"], ["0.5"], ["1.0"]], torch.tensor([t]))
    assert ours.item() == pytest.approx(hand, rel=1e-6)
    assert st.item() == pytest.approx(hand, rel=1e-6)


def test_bce_listwise_and_threshold(fixed_model):
    def bce(s, y):
        return -(y * math.log(sigmoid(s)) + (1 - y) * math.log(1 - sigmoid(s)))

    flat_s = S1 + S2
    y = [1.0 if t >= 2 else 0.0 for t in T1 + T2]
    expected = sum(bce(s, v) for s, v in zip(flat_s, y)) / len(y)
    assert value("bce", fixed_model, threshold=2) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(RankdistillError, match=r"labels in \[0, 1\]"):
        value("bce", fixed_model)
    # pair format passes straight through to sentence-transformers' loss
    pair = make_loss("bce", fixed_model)([["q", "q"], ["1.0", "-1.0"]], torch.tensor([1.0, 0.0]))
    assert pair.item() == pytest.approx((bce(1.0, 1) + bce(-1.0, 0)) / 2, rel=1e-6)


def test_pure_functions_ignore_padding():
    # a padded entry with an extreme score/target must not change anything
    scores, mask = pad_lists([torch.tensor(S1), torch.tensor(S2)], fill=1e6)
    targets, _ = pad_lists([torch.tensor(T1), torch.tensor(T2)], fill=-1e6)
    alone = kl_loss(scores[1:, :2], targets[1:, :2], mask[1:, :2])
    both = kl_loss(scores, targets, mask)
    first = kl_loss(scores[:1], targets[:1], mask[:1])
    assert both.item() == pytest.approx((alone.item() + first.item()) / 2, rel=1e-6)
    assert torch.isfinite(margin_mse_loss(scores, targets, mask))


def test_gradients_flow_into_the_model(fixed_model):
    for name in LOSSES:
        kwargs = {"threshold": 2} if name == "bce" else {}
        fixed_model.fixed_weight.grad = None
        loss = make_loss(name, fixed_model, **kwargs)(INPUTS, LABELS)
        loss.backward()
        assert torch.isfinite(loss), name
        assert fixed_model.fixed_weight.grad is not None and fixed_model.fixed_weight.grad.abs() > 0, name


def test_real_tiny_model_every_loss(tmp_path):
    """With the real tokenizer and encoder every loss gives a finite value and a gradient."""
    from sentence_transformers import CrossEncoder
    from helpers.tiny import tiny_encoder_dir

    model = CrossEncoder(str(tiny_encoder_dir(tmp_path / "m")), device="cpu")
    inputs = [["what is a river", "hotel price"], [["the river is water", "a car", "court law"], ["hotel phone", "city"]]]
    labels = [torch.tensor([3.0, 1.0, 2.0]), torch.tensor([1.0, 0.0])]
    for name in LOSSES:
        model.zero_grad()
        loss = make_loss(name, model, **({"threshold": 2} if name == "bce" else {}))(inputs, labels)
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert torch.isfinite(loss) and grads, name


def test_unknown_loss_and_option(fixed_model):
    with pytest.raises(RankdistillError) as err:
        make_loss("hinge", fixed_model)
    assert all(n in str(err.value) for n in LOSSES)
    with pytest.raises(RankdistillError, match="does not take tau"):
        make_loss("kl", fixed_model, tau=3)
    assert type(make_loss("approx_ndcg", fixed_model)).__name__ == "ApproxNDCGLoss"


def test_ranknet_on_deep_rank_targets_matches_the_pure_formula(fixed_model):
    """sentence-transformers computes 2^label gains even without weighting: deep rank targets must not turn NaN."""
    from rankdistill.training.losses import ranknet_loss

    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(300, generator=gen)
    targets = torch.arange(300, 0, -1).float()  # depth 300: targets 300 .. 1
    st = make_loss("ranknet", fixed_model)([["q"], [[repr(float(s)) for s in scores]]], [targets])
    pure = ranknet_loss(scores[None], targets[None], torch.ones(1, 300, dtype=torch.bool))
    assert torch.isfinite(st) and st.item() == pytest.approx(pure.item(), rel=1e-5)


def test_ranknet_discount_weighting_is_the_dcg_change_of_each_swap():
    from rankdistill.training.losses import ranknet_loss

    scores = torch.tensor([[0.2, 1.0, -0.5]])
    targets = torch.tensor([[3.0, 2.0, 1.0]])  # ranks 1, 2, 3
    mask = torch.ones(1, 3, dtype=torch.bool)
    d = [1 / math.log2(1 + r) for r in (1, 2, 3)]
    pairs = [(0, 1), (0, 2), (1, 2)]
    weights = [abs(d[i] - d[j]) for i, j in pairs]
    terms = [softplus(-(scores[0, i] - scores[0, j]).item()) for i, j in pairs]
    expected = sum(w * t for w, t in zip(weights, terms)) / sum(weights)
    assert ranknet_loss(scores, targets, mask, weighting="discount").item() == pytest.approx(expected, rel=1e-6)
    # the (1, 2) swap moves DCG by 1 - 0.631 = 0.369, the (2, 3) swap by 0.131: the top pair weighs ~2.8x more
    assert weights[0] / weights[2] == pytest.approx(2.82, abs=0.01)


def test_score_pairs_mini_batches_keep_input_order(tmp_path):
    """Length-sorted mini-batches give each pair the score one padded batch gives it, in the input order."""
    from sentence_transformers import CrossEncoder
    from helpers.tiny import tiny_encoder_dir

    from rankdistill.training.losses import score_pairs

    model = CrossEncoder(str(tiny_encoder_dir(tmp_path / "m")), device="cpu").eval()
    words = "river water hotel city court law car price phone the a is".split()
    pairs = [(" ".join(words[i % 3 : i % 3 + 2]), " ".join(words[(i * 5) % 12 :] + words[: i % 7])) for i in range(11)]
    with torch.no_grad():
        whole = score_pairs(model, pairs, mini_batch_size=len(pairs))
        small = score_pairs(model, pairs, mini_batch_size=3)
        one_by_one = torch.cat([score_pairs(model, [p]) for p in pairs])
    assert len({len(a) + len(b) for a, b in pairs}) > 3  # lengths differ, so sorting reorders
    torch.testing.assert_close(small, whole, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(small, one_by_one, atol=1e-5, rtol=1e-5)
