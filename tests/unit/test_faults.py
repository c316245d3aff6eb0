"""The chaos suite's fault points: armed only by KIRANA_FAULTS, a kill only on a first delivery."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from tasks import faults

_RUN = """
import celery
from celery._state import _task_stack
from tasks import faults
app = celery.Celery("faults")
def noop():
    pass
task = app.task(name="noop", shared=False)(noop)
app.finalize()
task = app.tasks["noop"]
task.push_request(delivery_info={{"redelivered": {redelivered}}})
_task_stack.push(task)
faults.kill_here(faults.KILL_BEFORE_DISPATCH)
print("alive")
"""


def _run(redelivered: bool, armed: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _RUN.format(redelivered=redelivered)], check=False,
                          capture_output=True,
                          text=True, timeout=60, env={"KIRANA_FAULTS": armed, "PATH": "/usr/bin:/bin",
                                                      "PYTHONPATH": "."})


def test_an_armed_kill_point_kills_a_first_delivery() -> None:
    done = _run(False, f"{faults.KILL_BEFORE_DISPATCH}=1")
    assert done.returncode == -signal.SIGKILL, done.stderr


def test_an_armed_kill_point_spares_a_redelivery_so_the_cap_is_never_reached_by_the_fault() -> None:
    done = _run(True, f"{faults.KILL_BEFORE_DISPATCH}=1")
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr


def test_an_unarmed_point_never_fires() -> None:
    done = _run(False, "")
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr


def test_an_unknown_fault_point_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIRANA_FAULTS", "kill-everything=1")
    faults.armed.cache_clear()
    try:
        with pytest.raises(ValueError, match="unknown fault point"):
            faults.armed()
    finally:
        faults.armed.cache_clear()
