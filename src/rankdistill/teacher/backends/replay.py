"""Answer prompts from a recording instead of a model: reproducible runs and offline tests.

Reads the reference format (a JSON array of {"prompt", "response"}), rank_llm's raw dumps (the same
objects joined by ", " without brackets) and the files ``teach(record=...)`` writes (one JSON object per line,
with optional extra keys such as "ranking" for first-token answers). A prompt recorded as a chat message
list is matched through its canonical JSON text (``prompts.messages_to_text``).

Matching is by prompt text, never by position:
- ``exact``: the recorded prompt equals ``Prompt.text`` character for character;
- ``normalized``: both sides pass ``normalize_prompt`` first (see there);
- ``auto`` (default): exact, falling back to normalized; ``match_counts`` says how many matched each way.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Callable

from ftfy import fix_text
from pydantic import BaseModel, ConfigDict

from rankdistill.errors import InputFormatError, RankdistillError
from rankdistill.teacher.backends.base import Generation
from rankdistill.teacher.prompts import Prompt, messages_to_text

MATCH_MODES = ("auto", "exact", "normalized")


class ReplayOptions(BaseModel):
    """The replay backend takes no options: what it replays is ``teach()``'s ``replay_file`` and ``replay_match``."""

    model_config = ConfigDict(extra="forbid")

_QUOTES = str.maketrans({c: "'" for c in "\u2018\u2019\u201a\u201b\u2032\u00b4`"} | {c: '"' for c in "\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb"})
# A run of non-ASCII characters, possibly joined by single spaces/quotes and ending in a quote: what is left
# of non-Latin script after a lossy mojibake round trip (e.g. "Ï\"Ï Ï\x81" vs "τÏ ρ"); see normalize_prompt.
_NON_ASCII_RUN = re.compile(r"[^\x00-\x7f](?:[ '\"]?[^\x00-\x7f])*['\"]?")
_SPACE = re.compile(r"\s+")


def normalize_prompt(text: str) -> str:
    """The ``replay_match="normalized"`` key. Steps, in order:

    1. encoding repair: ``ftfy.fix_text`` with default settings (mojibake, HTML entities, curly quotes);
    2. remaining typographic quotes (‘ ’ ‚ ‛ “ ” „ ‟ « » ´ `) become ' or ";
    3. each run of non-ASCII characters (joined by single spaces or quotes, with a trailing quote) becomes
       one U+FFFD: non-Latin text mangled by a double encoding round trip cannot be restored, so it is
       compared only by where it is, not by what it says;
    4. white space runs collapse to one space; leading/trailing white space is dropped.
    Prompts that differ only inside non-Latin script therefore share a key (the first recording wins).
    """
    text = fix_text(text).translate(_QUOTES)
    text = _NON_ASCII_RUN.sub("\ufffd", text)
    return _SPACE.sub(" ", text).strip()


def read_recording(path: str | Path) -> list[dict]:
    """Every {"prompt", "response", ...} object in ``path`` (JSON array, JSONL, or comma-joined objects)."""
    path = Path(path)
    if not path.is_file():
        raise RankdistillError(f"{path}: no such replay file (replay_file must be a recording)")
    try:
        raw = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputFormatError(path, None, f"not UTF-8 text ({exc.reason})") from None
    decoder = json.JSONDecoder()
    records: list[dict] = []
    pos, line, counted = 0, 1, 0
    while True:
        # Objects are decoded one at a time (so each keeps its own line number); the array's brackets and the
        # commas between objects are skipped, which also reads rank_llm's bracket-less dumps and JSONL.
        while pos < len(raw) and (raw[pos].isspace() or raw[pos] in ",[]"):
            pos += 1
        if pos >= len(raw):
            break
        line += raw.count("\n", counted, pos)
        counted = pos
        try:
            item, end = decoder.raw_decode(raw, pos)
        except json.JSONDecodeError as exc:
            if "\n" not in raw[pos:]:
                break  # a torn last line of an append-only recording (its writer was killed): ignore it
            raise InputFormatError(path, line + raw.count("\n", pos, exc.pos), f"not valid JSON ({exc.msg})") from None
        if not isinstance(item, dict) or "prompt" not in item or "response" not in item:
            raise InputFormatError(path, line, 'expected objects with "prompt" and "response" keys')
        if isinstance(item["prompt"], list):
            item["prompt"] = messages_to_text(item["prompt"])
        if not isinstance(item["prompt"], str) or not isinstance(item["response"], str):
            raise InputFormatError(path, line, '"prompt" must be text or a message list and "response" text')
        item["_line"] = line
        records.append(item)
        pos = end
    return records


