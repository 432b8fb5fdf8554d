"""``rankdistill study STUDY.yaml``: every variant's pipeline with the same folds, shared steps run once, one table.

Each variant (and seed) is an ordinary pipeline under ``<output>/variants/<name>/``; a step cache under
``<output>/cache/`` (:mod:`rankdistill.workflow.cache`) hands a step that another variant already finished on the
same inputs and options to the next one. ``study.json`` records each finished variant with the hash of its config:
a rerun after a kill skips those, and the unfinished one continues from its own manifests and checkpoints.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rankdistill.data.trec import read_run
from rankdistill.errors import RankdistillError
from rankdistill.studies.config import Study, Variant, load_study
from rankdistill.studies.table import (
    against_baselines,
    build_table,
    curve_plot,
    markdown,
    plot,
    read_metrics,
    to_json,
)
from rankdistill.util.files import atomic_write
from rankdistill.util.lock import output_lock
from rankdistill.workflow.cache import StepCache
from rankdistill.workflow.manifest import hash_config
from rankdistill.workflow.runner import EventHandler, run_pipeline

STATE = "study.json"


@dataclass
class StudyResult:
    output: Path
    ran: list[str] = field(default_factory=list)  # "<variant>" or "<variant>@seed-<s>", run by this call
    done_earlier: list[str] = field(default_factory=list)  # finished by an earlier call, not run again
    steps: dict[str, dict[str, int]] = field(default_factory=dict)  # run key -> {"ran", "reused", "up to date"}
    table: Path | None = None  # table.md
    plot: Path | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # table.json's rows


def _key(variant: Variant, seed: int, seeds: list[int]) -> str:
    return variant.name if len(seeds) == 1 else f"{variant.name}@seed-{seed}"


def _fingerprint(variant: Variant, seed: int) -> str:
    """What decides a variant's results: its config without its name and folder."""
    dump = variant.configs[seed].model_dump(mode="json", exclude_defaults=True)  # a new key's default changes nothing
    dump.pop("name", None), dump.pop("output", None)
    return hash_config(dump)


def _finished(state: dict[str, Any], variant: Variant, seed: int, seeds: list[int]) -> dict[str, Any] | None:
    """The state entry of a variant finished with its present config (and its metrics still there), else None."""
    saved = state["variants"].get(_key(variant, seed, seeds))
    if saved and saved["fingerprint"] == _fingerprint(variant, seed) and read_metrics(Path(variant.configs[seed].output)):
        return saved
    return None


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"variants": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:  # written atomically, so only a hand edit gets here
        raise RankdistillError(f"{path}: not valid JSON; delete it to rerun every variant") from None


def _eta(seconds: list[float], left: int) -> str:
    """Time for the ``left`` variants still to run, from the wall times of those run so far. The first variant run
    also computes the steps that later ones take from the cache, so it is left out once another has run."""
    if not seconds or not left:
        return ""
    typical = seconds[1:] or seconds
    eta = sum(typical) / len(typical) * left
    return f"; ETA {eta / 60:.0f} min for {left} left" if eta >= 60 else f"; ETA {eta:.0f} s for {left} left"


def _chosen(study: Study, only: list[str] | None) -> list[Variant]:
    """The variants ``only`` names, and the reference; every variant when ``only`` is None."""
    names = [v.name for v in study.variants]
    unknown = sorted(set(only or []) - set(names))
    if unknown:
        raise RankdistillError(f"only: no variant {unknown[0]!r} (variants: {', '.join(names)})")
    return [v for v in study.variants if only is None or v.name in only or v.name == study.reference]


