"""Nothing lost, nothing silently wrong: what cvtrain refuses to do to a run dir, and a user's
folder it never deletes. Each case runs the CLI as a user would; every refusal comes before
TensorFlow loads, is one line and leaves the run's files as they were."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CVTRAIN, make_config, run_cli, tiny_segmentation
from helpers import history_rows, run_probe, start_cli, wait_for_rows

from cvtrain import rundir
from cvtrain.state import resume

# A real CLI run dir (one epoch, tiny seg_convnet), as tests/test_old_run_dir.py uses it.
RUN = Path(__file__).resolve().parent / "fixtures" / "run_0be032d"


@pytest.fixture
def run(tmp_path) -> Path:
    return Path(shutil.copytree(RUN, tmp_path / "run", ignore=shutil.ignore_patterns("README*")))


def files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run dir but the bookkeeping of each command run there: the job log and
    the lock (which names the last process that held it)."""
    return {
        str(p.relative_to(run_dir)): p.read_bytes()
        for p in sorted(run_dir.rglob("*"))
        if p.is_file() and p.suffix != rundir.LOG_SUFFIX and p.name != rundir.LOCK
    }


def refused(result, fragment: str) -> None:
    """Exit 2, one `cvtrain: error:` line holding `fragment`, TensorFlow never imported."""
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and errors[0].startswith("cvtrain: error:"), errors
    assert fragment in errors[0], errors[0]
    assert result.stdout.strip().endswith("TF_NOT_IMPORTED")


def test_a_run_whose_state_was_deleted_is_not_retrained_over(run, pets_root):
    shutil.rmtree(run / rundir.BACKUP)
    before = files(run)
    result = run_probe(f"resume={run}", f"data.root={pets_root}")
    refused(result, "holds a trained run (history.csv, checkpoints/best.keras) but not its")
    assert files(run) == before


def test_a_damaged_state_is_one_line(run, pets_root):
    state = run / rundir.RESUME_STATE
    state.write_text(state.read_text()[:20])  # cut off mid-write by hand
    refused(run_probe(f"resume={run}", f"data.root={pets_root}"), "state.json is damaged")


@pytest.mark.parametrize("damage", ["missing", "damaged"])
def test_a_missing_or_damaged_weights_file_is_one_line(run, pets_root, damage):
    weights = run / rundir.BACKUP / resume.load(run).weights
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:100])  # cut short
    refused(run_probe(f"resume={run}", f"data.root={pets_root}"), f"{weights.name} is {damage}")


def test_a_damaged_checkpoint_or_saved_config_is_one_line(run, pets_root):
    checkpoint = run / rundir.CHECKPOINT
    original = checkpoint.read_bytes()
    checkpoint.write_bytes(b"not a model")
    evaluate = ("mode=evaluate", f"run={run}", f"data.root={pets_root}")
    refused(run_probe(*evaluate), "checkpoints/best.keras is not a Keras model file")
    checkpoint.write_bytes(original)
    (run / rundir.SAVED_CONFIG).write_text("model: [unclosed\n")
    refused(run_probe(*evaluate), ".hydra/config.yaml cannot be read")


def test_a_checkpoint_behind_the_runs_best_epoch_is_refused_with_the_fix(run, pets_root):
    rundir.write_json(run / rundir.CHECKPOINT_EPOCH, {"epoch": 1})
    state = resume.load(run)  # as a kill leaves it: epoch 2 was the best, best.keras not yet
    state.epoch = state.best_epoch = 2
    resume.save(run, state)
    result = run_probe("mode=evaluate", f"run={run}", f"data.root={pets_root}")
    refused(result, "best.keras holds epoch 1 but the run's best epoch is 2")
    assert f"resume={run} trainer.epochs=2` rebuilds it" in result.stderr


def test_a_refused_resume_leaves_the_saved_config_as_it_was(run, pets_root):
    before = files(run)
    result = run_probe(f"resume={run}", f"data.root={pets_root}", "model.width=0.5")
    refused(result, "was trained with model.width=0.25 (now 0.5)")
    assert files(run) == before  # .hydra/config.yaml and overrides.yaml included


