"""rankdistill.reranking.cpu_forward: the hand-written CPU pass must give the Hugging Face forward's numbers."""

from __future__ import annotations

import logging

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from rankdistill.reranking.cpu_forward import CpuEncoderForward, build_cpu_forward, unsupported_reason  # noqa: E402

from helpers.tiny import tiny_encoder_dir  # noqa: E402

COMMON = dict(vocab_size=120, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=48,
              max_position_embeddings=64, num_labels=1)


def _model(kind: str, dtype=torch.float32, **extra):
    torch.manual_seed(1)
    if kind == "bert":
        model = transformers.BertForSequenceClassification(transformers.BertConfig(**COMMON, **extra))
    elif kind == "electra":  # a smaller embedding than hidden: exercises embeddings_project
        model = transformers.ElectraForSequenceClassification(transformers.ElectraConfig(embedding_size=16, **COMMON, **extra))
    elif kind == "roberta":  # positions from the pad id, one token type, tanh head
        model = transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(**{**COMMON, "max_position_embeddings": 70}, type_vocab_size=1, pad_token_id=1, **extra))
    elif kind == "bert-encoder":
        model = transformers.BertModel(transformers.BertConfig(**COMMON, **extra), add_pooling_layer=False)
    else:
        raise ValueError(kind)
    return model.eval().to(dtype)


def _batch(types: bool, pad_id: int = 0):
    """Three pairs of 5, 9 and 12 tokens padded to 12, segment 1 from the 4th token."""
    generator = torch.Generator().manual_seed(3)
    ids = torch.randint(5, COMMON["vocab_size"], (3, 12), generator=generator)
    mask = torch.zeros_like(ids)
    for row, n in enumerate((5, 9, 12)):
        mask[row, :n] = 1
    ids[mask == 0] = pad_id
    type_ids = torch.zeros_like(ids)
    type_ids[:, 4:] = 1 if types else 0
    type_ids[mask == 0] = 0
    return ids, (type_ids if types else None), mask


@pytest.mark.parametrize("kind", ["bert", "electra", "roberta"])
def test_scores_equal_huggingface_forward(kind):
    model = _model(kind)
    types = kind != "roberta"
    ids, type_ids, mask = _batch(types, pad_id=1 if kind == "roberta" else 0)
    fast = build_cpu_forward(model, pooled=True, use_types=types)
    assert fast is not None
    inputs = {"input_ids": ids, "attention_mask": mask, **({"token_type_ids": type_ids} if types else {})}
    with torch.inference_mode():
        want = model(**inputs).logits[:, 0]
        got = fast(ids, type_ids, mask)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=0)
    # the pairs must still be told apart: equal outputs would pass the line above for a constant model
    assert float(want.max() - want.min()) > 1e-3


def test_hidden_states_equal_for_the_similarity_head():
    model = _model("bert-encoder")
    ids, type_ids, mask = _batch(True)
    fast = build_cpu_forward(model, pooled=False, use_types=True)
    assert fast is not None
    with torch.inference_mode():
        want = model(input_ids=ids, token_type_ids=type_ids, attention_mask=mask).last_hidden_state
        got = fast(ids, type_ids, mask)
    real = mask.bool()  # padded positions are left undefined by both
    np.testing.assert_allclose(got[real].numpy(), want[real].numpy(), atol=1e-5, rtol=0)


def test_no_padding_needs_no_mask():
    model = _model("bert")
    ids, type_ids, _ = _batch(True)
    fast = CpuEncoderForward(model, pooled=True)
    with torch.inference_mode():
        want = model(input_ids=ids, token_type_ids=type_ids).logits[:, 0]
        got = fast(ids, type_ids, None)
    np.testing.assert_allclose(got.numpy(), want.numpy(), atol=1e-5, rtol=0)


