"""YAML configs: one reader, one way to resolve their relative paths, one way to word a validation error.

Every command that takes ``--config FILE.yaml`` (and the pipeline and study configs) goes through here, so a bad
key reads the same everywhere: ``FILE: key.path: what is wrong (allowed: ...)``, one line, no traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from rankdistill.errors import RankdistillError

M = TypeVar("M", bound=BaseModel)


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _yaml_error(path: Path, text: str, exc: yaml.YAMLError) -> RankdistillError:
    """PyYAML's error as one line naming ``file:line`` (its own message spans lines and says "<unicode string>")."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is not None:
        line: int | None = mark.line + 1
    elif isinstance(getattr(exc, "position", None), int):  # a ReaderError: a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
    else:
        line = None
    problem = getattr(exc, "problem", None) or getattr(exc, "reason", None) or exc
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, str):
        problem = f"a character YAML does not allow ({ord(exc.character):#06x})"
    where = f"{path}:{line}" if line is not None else str(path)
    return RankdistillError(f"{where}: invalid YAML ({_one_line(problem)})")


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file of ``key: value`` options (``-`` in top-level keys read as ``_``); bad YAML names file:line."""
    path = Path(path)
    if not path.is_file():
        what = "is a folder, expected a config file" if path.is_dir() else "no such config file"
        raise RankdistillError(f"{path}: {what}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RankdistillError(f"{path}:{line}: not UTF-8 text ({exc.reason})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _yaml_error(path, text, exc) from None
    except RecursionError:
        raise RankdistillError(f"{path}: invalid YAML (nested too deeply)") from None
    except (ValueError, TypeError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for tagged or date-like scalars they cannot build (``2020-13-45``)
        raise RankdistillError(f"{path}: invalid YAML value ({_one_line(exc)})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RankdistillError(f"{path}: expected a mapping of keys at the top level, found {type(raw).__name__}")
    return {str(k).replace("-", "_"): v for k, v in raw.items()}


def resolve_path(value: str | Path, base: Path) -> str:
    """A path from a config file, taken relative to the file's folder (``~`` expanded; absolute paths kept)."""
    path = Path(str(value)).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def resolve_dataset(spec: str, base: Path) -> str:
    """A dataset spec from a config file: ``irds:`` ids as they are, folders relative to the file."""
    return spec if spec.startswith("irds:") else resolve_path(spec, base)


def resolve_paths(model: BaseModel, base: Path) -> BaseModel:
    """Every ``Path`` field of a validated model (nested models and lists included), relative to ``base``."""

    def fix(value):
        if isinstance(value, Path) and not value.is_absolute():
            return Path(resolve_path(value, base))
        if isinstance(value, BaseModel):
            for name in type(value).model_fields:  # set only what changed: untouched keys stay "not given"
                old = getattr(value, name)
                if (new := fix(old)) is not old:
                    setattr(value, name, new)
            return value
        if isinstance(value, list):
            return [fix(v) for v in value]
        return value

    return fix(model)


def _fields_at(model: type[BaseModel], loc: tuple) -> list[str]:
    """The keys allowed where an unknown key sits (walking nested models and lists along ``loc``)."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or not (isinstance(current, type) and issubclass(current, BaseModel)):
            continue
        field = current.model_fields.get(str(part))
        if field is None:
            return []
        annotation = field.annotation
        for candidate in (annotation, *getattr(annotation, "__args__", ())):
            for inner in (candidate, *getattr(candidate, "__args__", ())):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    current = inner
                    break
    if isinstance(current, type) and issubclass(current, BaseModel):
        return sorted(current.model_fields)
    return []


def describe_error(error: dict, model: type[BaseModel] | None = None) -> str:
    """One problem of a pydantic error as ``key.path: message``, with the allowed values where there is a choice."""
    loc = tuple(error["loc"])
    key = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    if kind in ("literal_error", "enum"):
        message = f"got {error.get('input')!r}; allowed: {error['ctx']['expected']}"
    elif kind == "extra_forbidden":
        allowed = _fields_at(model, loc) if model is not None else []
        message = "unknown key (check its spelling and indentation)"
        if allowed:
            message += f"; allowed: {', '.join(allowed)}"
    elif kind == "missing":
        message = "required key is missing"
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        if "input" in error and not isinstance(error["input"], (dict, list)):
            message += f" (got {error['input']!r})"
    return f"{key}: {message}"


def validation_error(exc: ValidationError, where: str | Path | None = None, model: type[BaseModel] | None = None) -> RankdistillError:
    """The one-line error for a failed validation: ``where: key: problem; key: problem``."""
    problems = "; ".join(describe_error(e, model) for e in exc.errors())
    return RankdistillError(f"{where}: {problems}" if where else problems)


def validate(model: type[M], values: dict[str, Any], where: str | Path | None = None) -> M:
    """``model.model_validate(values)``, failing with :func:`validation_error`'s one line."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise validation_error(exc, where, model) from None