def first_difference(prompt: str, recorded: str, context: int = 60) -> str:
    """Where ``prompt`` first departs from ``recorded``: line, column and both texts around it (difflib)."""
    matcher = difflib.SequenceMatcher(None, prompt, recorded, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            line = prompt.count("\n", 0, i1) + 1
            column = i1 - (prompt.rfind("\n", 0, i1) + 1) + 1
            ours = prompt[max(0, i1 - context) : i2 + context]
            theirs = recorded[max(0, j1 - context) : j2 + context]
            return f"first differs at line {line}, column {column}: prompt has {ours!r}, recording has {theirs!r}"
    return "texts are equal"


class ReplayBackend:
    """Replays recorded answers; an unmatched prompt is an error naming the closest recording and the spot."""

    name = "replay"

    def __init__(self, replay_file: str | Path, replay_match: str = "auto", model: str | None = None,
                 options: ReplayOptions | None = None):
        """``options`` is accepted so that every backend is built alike (``make_backend``); it holds nothing."""
        if replay_match not in MATCH_MODES:
            raise RankdistillError(f"replay_match {replay_match!r}: choose one of {', '.join(MATCH_MODES)}")
        self.path = Path(replay_file)
        self.match = replay_match
        self.records = read_recording(self.path)
        if not self.records:
            raise RankdistillError(f"{self.path}: the recording holds no prompts")
        # the recording's content is part of the cache key: another file with the same name is another "model"
        digest = hashlib.sha256(self.path.read_bytes()).hexdigest()[:12]
        self.model_id = model or f"replay:{self.path.name}:{digest}"
        self._exact: dict[str, dict] = {}
        self._normalized: dict[str, dict] = {}
        for record in self.records:  # the first recording of a prompt wins
            self._exact.setdefault(record["prompt"], record)
            if replay_match != "exact":
                self._normalized.setdefault(normalize_prompt(record["prompt"]), record)
        self.match_counts = {"exact": 0, "normalized": 0}

    def lookup(self, prompt: Prompt) -> tuple[dict, str]:
        """The recording answering ``prompt`` and how it matched ("exact" or "normalized")."""
        record = self._exact.get(prompt.text)
        if record is not None:
            return record, "exact"
        if self.match != "exact":
            record = self._normalized.get(normalize_prompt(prompt.text))
            if record is not None:
                return record, "normalized"
        raise RankdistillError(self._explain_miss(prompt.text))

    def _explain_miss(self, text: str) -> str:
        # Closest = longest common prefix (cheap), ties broken by difflib's quick ratio.
        def closeness(record: dict) -> tuple[int, float]:
            prefix = len(os.path.commonprefix([text, record["prompt"]]))
            return prefix, difflib.SequenceMatcher(None, text, record["prompt"]).quick_ratio()

        best = max(self.records, key=closeness)
        hint = " (try replay_match normalized)" if self.match == "exact" else ""
        return (
            f"{self.path}: no recorded prompt matches ({self.match}){hint}; closest is the one on line "
            f"{best['_line']}, {first_difference(text, best['prompt'])}"
        )

    def generate(
        self,
        prompts: list[Prompt],
        on_result: Callable[[int, Generation], None],
        *,
        max_new_tokens: int,
        first_token: bool = False,
    ) -> None:
        found = [self.lookup(p) for p in prompts]  # fail before answering anything half-way
        for i, (record, how) in enumerate(found):
            ranking = record.get("ranking") if first_token else None
            self.match_counts[how] += 1
            on_result(
                i,
                Generation(
                    text=record["response"],
                    prompt_tokens=int(record.get("prompt_tokens", 0)),
                    completion_tokens=int(record.get("completion_tokens", 0)),
                    ranking=list(ranking) if ranking is not None else None,
                    saved_tokens=int(record.get("saved_tokens", 0)) if ranking is not None else 0,
                ),
            )

    def close(self) -> None:
        pass
