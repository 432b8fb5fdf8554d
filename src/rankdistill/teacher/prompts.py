"""Listwise prompts that reproduce RankGPT, RankVicuna and RankZephyr byte for byte.

Re-implemented from the reference systems (not copied):
- ``rankgpt``: RankGPT's multi-turn chat (Sun et al. 2023) as rank_llm @ 1255b67 sent it to gpt-3.5-turbo:
  system + user/assistant handshake, one user turn per passage ("[n] text") each acknowledged by the
  assistant, then the instruction turn. Passage text: "Title: Content: " removed, stripped,
  ``ftfy.fix_text`` (defaults), cut to ``max_passage_words`` words (300), ``[n]`` rewritten as ``(n)``.
- ``rankvicuna``: rank_llm @ 1255b67 (RankVicuna 7B, Pradeep et al. 2023): one user turn in FastChat's
  vicuna_v1.1 conversation; the *whole* flat prompt (system line, passages, query) goes through
  ``ftfy.fix_text`` at the end; the query is not number-rewritten.
- ``rankzephyr``: rank_llm's RankListwiseOSLLM as RankZephyr was run (``--variable_passages``, system
  message "You are RankLLM, ..."), Zephyr chat format; the query is number-rewritten, each passage is
  fixed, cut and rewritten, then the whole prompt is fixed again.

``Prompt.text`` is the flat string the reference systems record (what replay matches and the cache
hashes); ``Prompt.messages`` is the same content as an OpenAI chat for chat servers and chat templates.
rank_llm also shrinks the word budget when a prompt exceeds the model's context (a tokenizer-dependent
loop); we expose the budget as ``max_passage_words`` instead, which gives the same prompts whenever the
context is not exceeded (always the case for the 54 reference prompts).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ftfy import fix_text

from rankdistill.errors import RankdistillError

TEMPLATES = {"rankgpt", "rankvicuna", "rankzephyr"}

DEFAULT_MAX_WORDS = 300  # rank_llm's / RankGPT's starting word budget per passage for a 20-passage window

VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ZEPHYR_SYSTEM = "You are RankLLM, an intelligent assistant that can rank passages based on their relevancy to the query"
RANKGPT_SYSTEM = "You are RankGPT, an intelligent assistant that can rank passages based on their relevancy to the query."

_BRACKETED_NUMBER = re.compile(r"\[(\d+)\]")


@dataclass(frozen=True)
class Prompt:
    """One window's prompt: the chat for chat servers and the exact flat text the reference systems record."""

    messages: list[dict[str, str]] = field(hash=False)
    text: str
    num_passages: int


def replace_number(text: str) -> str:
    """Rewrite "[12]" as "(12)" so passage text cannot be confused with the identifiers."""
    return _BRACKETED_NUMBER.sub(r"(\1)", text)


def truncate_words(text: str, max_words: int | None) -> str:
    """Split on any white space and keep the first ``max_words`` words (white space collapses to one space)."""
    words = text.split()
    return " ".join(words if max_words is None else words[: int(max_words)])


def _clean(text: str, max_words: int | None, *, fix: bool) -> str:
    text = text.replace("Title: Content: ", "").strip()
    if fix:
        text = fix_text(text)
    return replace_number(truncate_words(text, max_words))


def _listwise_prefix(query: str, num: int) -> str:
    return (
        f"I will provide you with {num} passages, each indicated by a numerical identifier []. "
        f"Rank the passages based on their relevance to the search query: {query}.\n"
    )


def _listwise_suffix(query: str, num: int, example: str) -> str:
    return (
        f"Search Query: {query}.\nRank the {num} passages above based on their relevance to the search query. "
        "All the passages should be included and listed using identifiers, in descending order of relevance. "
        f"The output format should be [] > [], e.g., {example}, "
        "Only respond with the ranking results, do not say any word or explain."
    )


