"""Who this process is, and whether a process named in a lock is still alive.

A lease holder is identified by a *machine* string: the host name, the kernel's boot id and
the PID namespace. Two containers with one host name, or one host after a reboot, are
different machines, so a PID is only tested for liveness when the machine is this one.
"""

from __future__ import annotations

import os
import socket
from functools import cache

from runce.domain.locks import Owner


@cache
def this_machine() -> str:
    host = socket.gethostname()
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip()
    except OSError:
        boot = "-"
    try:
        pid_ns = str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        pid_ns = "-"
    return f"{host}/{boot}/{pid_ns}"


def current_owner(label: str | None = None) -> Owner:
    host = socket.gethostname()
    return Owner(label=label or host, host=host, pid=os.getpid(), machine=this_machine())


def process_alive(machine: str | None, pid: int | None) -> bool | None:
    """True or False when ``pid`` runs on this machine; None when it cannot be known here."""
    if machine is None or pid is None or machine != this_machine():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed child that nobody has reaped yet still answers ``kill(pid, 0)``."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            stat = handle.read()
    except OSError:
        return False
    # The state follows the parenthesised command name, which may itself contain spaces.
    return stat.rpartition(")")[2].split()[:1] == ["Z"]


__all__ = [
    "current_owner",
    "process_alive",
    "this_machine",
]