def test_reordered_mask_values_are_a_change_of_classes(run, pets_root):
    state = resume.load(run)  # as this release saves it: class names and their mask values
    cfg = make_config(*tiny_segmentation(pets_root))
    state.fixed = resume.fixed_settings(cfg, ("pet", "background", "border"), (1, 2, 3))
    resume.save(run, state)
    result = run_probe(f"resume={run}", f"data.root={pets_root}", "data.mask_values=[2,1,3]")
    refused(result, "data.mask_values=[1, 2, 3] (now [2, 1, 3])")


def test_a_users_folder_is_left_as_it_was_after_a_config_error(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.log").write_text("the user's own file\n")
    result = run_probe(f"hydra.run.dir={folder}", "trainer.epochs=0")
    refused(result, "trainer.epochs=0 must be >= 1")
    assert [p.name for p in folder.iterdir()] == ["notes.log"]


@pytest.mark.slow
def test_a_second_process_is_refused_while_a_run_trains(pets_root, tmp_path):
    run_dir = tmp_path / "run"
    proc = start_cli(pets_root, run_dir, "trainer.epochs=50", "trainer.prediction_images=0")
    try:
        wait_for_rows(proc, run_dir, 1)
        refused(run_probe(f"resume={run_dir}"), f"is in use by cvtrain pid {proc.pid} on ")
    finally:
        proc.send_signal(signal.SIGTERM)  # stops at the next batch, its state saved
        proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM
    lines = (run_dir / rundir.HISTORY).read_text().splitlines()
    assert [line for line in lines if line.startswith("epoch")] == [lines[0]]  # one header
    assert [int(row["epoch"]) for row in history_rows(run_dir)] == list(range(len(lines) - 1))


@pytest.mark.parametrize("fmt", ["saved_model", "keras"])
def test_export_writes_over_nothing_in_a_folder_of_yours(run, tmp_path, fmt):
    out = tmp_path / "deploy"
    target = out / ("saved_model" if fmt == "saved_model" else "model.keras")
    if fmt == "saved_model":
        target.mkdir(parents=True)
        (target / "NOTES.md").write_text("the user's own file\n")
    else:
        out.mkdir()
        target.write_bytes(b"a model of yours")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    result = run_probe("mode=export", f"run={run}", f"format={fmt}", f"output={out}")
    refused(result, f"output={out} already holds {target.name}; cvtrain does not write over it")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_export_into_a_file_is_one_line(run, tmp_path):
    afile = tmp_path / "notes.txt"
    afile.write_text("not a folder\n")
    result = run_probe("mode=export", f"run={run}", "format=keras", f"output={afile}")
    refused(result, f"output={afile} is a file; give a folder to export into")


@pytest.mark.slow
def test_a_killed_export_leaves_no_outputs_folder(run, pets_root, tmp_path):
    """SIGKILL while TensorFlow loads for the export: Hydra's bookkeeping was never in outputs/."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    proc = subprocess.Popen(
        [*CVTRAIN, "mode=export", f"run={run}", "format=keras", f"data.root={pets_root}"],
        cwd=tmp_path,
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    maps = Path(f"/proc/{proc.pid}/maps")
    deadline = time.monotonic() + 120
    while "tensorflow" not in maps.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, "export ended before TF"
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert not (tmp_path / "outputs").exists()


def test_an_export_replaced_in_place_is_never_lost_half_way(tmp_path, monkeypatch):
    from cvtrain.inference import exporters

    def export(text: str) -> Path:
        folder = tmp_path / f"new-{text}" / "saved_model"
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_text(text)
        return folder

    dst = tmp_path / "export" / "saved_model"
    dst.parent.mkdir()
    exporters.replace_dir(export("first"), dst)
    exporters.replace_dir(export("second"), dst)
    assert (dst / "saved_model.pb").read_text() == "second"
    assert sorted(p.name for p in dst.parent.iterdir()) == ["saved_model"]

    calls = []
    real = exporters.os.replace

    def killed_after_the_first_move(src, target):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two moves
        real(src, target)

    monkeypatch.setattr(exporters.os, "replace", killed_after_the_first_move)
    with pytest.raises(KeyboardInterrupt):
        exporters.replace_dir(export("third"), dst)
    kept = [p.read_text() for p in dst.parent.rglob("saved_model.pb")]
    assert kept == ["second"]  # the old export, moved aside whole


@pytest.mark.slow
def test_a_run_killed_while_writing_its_disk_cache_resumes(pets_root, tmp_path):
    import time

    run_dir = tmp_path / "run"
    cache = ("data.cache=disk", "trainer.epochs=2", "trainer.prediction_images=0")
    proc = start_cli(pets_root, run_dir, *cache)
    try:
        deadline = time.monotonic() + 240
        while not list((run_dir / "cache").glob("*.lockfile")):  # tf.data is writing it
            assert proc.poll() is None and time.monotonic() < deadline, "no cache was written"
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.communicate()
    result = run_probe(f"resume={run_dir}", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(history_rows(run_dir)) == 2


@pytest.mark.slow
@pytest.mark.parametrize("after_s", [0.5, 2.0])
def test_ctrl_c_while_starting_is_one_line(pets_root, tmp_path, after_s):
    import time

    proc = start_cli(pets_root, tmp_path / "run")
    time.sleep(after_s)  # composing the config, reading the data or importing TensorFlow
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=240)
    lines = [line for line in stderr.splitlines() if line.strip()]
    # A shell's $? is 130 either way: the CLI exits 130, but a Ctrl-C that lands in code an
    # extension module runs through Python's C API (PyRun_String) is marked unhandled by
    # Python, which then ends the process by SIGINT as it exits (-2 here).
    assert proc.returncode in (128 + signal.SIGINT, -signal.SIGINT), stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("cvtrain: stopped"), lines


@pytest.fixture
def mount(tmp_path):
    """mount(name, *args): a mount at tmp_path/name for this test (a tmpfs, a read-only bind),
    undone after it; the test is skipped where this user may not mount (CI runs as root)."""
    made = []

    def do(name: str, *args: str) -> Path:
        target = tmp_path / name
        target.mkdir(exist_ok=True)
        for step in args:
            result = subprocess.run(["mount", *step.split(), str(target)], capture_output=True)
            if result.returncode:
                pytest.skip(f"cannot mount here: {result.stderr.decode().strip()}")
            made.append(target)
        return target

    yield do
    for target in reversed(made):
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def one_line(result, fragment: str) -> None:
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-3000:]
    assert len(errors) == 1 and fragment in errors[0], errors


@pytest.mark.slow
def test_a_full_disk_is_one_line(pets_root, mount):
    disk = mount("disk", "-t tmpfs -o size=160k tmpfs")  # fills up before the run ends
    overrides = tiny_segmentation(pets_root, "model.filters=[8,16]")
    result = run_cli(*overrides, f"hydra.run.dir={disk / 'run'}")
    one_line(result, "no space left on the device; free space or give a writable folder")


@pytest.mark.slow
def test_a_read_only_run_dir_is_one_line(run, pets_root, mount):
    frozen = mount("frozen", f"--bind {run}", "-o remount,ro,bind")
    refused(run_probe(f"resume={frozen}", f"data.root={pets_root}"), "the file system is read-only")
    evaluate = run_probe("mode=evaluate", f"run={frozen}", f"data.root={pets_root}")
    one_line(evaluate, f"cannot write {frozen / rundir.EVAL}: the file system is read-only")


@pytest.mark.slow
def test_no_epoch_is_trained_past_a_state_that_failed_to_save(pets_root, mount, tmp_path):
    (tmp_path / "run").mkdir()
    mount("run/backup", "-t tmpfs -o size=4k tmpfs")  # the first epoch's state cannot fit
    overrides = tiny_segmentation(pets_root, "trainer.epochs=4")
    result = run_cli(*overrides, f"hydra.run.dir={tmp_path / 'run'}")
    one_line(result, "no space left on the device")
    assert len(history_rows(tmp_path / "run")) == 1  # epoch 2 stopped at its first batch
