"""Stopping a run promptly on SIGTERM/SIGINT without ever interrupting a checkpoint write.

The signal handler records the request. The training loop checks it between steps, and while
a step's forward/backward/optimizer work runs inside :meth:`CancelToken.interruptible`, the
handler raises :class:`TrainingCancelled` right away instead of waiting for the step to end.
Checkpoint saving runs outside that region, so it is never cut in half by a cancel.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from arkor.training.errors import TrainingCancelled


class CancelToken:
    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._interruptible = False

    @property
    def requested(self) -> bool:
        return self.signal_name is not None

    def request(self, signal_name: str = "SIGTERM") -> None:
        self.signal_name = signal_name
        if self._interruptible:
            self._interruptible = False
            raise TrainingCancelled(signal_name)

    def raise_if_requested(self) -> None:
        if self.signal_name is not None:
            raise TrainingCancelled(self.signal_name)

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        self.raise_if_requested()
        self._interruptible = True
        try:
            yield
        finally:
            self._interruptible = False

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: FrameType | None) -> None:
            self.request(signal.Signals(signum).name)

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
