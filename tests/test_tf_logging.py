"""A quiet start: TensorFlow's C++ start-up lines are hidden on a machine without a GPU, CUDA
errors stay visible where a GPU is installed, and the user's TF_CPP_MIN_LOG_LEVEL wins."""

from __future__ import annotations

import pytest

from cvtrain.cli.tf_logging import LEVEL_ENV, configure, drop_hidden, min_log_level

NOISE = (
    "All log messages before absl::InitializeLog() is called",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "oneDNN custom operations are on",
)


@pytest.mark.parametrize("sign", ["dev/nvidia0", "dev/nvidiactl", "proc/driver/nvidia/version"])
def test_a_machine_with_a_gpu_keeps_cuda_errors_visible(tmp_path, sign):
    (tmp_path / sign).parent.mkdir(parents=True)
    (tmp_path / sign).write_text("")
    assert min_log_level({}, tmp_path) == "2"


def test_a_machine_without_a_gpu_hides_cuda_errors_unless_the_user_says_otherwise(tmp_path):
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev" / "null").write_text("")
    environ: dict[str, str] = {}
    configure(environ, tmp_path)
    assert environ == {LEVEL_ENV: "3"}
    user = {LEVEL_ENV: "0"}
    configure(user, tmp_path)
    assert user == {LEVEL_ENV: "0"}


STDERR = """\
WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
I0000 00:00:1795925181.831907    5860 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not be used.
W0000 00:00:1795925181.831907    5860 some.cc:1] a warning
E0000 00:00:1795925184.470278    5860 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error
Traceback (most recent call last):
"""  # noqa: E501


def test_lines_below_the_level_are_dropped_and_the_rest_kept_in_order():
    assert drop_hidden(STDERR, 0) == STDERR
    assert drop_hidden(STDERR, 2).splitlines() == [
        STDERR.splitlines()[3],
        "Traceback (most recent call last):",
    ]
    assert drop_hidden(STDERR, 3) == "Traceback (most recent call last):\n"


@pytest.mark.slow
def test_a_healthy_cpu_run_prints_none_of_tensorflows_start_up_lines(cli_seg_run):
    _, proc = cli_seg_run  # conftest's CLI training, started without TF_CPP_MIN_LOG_LEVEL
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Training finished" in proc.stdout
    assert [line for line in NOISE if line in proc.stderr + proc.stdout] == []
