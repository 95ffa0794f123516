"""An idempotency key in the ``Idempotency-Key`` header.

A header value is ASCII and HTTP trims the spaces at its ends, while a key is any text the
library accepts (:func:`runce.runs.service.check_idempotency_key`). So the key travels
percent-encoded as UTF-8 (RFC 3986): ``runce.Client`` encodes every character that is not
printable ASCII, and spaces and ``%``; the server decodes every ``%XX``. A key of printable
ASCII without spaces or ``%`` (a UUID, ``order-4711``) is sent as it is.
"""

from __future__ import annotations

import re
import string
from urllib.parse import quote, unquote

from runce.errors import UsageError
from runce.runs.service import MAX_KEY, check_idempotency_key

HEADER = "Idempotency-Key"
# What the header may hold: printable ASCII, a % only as an escape; up to 255 characters of
# four UTF-8 bytes each, every byte escaped.
HEADER_PATTERN = r"^(?:[ -$&-~]|%[0-9A-Fa-f]{2})+$"
MAX_HEADER = MAX_KEY * 4 * 3
# Printable ASCII but the escape character and the space, which HTTP would trim.
_AS_IS = "".join(sorted(set(string.printable[:94]) - {"%"}))
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_NOT_ASCII = re.compile(r"[^\x20-\x7e]")


def to_header(key: str) -> str:
    """The header value that carries ``key`` (refused here, as the library refuses it,
    when it breaks the rule)."""
    return quote(check_idempotency_key(key), safe=_AS_IS)


def from_header(value: str) -> str:
    """The key a header value carries; a value that is not ASCII or not valid
    percent-encoding is a UsageError saying how to send the key."""
    if _NOT_ASCII.search(value):
        raise UsageError(
            f"the {HEADER} header must be printable ASCII; percent-encode other characters "
            "as UTF-8 (é is %C3%A9)"
        )
    if _STRAY_PERCENT.search(value):
        raise UsageError(
            f"the {HEADER} header {value!r} has a % that starts no %XX escape; "
            "send a % of the key as %25"
        )
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise UsageError(
            f"the {HEADER} header {value!r} decodes to bytes that are not UTF-8"
        ) from None
