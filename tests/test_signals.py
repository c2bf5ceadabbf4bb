"""Ctrl-C / SIGTERM: stop at a safe point, leave resumable state, say how to resume."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from test_resume import history_rows, start_cli, train_in_process, wait_for_rows

from cvtrain import artifacts, resume
from cvtrain.interrupt import Interrupted

pytestmark = pytest.mark.slow  # every test trains, in a subprocess or in-process


def test_sigint_mid_epoch_exits_130_with_resume_command_then_resumes(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    slow = ("trainer.epochs=3", "trainer.steps_per_epoch=8", "trainer.prediction_images=0")
    proc = start_cli(pets_root, run_dir, *slow)
    wait_for_rows(proc, run_dir, 1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert f"cvtrain resume={run_dir}" in err
    assert "Traceback" not in err
    saved = resume.load(run_dir)
    assert saved.epoch == len(history_rows(run_dir)) < 3  # stopped between epochs' states
    assert (run_dir / artifacts.CHECKPOINT).is_file()

    result, _, _ = train_in_process(pets_root, run_dir, *slow)
    assert [int(r["epoch"]) for r in history_rows(run_dir)] == [0, 1, 2]
    assert len(result.history["loss"]) == 3
    assert os.path.getsize(run_dir / artifacts.CHECKPOINT) > 0


def test_sigterm_stops_between_batches_with_exit_code_143(pets_root, tmp_path):
    run_dir = tmp_path / "run"

    def terminate_in_epoch_2():
        while len(history_rows(run_dir)) < 1:
            time.sleep(0.02)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=terminate_in_epoch_2, daemon=True).start()
    with pytest.raises(Interrupted) as stopped:
        train_in_process(
            pets_root, run_dir, "trainer.epochs=2", "trainer.steps_per_epoch=8",
            "trainer.prediction_images=0",
        )  # fmt: skip
    assert stopped.value.exit_code == 143
    # Raised in epoch 2, or at the end of epoch 1 once that epoch's state was saved.
    assert stopped.value.epoch in (1, 2)
    assert resume.load(run_dir).epoch == 1 == len(history_rows(run_dir))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
