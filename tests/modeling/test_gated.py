"""The gated head: shut gates = the backbone's bi-encoder, open gates = cross-attention; training, saving, scoring."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.data import write_set  # noqa: E402
from helpers.tiny import tiny_scoring_dir  # noqa: E402

PAIRS = [
    ("what is the water price", "the river water price is good in the city"),
    ("what is the water price", "a car is fast"),
    ("who is the best student", "the best student of the year is in the court"),
    ("who is the best student", "public records of the state data model and naturalization information passage"),
]


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    """A tiny BERT with wide random weights (so texts score apart), saved as a plain encoder folder."""
    return tiny_scoring_dir(tmp_path_factory.mktemp("gated") / "enc")


def build(encoder, mp: int = 16):
    from rankdistill.modeling.cross_encoder import build_cross_encoder

    return build_cross_encoder(str(encoder), max_query_length=8, max_passage_length=mp, seed=0, head="gated")


def test_shut_gates_score_the_bi_encoder_cosine(encoder):
    """Step 0 is the zero-shot baseline: 20 x the cosine of sentence-transformers' mean-pooled embeddings."""
    from sentence_transformers import SentenceTransformer

    model = build(encoder)
    got = model.predict(PAIRS)
    st = SentenceTransformer(str(encoder), device="cpu")
    st.max_seq_length = 16 + 2  # the passage budget plus [CLS] and [SEP], as teach_embedding(max_length=16) sets it
    q = st.encode([q for q, _ in PAIRS], normalize_embeddings=True, convert_to_tensor=True)
    p = st.encode([p for _, p in PAIRS], normalize_embeddings=True, convert_to_tensor=True)
    expected = 20.0 * (q * p).sum(-1)
    assert np.abs(got - expected.numpy()).max() < 1e-4
    assert len(set(np.round(got, 3))) == 4  # the texts really score apart


def test_open_gates_are_ordinary_attention_over_the_pair():
    from rankdistill.modeling.gated import gated_attention, masks

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 6, 4, generator=gen) for _ in range(3))
    segments = torch.tensor([[1, 1, 2, 2, 2, 0], [1, 1, 1, 2, 2, 2]])

    class Layer(torch.nn.Module):
        layer_idx = 0

    scale = 0.5
    own_mask, all_mask = masks(segments, torch.float32)
    plain = torch.softmax(q @ k.transpose(-1, -2) * scale + all_mask, -1) @ v
    out, _ = gated_attention(Layer(), q, k, v, None, scaling=scale, gated_masks=(own_mask, all_mask), gates=torch.ones(1, 3))
    assert torch.allclose(out.transpose(1, 2), plain, atol=1e-6)
    shut, _ = gated_attention(Layer(), q, k, v, None, scaling=scale, gated_masks=(own_mask, all_mask), gates=torch.zeros(1, 3))
    # shut: in the first pair the query's first token sees only the query (tokens 0-1)
    own_only = torch.softmax(q[0, :, :1] @ k[0, :, :2].transpose(-1, -2) * scale, -1) @ v[0, :, :2]
    assert torch.allclose(shut.transpose(1, 2)[0, :, :1], own_only, atol=1e-6)
    half, _ = gated_attention(Layer(), q, k, v, None, scaling=scale, gated_masks=(own_mask, all_mask),
                              gates=torch.full((1, 3), 0.5))
    assert torch.allclose(half, (out + shut) / 2, atol=1e-6)  # the weights mix linearly, so the outputs do


def test_layout_counts_positions_per_sequence():
    from rankdistill.modeling.gated import layout

    batch = layout([[101, 7, 102], [101, 102]], [[101, 8, 9, 102], [101, 5, 102]], pad_id=0)
    assert batch["input_ids"].tolist() == [[101, 7, 102, 101, 8, 9, 102], [101, 102, 101, 5, 102, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3], [0, 1, 0, 1, 2, 0, 0]]
    assert batch["segments"].tolist() == [[1, 1, 1, 2, 2, 2, 2], [1, 1, 2, 2, 2, 0, 0]]


