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


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """A YAML file of ``key: value`` options (``-`` in top-level keys read as ``_``); bad YAML names file:line."""
    path = Path(path)
    if not path.is_file():
        raise RankdistillError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise RankdistillError(f"{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    except UnicodeDecodeError as exc:
        raise RankdistillError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RankdistillError(f"{path}: expected a mapping of keys at the top level")
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
