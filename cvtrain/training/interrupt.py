"""Ctrl-C and SIGTERM during training: stop at the next safe point instead of mid-write.

The handler only records the signal; a training callback raises `Interrupted` at the next
batch or epoch boundary, when no file is being written, so the resume state on disk is the
last completed epoch. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped on a signal; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int, epoch: int, where: str = ""):
        self.signum, self.epoch = signum, epoch
        super().__init__(f"{signal.Signals(signum).name}{where} during epoch {epoch}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopNow(KeyboardInterrupt):
    """A second Ctrl-C: stop at once, wherever training is (files are written atomically)."""


class SignalTrap:
    """Which signal arrived, if any."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def handle(self, signum: int, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise StopNow  # second Ctrl-C: the user means now
        self.signum = signum


# A Ctrl-C while starting whose KeyboardInterrupt Python dropped: raised inside a callback (an
# import lock's weakref callback, say) it is printed as "Exception ignored" and lost. Training's
# trap starts from it, so the run still stops, at its first batch.
_startup_signals: list[int] = []


def on_startup_sigint(signum: int, frame) -> None:
    """The CLI's SIGINT handler until training traps signals: Python's own, remembered."""
    _startup_signals.append(signum)
    raise KeyboardInterrupt


def interrupted_while_starting() -> bool:
    """A Ctrl-C arrived before training trapped signals. An import it interrupted can leave a
    module half-initialised (TensorFlow's, say) and fail later with an unrelated error."""
    return bool(_startup_signals)


@contextmanager
def trap_signals() -> Iterator[SignalTrap]:
    """Record SIGINT/SIGTERM while the block runs (main thread only; elsewhere a no-op)."""
    trap = SignalTrap()
    if _startup_signals:
        trap.signum = _startup_signals.pop()
    if threading.current_thread() is not threading.main_thread():
        yield trap
        return
    previous = {s: signal.signal(s, trap.handle) for s in SIGNALS}
    try:
        yield trap
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