def test_bfloat16_stays_close_to_float32():
    ids, type_ids, mask = _batch(True)
    ref = _model("bert")
    with torch.inference_mode():
        want = ref(input_ids=ids, token_type_ids=type_ids, attention_mask=mask).logits[:, 0]
        got = build_cpu_forward(_model("bert", torch.bfloat16), pooled=True, use_types=True)(ids, type_ids, mask)
    assert got.dtype == torch.bfloat16
    np.testing.assert_allclose(got.float().numpy(), want.numpy(), atol=0.05, rtol=0)


@pytest.mark.parametrize("act", ["gelu_new", "relu", "silu"])
def test_other_activations(act):
    model = _model("bert", hidden_act=act)
    ids, type_ids, mask = _batch(True)
    fast = build_cpu_forward(model, pooled=True, use_types=True)
    assert fast is not None
    with torch.inference_mode():
        want = model(input_ids=ids, token_type_ids=type_ids, attention_mask=mask).logits[:, 0]
        np.testing.assert_allclose(fast(ids, type_ids, mask).numpy(), want.numpy(), atol=1e-5, rtol=0)


def test_unsupported_models_keep_the_huggingface_forward():
    relative = _model("bert", position_embedding_type="relative_key")
    assert "position_embedding_type" in unsupported_reason(relative, pooled=True)
    assert build_cpu_forward(relative, pooled=True, use_types=True) is None
    torch.manual_seed(0)
    gpt2 = transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=50, num_labels=1))
    assert "not a BERT-family encoder" in unsupported_reason(gpt2, pooled=True)
    token_head = transformers.BertForTokenClassification(transformers.BertConfig(**COMMON))
    assert "no known [CLS] scoring head" in unsupported_reason(token_head, pooled=True)


def test_a_pass_that_disagrees_is_refused(monkeypatch, caplog):
    model = _model("bert")
    real_call = CpuEncoderForward.__call__
    monkeypatch.setattr(CpuEncoderForward, "__call__", lambda self, *a: real_call(self, *a) + 0.01)
    with caplog.at_level(logging.WARNING, logger="rankdistill.reranking.cpu_forward"):
        assert build_cpu_forward(model, pooled=True, use_types=True) is None
    assert "differs by" in caplog.text


def test_parallel_batch_streams_keep_order_and_restore_threads(tmp_path):
    from rankdistill.reranking.scorer import CrossEncoderScorer

    folder = tiny_encoder_dir(tmp_path / "bert")
    queries = [f"query {i} water price" for i in range(40)]
    passages = [("the river " * (i % 7 + 1)) + f"city {i}" for i in range(40)]
    one = CrossEncoderScorer(folder, dtype="float32", device="cpu", threads=1, batch_tokens=64)
    two = CrossEncoderScorer(folder, dtype="float32", device="cpu", threads=2, batch_tokens=64)
    assert (one.workers, two.workers) == (1, 2)
    seen: list[int] = []
    got = two.score(queries, passages, on_batch=seen.append)
    assert torch.get_num_threads() == 2  # set to 1 only while the streams ran
    assert sum(seen) == 40 and len(seen) > 2  # several batches, each reported once
    np.testing.assert_allclose(got, one.score(queries, passages), atol=1e-6, rtol=0)


def test_an_error_mid_run_stops_the_streams_and_restores_threads(tmp_path):
    from rankdistill.reranking.scorer import CrossEncoderScorer

    folder = tiny_encoder_dir(tmp_path / "bert")
    scorer = CrossEncoderScorer(folder, dtype="float32", device="cpu", threads=2, batch_tokens=32)

    def interrupt(_n):
        raise KeyboardInterrupt

    try:
        scorer.score([f"q {i}" for i in range(30)], [f"p {i} water" for i in range(30)], on_batch=interrupt)
    except KeyboardInterrupt:
        # checked while the traceback (and so the scoring frame) is still alive: restored at once, not at GC
        assert torch.get_num_threads() == 2
    else:
        pytest.fail("the interrupt was swallowed")
