"""Shared fixtures: the offline data in ../shared/data (tests skip with a reason when it is absent)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("RANKDISTILL_SHARED_DATA", ROOT.parent / "shared" / "data"))
DL20 = SHARED / "msmarco-dl20"


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Derived stores go to a per-session temp folder, never to the user's cache."""
    monkeypatch.setenv("RANKDISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "rankdistill-cache"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"offline data folder {SHARED} is absent (set RANKDISTILL_SHARED_DATA to it)")
    return SHARED


@pytest.fixture(scope="session")
def dl20(shared_data) -> Path:
    return shared_data / "msmarco-dl20"


def pytest_configure(config):
    """ir_datasets fixes IR_DATASETS_HOME at import: point it at a private, writable copy first."""
    if (SHARED / "ir_datasets").is_dir() and "ir_datasets" not in __import__("sys").modules:
        import tempfile

        home = Path(tempfile.mkdtemp(prefix="rankdistill-irds-")) / "ir_datasets"
        shutil.copytree(SHARED / "ir_datasets", home)
        for path in [home, *home.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
        os.environ["IR_DATASETS_HOME"] = str(home)
        os.environ.setdefault("IR_DATASETS_DL_TRIES", "1")


@pytest.fixture(scope="session")
def irds_home(shared_data) -> Path:
    """The private IR_DATASETS_HOME copy set up in pytest_configure."""
    return Path(os.environ["IR_DATASETS_HOME"])


@pytest.fixture()
def cli_error(capsys):
    """Run the CLI on argv expecting a user error: exit 2, one message, no traceback; returns the message."""
    from rankdistill.cli import main

    def run(argv) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err
        return " ".join(err.split())

    return run
