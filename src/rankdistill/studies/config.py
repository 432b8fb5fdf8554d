"""A study's YAML: a base pipeline config and the variants to compare, each a set of overrides by dotted key.

::

    name: loss-study
    output: ../out/loss-study
    base: dl20-demo.yaml              # a pipeline YAML (relative to this file) or the pipeline mapping itself
    reference: base                   # the variant every other one is tested against (default: the first)
    variants:
      base: {}
      kl: {train.stages.0.loss: kl}
    grid:                             # and/or: every combination of these axes, named after their values
      train.stages.0.learning_rate: [2.0e-5, 1.0e-4]
    seeds: [0, 1]                     # fold split and training seed; each variant runs under each

Every variant runs with the same folds (the base's ``evaluate.cross_validation`` under each seed), so the keys that
fix them (and the output) belong to the study, not to a variant.
"""

from __future__ import annotations

import copy
import itertools
import re
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from rankdistill.errors import RankdistillError
from rankdistill.util.config import read_yaml_mapping, resolve_path, validate
from rankdistill.workflow.config import PipelineConfig, _resolve_paths, _Strict

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+=,-]*$")
# keys a variant may not change: the study fixes where it writes and which folds every variant is judged on
STUDY_KEYS = ("name", "output", "seed", "evaluate.cross_validation")


class StudyConfig(_Strict):
    name: str = "study"
    output: Path = Path("out/study")
    base: Path | dict[str, Any] = Field(..., description="The pipeline config every variant starts from.")
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="name -> {dotted key: value}; {} is the base itself."
    )
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted key -> values: one variant per "
                                       "combination, added after the named variants.")
    reference: str | None = Field(None, description="The variant the others are tested against (default: the first).")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1,
                             description="Fold split and training seed; every variant runs under each.")
    systems: list[str] = Field(default_factory=lambda: ["student"],
                               description="The report rows compared across variants (e.g. student+first-stage too).")
    measures: list[str] | None = Field(None, description="Columns of the table (default: the base's measures).")
    cache: Path | None = Field(None, description="The step cache (default <output>/cache); another study's cache "
                               "lends this one every step they share, e.g. a second seed of the same variants.")


@dataclass
class Variant:
    """One row of the study: its name, its overrides and, per seed, the pipeline config it runs."""

    name: str
    overrides: dict[str, Any]
    configs: dict[int, PipelineConfig]


