"""SIGINT (Ctrl-C) and SIGTERM (what Slurm, Kubernetes and `timeout` send) during training.

Before the first step a signal stops the run at once: nothing new exists to save. Once
the loop runs, the first signal is a request: the step in progress finishes (its log
row, validation and checkpoint included), the loop saves that step and stops, so the
saved weights, batch-norm statistics, EMA and validation row are all of one step. A
second signal stops at once, leaving the last checkpoint as it was.

torch's DataLoader raises from its SIGCHLD handler when a loader worker dies (Slurm sends
SIGTERM to every process of a job), wherever the training process is, a half-done
optimizer step included. While the loop runs that check waits for the step boundary.
"""

from __future__ import annotations

import signal
import threading

from .errors import StoppedAtOnce

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopSignals:
    """Use as a context manager around a run; `requested` is the name of the first signal
    received while `deferring` (None until then)."""

    def __init__(self):
        self.requested: str | None = None
        self.deferring = False
        self.previous: dict = {}
        self.child_exited = False

    def __enter__(self) -> StopSignals:
        # Python runs signal handlers in the main thread only; elsewhere the defaults stay.
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self.previous[number] = signal.signal(number, self._receive)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def hold_worker_checks(self) -> None:
        """Once the loader's workers run (torch has set its SIGCHLD handler): while the loop
        runs, a child's exit is only noted, for check_workers."""
        previous = signal.getsignal(signal.SIGCHLD)
        if callable(previous) and threading.current_thread() is threading.main_thread():
            self.previous[signal.SIGCHLD] = previous
            signal.signal(signal.SIGCHLD, self._child_exited)

    def check_workers(self) -> None:
        """At a step boundary: torch's check of its workers, if a child exited meanwhile
        (it raises RuntimeError when a worker died)."""
        if self.child_exited:
            self.child_exited = False
            self.previous[signal.SIGCHLD](signal.SIGCHLD, None)

    def _child_exited(self, number: int, frame) -> None:
        if self.deferring:
            self.child_exited = True
        else:
            self.previous[signal.SIGCHLD](number, frame)

    def _receive(self, number: int, _frame) -> None:
        name = signal.Signals(number).name
        if not self.deferring or self.requested is not None:
            raise StoppedAtOnce(name, started=self.deferring)
        self.requested = name
