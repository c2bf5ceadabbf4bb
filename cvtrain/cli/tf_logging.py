"""Keep TensorFlow's C++ start-up chatter off a healthy run's terminal.

TF 2.21 writes some lines to stderr before absl logging is initialised, where
TF_CPP_MIN_LOG_LEVEL does not reach them: "All log messages before absl::InitializeLog() is
called are written to STDERR", the oneDNN note and, without CUDA, "Could not find cuda drivers on
your machine" (once per native library). Later the first device query on a machine without a
GPU logs "failed call to cuInit" at ERROR level, which only TF_CPP_MIN_LOG_LEVEL=3 hides.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

LEVEL_ENV = "TF_CPP_MIN_LOG_LEVEL"
# Any of these means an NVIDIA driver is installed (dev/dxg: a GPU passed through to WSL2).
GPU_SIGNS = ("dev/nvidiactl", "dev/nvidia0", "proc/driver/nvidia", "dev/dxg")
BANNER = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
# absl's prefix: severity, MMDD, time, thread id, file:line]
ABSL_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [^\]\s]+\] ")
SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL=n hides the first n


def has_nvidia_gpu(root: Path = Path("/")) -> bool:
    return any((root / sign).exists() for sign in GPU_SIGNS)


def min_log_level(environ: MutableMapping[str, str], root: Path = Path("/")) -> str:
    """The user's own TF_CPP_MIN_LOG_LEVEL; else 2 where a GPU is installed (a CUDA error, say
    a broken driver, is still reported), else 3: without a GPU the only C++ "error" is cuInit
    finding none, and anything that matters reaches Python as an exception."""
    return environ.get(LEVEL_ENV) or ("2" if has_nvidia_gpu(root) else "3")


def configure(environ: MutableMapping[str, str] = os.environ, root: Path = Path("/")) -> None:
    """Set the level before TensorFlow is imported: it is read once, at import."""
    environ[LEVEL_ENV] = min_log_level(environ, root)


def drop_hidden(text: str, level: int) -> str:
    """`text` without the lines TF_CPP_MIN_LOG_LEVEL=`level` would have hidden, had absl
    logging been initialised when they were written."""
    kept = []
    for line in text.splitlines(keepends=True):
        match = ABSL_LINE.match(line)
        if level > 0 and line.rstrip() == BANNER:
            continue
        if match and SEVERITIES.index(match[1]) < level:
            continue
        kept.append(line)
    return "".join(kept)


def filtered_stderr(exec_module):
    """`exec_module` with file descriptor 2 captured (the lines come from C++), then whatever
    the log level lets through passed on, in order."""

    def run(module) -> None:
        value = os.environ.get(LEVEL_ENV, "0")
        level = int(value) if value.isdigit() else 0
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                exec_module(module)
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                os.close(saved)
                capture.seek(0)
                sys.stderr.write(drop_hidden(capture.read().decode(errors="replace"), level))
                sys.stderr.flush()

    return run


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` like the normal finders do and filters its import's stderr, so the
    first import is quiet wherever it happens (after each mode's pure-Python checks)."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: later lookups are the normal ones
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader.exec_module = filtered_stderr(spec.loader.exec_module)
        return spec


def quiet_tensorflow_import() -> None:
    """Filter the stderr of TensorFlow's first import in this process (a no-op once imported)."""
    if "tensorflow" not in sys.modules and not any(
        isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _QuietTensorFlowFinder())
