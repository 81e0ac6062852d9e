"""Preemption: SIGTERM or SIGINT ends a training run cleanly after the current step.

A cluster scheduler preempts a job with SIGTERM (then SIGKILL after a grace period); Ctrl-C sends
SIGINT. While :class:`PreemptionGuard` is active, either signal only sets a flag. The training
loop finishes the step in progress, writes a checkpoint (mid-epoch: the position in the epoch is
in it), and raises :class:`~snnkern.train.errors.Preempted` (exit code 128 + the signal number:
143 for SIGTERM, 130 for SIGINT). The same command with ``--resume`` continues to exactly the
weights of an uninterrupted run. During the final evaluation (the last checkpoint is complete) a
signal stops the run at once, with the same exit code. A second SIGINT while the first is pending interrupts at once
(KeyboardInterrupt), as a user pressing Ctrl-C twice expects.

Test hooks (environment variables read at every training step; for the test suite):

* ``SNNKERN_TEST_SIGNAL_AT_STEP=N[:RANK]``: after the forward pass of global step N (counted from
  0 over the whole run: ``epoch * steps_per_epoch + step``), the process of rank RANK (default 0)
  sends itself SIGTERM.
* ``SNNKERN_TEST_PAUSE_AT_STEP=N:PATH``: after the forward pass of global step N, create the file
  PATH and wait (up to 60 s) for a signal; the test sends a real SIGTERM from outside.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptionGuard:
    """Context manager: SIGTERM/SIGINT set :attr:`signum` instead of ending the process.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}
        # set when nothing is left to checkpoint (the final evaluation): a signal stops the run at once
        self.stop_now: Callable[[int], BaseException] | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "no signal"

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # the second Ctrl-C: stop now
        self.signum = signum
        if self.stop_now is not None:
            raise self.stop_now(signum)
        # os.write, not print: a signal handler may run while print holds the stdout lock
        name = signal.Signals(signum).name
        os.write(2, f"\nsnnkern: {name} received: finishing the current step, then writing a checkpoint\n".encode())

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            for s in SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def _hook_step(name: str) -> tuple[int, str] | None:
    value = os.environ.get(name)
    if not value:
        return None
    step, _, rest = value.partition(":")
    return int(step), rest


def run_test_hooks(global_step: int, rank: int, guard: PreemptionGuard) -> None:
    """Run the test hooks of the module docstring for ``global_step`` (no-op without the variables)."""
    hook = _hook_step("SNNKERN_TEST_SIGNAL_AT_STEP")
    if hook is not None and hook[0] == global_step and rank == int(hook[1] or 0):
        os.kill(os.getpid(), signal.SIGTERM)
    hook = _hook_step("SNNKERN_TEST_PAUSE_AT_STEP")
    if hook is not None and hook[0] == global_step and rank == 0:
        with open(hook[1], "w") as f:
            f.write(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not guard.requested and time.monotonic() < deadline:
            time.sleep(0.01)
