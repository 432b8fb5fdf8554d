"""The vllm backend without vLLM (no GPU here): the first-token mapping, the missing-extra error, and the glue.

The real engine path is NOT exercised in this repository. ``test_glue_*`` put a recording stand-in for the
``vllm`` module in ``sys.modules``: they check which calls the backend makes (one batched call per
``generate``, greedy params, prefill and logprobs in first-token mode) and how it reads the outputs, not
what vLLM does with them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest


from helpers.tiny_lm import tiny_causal_lm_dir  # noqa: E402

from rankdistill.errors import RankdistillError  # noqa: E402
from rankdistill.teacher.backends import make_backend  # noqa: E402
from rankdistill.teacher.backends.vllm import ranking_from_logprobs  # noqa: E402
from rankdistill.teacher.prompts import build_prompt  # noqa: E402

HAS_VLLM = importlib.util.find_spec("vllm") is not None


def test_ranking_from_logprobs_orders_by_logprob_then_window_order():
    # identifier k+1 starts with token targets[k]; token 50 is not an identifier; 13 is not in the top-k
    targets = [10, 11, 12, 13]
    top = {12: -0.1, 10: -0.5, 11: -2.0, 50: -0.01}
    assert ranking_from_logprobs(top, targets) == ([2, 0, 1, 3], 3)
    assert ranking_from_logprobs({}, targets) == ([0, 1, 2, 3], 0)  # nothing scored: the current order
    # shared first tokens (digit-splitting tokenizers: "1", "10", "11") tie and keep window order
    assert ranking_from_logprobs({7: -1.0, 8: -0.2}, [7, 8, 9, 7, 7]) == ([1, 0, 3, 4, 2], 4)


@pytest.mark.parametrize("n", [1, 2, 7, 20])
def test_first_token_ranking_is_always_a_permutation(n):
    import random

    rng = random.Random(n)
    for _ in range(50):
        targets = [rng.randint(0, 30) for _ in range(n)]
        top = {rng.randint(0, 40): rng.uniform(-9, 0) for _ in range(12)}
        order, scored = ranking_from_logprobs(top, targets)
        assert sorted(order) == list(range(n)) and 0 <= scored <= n


@pytest.mark.skipif(HAS_VLLM, reason="vLLM is installed here")
def test_missing_extra_is_a_one_line_error():
    with pytest.raises(RankdistillError, match=r"pip install rankdistill\[vllm\]"):
        make_backend("vllm", model="some/model")
    from rankdistill.teacher.backends.vllm import VLLMBackend

    with pytest.raises(RankdistillError, match=r"pip install rankdistill\[vllm\]"):
        VLLMBackend("some/model")


# -- glue, against a recording stand-in for the vllm module (real tokenizer from tests/tiny_lm.py) ------


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    return tiny_causal_lm_dir(tmp_path_factory.mktemp("tiny-lm"))


@pytest.fixture(scope="module")
def hf_backend(tiny_lm):
    """The hf backend on the same model: the reference for which tokens the vllm backend must send."""
    from rankdistill.teacher.backends.hf import HFBackend, HFOptions

    return HFBackend(str(tiny_lm), HFOptions(device="cpu"))


@dataclass
class _Logprob:
    logprob: float


@dataclass
class _Completion:
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, _Logprob]] | None = None


@dataclass
class _Output:
    outputs: list[_Completion]


@dataclass
class _FakeLLM:
    kwargs: dict
    tokenizer: object
    calls: list = field(default_factory=list)
    first_token_logprobs: dict[int, float] = field(default_factory=dict)

    def get_tokenizer(self):
        return self.tokenizer

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        if params.max_tokens == 1:
            lp = {t: _Logprob(v) for t, v in self.first_token_logprobs.items()}
            return [_Output([_Completion("x", [5], [lp])]) for _ in prompts]
        return [_Output([_Completion("[2] > [1]", [1, 2, 3, 4])]) for _ in prompts]


@pytest.fixture
def fake_vllm(monkeypatch, tiny_lm):
    from transformers import AutoTokenizer

    module = types.ModuleType("vllm")
    module.engines = []
    module.chat_template = "keep"

    def LLM(**kwargs):  # noqa: N802
        tokenizer = AutoTokenizer.from_pretrained(kwargs["model"])
        if module.chat_template is None:
            tokenizer.chat_template = None
        engine = _FakeLLM(kwargs, tokenizer)
        module.engines.append(engine)
        return engine

    @dataclass
    class SamplingParams:
        temperature: float = 1.0
        max_tokens: int = 16
        logprobs: int | None = None

    module.LLM, module.SamplingParams = LLM, SamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    return module


def _prompts(k: int, n: int, template: str = "rankzephyr"):
    return [build_prompt(template, f"what is the price of water {i}", [f"passage {j} about the city" for j in range(n)],
                         max_passage_words=None) for i in range(k)]


def test_glue_one_engine_one_batched_greedy_call_with_hf_tokens(fake_vllm, tiny_lm, hf_backend):
    backend = make_backend("vllm", str(tiny_lm), options={"tensor_parallel_size": 2, "dtype": "bfloat16"})
    (engine,) = fake_vllm.engines
    assert engine.kwargs["model"] == str(tiny_lm) and engine.kwargs["tensor_parallel_size"] == 2
    assert engine.kwargs["dtype"] == "bfloat16" and backend.model_id == str(tiny_lm)
    got = {}
    prompts = _prompts(3, 4)
    backend.generate(prompts, lambda i, g: got.__setitem__(i, g), max_new_tokens=40)
    assert len(engine.calls) == 1  # all windows of the step in one engine call
    sent, params = engine.calls[0]
    assert sent == [{"prompt_token_ids": hf_backend._input_ids(p)} for p in prompts]  # the hf backend's exact tokens
    assert params.temperature == 0.0 and params.max_tokens == 40 and params.logprobs is None
    assert sorted(got) == [0, 1, 2]
    assert (got[1].text, got[1].prompt_tokens, got[1].completion_tokens, got[1].ranking) == (
        "[2] > [1]", len(sent[1]["prompt_token_ids"]), 4, None)


def test_glue_first_token_appends_opening_bracket_and_ranks_by_logprobs(fake_vllm, tiny_lm, hf_backend):
    backend = make_backend("vllm", model=str(tiny_lm))
    engine = fake_vllm.engines[0]
    opening, targets = backend._identifier_tokens(12)
    assert (opening, targets) == hf_backend._identifier_tokens(12)
    # digit-splitting tokenizer: identifiers 1, 10, 11, 12 share their first token ("1")
    assert targets[0] == targets[9] == targets[10] == targets[11] and len(set(targets)) == 9
    engine.first_token_logprobs = {targets[2]: -0.1, targets[0]: -0.5, targets[4]: -1.5, 999_999: -0.01}
    got = {}
    prompts = _prompts(2, 12)
    backend.generate(prompts, lambda i, g: got.__setitem__(i, g), max_new_tokens=40, first_token=True)
    sent, params = engine.calls[0]
    assert params.max_tokens == 1 and params.logprobs >= 20
    assert sent[0]["prompt_token_ids"][-len(opening):] == opening
    # 3 > {1, 10, 11, 12 tie: window order} > 5 > unscored in window order
    expected = [2, 0, 9, 10, 11, 4, 1, 3, 5, 6, 7, 8]
    assert got[0].ranking == expected and got[0].text == " > ".join(f"[{i + 1}]" for i in expected)
    assert got[0].completion_tokens == 1 and got[0].saved_tokens > 12
    assert backend.stats["first_token_windows"] == 2 and backend.stats["shared_first_token_windows"] == 2
    assert backend.stats["first_token_unscored_ids"] == 2 * 6  # ids 2, 4, 6, 7, 8, 9 per window


def test_glue_without_chat_template_sends_the_flat_prompt_text(fake_vllm, tiny_lm):
    fake_vllm.chat_template = None  # e.g. RankVicuna: FastChat formats the prompt, the tokenizer has no template
    backend = make_backend("vllm", model=str(tiny_lm))
    engine = fake_vllm.engines[0]
    prompts = _prompts(2, 3, template="rankvicuna")
    backend.generate(prompts, lambda i, g: None, max_new_tokens=30)
    sent, _ = engine.calls[0]
    assert [engine.tokenizer.decode(s["prompt_token_ids"], skip_special_tokens=True) for s in sent] == [p.text for p in prompts]