@pytest.fixture(scope="module")
def trained(encoder, tmp_path_factory):
    from rankdistill.training.trainer import train

    root = tmp_path_factory.mktemp("gated-train")
    data = write_set(root / "train.parquet")
    common = dict(model=str(encoder), head="gated", max_steps=6, learning_rate=1e-3, warmup_ratio=0.0,
                  logging_steps=1, save_steps=1000, seed=0, max_query_length=8, max_passage_length=16)
    opened = train(data, output=root / "opened", gate_learning_rate=0.05, **common)
    shut = train(data, output=root / "shut", gate_learning_rate=0.0, **common)
    return {"opened": opened, "shut": shut}


def test_gates_open_with_their_own_rate(trained):
    from rankdistill.modeling.gated import read_gates

    opened, shut = read_gates(trained["opened"]), read_gates(trained["shut"])
    assert opened.shape == (2, 2) and shut.shape == (2, 2)
    assert opened.clamp(0, 1).max() > 0.05  # Adam moved them by about 0.05 a step for 6 steps
    assert torch.count_nonzero(shut) == 0  # rate 0: the encoder trained, the gates stayed shut
    log = json.loads((trained["opened"] / "training_log.json").read_text())
    assert log["settings"]["head"] == "gated"
    assert "gated similarity head" in (trained["opened"] / "README.md").read_text()


def test_gated_model_round_trips_and_loads_in_plain_sentence_transformers(trained):
    from sentence_transformers import CrossEncoder

    from rankdistill.modeling.cross_encoder import load_cross_encoder

    folder = trained["opened"]
    ours = load_cross_encoder(folder, device="cpu").predict(PAIRS)
    theirs = CrossEncoder(str(folder), trust_remote_code=True, device="cpu", activation_fn=torch.nn.Identity()).predict(PAIRS)
    assert np.abs(ours - theirs).max() < 1e-6


@pytest.mark.parametrize("fast", [True, False])
def test_scorer_equals_predict_with_open_gates(trained, fast):
    from rankdistill.modeling.cross_encoder import load_cross_encoder
    from rankdistill.reranking.scorer import CrossEncoderScorer

    folder = trained["opened"]
    expected = load_cross_encoder(folder, device="cpu").predict(PAIRS)
    scorer = CrossEncoderScorer(folder, dtype="float32", fast_cpu=fast)
    assert (scorer.fast is not None) == fast  # the own CPU pass passed its self-check on the gated layout
    got = scorer.score([q for q, _ in PAIRS], [p for _, p in PAIRS])
    assert np.abs(got - expected).max() < 1e-4


def test_gated_head_needs_a_bert_family_encoder(tmp_path):
    from transformers import LlamaConfig, LlamaModel

    from rankdistill.errors import RankdistillError
    from rankdistill.modeling.cross_encoder import build_cross_encoder
    from helpers.tiny import tiny_bert_tokenizer

    folder = tmp_path / "llama"
    tokenizer = tiny_bert_tokenizer(folder)
    tokenizer.save_pretrained(folder)
    LlamaModel(LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32)).save_pretrained(folder)
    with pytest.raises(RankdistillError, match="head 'gated' cannot use .*BERT-family"):
        build_cross_encoder(str(folder), max_query_length=8, max_passage_length=8, seed=0, head="gated")


