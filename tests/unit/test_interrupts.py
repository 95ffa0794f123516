"""A stop signal that only set CPython's flag (it landed just before the main thread began
to block, or the kernel gave it to another thread) still stops the main thread's sleep,
once runce.interrupts watches; without the watcher the sleep runs its whole length."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX only")

# The main thread blocks SIGINT, so the kernel hands Ctrl-C to the other thread: CPython
# only sets its flag, and the main thread's sleep is not interrupted by it.
SCRIPT = textwrap.dedent(
    """
    import signal, sys, threading, time
    from runce import interrupts

    # Started from a background job, this process would inherit Ctrl-C ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    if sys.argv[1] == "watch":
        assert interrupts.watch()
    ready = threading.Event()

    def other():
        ready.set()
        time.sleep(60)

    threading.Thread(target=other, daemon=True).start()
    ready.wait()
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        # Inside the try: a Ctrl-C the main thread sees at once, while it is still running
        # Python, raises here and is as good as one that ends the sleep.
        print("asleep", flush=True)
        time.sleep(60)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        sys.exit(0)
    sys.exit(1)
    """
)


def _wait_until_asleep(pid: int) -> None:
    """Until the main thread is in its sleep: a Ctrl-C sent while it still runs Python
    would be seen at once, watcher or not (the control below would then wake up)."""
    wchan = Path(f"/proc/{pid}/wchan")
    deadline = time.monotonic() + 30
    while wchan.exists() and time.monotonic() < deadline:
        if wchan.read_text() == "hrtimer_nanosleep":
            return
        time.sleep(0.01)


def _sleeper(mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline() == "asleep\n"
    _wait_until_asleep(proc.pid)
    proc.send_signal(signal.SIGINT)
    return proc


def test_a_ctrl_c_the_main_thread_did_not_see_still_stops_its_sleep() -> None:
    proc = _sleeper("watch")
    out, _ = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "interrupted\n")


def test_without_the_watcher_such_a_ctrl_c_waits_for_the_sleep_to_end() -> None:
    proc = _sleeper("plain")
    try:
        time.sleep(1.0)  # ten times the watcher's grace: asleep still
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_the_watcher_starts_once_and_only_from_the_main_thread() -> None:
    script = textwrap.dedent(
        """
        import threading
        from runce import interrupts

        found = []
        t = threading.Thread(target=lambda: found.append(interrupts.watch()))
        t.start(); t.join()
        print(found[0], interrupts.watch(), interrupts.watch())
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.stdout.split() == ["False", "True", "True"], done.stderr
