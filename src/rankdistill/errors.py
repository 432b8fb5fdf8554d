"""User-facing errors: the CLI prints them as one line and exits 2, never with a traceback."""

from __future__ import annotations

from pathlib import Path


class RankdistillError(Exception):
    """A problem the user can fix (bad input, missing file, unknown id); its message says how."""


class InputFormatError(RankdistillError):
    """A malformed line in an input file; formats as ``file:line: what is wrong``."""

    def __init__(self, path: str | Path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


class OutputLockedError(RankdistillError):
    """Another process is writing the same output folder (``util.lock.output_lock``); the message names its pid."""
