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
    server that never answers); :meth:`restore` forwards again."""

    def __init__(self, target_host: str, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._guard = threading.Lock()
        self._placeholder: socket.socket | None = None
        self._flowing = threading.Event()
        self.restore()

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
            for source, sink in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        with suppress(OSError):
            while self._flowing.wait() and (data := source.recv(65536)):
                self._flowing.wait()
                sink.sendall(data)
        _shut(source, sink)


def _shut(source: socket.socket, sink: socket.socket) -> None:
    for sock in (source, sink):
        with suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
