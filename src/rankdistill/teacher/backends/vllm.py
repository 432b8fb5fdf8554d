"""Teacher backend on one offline vLLM engine (optional extra: ``pip install rankdistill[vllm]``, CUDA GPU).

Why it looks the way it does:
- vLLM schedules its own continuous batch, so everything ``teach`` hands over in one ``generate`` call (all
  windows of one sliding step, across all queries) goes to the engine in a single ``LLM.generate`` call;
  answers are reported once the engine returns.
- Prompts are tokenized exactly as the hf backend does (the model's chat template over ``Prompt.messages``
  with the generation prompt; a tokenizer without a chat template gets the exact flat ``Prompt.text`` the
  reference systems recorded, e.g. RankVicuna's FastChat string) and handed to vLLM as token ids, so the
  hf and vllm backends see the same tokens.
- Greedy decoding (temperature 0) and a fixed engine seed, so a rerun gives the same run.
- First-token mode (FIRST, Reddy et al. 2024), as in the hf backend: the answer's opening "[" is appended,
  one token is generated with its top-k logprobs, and each identifier is scored by the logprob of its
  *first* token (``ranking_from_logprobs``). Identifiers sharing a first token (digit-splitting tokenizers:
  "1" and "10".."19") tie; ties and identifiers outside the top-k keep the window's current order (the
  hf backend reads the full logits, so only the order among identifiers outside vLLM's top-k can differ).

``vllm`` is imported only when the backend is built. NOTE: the engine path cannot run in this repository's
CI (no GPU, vLLM not installed): only the pure helpers, the missing-extra error and the calls made to a
stand-in module are tested here.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Generation
from rankdistill.teacher.parse import format_permutation

if TYPE_CHECKING:  # pragma: no cover
    from rankdistill.teacher.prompts import Prompt

MISSING_VLLM = "the vllm backend needs vLLM: pip install rankdistill[vllm] (Linux with a CUDA GPU)"
MAX_LOGPROBS = 64  # top-k logprobs asked for in first-token mode (engine cap raised from vLLM's default 20)
# vllm.LLM keywords this backend sets itself (the model, its options, the logprobs cap)
_SET_HERE = ("model", "tensor_parallel_size", "dtype", "max_model_len", "gpu_memory_utilization", "seed", "max_logprobs")


class VLLMOptions(BaseModel):
    """The vllm backend's options (``backend_options`` of ``teach()``, ``options:`` in a config)."""

    model_config = ConfigDict(extra="forbid")

    tensor_parallel_size: int = Field(1, ge=1, description="GPUs the model is split across.")
    dtype: str = Field("auto", description="vLLM's dtype: auto, bfloat16, float16, float32.")
    max_model_len: int | None = Field(None, ge=1, description="Context length to reserve (default: the model's).")
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="Share of GPU memory vLLM may take.")
    seed: int = Field(0, description="Engine seed (decoding is greedy; fixed so reruns give the same run).")
    engine_options: dict[str, Any] = Field(
        default_factory=dict, description="Further vllm.LLM keyword arguments, passed as they are (e.g. enforce_eager)."
    )

    @field_validator("engine_options")
    @classmethod
    def _not_set_here(cls, value: dict[str, Any]) -> dict[str, Any]:
        clash = sorted(set(value) & set(_SET_HERE))
        if clash:
            raise ValueError(f"the backend sets these itself (as options, or not at all): {', '.join(clash)}")
        return value


def import_vllm() -> Any:
    """The ``vllm`` module, or a one-line RankdistillError telling how to install the extra."""
    try:
        import vllm
    except ImportError as exc:  # ModuleNotFoundError, or a broken install (missing CUDA libraries)
        if isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "vllm":
            raise RankdistillError(f"vLLM is installed but cannot be imported ({exc}); reinstall rankdistill[vllm]") from exc
        raise RankdistillError(MISSING_VLLM) from exc
    return vllm


