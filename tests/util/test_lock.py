"""One writer per output folder: the lock names its holder, is re-entrant within a process, dies with its holder."""

from __future__ import annotations

import signal
import subprocess
import sys
import os

import pytest

from rankdistill.errors import OutputLockedError, RankdistillError
from rankdistill.util.lock import LOCK_NAME, output_lock

HOLD = "import sys, time; from rankdistill.util.lock import output_lock\n" \
       "with output_lock(sys.argv[1], 'test'):\n    print('held', flush=True); time.sleep(60)\n"


def _holder(folder) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_process_is_refused_with_the_holders_pid_until_the_holder_is_killed(tmp_path):
    holder = _holder(tmp_path / "out")
    try:
        with pytest.raises(OutputLockedError) as refused:
            with output_lock(tmp_path / "out", "pipeline"):
                pass
        assert isinstance(refused.value, RankdistillError)
        message = str(refused.value)
        assert f"{tmp_path / 'out'} is in use by another process (pid {holder.pid})" in message
        assert "this pipeline stops" in message and "\n" not in message
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    with output_lock(tmp_path / "out", "pipeline") as path:  # the kernel released the dead holder's lock
        assert path.name == LOCK_NAME and path.read_text().strip() == str(os.getpid())


def test_the_lock_is_reentrant_within_a_process_and_released_after(tmp_path):
    with output_lock(tmp_path, "pipeline"):
        with output_lock(tmp_path, "teach"):  # e.g. a pipeline running teach in-process on its own folder
            pass
        proc = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(60)", "pass"), str(tmp_path)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and "OutputLockedError" in proc.stderr  # still held after the inner block
    holder = _holder(tmp_path)  # another process gets it: free again once the outer block ends
    holder.kill()
    holder.wait(timeout=10)
