"""Teacher backend on one offline vLLM engine (optional extra: ``pip install rankdistill[vllm]``, CUDA GPU).

Why it looks the way it does:
- vLLM schedules its own continuous batch, so everything ``teach`` hands over in one ``generate`` call (all
  windows of one sliding step, across all queries) goes to the engine in a single ``LLM.chat`` /
  ``LLM.generate`` call; answers are reported once the engine returns.
- Prompts go through the model's own chat template (``LLM.chat`` with ``Prompt.messages``), like the hf
  backend; a tokenizer without a chat template gets the exact flat ``Prompt.text`` the reference systems
  recorded (e.g. RankVicuna's FastChat string).
- Greedy decoding (temperature 0) and a fixed engine seed, so a rerun gives the same run.
- First-token mode (FIRST, Reddy et al. 2024): the answer is pre-filled with "[" and one token is generated
  with its top-k logprobs; identifiers are ranked by the logprob of the token that spells them
  (``ranking_from_first_token``). Identifiers that are not a single token in the model's vocabulary (e.g. "12"
  on a tokenizer that splits digits) or not in the top-k keep their previous order after the scored ones.

``vllm`` is imported only when the backend is built. NOTE: the engine path cannot run in this repository's
CI (no GPU, vLLM not installed); only the pure helpers and the missing-extra error are tested here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Generation

if TYPE_CHECKING:  # pragma: no cover
    from rankdistill.teacher.prompts import Prompt

MISSING_VLLM = "the vllm backend needs vLLM: pip install rankdistill[vllm] (Linux with a CUDA GPU)"
MAX_LOGPROBS = 64  # engine-wide cap on top-k logprobs (vLLM's default is 20; windows can hold more ids)


def import_vllm() -> Any:
    """The ``vllm`` module, or a one-line RankdistillError telling how to install the extra."""
    try:
        import vllm
    except ImportError as exc:  # ModuleNotFoundError, or a broken install (missing CUDA libraries)
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "vllm":
            raise RankdistillError(f"vLLM is installed but cannot be imported ({exc}); reinstall rankdistill[vllm]") from exc
        raise RankdistillError(MISSING_VLLM) from exc
    return vllm


def identifier_of(token: str) -> int | None:
    """The 1-based window identifier a decoded token spells ("3", " 3", "[3", "▁3"), else None."""
    label = token.replace("▁", " ").replace("Ġ", " ").strip().lstrip("[").rstrip("]").strip()
    if not label.isascii() or not label.isdigit() or str(int(label)) != label:
        return None
    return int(label)


def ranking_from_first_token(logprobs: Mapping[str, float], n: int) -> tuple[list[int], int]:
    """0-based best-first order of a window of ``n`` from the top-k logprobs of its first identifier token.

    ``logprobs`` maps decoded tokens to log-probabilities (several tokens may spell one identifier, e.g.
    "3" and " 3": the best counts). Identifiers seen are ordered by logprob (ties keep window order); the
    rest follow in window order, i.e. their previous order. Returns ``(order, scored)``, ``scored`` being how
    many identifiers had a logprob.
    """
    best: dict[int, float] = {}
    for token, logprob in logprobs.items():
        ident = identifier_of(token)
        if ident is None or not 1 <= ident <= n:
            continue
        position = ident - 1
        if position not in best or logprob > best[position]:
            best[position] = float(logprob)
    scored = sorted(best, key=lambda i: (-best[i], i))
    return scored + [i for i in range(n) if i not in best], len(best)


def full_answer(n: int) -> str:
    """The answer a full decode would produce for a window of ``n`` (what first-token mode saves decoding)."""
    return " > ".join(f"[{i}]" for i in range(1, n + 1))


class VLLMBackend:
    """One ``vllm.LLM`` engine; each ``generate`` call is one batched engine call."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        tensor_parallel_size: int = 1,
        dtype: str = "auto",
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        *,
        seed: int = 0,
        **engine_options: Any,
    ):
        if not model:
            raise RankdistillError("the vllm backend needs --model (a Hugging Face id or a local folder)")
        if tensor_parallel_size < 1:
            raise RankdistillError(f"--tensor-parallel-size must be at least 1, got {tensor_parallel_size}")
        vllm = import_vllm()
        self.model_id = model
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model,
            tensor_parallel_size=int(tensor_parallel_size),
            dtype=dtype,
            max_model_len=max_model_len,
            gpu_memory_utilization=float(gpu_memory_utilization),
            seed=int(seed),
            max_logprobs=MAX_LOGPROBS,
            **engine_options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self._has_template = bool(getattr(self.tokenizer, "chat_template", None))
        self._answer_tokens: dict[int, int] = {}

    def _answer_length(self, n: int) -> int:
        if n not in self._answer_tokens:
            self._answer_tokens[n] = len(self.tokenizer.encode(full_answer(n), add_special_tokens=False))
        return self._answer_tokens[n]

    def _run(self, prompts: list[Prompt], params: Any, prefill: str) -> list[Any]:
        if self._has_template:
            if prefill:
                chats = [[*p.messages, {"role": "assistant", "content": prefill}] for p in prompts]
                return self.llm.chat(
                    chats, params, use_tqdm=False, add_generation_prompt=False, continue_final_message=True
                )
            return self.llm.chat([p.messages for p in prompts], params, use_tqdm=False)
        return self.llm.generate([p.text + prefill for p in prompts], params, use_tqdm=False)

    def generate(
        self,
        prompts: list[Prompt],
        on_result: Callable[[int, Generation], None],
        *,
        max_new_tokens: int,
        first_token: bool = False,
    ) -> None:
        """All prompts in one engine call (greedy); ``on_result`` for each once the engine returns."""
        if not prompts:
            return
        SamplingParams = self._vllm.SamplingParams
        if first_token:
            top_k = min(MAX_LOGPROBS, max(20, 2 * max(p.num_passages for p in prompts)))
            outputs = self._run(prompts, SamplingParams(temperature=0.0, max_tokens=1, logprobs=top_k), "[")
        else:
            outputs = self._run(prompts, SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens)), "")
        for i, (prompt, output) in enumerate(zip(prompts, outputs, strict=True)):
            completion = output.outputs[0]
            generation = Generation(
                text=completion.text,
                prompt_tokens=len(output.prompt_token_ids or ()),
                completion_tokens=len(completion.token_ids),
            )
            if first_token:
                first = (completion.logprobs or [{}])[0]
                top = {}
                for token_id, entry in first.items():
                    token = entry.decoded_token
                    if token is None:
                        token = self.tokenizer.decode([token_id])
                    top[token] = max(entry.logprob, top.get(token, float("-inf")))
                generation.ranking, _ = ranking_from_first_token(top, prompt.num_passages)
                generation.saved_tokens = max(0, self._answer_length(prompt.num_passages) - generation.completion_tokens)
            on_result(i, generation)

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when the LLM object is collected)."""
        self.llm = None
        import gc

        gc.collect()
