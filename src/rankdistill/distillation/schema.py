"""The distillation set on disk: its columns, its one writer (:func:`write_set`) and its one reader
(:func:`read_set`; :func:`listwise_lists` and the trainer read through it).

One parquet file, one row per (query, candidate), rows grouped by query and ordered by ``position`` (0-based;
target descending). ``COLUMNS`` is the contract between ``rankdistill build`` and everything that reads a set
(training, notebooks); the parquet key-value metadata under ``METADATA_KEY`` holds the build config, the sources
and the counts as JSON.

A set built from several candidate sources (``sources``) holds one list per (query, source): ``source`` names it
and ``position`` restarts at 0 in each; a list is the rows of one (qid, source), a single-source set's ``source``
is null. A fused list (``merge: rrf``) may give a passage several teacher-window ranges, one per source that ranked
it: ``window_ranges`` then holds all of them, flattened ``[first, last, first, last, ...]``, with each source's
windows numbered apart from the others' (so ranges of two sources never overlap), and ``window_first``/
``window_last`` its first range; a passage with one range or none leaves ``window_ranges`` null.

Sets written before ``pairs: compared`` or ``sources`` existed lack those columns: the reader gives them as nulls,
which means "no window" (every pair is learnt) and "one source". Only ``REQUIRED_COLUMNS`` must be present for a
file to be read, so a set written by another tool with those columns trains too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rankdistill.errors import RankdistillError

METADATA_KEY = b"rankdistill"


class Column(NamedTuple):
    name: str
    type: str  # a pyarrow type name: string, float64, int32, or list<int32>
    nullable: bool
    doc: str


COLUMNS: tuple[Column, ...] = (
    Column("qid", "string", False, "query id"),
    Column("query", "string", False, "query text"),
    Column("docid", "string", False, "passage id"),
    Column("passage", "string", False, "passage text"),
    Column("target", "float64", False, "what the student learns, higher = better"),
    Column("teacher_rank", "int32", True, "1-based rank in the teacher run (null: not in it)"),
    Column("teacher_score", "float64", True, "score in the teacher run"),
    Column("first_stage_rank", "int32", True, "1-based rank in the first-stage run"),
    Column("first_stage_score", "float64", True, "score in the first-stage run"),
    Column("relevance", "int32", True, "qrels grade (null: unjudged)"),
    Column("position", "int32", False, "0-based place in the query's list"),
    # pairs 'compared': the first and last teacher window that held the passage (0 = the first, bottom one)
    Column("window_first", "int32", True, "first teacher window holding the passage (null: none)"),
    Column("window_last", "int32", True, "last teacher window holding the passage (null: none)"),
    Column("window_ranges", "list<int32>", True, "every (first, last) window range, flattened, when there are "
                                                 "several (a fused list; null: window_first/window_last say it)"),
    Column("source", "string", True, "the candidate source the list comes from (null: a single-source set)"),
)
COLUMN_NAMES = tuple(c.name for c in COLUMNS)
REQUIRED_COLUMNS = ("qid", "query", "passage", "target", "position")  # what a student trains on
WINDOW_COLUMNS = ("window_first", "window_last")  # absent from sets built before pairs 'compared'
OPTIONAL_COLUMNS = (*WINDOW_COLUMNS, "window_ranges", "source")  # absent from older sets: read as nulls
LIST_KEY = ("qid", "source")  # the columns that name a list
_TYPES = {c.name: c.type for c in COLUMNS}


def _arrow_type(name: str):
    """A pyarrow type from its ``COLUMNS`` name (``type_for_alias`` knows no list types)."""
    import pyarrow as pa

    if name.startswith("list<") and name.endswith(">"):
        return pa.list_(_arrow_type(name[5:-1]))
    return pa.type_for_alias(name)


def arrow_schema(metadata: Mapping[str, Any] | None = None):
    """The pyarrow schema of a set, with ``metadata`` as JSON under ``METADATA_KEY``."""
    import pyarrow as pa

    schema = pa.schema([pa.field(c.name, _arrow_type(c.type), nullable=c.nullable) for c in COLUMNS])
    if metadata is not None:
        schema = schema.with_metadata({METADATA_KEY: json.dumps(metadata).encode("utf-8")})
    return schema


def write_set(rows: Sequence[Mapping[str, Any]], path: str | Path, metadata: Mapping[str, Any]) -> Path:
    """Write ``rows`` (dicts keyed by ``COLUMN_NAMES``) as a set, atomically.

    Args:
        rows: One dict per (query, candidate), grouped by query, in ``position`` order.
        path: The parquet file to write.
        metadata: JSON-able description of the set (config, sources, counts).

    Returns:
        ``path``.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rankdistill.util.files import atomic_path

    table = pa.Table.from_pylist(list(rows), schema=arrow_schema(metadata))
    out = Path(path)
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return out


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON the builder stored in the parquet (config, sources, counts).

    Raises:
        RankdistillError: ``path`` is missing, not parquet, or was not written by ``build``.
    """
    meta = _schema(path).metadata or {}
    if METADATA_KEY not in meta:
        raise RankdistillError(f"{path}: not a rankdistill distillation set (no 'rankdistill' metadata)")
    return json.loads(meta[METADATA_KEY])


def read_set(path: str | Path, qids: Iterable[str] | None = None, columns: Iterable[str] | None = None):
    """A set as a pyarrow Table, rows in file order.

    Args:
        path: The parquet file.
        qids: Only these queries (all when None).
        columns: Only these columns, in this order (all the file holds when None). ``OPTIONAL_COLUMNS`` a file
            lacks come back as nulls.

    Returns:
        A ``pyarrow.Table`` with the contract's column types.

    Raises:
        RankdistillError: The file is missing or not parquet, lacks a required or asked-for column, or holds a
            column of a type that does not convert to the contract's.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = _schema(path).names
    wanted = list(dict.fromkeys(columns)) if columns is not None else [*names, *(c for c in OPTIONAL_COLUMNS if c not in names)]
    missing = [c for c in dict.fromkeys([*REQUIRED_COLUMNS, *wanted]) if c not in names and c not in OPTIONAL_COLUMNS]
    if missing:
        raise RankdistillError(f"{path}: missing column(s) {', '.join(missing)}; expected the output of `rankdistill build`")
    table = pq.read_table(path, columns=[c for c in wanted if c in names])
    for name in wanted:
        if name not in table.column_names:  # an optional column of an older set
            kind = _arrow_type(_TYPES[name])
            table = table.append_column(pa.field(name, kind), pa.nulls(table.num_rows, kind))
    table = _contract_types(table.select(wanted), path)
    if qids is not None:
        table = table.filter(pc.is_in(table["qid"], value_set=pa.array([str(q) for q in qids], type=pa.string())))
    return table


