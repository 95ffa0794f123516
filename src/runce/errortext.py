"""Error text that is safe to store and print, whatever the exception it comes from does.

Task and job code can raise anything: an exception whose ``__str__`` raises, whose message
holds a lone surrogate (which no UTF-8 store can keep) or a NUL (which PostgreSQL text
cannot), or one megabytes long. Every error runce records goes through :func:`describe`.
"""

from __future__ import annotations

ERROR_CAP = 16 * 1024  # bytes of UTF-8, the most of an error runce keeps
TRUNCATED = "…[truncated]…"


def message_of(exc: BaseException) -> str:
    """``str(exc)``, or a placeholder when that raises; made safe by :func:`clean`."""
    try:
        text = str(exc)
    except Exception as failure:  # a broken __str__ must not lose the failure it describes
        text = f"<the message could not be read: {type(failure).__name__}>"
    return clean(text)


def describe(exc: BaseException) -> str:
    """``Type: message`` (the type alone when there is no message), safe and capped."""
    name = clean(type(exc).__name__)
    message = message_of(exc)
    return cap(f"{name}: {message}" if message else name)


def clean(text: str) -> str:
    """Lone surrogates and NUL written as escapes, so every store can keep the text."""
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe.replace("\x00", "\\x00")


def cap(text: str, keep_end: bool = False) -> str:
    """At most :data:`ERROR_CAP` bytes; a traceback (``keep_end``) keeps its end, the cause."""
    data = text.encode("utf-8", "backslashreplace")
    if len(data) <= ERROR_CAP:
        return text
    room = ERROR_CAP - len(TRUNCATED.encode())
    if keep_end:
        return TRUNCATED + data[-room:].decode("utf-8", errors="ignore")
    return data[:room].decode("utf-8", errors="ignore") + TRUNCATED