def _rankvicuna(query: str, passages: list[str], max_words: int | None) -> Prompt:
    num = len(passages)
    body = _listwise_prefix(query, num) + "\n"
    for rank, passage in enumerate(passages, 1):
        body += f"[{rank}] {_clean(passage, max_words, fix=False)}\n"
    body += _listwise_suffix(query, num, "[4] > [2]")
    # FastChat vicuna_v1.1: "<system> USER: <msg> " then rank_llm appends " ASSISTANT:"; all fixed at the end.
    text = fix_text(f"{VICUNA_SYSTEM} USER: {body}  ASSISTANT:")
    messages = [
        {"role": "system", "content": fix_text(VICUNA_SYSTEM)},
        {"role": "user", "content": fix_text(body)},
    ]
    return Prompt(messages=messages, text=text, num_passages=num)


def _rankzephyr(query: str, passages: list[str], max_words: int | None) -> Prompt:
    num = len(passages)
    query = replace_number(query)
    body = _listwise_prefix(query, num) + "\n"
    for rank, passage in enumerate(passages, 1):
        body += f"[{rank}] {_clean(passage, max_words, fix=True)}\n"
    body += _listwise_suffix(query, num, "[2] > [1]")
    # Zephyr chat format (FastChat "zephyr" = the model's own chat template), then fixed as a whole.
    text = fix_text(f"<|system|>\n{ZEPHYR_SYSTEM}</s>\n<|user|>\n{body}</s>\n<|assistant|>\n")
    messages = [
        {"role": "system", "content": ZEPHYR_SYSTEM},
        {"role": "user", "content": fix_text(body)},
    ]
    return Prompt(messages=messages, text=text, num_passages=num)


def _rankgpt(query: str, passages: list[str], max_words: int | None) -> Prompt:
    num = len(passages)
    messages = [
        {"role": "system", "content": RANKGPT_SYSTEM},
        {
            "role": "user",
            "content": f"I will provide you with {num} passages, each indicated by number identifier []. \n"
            f"Rank the passages based on their relevance to query: {query}.",
        },
        {"role": "assistant", "content": "Okay, please provide the passages."},
    ]
    for rank, passage in enumerate(passages, 1):
        messages.append({"role": "user", "content": f"[{rank}] {_clean(passage, max_words, fix=True)}"})
        messages.append({"role": "assistant", "content": f"Received passage [{rank}]."})
    messages.append(
        {
            "role": "user",
            "content": f"Search Query: {query}. \nRank the {num} passages above based on their relevance to the "
            "search query. The passages should be listed in descending order using identifiers. The most relevant "
            "passages should be listed first. The output format should be [] > [], e.g., [1] > [2]. Only response "
            "the ranking results, do not say any word or explain.",
        }
    )
    # rank_llm records a chat prompt as its JSON message list; the same canonical JSON is our flat text.
    return Prompt(messages=messages, text=messages_to_text(messages), num_passages=num)


def messages_to_text(messages: list[dict[str, str]]) -> str:
    """Canonical flat form of a chat prompt (how a recorded message list is matched and hashed)."""
    return json.dumps(messages, ensure_ascii=False)


_BUILDERS = {"rankgpt": _rankgpt, "rankvicuna": _rankvicuna, "rankzephyr": _rankzephyr}


def build_prompt(template: str, query: str, passages: list[str], *, max_passage_words: int | None) -> Prompt:
    """The window prompt for ``passages`` (best-first order of the current ranking) under ``template``.

    ``max_passage_words=None`` keeps the reference systems' budget: 300 words for a 20-passage window
    (RankZephyr scales it as 300 * 20 / window).
    """
    if template not in _BUILDERS:
        raise RankdistillError(f"unknown prompt template {template!r}; choose one of {', '.join(sorted(TEMPLATES))}")
    if not passages:
        raise RankdistillError("a prompt window needs at least one passage")
    if max_passage_words is None:
        max_passage_words = DEFAULT_MAX_WORDS
        if template == "rankzephyr":
            max_passage_words = int(DEFAULT_MAX_WORDS * (20 / len(passages)))
    return _BUILDERS[template](query, passages, max_passage_words)
