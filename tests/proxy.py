"""A TCP proxy in front of a database server, so that a test can make the server unreachable
for the processes that connect through it (and reachable again) without touching the server."""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class Proxy:
    """Forwards connections from ``host:port`` (``127.0.0.1`` unless told) to ``target``.
    :meth:`cut` closes every connection and refuses new ones (nothing listens on the port);
    :meth:`freeze` keeps every connection open and accepts new ones but forwards nothing (a
    server that never answers); :meth:`restore` forwards again. :meth:`lose_reply` cuts one
    connection at one message, before or after the server gets it."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._placeholder: socket.socket | None = None
        self._flowing = threading.Event()
        self._trap: _Trap | None = None
        self.sprung = threading.Event()
        self.restore()

    def lose_reply(self, seen: bytes, then: bytes, *, delivered: bool = True) -> None:
        """On the first connection whose client sends ``seen`` and, in a later message,
        ``then``: forward ``then`` to the server (unless not ``delivered``), drop whatever the
        server answers, and close the connection once it has answered (or at once). With a
        COMMIT delivered, the server has committed and the client never hears so."""
        self.sprung.clear()
        self._trap = _Trap(seen, then, delivered)

    def freeze(self) -> None:
        self._flowing.clear()

    def restore(self) -> None:
        self._flowing.set()
        if self._listener is not None:  # frozen, not cut: forward again
            return
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._guard:
            listener, self._listener = self._listener, None
            sockets, self._sockets = self._sockets, set()
        if listener is not None:
            with suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            # Bound but not listening: connections are refused, and no other process can
            # take the port meanwhile (a server there would leave clients waiting instead).
            self._placeholder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self._placeholder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self._placeholder.bind((self.host, self.port))
        for sock in sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.cut()
        if self._placeholder is not None:
            self._placeholder.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            with self._guard:
                if self._listener is not listener:  # cut meanwhile
                    client.close()
                    server.close()
                    return
                self._sockets.update((client, server))
            link = _Link()
            for source, sink, asks in ((client, server, True), (server, client, False)):
                args = (source, sink, link, asks)
                threading.Thread(target=self._pipe, args=args, daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, link: _Link, asks: bool) -> None:
        """Forward what ``source`` sends (the client when ``asks``, else the server)."""
        with suppress(OSError):
            while self._flowing.wait() and (data := source.recv(65536)):
                self._flowing.wait()
                if asks and self._springs(link, data):
                    if not link.delivered:
                        break
                elif link.cut:
                    break  # the server's answer to the trapped message: dropped
                sink.sendall(data)
        _shut(source, sink)

    def _springs(self, link: _Link, data: bytes) -> bool:
        """Whether ``data`` is the message the trap waits for on ``link`` (then sprung)."""
        trap = self._trap
        if trap is None or link.cut:
            return False
        if not link.seen:
            link.seen = trap.seen in data
            return False
        with self._guard:
            if trap.then not in data or self._trap is not trap:
                return False
            self._trap = None
        link.cut = True
        link.delivered = trap.delivered
        self.sprung.set()
        return True


class _Trap:
    def __init__(self, seen: bytes, then: bytes, delivered: bool) -> None:
        self.seen = seen
        self.then = then
        self.delivered = delivered


class _Link:
    """What a trap knows of one client connection."""

    def __init__(self) -> None:
        self.seen = False
        self.cut = False
        self.delivered = False


def _shut(source: socket.socket, sink: socket.socket) -> None:
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
