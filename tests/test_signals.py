"""Ctrl-C / SIGTERM: stop at a safe point, leave resumable state, say how to resume."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import time

import pytest
from conftest import run_cli
from helpers import history_rows, start_cli, train_in_process, wait_for_rows

from cvtrain import rundir
from cvtrain.state import resume
from cvtrain.training.interrupt import SIGNALS, StopNow, trap_signals

SLOW = ("trainer.epochs=3", "trainer.steps_per_epoch=8", "trainer.prediction_images=0")

# cvtrain's entry point with a first batch that takes ten minutes, as a big model's batch can on a
# CPU; argv[1] is a file touched when that batch starts.
SLOW_FIRST_BATCH = """
import sys, time
from pathlib import Path
from cvtrain.training.callbacks import RichProgress
from cvtrain.cli.main import main

started = Path(sys.argv[1])

def slow_batch(self, batch, logs=None):
    started.touch()
    time.sleep(600)

RichProgress.on_train_batch_end = slow_batch
sys.argv = ["cvtrain", *sys.argv[2:]]
main()
"""

pytestmark = pytest.mark.slow  # every test trains, in a subprocess or in-process


@pytest.mark.slow
def test_sigint_mid_epoch_exits_130_with_resume_command_then_resumes(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(pets_root, run_dir, *SLOW)
    wait_for_rows(proc, run_dir, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"cvtrain resume={run_dir}" in err
    assert "Traceback" not in err
    saved = resume.load(run_dir)
    assert saved.epoch == len(history_rows(run_dir)) < 3  # stopped between epochs' states
    assert (run_dir / rundir.CHECKPOINT).is_file()

    result, _, _ = train_in_process(pets_root, run_dir, *SLOW)
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2]
    assert len(result.history["loss"]) == 3
    assert os.path.getsize(run_dir / rundir.CHECKPOINT) > 0


@pytest.mark.slow
def test_sigterm_exits_143_with_resume_command_and_resume_continues(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(pets_root, run_dir, *SLOW)
    wait_for_rows(proc, run_dir, 1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert "Traceback" not in err
    saved = resume.load(run_dir).epoch
    assert saved == len(history_rows(run_dir)) < 3
    # Raised in the next epoch, or at the end of the saved one once its state was written.
    stopped = re.search(r"stopped by SIGTERM during epoch (\d+).*(cvtrain resume=\S+)", err)
    assert stopped and int(stopped[1]) in (saved, saved + 1), err[-3000:]
    assert stopped[2] == f"cvtrain resume={run_dir}"

    done = run_cli(f"resume={run_dir}")  # the command it printed
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"resuming after epoch {saved}" in done.stdout + done.stderr
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2]
    assert resume.load(run_dir).epoch == 3


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_mid_batch_with_exit_130(pets_root, tmp_path):
    run_dir, started = tmp_path / "run", tmp_path / "batch-started"
    command = [sys.executable, "-c", SLOW_FIRST_BATCH, str(started)]
    proc = start_cli(pets_root, run_dir, *SLOW, command=command)
    try:
        deadline = time.monotonic() + 240
        while not started.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "training never started its first batch"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # would stop when the 10-minute batch ends
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)  # at once, not after the batch
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "stopped at once by a second Ctrl-C" in err
    assert f"cvtrain resume={run_dir}" in err
    assert "Traceback" not in err
    assert history_rows(run_dir) == []  # no epoch completed, none pretended


def test_first_signal_is_recorded_a_second_ctrl_c_raises_and_handlers_are_restored():
    before = {s: signal.getsignal(s) for s in SIGNALS}
    with pytest.raises(StopNow), trap_signals() as trap:
        signal.raise_signal(signal.SIGINT)
        assert trap.signum == signal.SIGINT  # recorded, training goes on to a safe point
        signal.raise_signal(signal.SIGTERM)
        assert trap.signum == signal.SIGTERM  # a repeated SIGTERM does not stop at once
        signal.raise_signal(signal.SIGINT)
        pytest.fail("a second Ctrl-C did not stop at once")
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


def test_a_ctrl_c_python_dropped_while_starting_still_stops_training():
    """Raised inside a weakref callback (an import lock's), Python prints "Exception ignored"
    and drops the KeyboardInterrupt; training's trap starts from it, so the run still stops."""
    from cvtrain.training import interrupt

    with pytest.raises(KeyboardInterrupt):
        interrupt.on_startup_sigint(signal.SIGINT, None)
    with interrupt.trap_signals() as trap:
        assert trap.signum == signal.SIGINT  # stops at the first batch
    with interrupt.trap_signals() as trap:
        assert trap.signum is None  # used once


def test_an_error_after_a_ctrl_c_while_starting_is_reported_as_the_ctrl_c(monkeypatch, capsys):
    """A Ctrl-C inside an import can leave a module half-initialised (seen: TensorFlow's, then
    "'tuple' object has no attribute '_type_spec'"); the run stops with the Ctrl-C's line."""
    from cvtrain.cli import main as cli
    from cvtrain.training import interrupt

    def start(ctrl_c: bool):
        if ctrl_c:
            with contextlib.suppress(KeyboardInterrupt):  # caught by the code it interrupted
                interrupt.on_startup_sigint(signal.SIGINT, None)
        raise AttributeError("'tuple' object has no attribute '_type_spec'")

    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")  # main() sets it; restored after the test
    monkeypatch.setattr(sys, "argv", ["cvtrain"])
    handler = signal.getsignal(signal.SIGINT)
    try:
        monkeypatch.setattr(cli, "hydra_main", lambda: start(ctrl_c=True))
        with pytest.raises(SystemExit) as stop:
            cli.main()
        assert stop.value.code == 128 + signal.SIGINT
        assert capsys.readouterr().err == "cvtrain: stopped by Ctrl-C while starting\n"
        with trap_signals():  # takes the remembered Ctrl-C: none is left
            pass
        monkeypatch.setattr(cli, "hydra_main", lambda: start(ctrl_c=False))
        with pytest.raises(AttributeError):  # without a Ctrl-C the error is the error
            cli.main()
    finally:
        signal.signal(signal.SIGINT, handler)
