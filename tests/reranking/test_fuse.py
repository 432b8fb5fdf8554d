"""Fusing runs over the same candidates by per-query z-scores (``rankdistill fuse``, ``fuse_runs``): values by hand,
the first run's tail kept, and errors that name the run and query that cannot be fused."""

from __future__ import annotations

import math

import pytest

from rankdistill.cli import main
from rankdistill.data.trec import read_run, write_run
from rankdistill.errors import RankdistillError
from rankdistill.reranking.fusion import fuse_runs

A = {"q1": [("a", 3.0), ("b", 2.0), ("c", 1.0), ("t", 0.5)], "q2": [("x", 10.0), ("y", 0.0)]}
B = {"q1": [("c", 30.0), ("a", 20.0), ("b", 10.0)], "q2": [("y", 5.0), ("x", 1.0)]}
SD3 = math.sqrt(2 / 3)  # population sd of three equally spaced scores, spacing 1


def test_two_runs_fused_by_hand_with_the_tail_kept():
    fused = fuse_runs([A, B], depth=3)
    # q1 top 3: z(A) = (1, 0, -1)/SD3 for a, b, c; z(B) = (0, -1, 1)/SD3 -> a 1/SD3, b -1/SD3, c 0
    q1 = dict(fused["q1"])
    assert [d for d, _ in fused["q1"]] == ["a", "c", "b", "t"]
    assert q1["a"] == pytest.approx(1 / SD3) and q1["c"] == pytest.approx(0.0) and q1["b"] == pytest.approx(-1 / SD3)
    assert q1["t"] < q1["b"]  # the first run's document below the depth stays, below the fused top
    # q2: z(A) = (1, -1) for x, y; z(B) = (-1, 1): a tie, kept in the first run's order
    assert [d for d, _ in fused["q2"]] == ["x", "y"] and dict(fused["q2"])["x"] == pytest.approx(0.0)


def test_weights_change_the_order_as_computed():
    fused = fuse_runs([A, B], weights=[1.0, 3.0], depth=3)
    q1 = dict(fused["q1"])  # a: 1 + 0, b: 0 - 3, c: -1 + 3 (over SD3)
    assert [d for d, _ in fused["q1"]][:3] == ["c", "a", "b"]
    assert q1["c"] == pytest.approx(2 / SD3) and q1["b"] == pytest.approx(-3 / SD3)
    assert [d for d, _ in fuse_runs([A, B], weights=[1.0, 0.0], depth=3)["q1"]][:3] == ["a", "b", "c"]


def test_what_cannot_be_fused_is_named():
    with pytest.raises(RankdistillError, match="at least two runs"):
        fuse_runs([A])
    with pytest.raises(RankdistillError, match="2 weights for 3 runs"):
        fuse_runs([A, B, B], weights=[1, 1])
    with pytest.raises(RankdistillError, match="fusion: each weight must be a finite number >= 0, got -1"):
        fuse_runs([A, B], weights=[1, -1])
    with pytest.raises(RankdistillError, match=r"student\.run has no score for 1 of the 4 documents of query q1 .*'t'"):
        fuse_runs([A, B], depth=4, names=["bm25.run", "student.run"])
    with pytest.raises(RankdistillError, match="other has no results for query q2"):
        fuse_runs([A, {"q1": B["q1"]}], depth=3, names=["first", "other"])


def test_the_command_writes_the_fused_run(tmp_path, cli_error):
    write_run(A, tmp_path / "a.run")
    write_run(B, tmp_path / "b.run")
    main(["fuse", str(tmp_path / "a.run"), str(tmp_path / "b.run"), "-o", str(tmp_path / "f.run"), "-k", "3",
          "-w", "1", "-w", "3"])
    written = read_run(tmp_path / "f.run")
    expected = fuse_runs([A, B], weights=[1.0, 3.0], depth=3)
    assert {q: [d for d, _ in r] for q, r in written.items()} == {q: [d for d, _ in r] for q, r in expected.items()}
    assert (tmp_path / "f.run").read_text().split("\n")[0].endswith("rankdistill-fused")
    message = cli_error(["fuse", str(tmp_path / "a.run"), str(tmp_path / "missing.run"), "-o", str(tmp_path / "g.run")])
    assert "missing.run: no such run file" in message
    message = cli_error(["fuse", str(tmp_path / "a.run"), str(tmp_path / "b.run"), "-o", str(tmp_path / "g.run")])
    assert "b.run has no score for 1 of the 4 documents of query q1" in message


def test_the_command_reads_a_config_file_whose_paths_are_its_own_and_flags_win(tmp_path, cli_error):
    folder = tmp_path / "runs"
    folder.mkdir()
    write_run(A, folder / "a.run")
    write_run(B, folder / "b.run")
    config = folder / "fuse.yaml"
    config.write_text("runs: [a.run, b.run]\noutput: f.run\ndepth: 3\nweight: [1, 3]\n")
    main(["fuse", "--config", str(config)])
    expected = fuse_runs([A, B], weights=[1.0, 3.0], depth=3)
    order = {q: [d for d, _ in r] for q, r in expected.items()}
    assert {q: [d for d, _ in r] for q, r in read_run(folder / "f.run").items()} == order  # beside the file
    main(["fuse", "--config", str(config), "-w", "1", "-w", "0", "-o", str(tmp_path / "g.run")])  # flags win
    assert [d for d, _ in read_run(tmp_path / "g.run")["q1"]][:3] == ["a", "b", "c"]

    config.write_text("runs: [a.run, b.run]\noutput: f.run\nweights: [1, 3]\n")
    assert "weights" in cli_error(["fuse", "--config", str(config)])  # a misspelt key is named, not ignored
    config.write_text("runs: [a.run, b.run]\noutput: f.run\ndepth: 0\n")
    assert "depth" in cli_error(["fuse", "--config", str(config)])
    config.write_text("output: f.run\n")
    assert "fuse.yaml: no 'runs:'" in cli_error(["fuse", "--config", str(config)])
    config.write_text("runs: [a.run, b.run]\n")
    assert "fuse.yaml: no 'output:'" in cli_error(["fuse", "--config", str(config)])
    assert "name two or more RUN files" in cli_error(["fuse", "-o", str(tmp_path / "h.run")])
