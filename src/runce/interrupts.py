"""Ctrl-C and SIGTERM reach the command's main thread even when it was about to block.

CPython runs a signal's Python handler in the main thread, at that thread's next check. A
signal that lands after the last check but before the main thread enters a blocking call
(a task's ``time.sleep``), or that the kernel hands to another thread, only sets a flag:
the call then blocks for its whole length. On a busy machine this happens. :func:`watch`
closes the gap: every signal's number is also written to a pipe (``signal.set_wakeup_fd``)
that a thread reads; a moment after a stop signal, that thread sends the main thread
SIGURG, whose handler does nothing. The blocking call is interrupted, Python runs the
pending handler (``KeyboardInterrupt`` for Ctrl-C), and a signal already handled is not
handled again: SIGURG only makes the main thread look."""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType

STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM})
GRACE = 0.2  # seconds the main thread gets to notice a stop signal by itself

_watching = False


def watch() -> bool:
    """Start the watcher, once per process, from the main thread. Returns whether it runs
    (not where the platform lacks ``pthread_kill``, outside the main thread, or when the
    program already handles SIGURG or a wakeup fd)."""
    global _watching
    nudge = getattr(signal, "SIGURG", None)
    if _watching or nudge is None or not hasattr(signal, "pthread_kill"):
        return _watching
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(nudge) not in (signal.SIG_DFL, None):
        return False
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    theirs = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    if theirs != -1:  # the program reads signals from a pipe of its own: leave it be
        signal.set_wakeup_fd(theirs)
        for end in (read_end, write_end):
            os.close(end)
        return False
    signal.signal(nudge, _look)
    main = threading.main_thread().ident
    assert main is not None
    # The watcher is born with the stop signals and the nudge blocked: the kernel never
    # hands it one, not even before its first line runs.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {*STOP_SIGNALS, nudge})
    try:
        threading.Thread(
            target=_nudge_on_stop, args=(read_end, main, nudge), name="runce-signals", daemon=True
        ).start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)
    _watching = True
    return True


def _look(signum: int, frame: FrameType | None) -> None:
    """SIGURG's handler: nothing. Being interrupted is the point."""


def _nudge_on_stop(read_end: int, main: int, nudge: int) -> None:
    stops = {int(s) for s in STOP_SIGNALS}
    while True:
        try:
            numbers = os.read(read_end, 64)
        except OSError:
            return
        if not numbers:
            return
        if stops.intersection(numbers):
            time.sleep(GRACE)
            try:
                signal.pthread_kill(main, nudge)
            except OSError:  # the main thread is gone: nothing left to wake
                return
