"""Local transformers causal LM as the teacher: chat template, greedy, left-padded batched generation.

``first_token=True`` is FIRST (Reddy et al. 2024): one forward pass per window, the window ranked by the
logits the model gives each identifier at the first generated identifier position, instead of decoding
the whole "[a] > [b] > ..." answer. The answer's opening "[" is appended to the prompt, so that position
is the identifier's number. Limitation: the logit scored is that of the *first token* of each number (as
FIRST does). Tokenizers that split numbers into digits (Llama, Mistral) give "1" and "10".."19" the same
first token, so those identifiers tie; ties keep the window's current order. ``stats["shared_first_token_windows"]``
counts windows where that happened. Models trained on one-token identifiers (FIRST's) are not affected.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from rankdistill.errors import RankdistillError
from rankdistill.teacher.backends.base import Generation
from rankdistill.teacher.parse import format_permutation

if TYPE_CHECKING:  # pragma: no cover
    from rankdistill.teacher.prompts import Prompt

# dtype spelling -> torch dtype name ("auto" and None: bfloat16 on GPU, float32 on CPU)
_DTYPES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
           "float32": "float32", "fp32": "float32"}


class HFOptions(BaseModel):
    """The hf backend's options (``backend_options`` of ``teach()``, ``options:`` in a config)."""

    model_config = ConfigDict(extra="forbid")

    device: str | None = Field(None, description="cpu, cuda, cuda:1 ...; default: cuda if available, else cpu.")
    dtype: Literal[("auto", *_DTYPES)] | None = Field(
        None, description="Weights' dtype; auto (the default): bfloat16 on GPU, float32 on CPU."
    )
    batch_size: int = Field(8, ge=1, description="Prompts per generate batch (sorted by length: less padding).")
    trust_remote_code: bool = Field(False, description="Run the model repository's own code (transformers' flag).")


class HFBackend:
    """AutoModelForCausalLM + AutoTokenizer; bf16 on GPU, float32 on CPU unless ``dtype`` says otherwise."""

    name = "hf"

    def __init__(self, model: str, options: HFOptions | None = None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        options = options or HFOptions()
        self.torch = torch
        self.model_id = str(model)
        self.device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
        if options.dtype in (None, "auto"):
            torch_dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        else:
            torch_dtype = getattr(torch, _DTYPES[options.dtype])
        self.batch_size = options.batch_size
        if self.model_id.startswith((".", "/", "~")) and not Path(self.model_id).expanduser().is_dir():
            raise RankdistillError(f"model {self.model_id}: no such model folder")
        trust = options.trust_remote_code
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_id, trust_remote_code=trust)
            self.model = AutoModelForCausalLM.from_pretrained(self.model_id, dtype=torch_dtype, trust_remote_code=trust).to(
                self.device
            )
        except (OSError, ValueError) as exc:
            raise RankdistillError(f"model {self.model_id}: cannot load it as a causal LM ({exc})") from None
        self.model.eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.stats: Counter = Counter()

    # prompts ---------------------------------------------------------------------------------------------
    def _input_ids(self, prompt: Prompt) -> list[int]:
        """The model's chat template over ``messages``; a model without one gets the reference flat text."""
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(prompt.messages, tokenize=False, add_generation_prompt=True)
            return self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return self.tokenizer(prompt.text, add_special_tokens=True)["input_ids"]

    def _batches(self, inputs: list[list[int]]):
        order = sorted(range(len(inputs)), key=lambda i: len(inputs[i]))  # similar lengths: less padding
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            padded = self.tokenizer.pad({"input_ids": [inputs[i] for i in batch]}, padding=True, return_tensors="pt")
            yield batch, padded["input_ids"].to(self.device), padded["attention_mask"].to(self.device)

    # generation ------------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: list[Prompt],
        on_result: Callable[[int, Generation], None],
        *,
        max_new_tokens: int,
        first_token: bool = False,
    ) -> None:
        inputs = [self._input_ids(p) for p in prompts]
        if first_token:
            self._first_token(prompts, inputs, on_result)
            return
        eos = self.model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        pad = self.tokenizer.pad_token_id
        for batch, input_ids, mask in self._batches(inputs):
            with self.torch.inference_mode():
                out = self.model.generate(
                    input_ids=input_ids, attention_mask=mask, do_sample=False, max_new_tokens=max_new_tokens,
                    pad_token_id=pad, temperature=None, top_p=None, top_k=None,
                )
            for row, i in zip(out[:, input_ids.shape[1] :].tolist(), batch):
                completion = 0
                for token in row:
                    completion += 1
                    if token in eos_ids:
                        break
                self.stats["generated_windows"] += 1
                on_result(i, Generation(
                    text=self.tokenizer.decode(row[:completion], skip_special_tokens=True),
                    prompt_tokens=len(inputs[i]),
                    completion_tokens=completion,
                ))

    def _identifier_tokens(self, n: int) -> tuple[list[int], list[int]]:
        """(prefix ids appended to the prompt, scored token id of identifier 1..n)."""
        opening = self.tokenizer("[", add_special_tokens=False)["input_ids"]
        full = [self.tokenizer(f"[{i}", add_special_tokens=False)["input_ids"] for i in range(1, n + 1)]
        if all(len(ids) > len(opening) and ids[: len(opening)] == opening for ids in full):
            return opening, [ids[len(opening)] for ids in full]
        return [], [ids[0] for ids in full]  # "[n" is one token: score it right after the prompt

    def _first_token(self, prompts: list[Prompt], inputs: list[list[int]], on_result) -> None:
        torch = self.torch
        targets: dict[int, tuple[list[int], list[int]]] = {}
        for p in prompts:
            targets.setdefault(p.num_passages, self._identifier_tokens(p.num_passages))
        extended = [ids + targets[p.num_passages][0] for p, ids in zip(prompts, inputs)]
        for batch, input_ids, mask in self._batches(extended):
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():
                logits = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions).logits[:, -1, :]
            logits = logits.float().cpu()
            for row, i in zip(logits, batch):
                n = prompts[i].num_passages
                scored = targets[n][1]
                values = row[scored].tolist()
                ranking = sorted(range(n), key=lambda k: (-values[k], k))  # ties keep the current order
                if len(set(scored)) < n:
                    self.stats["shared_first_token_windows"] += 1
                text = format_permutation(ranking)
                saved = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
                self.stats["first_token_windows"] += 1
                on_result(i, Generation(text=text, prompt_tokens=len(inputs[i]), completion_tokens=0,
                                        ranking=ranking, saved_tokens=saved))

    def close(self) -> None:
        self.model = None
        if self.device.startswith("cuda"):
            self.torch.cuda.empty_cache()
