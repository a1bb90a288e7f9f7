"""Torch work off the scheduler's thread runs on a thread that ends with it.

Torch's CPU kernels run on an OpenMP team that belongs to the thread calling them, and the
team lives as long as that thread. GNU OpenMP (torch's CPU wheel) lets an idle team member
spin for a while before it sleeps, which is what makes the ~2,000 small parallel regions of a
decode step cheap; but once it manages more threads than the machine has cores it cuts that
spin to almost nothing, and every region then pays for waking its helpers. A pooled worker
thread that once loaded a model (``asyncio.to_thread``) keeps its team for the life of the
process: measured on 2 cores, a batch-1 int8 forward pass of the embedded model went from
~29 ms to ~44 ms while such a thread was alive, and back when it ended.

So the engine's own torch work away from the scheduler's thread (loading a base model,
reading an adapter's files) runs through :func:`in_own_thread`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


async def in_own_thread(name: str, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on a new thread named ``name`` that ends when it returns; its result or
    exception, awaited. Cancelling the wait does not stop ``fn`` (as with ``to_thread``)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.cancelled():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result = fn(*args)
        except BaseException as exc:  # handed to the awaiting task, which raises it
            outcome: tuple[T | None, BaseException | None] = (None, exc)
        else:
            outcome = (result, None)
        with contextlib.suppress(RuntimeError):  # the loop closed while we ran
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(target=run, name=name, daemon=True).start()
    return await future

