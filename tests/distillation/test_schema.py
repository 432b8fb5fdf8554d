"""The distillation set on disk: one writer, one reader (old sets and other tools' files included), and the
options every way into ``build`` shares."""

from __future__ import annotations

import inspect

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.data import write_set

from rankdistill.distillation.options import NEGATIVES, PAIRS, TARGETS, BuildConfig, SamplingOptions
from rankdistill.distillation.sampling import SAMPLINGS, STRATEGIES
from rankdistill.distillation.schema import (
    COLUMN_NAMES,
    REQUIRED_COLUMNS,
    WINDOW_COLUMNS,
    arrow_schema,
    listwise_lists,
    read_metadata,
    read_set,
    write_set as write_distillation_set,
)
from rankdistill.errors import RankdistillError


def test_written_and_read_back_with_its_metadata(tmp_path):
    row = {"qid": "q1", "query": "q", "docid": "d1", "passage": "p", "target": 2.0, "teacher_rank": 1,
           "teacher_score": 0.5, "first_stage_rank": 3, "first_stage_score": 1.5, "relevance": None, "position": 0,
           "window_first": 0, "window_last": 1, "window_ranges": [0, 1, 9, 10], "source": "bm25"}
    path = write_distillation_set([row], tmp_path / "s.parquet", {"counts": {"rows": 1}})
    assert pq.read_schema(path).remove_metadata() == arrow_schema()
    assert read_set(path).to_pylist() == [row]
    assert read_metadata(path) == {"counts": {"rows": 1}}
    assert not list(tmp_path.glob("*.tmp"))


def test_an_old_set_without_windows_reads_with_null_windows(tmp_path):
    path = write_set(tmp_path / "old.parquet")  # the columns before pairs 'compared', no metadata
    table = read_set(path)
    assert table.column_names == list(COLUMN_NAMES)
    assert table["window_first"].null_count == table.num_rows and table["window_last"].type == pa.int32()
    assert read_set(path, columns=("qid", *WINDOW_COLUMNS)).column_names == ["qid", *WINDOW_COLUMNS]
    assert table["source"].null_count == table["window_ranges"].null_count == table.num_rows  # one source, no ranges
    lists = listwise_lists(path, qids=["q1"])
    assert lists["labels"] == [[8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0]] and len(lists["docs"][0]) == 8
    with pytest.raises(RankdistillError, match="old.parquet: not a rankdistill distillation set"):
        read_metadata(path)


def test_the_reader_names_the_file_and_what_is_wrong(tmp_path):
    with pytest.raises(RankdistillError, match=r"none\.parquet: no such distillation set"):
        read_set(tmp_path / "none.parquet")
    (tmp_path / "text.parquet").write_text("not parquet")
    with pytest.raises(RankdistillError, match=r"text\.parquet: not a parquet file"):
        read_set(tmp_path / "text.parquet")
    pq.write_table(pa.table({"qid": ["1"], "query": ["q"], "passage": ["p"]}), tmp_path / "bad.parquet")
    with pytest.raises(RankdistillError, match=r"bad\.parquet: missing column\(s\) target, position"):
        read_set(tmp_path / "bad.parquet")
    with pytest.raises(RankdistillError, match=r"old\.parquet: missing column\(s\) nonsense"):
        read_set(write_set(tmp_path / "old.parquet"), columns=["qid", "nonsense"])
    pq.write_table(pa.table({"qid": ["1"], "query": ["q"], "passage": ["p"], "target": ["high"], "position": [0]}),
                   tmp_path / "typed.parquet")
    with pytest.raises(RankdistillError, match=r"typed\.parquet: column 'target' is string, expected float64"):
        read_set(tmp_path / "typed.parquet")


def test_other_tools_types_are_cast_to_the_contract(tmp_path):
    pq.write_table(pa.table({"qid": ["1", "1"], "query": ["q", "q"], "passage": ["a", "b"],
                             "target": pa.array([2, 1], pa.int64()), "position": pa.array([0, 1], pa.int64())}),
                   tmp_path / "other.parquet")
    table = read_set(tmp_path / "other.parquet", columns=REQUIRED_COLUMNS)
    assert table.schema.field("target").type == pa.float64() and table.schema.field("position").type == pa.int32()
    assert table["target"].to_pylist() == [2.0, 1.0]


def test_one_list_of_names_and_defaults_for_every_way_in():
    assert SAMPLINGS == tuple(STRATEGIES)
    for name, allowed in (("sampling", SAMPLINGS), ("targets", TARGETS), ("negatives", NEGATIVES), ("pairs", PAIRS)):
        annotation = BuildConfig.model_fields[name].annotation
        assert annotation.__args__ == allowed, name
    # SamplingOptions is the part of BuildConfig a training stage sets
    assert set(SamplingOptions.model_fields) == {"targets", "sampling", "depth", "sample_size", "cross_negatives", "pairs"}
    assert issubclass(BuildConfig, SamplingOptions)
    # build() and the CLI default to the options' defaults
    from rankdistill.commands.build import build_command
    from rankdistill.distillation.builder import build

    for function in (build, build_command):
        for name, parameter in inspect.signature(function).parameters.items():
            if name in BuildConfig.model_fields and not BuildConfig.model_fields[name].is_required():
                assert parameter.default == BuildConfig.model_fields[name].default, (function.__name__, name)