def ranking_from_logprobs(logprobs: Mapping[int, float], identifier_tokens: list[int]) -> tuple[list[int], int]:
    """0-based best-first order of a window from the top-k logprobs of the first generated token.

    ``identifier_tokens[k]`` is the first token id of identifier ``k + 1``; ``logprobs`` maps token ids to
    log-probabilities (only the top-k are known). Identifiers are ordered by their token's logprob; ties
    (shared first tokens) and identifiers whose token is not in the top-k keep window order, the latter
    after all scored ones. Returns ``(order, scored)``: ``scored`` identifiers had a logprob.
    """
    missing = float("-inf")
    values = [logprobs.get(token, missing) for token in identifier_tokens]
    order = sorted(range(len(values)), key=lambda k: (-values[k], k))
    return order, sum(v != missing for v in values)


class VLLMBackend:
    """One ``vllm.LLM`` engine; each ``generate`` call is one batched engine call."""

    name = "vllm"

    def __init__(self, model: str, options: VLLMOptions | None = None):
        if not model:
            raise RankdistillError("the vllm backend needs model (a Hugging Face id or a local folder)")
        options = options or VLLMOptions()
        vllm = import_vllm()
        self.model_id = model
        self._vllm = vllm
        self.llm = vllm.LLM(
            model=model,
            tensor_parallel_size=options.tensor_parallel_size,
            dtype=options.dtype,
            max_model_len=options.max_model_len,
            gpu_memory_utilization=options.gpu_memory_utilization,
            seed=options.seed,
            max_logprobs=MAX_LOGPROBS,
            **options.engine_options,
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.stats: Counter[str] = Counter()
        self._targets: dict[int, tuple[list[int], list[int]]] = {}

    def _input_ids(self, prompt: Prompt) -> list[int]:
        """Same tokens as the hf backend: chat template over ``messages``, else the reference flat text."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return list(self.tokenizer(prompt.text, add_special_tokens=True)["input_ids"])

    def _identifier_tokens(self, n: int) -> tuple[list[int], list[int]]:
        """(ids of the opening "[" appended to the prompt, first token id of identifiers 1..n), as hf does."""
        if n not in self._targets:
            opening = list(self.tokenizer("[", add_special_tokens=False)["input_ids"])
            full = [list(self.tokenizer(f"[{i}", add_special_tokens=False)["input_ids"]) for i in range(1, n + 1)]
            if all(len(ids) > len(opening) and ids[: len(opening)] == opening for ids in full):
                self._targets[n] = (opening, [ids[len(opening)] for ids in full])
            else:  # "[n" is a single token: score it right after the prompt
                self._targets[n] = ([], [ids[0] for ids in full])
        return self._targets[n]

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
        inputs = [self._input_ids(p) for p in prompts]
        if first_token:
            inputs = [ids + self._identifier_tokens(p.num_passages)[0] for p, ids in zip(prompts, inputs)]
            params = SamplingParams(temperature=0.0, max_tokens=1, logprobs=MAX_LOGPROBS)
        else:
            params = SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens))
        outputs = self.llm.generate([{"prompt_token_ids": ids} for ids in inputs], params, use_tqdm=False)
        for i, (prompt, ids, output) in enumerate(zip(prompts, inputs, outputs, strict=True)):
            completion = output.outputs[0]
            if not first_token:
                self.stats["generated_windows"] += 1
                on_result(i, Generation(text=completion.text, prompt_tokens=len(ids),
                                        completion_tokens=len(completion.token_ids)))
                continue
            first = (completion.logprobs or [{}])[0]
            targets = self._identifier_tokens(prompt.num_passages)[1]
            ranking, scored = ranking_from_logprobs({t: e.logprob for t, e in first.items()}, targets)
            self.stats["first_token_windows"] += 1
            self.stats["first_token_unscored_ids"] += prompt.num_passages - scored
            if len(set(targets)) < len(targets):
                self.stats["shared_first_token_windows"] += 1
            text = format_permutation(ranking)
            decoded = len(completion.token_ids)
            saved = max(0, len(self.tokenizer(text, add_special_tokens=False)["input_ids"]) - decoded)
            on_result(i, Generation(text=text, prompt_tokens=len(ids), completion_tokens=decoded,
                                    ranking=ranking, saved_tokens=saved))

    def close(self) -> None:
        """Drop the engine (vLLM frees GPU memory when the LLM object is collected)."""
        import gc

        self.llm = None
        gc.collect()
