"""One process at a time in a run dir: `<run>/.lock`, held with flock while a training runs.

The file names the process that holds it (PID and host), so a second process is refused in one
line that says who; a lock left by a process that died is free again (the kernel releases a
flock with its holder), so a killed run resumes without anyone removing it.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cvtrain import rundir
from cvtrain.errors import UserError


@contextmanager
def hold(run_dir: Path) -> Iterator[None]:
    """Hold the run dir's lock for the block; UserError if another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / rundir.LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            raise UserError(
                f"{run_dir} is in use by {holder}: one process trains in a run dir at a time; "
                "wait for it to end (or stop it), or train into another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"cvtrain pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