def listwise_lists(path: str | Path, qids: Iterable[str] | None = None, column: str = "target") -> dict[str, list]:
    """Columns ``query``, ``docs``, ``labels`` (one row per list, i.e. per (query, source), in ``position`` order).

    This is the input sentence-transformers' listwise losses expect: wrap it in
    ``datasets.Dataset.from_dict`` — keep the columns in this order and add no other (the collator
    passes every non-label column to the loss).

    Raises:
        RankdistillError: The file is not a set (see :func:`read_set`) or a
            list's rows are out of ``position`` order.
    """
    table = read_set(path, qids, columns=(*LIST_KEY, "query", "passage", "position", column)).to_pydict()
    out: dict[str, list] = {"query": [], "docs": [], "labels": []}
    index: dict[tuple[str, str | None], int] = {}
    for qid, source, query, passage, pos, value in zip(table["qid"], table["source"], table["query"], table["passage"],
                                                       table["position"], table[column], strict=True):
        key = (qid, source)
        if key not in index:
            index[key] = len(out["query"])
            out["query"].append(query)
            out["docs"].append([])
            out["labels"].append([])
        i = index[key]
        if pos != len(out["docs"][i]):
            where = f"query {qid!r}" + (f" of source {source!r}" if source is not None else "")
            raise RankdistillError(f"{path}: {where} rows are not in position order")
        out["docs"][i].append(passage)
        out["labels"][i].append(float(0 if value is None else value))
    return out


def _schema(path: str | Path):
    import pyarrow.parquet as pq

    if not Path(path).is_file():
        raise RankdistillError(f"{path}: no such distillation set (make one with `rankdistill build`)")
    try:
        return pq.read_schema(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise RankdistillError(f"{path}: not a parquet file ({exc})") from exc


def _contract_types(table, path: str | Path):
    """Columns of another type (a set written by another tool) cast to the contract's; the rest untouched."""
    import pyarrow as pa

    for i, field in enumerate(table.schema):
        wanted = _TYPES.get(field.name)
        if wanted is None or field.type == _arrow_type(wanted):
            continue
        try:
            kind = _arrow_type(wanted)
            table = table.set_column(i, pa.field(field.name, kind), table.column(i).cast(kind))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise RankdistillError(f"{path}: column {field.name!r} is {field.type}, expected {wanted} ({exc})") from None
    return table
