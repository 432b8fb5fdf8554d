"""Turn an LLM's answer ("[4] > [2] > ...") into a permutation of the window, repairing what it got wrong.

Same reading as RankGPT / rank_llm (every maximal run of ASCII digits is an identifier, 1-based), made total:
any string gives a valid permutation, and each repair is counted by kind so the stats show how often the
teacher went off format.
"""

from __future__ import annotations

import re
from collections import Counter

_NUMBER = re.compile(r"[0-9]+")
# The well-formed answer: "[a] > [b] > ... " (white space free). Anything else is counted once as "garbage".
_WELL_FORMED = re.compile(r"\s*\[[0-9]+\](?:\s*>\s*\[[0-9]+\])*\s*")
_MAX_DIGITS = 9  # longer digit runs cannot be a window position; never convert huge ones to int


def parse_permutation(text: str, n: int) -> tuple[list[int], Counter]:
    """0-based permutation of ``range(n)`` read from ``text``, and the repairs it needed.

    Repairs: "duplicate" (an id seen again, dropped), "out_of_range" (an id not in 1..n, ignored),
    "missing" (an id never named, appended in its previous order), "garbage" (the answer had anything
    besides bracketed ids, '>' and white space; counted once per answer).
    """
    repairs: Counter = Counter()
    if not _WELL_FORMED.fullmatch(text):
        repairs["garbage"] += 1
    seen: set[int] = set()
    order: list[int] = []
    for match in _NUMBER.finditer(text):
        digits = match.group()
        position = int(digits) - 1 if len(digits.lstrip("0")) <= _MAX_DIGITS else -1
        if not 0 <= position < n:
            repairs["out_of_range"] += 1
        elif position in seen:
            repairs["duplicate"] += 1
        else:
            seen.add(position)
            order.append(position)
    missing = [i for i in range(n) if i not in seen]
    if missing:
        repairs["missing"] += len(missing)
    return order + missing, repairs


def format_permutation(order: list[int]) -> str:
    """The canonical answer for a 0-based order: "[3] > [1] > [2]"."""
    return " > ".join(f"[{i + 1}]" for i in order)
