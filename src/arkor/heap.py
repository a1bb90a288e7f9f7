"""The cyclic garbage collector of a long-running server process.

Once its engine has loaded a model, a server process holds about half a million objects the
collector tracks (the modules of torch, transformers and PEFT, the app, the model), nearly
all of them alive until the process ends. Each full collection walks every one of them:
~270 ms on the 2-core machine, with the interpreter lock held throughout, so every stream
and every request of the process waits that long (docs/self-hosting.md, "Memory and pauses").
:func:`settle` moves what is alive at that moment out of the collector's reach
(:func:`gc.freeze`): later collections walk only the objects made since.

Only a process that runs a server freezes (:func:`enable`: ``arkor cloud serve`` and
``arkor dev``), at the points where what it will keep has just been made: once its app is
built, and once each base model is loaded. A library or test process that builds apps and
engines and drops them is left alone: a frozen object that later becomes part of a garbage
cycle is never collected.

:func:`peak_rss_mib` is the process's own peak resident memory (a training runner's
``peakRssMb``, the benches' figures).
"""

from __future__ import annotations

import gc
import sys
import threading

_enabled = False
_lock = threading.Lock()


def enable() -> int:
    """Let :func:`settle` freeze (this process runs a server until it ends), and settle now:
    the app just built; returns the objects frozen."""
    global _enabled
    _enabled = True
    return settle()


def settle() -> int:
    """When :func:`enable` d: collect what is garbage now, then freeze the rest; returns the
    objects frozen so far (0 when not enabled)."""
    if not _enabled:
        return 0
    with _lock:
        gc.collect()
        gc.freeze()
        return gc.get_freeze_count()


def peak_rss_mib() -> float:
    """This process's peak resident memory, in MiB, since its program started: ``VmHWM`` of
    ``/proc/self/status`` on Linux, ``ru_maxrss`` elsewhere. Not ``ru_maxrss`` on Linux: the
    kernel carries a parent's resident size into a child across fork and exec (a child of a
    1.5 GB Python read 1,510 MB there, 9 MB as ``VmHWM``), so a training runner started by a
    server larger than itself reported the server's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource  # not on Windows, where the project does not run

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024 if sys.platform == "darwin" else 1024)  # bytes there, kB here