@dataclass
class Study:
    config: StudyConfig
    variants: list[Variant]
    reference: str
    where: str  # the study file, for error messages

    @property
    def output(self) -> Path:
        return Path(self.config.output)


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model inside an annotation (``X | None``, ``list[X]``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for inner in typing.get_args(annotation):
        if (model := _model_of(inner)) is not None:
            return model
    return None


def _field(model: type[BaseModel], key: str) -> tuple[Any, list[str]]:
    """The field ``key`` names (by name or alias) and every spelling it is read under."""
    for name, field in model.model_fields.items():
        choices = getattr(field.validation_alias, "choices", None) or []
        spellings = [name, *(c for c in choices if isinstance(c, str) and c != name)]
        if key in spellings:
            return field, spellings
    return None, []


def apply_override(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in a raw pipeline mapping, checking each part against the config's schema.

    Raises:
        ValueError: a part that names no key (with the keys allowed there), or a list index out of range.
    """
    node: Any = raw
    model: type[BaseModel] | None = PipelineConfig
    parts = key.split(".")
    for i, part in enumerate(parts):
        here = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        if isinstance(node, list):
            parent = ".".join(parts[:i])
            if not part.isdigit():
                raise ValueError(f"{here}: {parent} is a list; give an index, e.g. {parent}.0.{'.'.join(parts[i:])}")
            if int(part) >= len(node):
                raise ValueError(f"{here}: {parent} has {len(node)} item(s), no index {part}")
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
            continue
        if model is None:  # a free mapping (backend options, loss arguments)
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
            continue
        field, spellings = _field(model, part)
        if field is None:
            raise ValueError(f"{here}: unknown key; allowed: {', '.join(sorted(model.model_fields))}")
        part = next((k for k in spellings if k in node), part)  # loss_options over loss_kwargs if the base uses it
        if last:
            node[part] = value
            return
        if node.get(part) is None:  # not in the file: its default, so that e.g. train.stages.0 exists
            default = field.get_default(call_default_factory=True)
            node[part] = [{} for _ in default] if isinstance(default, list) else {}
        node, model = node[part], _model_of(field.annotation)


def _value_name(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float)) else f"{value:g}"
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", str(text)).strip("-") or "x"


def _grid_variants(grid: dict[str, list[Any]]) -> list[tuple[str, dict[str, Any]]]:
    """Every combination of the axes, named ``loss=kl,learning_rate=0.0001`` after the keys' last parts."""
    if not grid:
        return []
    for key, values in grid.items():
        if len(values) < 2:
            raise ValueError(f"grid.{key}: an axis needs at least two values, got {values!r} (put a single value in "
                             "the base or a named variant)")
    short = [key.rsplit(".", 1)[-1] for key in grid]
    labels = short if len(set(short)) == len(short) else list(grid)
    out = []
    for combo in itertools.product(*grid.values()):
        name = ",".join(f"{label}={_value_name(v)}" for label, v in zip(labels, combo))
        out.append((name, dict(zip(grid, combo))))
    return out


def _base_mapping(cfg: StudyConfig, folder: Path) -> tuple[dict[str, Any], Path, str]:
    """The base pipeline as a raw mapping, the folder its relative paths are taken from, and its name for errors."""
    if isinstance(cfg.base, dict):
        return {str(k).replace("-", "_"): v for k, v in cfg.base.items()}, folder, "base"
    path = Path(resolve_path(cfg.base, folder))
    if not path.is_file():
        raise RankdistillError(f"base: {path} does not exist")
    return read_yaml_mapping(path), path.parent, str(path)


def resolve_study(cfg: StudyConfig, folder: Path, where: str = "study") -> Study:
    """Expand the variants and grid into one validated pipeline config per variant and seed."""
    raw_base, base_folder, base_name = _base_mapping(cfg, folder)
    named = list(cfg.variants.items())
    try:
        gridded = _grid_variants(cfg.grid)
    except ValueError as exc:
        raise RankdistillError(f"{where}: {exc}") from None
    entries = named + gridded
    if not entries:
        raise RankdistillError(f"{where}: no variants: give 'variants' (e.g. base: {{}}) and/or a 'grid'")
    names = [n for n, _ in entries]
    for name in names:
        if not _NAME.match(name):
            raise RankdistillError(f"{where}: variant name {name!r}: use letters, digits and _ . + = , - (it names a "
                                   "folder)")
    if len(set(names)) != len(names):
        raise RankdistillError(f"{where}: variant names must be unique, got {names}")
    reference = cfg.reference if cfg.reference is not None else names[0]
    if reference not in names:
        raise RankdistillError(f"{where}: reference: {reference!r} is not a variant (variants: {', '.join(names)})")
    output = Path(resolve_path(cfg.output, folder))
    variants = []
    for name, overrides in entries:
        prefix = f"variants.{name}" if name in cfg.variants else "grid"
        for key in overrides:
            if key in STUDY_KEYS or any(key.startswith(k + ".") for k in STUDY_KEYS):
                raise RankdistillError(f"{where}: {prefix}: {key}: fixed by the study (every variant runs with the same "
                                       "folds and output); set 'seeds' or 'output' in the study instead")
        configs = {}
        for seed in cfg.seeds:
            raw = copy.deepcopy(raw_base)
            for key, value in overrides.items():
                try:
                    apply_override(raw, key, value)
                except ValueError as exc:
                    raise RankdistillError(f"{where}: {prefix}: {exc}") from None
            raw.update(name=f"{cfg.name}/{name}", seed=seed, output=str(variant_folder(output, name, seed, cfg.seeds)))
            pipeline = validate(PipelineConfig, raw, f"{where}: {prefix} (on {base_name})")
            configs[seed] = _resolve_paths(pipeline, base_folder)
        variants.append(Variant(name, dict(overrides), configs))
    cache = Path(resolve_path(cfg.cache, folder)) if cfg.cache is not None else output / "cache"
    cfg = cfg.model_copy(update={"output": output, "cache": cache})
    return Study(cfg, variants, reference, where)


def variant_folder(output: Path, name: str, seed: int, seeds: list[int]) -> Path:
    """``<output>/variants/<name>`` (``/seed-<s>`` below it when the study has several seeds)."""
    folder = Path(output) / "variants" / name
    return folder / f"seed-{seed}" if len(seeds) > 1 else folder


def load_study(path: str | Path) -> Study:
    """Read, validate and expand a study YAML; errors are one line naming the key."""
    path = Path(path)
    cfg = validate(StudyConfig, read_yaml_mapping(path), path)
    return resolve_study(cfg, path.parent, str(path))