@pytest.fixture(scope="module")
def mpnet_encoder(tmp_path_factory):
    """A tiny MPNet (all-mpnet-base-v2's architecture: relative position bias, attention computed in the layer, not
    through AttentionInterface) with wide random weights, saved as a plain encoder folder with a local tokenizer."""
    from transformers import BertTokenizerFast, MPNetConfig, MPNetModel

    from helpers.tiny import build_vocab, widen

    folder = tmp_path_factory.mktemp("gated-mpnet") / "enc"
    folder.mkdir()
    vocab = build_vocab(folder / "vocab.txt")
    tokens = vocab.read_text().splitlines()
    tokens[0], tokens[1] = tokens[1], tokens[0]  # [UNK] 0, [PAD] 1: MPNet's embeddings take id 1 for padding
    vocab.write_text("\n".join(tokens) + "\n")
    tokenizer = BertTokenizerFast(vocab=str(vocab), vocab_file=str(vocab), do_lower_case=True, model_max_length=512)
    assert tokenizer.pad_token_id == 1
    torch.manual_seed(0)
    widen(MPNetModel(MPNetConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=64, pad_token_id=1))).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_mpnet_with_shut_gates_scores_its_bi_encoder_cosine(mpnet_encoder):
    """MPNet's relative position bias depends only on distances, so each sequence of the pair sees the bias it sees
    alone: step 0 is the bi-encoder, as for BERT."""
    from sentence_transformers import SentenceTransformer

    model = build(mpnet_encoder)
    got = model.predict(PAIRS)
    st = SentenceTransformer(str(mpnet_encoder), device="cpu")
    st.max_seq_length = 16 + 2
    q = st.encode([q for q, _ in PAIRS], normalize_embeddings=True, convert_to_tensor=True)
    p = st.encode([p for _, p in PAIRS], normalize_embeddings=True, convert_to_tensor=True)
    assert np.abs(got - 20.0 * (q * p).sum(-1).numpy()).max() < 1e-4
    assert len(set(np.round(got, 3))) == 4


def test_mpnet_with_open_gates_is_mpnets_own_attention_over_the_pair(mpnet_encoder):
    """Gates at 1: the patched self-attention equals transformers' own MPNet over the whole pair (same ids, positions)."""
    from transformers import MPNetModel

    from rankdistill.modeling.gated import _MPNET_STATE

    gated = build(mpnet_encoder)[0]
    features = gated.preprocess(PAIRS)
    plain_model = MPNetModel.from_pretrained(str(mpnet_encoder), attn_implementation="eager").eval()
    with torch.no_grad():
        gated.gates.fill_(1.0)
        got = gated.forward(dict(features))["token_embeddings"]
        plain = plain_model(input_ids=features["input_ids"], attention_mask=features["attention_mask"],
                            position_ids=features["position_ids"]).last_hidden_state
    real = features["attention_mask"].bool()
    assert torch.allclose(got[real], plain[real], atol=1e-5)
    assert _MPNET_STATE.value is None  # the state lives for one forward only


def test_a_gated_mpnet_trains_opens_its_gates_and_round_trips(mpnet_encoder, tmp_path):
    from sentence_transformers import CrossEncoder

    from rankdistill.modeling.cross_encoder import load_cross_encoder
    from rankdistill.modeling.gated import read_gates
    from rankdistill.reranking.scorer import CrossEncoderScorer
    from rankdistill.training.trainer import train

    data = write_set(tmp_path / "train.parquet")
    folder = train(data, output=tmp_path / "mpnet", model=str(mpnet_encoder), head="gated", max_steps=4,
                   learning_rate=1e-3, gate_learning_rate=0.05, warmup_ratio=0.0, save_steps=1000, seed=0,
                   max_query_length=8, max_passage_length=16)
    assert read_gates(folder).clamp(0, 1).max() > 0.05  # the gates got a gradient through the patched attention
    ours = load_cross_encoder(folder, device="cpu").predict(PAIRS)
    theirs = CrossEncoder(str(folder), trust_remote_code=True, device="cpu", activation_fn=torch.nn.Identity()).predict(PAIRS)
    assert np.abs(ours - theirs).max() < 1e-6
    assert np.abs(ours - build(mpnet_encoder).predict(PAIRS)).max() > 1e-3  # it is not the untrained model any more
    scorer = CrossEncoderScorer(folder, dtype="float32")  # rerank's scorer: MPNet takes the Hugging Face forward
    assert scorer.fast is None
    assert np.abs(scorer.score([q for q, _ in PAIRS], [p for _, p in PAIRS]) - ours).max() < 1e-4
    # two threads, batches of different lengths at once (the re-ranker's parallel streams share the model)
    many = [(PAIRS[i % 4][0], " ".join([PAIRS[i % 4][1]] * (1 + i % 5))) for i in range(40)]
    threaded = CrossEncoderScorer(folder, dtype="float32", threads=2, batch_tokens=64)
    assert threaded.workers == 2
    want = load_cross_encoder(folder, device="cpu").predict(many)
    assert np.abs(threaded.score([q for q, _ in many], [p for _, p in many]) - want).max() < 1e-4
