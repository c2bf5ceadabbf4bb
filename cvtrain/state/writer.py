"""One job at a time on a thread beside training: file writes that need not hold up the next
epoch (the numpy and file calls they make release the interpreter while they wait on the disk)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class BackgroundJobs:
    """Jobs run one after another, in the order given. `submit` first waits for the previous
    job, so at most one is pending (and one epoch's arrays in memory); a job's error is raised
    on the training thread, by the next `submit` or by `wait`.

    The thread is not a daemon: a run whose main thread fails still finishes the write it
    started (the interpreter waits for it), so the state on disk stays whole.
    """

    def __init__(self, name: str):
        self.name = name
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def submit(self, job: Callable[[], object]) -> None:
        self.wait()
        self._thread = threading.Thread(target=self._run, args=(job,), name=self.name)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def raise_if_failed(self) -> None:
        """The error of a job that has ended, if it failed; never waits for one still running."""
        if self._thread is not None and not self._thread.is_alive():
            self.wait()

    def _run(self, job: Callable[[], object]) -> None:
        try:
            job()
        except BaseException as error:  # raised again on the training thread
            self._error = error
