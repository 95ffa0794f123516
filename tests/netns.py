"""Hosts for a test: network namespaces, each joined to the root namespace by a veth pair,
so that processes in them reach a server only through their own link, which the test can
take down (a host cut off the network) and bring back.

Host ``n`` has the address ``10.201.X.2`` inside its namespace and ``10.201.X.1`` on the
root side of its link; a server in the root namespace that listens on ``10.201.X.1`` is
reachable from that host only. Names carry the creating process's id and a random part, so
that leftovers of a test killed before its clean-up never clash with a new run, and are
removed by the next one (:func:`remove_leftovers`).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass

PREFIX = "rnc-"
SUBNET = "10.201"


class Unavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, no kernel support)."""


@dataclass(frozen=True)
class Host:
    namespace: str
    link: str  # the root namespace's end of the veth pair
    gateway: str  # that end's address: where this host reaches the root namespace

    def command(self, *args: str) -> list[str]:
        """``args`` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def restore(self) -> None:
        _ip("link", "set", self.link, "up")


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def check() -> None:
    """Raise :class:`Unavailable` saying why, unless namespaces can be made here."""
    if os.geteuid() != 0:
        raise Unavailable("network namespaces need root")
    if shutil.which("ip") is None:
        raise Unavailable("the `ip` command (iproute2) is not installed")
    probe = f"{PREFIX}{os.getpid()}-probe-{uuid.uuid4().hex[:6]}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        raise Unavailable(f"`ip netns add` fails here: {exc}") from None
    _ip("netns", "del", probe)


def remove_leftovers() -> None:
    """Remove the namespaces of test processes that no longer run (killed mid-test)."""
    for line in _ip("netns", "list").splitlines():
        name = line.split()[0] if line.strip() else ""
        found = re.fullmatch(rf"{PREFIX}(\d+)-.*", name)
        if found and not os.path.exists(f"/proc/{found.group(1)}"):
            _remove(name)


def _remove(namespace: str) -> None:
    """Kill what still runs in ``namespace``, then delete it (and so its end of the link,
    which takes the other end with it)."""
    with suppress(RuntimeError):
        for pid in _ip("netns", "pids", namespace).split():
            with suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
    with suppress(RuntimeError):
        _ip("netns", "del", namespace)


def _free_blocks(count: int) -> list[int]:
    """Third octets of ``10.201.X.0/24`` networks that no interface here uses yet."""
    used = set(re.findall(rf"inet {re.escape(SUBNET)}\.(\d+)\.", _ip("-o", "-4", "addr", "show")))
    free = [block for block in range(1, 255) if str(block) not in used]
    if len(free) < count:
        raise RuntimeError(f"no {count} free networks left in {SUBNET}.0.0/16")
    return random.sample(free, count)


@contextmanager
def hosts(count: int) -> Iterator[list[Host]]:
    """``count`` hosts, removed on the way out whatever happened (and what runs in them
    killed)."""
    check()
    remove_leftovers()
    tag = uuid.uuid4().hex[:6]
    made: list[Host] = []
    try:
        for n, block in enumerate(_free_blocks(count)):
            namespace = f"{PREFIX}{os.getpid()}-{tag}-{n}"
            link, peer = f"rnc{tag}h{n}", f"rnc{tag}n{n}"
            _ip("netns", "add", namespace)
            host = Host(namespace, link, f"{SUBNET}.{block}.1")
            made.append(host)
            _ip("link", "add", link, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", namespace)
            _ip("addr", "add", f"{host.gateway}/24", "dev", link)
            _ip("link", "set", link, "up")
            _ip("-n", namespace, "addr", "add", f"{SUBNET}.{block}.2/24", "dev", peer)
            _ip("-n", namespace, "link", "set", peer, "up")
            _ip("-n", namespace, "link", "set", "lo", "up")
        yield made
    finally:
        for host in made:
            _remove(host.namespace)
            with suppress(RuntimeError):  # gone with its namespace, unless never moved there
                _ip("link", "del", host.link)