def run_study(study: Study, *, only: list[str] | None = None, on_event: EventHandler | None = None) -> StudyResult:
    """Run (or continue) every variant of ``study`` and write its table; see :func:`study`."""
    seeds = study.config.seeds
    chosen = _chosen(study, only)
    out = study.output
    out.mkdir(parents=True, exist_ok=True)
    notify: Callable[[str, str], None] = on_event or (lambda event, text: None)
    result = StudyResult(out)
    with output_lock(out, "study"):
        state = _read_state(out / STATE)
        todo = [(v, s) for v in chosen for s in seeds]
        cache = StepCache(study.config.cache)
        durations: list[float] = []
        for i, (variant, seed) in enumerate(todo, 1):
            key = _key(variant, seed, seeds)
            saved = _finished(state, variant, seed, seeds)
            if saved:
                notify("up to date", f"variant {i}/{len(todo)} {key}: finished earlier")
                result.done_earlier.append(key)
                result.steps[key] = saved["steps"]
                continue
            notify("running", f"variant {i}/{len(todo)} {key}")
            start = time.perf_counter()
            run = run_pipeline(variant.configs[seed], cache=cache,
                               on_event=lambda event, text, key=key: notify(event, f"{key}: {text}"))
            durations.append(time.perf_counter() - start)
            steps = {"ran": len(run.ran), "reused": len(run.reused), "up to date": len(run.skipped)}
            state["variants"][key] = {
                "fingerprint": _fingerprint(variant, seed), "variant": variant.name, "seed": seed, "overrides": variant.overrides,
                "steps": steps, "costs": run.costs, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            with atomic_write(out / STATE) as handle:
                json.dump(state, handle, indent=2, default=str)
            result.ran.append(key)
            result.steps[key] = steps
            left = sum(1 for v, s in todo[i:] if not _finished(state, v, s, seeds))  # not those finished earlier
            notify("note", f"variant {i}/{len(todo)} {key}: done in {durations[-1]:.0f} s ({steps['ran']} steps run, "
                           f"{steps['reused']} reused from other variants){_eta(durations, left)}")
            _write_table(study, state, result)  # after every variant: a stopped study has its table so far
        if not result.ran:  # every variant finished earlier: the table as it stands
            _write_table(study, state, result)
    return result


def curves(study: Study, finished: list[str]) -> dict[str, list[tuple[float, str]]]:
    """Numeric keys that some finished variants change alone (e.g. ``train.queries``): key -> (value, variant), the
    reference at its own value, when there are at least three points to draw."""
    out: dict[str, list[tuple[float, str]]] = {}
    for v in study.variants:
        if v.name in finished and len(v.overrides) == 1:
            (key, value), = v.overrides.items()
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                out.setdefault(key, []).append((float(value), v.name))
    reference = next(v for v in study.variants if v.name == study.reference)
    for key, points in list(out.items()):
        config = reference.configs[study.config.seeds[0]]
        own = _value_at(config.model_dump(), key)
        if own is None and key == "train.queries":  # all of the first fold's training queries: drawn at their number
            trained = sorted(Path(config.output).glob("students/*/first-stage.train.run"))
            own = len(read_run(trained[0])) if trained else None
        if isinstance(own, (int, float)) and own not in [x for x, _ in points]:
            points.append((float(own), reference.name))
        if len(points) < 3:
            del out[key]
        else:
            points.sort()
    return out


def _value_at(dump: Any, key: str) -> Any:
    for part in key.split("."):
        if isinstance(dump, list) and part.isdigit() and int(part) < len(dump):
            dump = dump[int(part)]
        elif isinstance(dump, dict) and part in dump:
            dump = dump[part]
        else:
            return None
    return dump


def _write_table(study: Study, state: dict[str, Any], result: StudyResult) -> None:
    """The table of every variant finished with its present config, whichever call ran it (``--only`` adds rows)."""
    seeds = study.config.seeds
    metrics: dict[str, list[dict]] = {}
    costs: dict[str, dict[str, float]] = {}
    for v in study.variants:
        entries = [_finished(state, v, s, seeds) for s in seeds]
        if not all(entries):
            continue  # not run yet, or its config changed since: rerun it to have its row
        metrics[v.name] = [read_metrics(Path(v.configs[s].output)) for s in seeds]
        costs[v.name] = {
            "cpu_seconds": sum(c["cpu_seconds"] for e in entries for c in e["costs"].values()),
            "steps_run": sum(e["steps"]["ran"] for e in entries),
            "steps_reused": sum(e["steps"]["reused"] for e in entries),
        }
    if study.reference not in metrics:
        return
    base = study.variants[0].configs[seeds[0]]
    measures = study.config.measures
    columns, rows = build_table(metrics, study.reference, study.config.systems, measures, base.evaluate.test, costs)
    out = study.output
    result.table = out / "table.md"
    with atomic_write(result.table) as handle:
        handle.write(f"# {study.config.name}\n\n{len(metrics)} of {len(study.variants)} variants, seeds "
                     f"{', '.join(map(str, seeds))}\n\n")
        handle.write(markdown(columns, rows, study.reference, base.evaluate.test))
        handle.write(f"\n## Each variant against its own baselines\n\nDifference of the mean and paired "
                     f"{base.evaluate.test} p, Holm-corrected over the variants of a column; † p < 0.05.\n\n")
        handle.write(against_baselines(metrics, columns, base.evaluate.test))
    table = to_json(columns, rows)
    with atomic_write(out / "table.json") as handle:
        json.dump(table, handle, indent=2)
    result.rows = table["rows"]
    if columns:
        result.plot = out / "table.png"
        with atomic_write(result.plot, "wb") as handle:
            handle.write(plot(columns, rows))
        for key, points in curves(study, list(metrics)).items():  # e.g. train.queries: a learning curve
            with atomic_write(out / f"curve-{key}.png", "wb") as handle:
                handle.write(curve_plot(key, points, columns, rows))


def study(config: str | Path | Study, *, only: list[str] | None = None, dry_run: bool = False,
          on_event: EventHandler | None = None) -> StudyResult:
    """Run a study: every variant of a base pipeline on the same folds, shared steps once, and a table.

    Args:
        config: a study YAML (see :mod:`rankdistill.studies.config`) or a loaded :class:`Study`.
        only: run just these variants (and the reference); the table covers every finished variant.
        dry_run: validate each chosen variant's config and plan its steps without running any.
        on_event: called with ``(event, text)`` for each variant and step (as ``pipeline``'s).

    Returns:
        A :class:`StudyResult`: variants run now and earlier, step counts, the table and plot paths.

    Raises:
        RankdistillError: a bad study (unknown key in an override, an axis with one value, a missing reference) or a
            variant's own pipeline error.
    """
    s = config if isinstance(config, Study) else load_study(config)
    if dry_run:
        result = StudyResult(s.output)
        for v in _chosen(s, only):
            for seed in s.config.seeds:
                key = _key(v, seed, s.config.seeds)
                run_pipeline(v.configs[seed], dry_run=True,
                             on_event=on_event and (lambda event, text, key=key: on_event(event, f"{key}: {text}")))
                result.ran.append(key)
        return result
    return run_study(s, only=only, on_event=on_event)
