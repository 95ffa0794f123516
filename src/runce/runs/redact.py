"""Redaction (docs/runs.md#secrets): configured keys and resolved secrets masked in runce's
logs and errors.

``worker.redact`` names keys (matched case-insensitively) whose values are masked wherever
they appear as ``key=value``, ``key: value`` or ``"key": "value"`` in a log record of
runce's loggers (``runce.job``, the ``ctx.log`` of jobs, ``runce.worker``,
``runce.scheduler``) or in a run's stored error; the values of secrets the worker resolved
are masked wherever they appear. runce never logs a run's input.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any

from runce.config import DEFAULT_REDACT
from runce.runs import secrets

MASK = "***"
LOGGERS = ("runce.job", "runce.worker", "runce.scheduler")


def key_pattern(keys: Iterable[str]) -> re.Pattern[str] | None:
    names = sorted({key.lower() for key in keys if key}, key=len, reverse=True)
    if not names:
        return None
    alternatives = "|".join(re.escape(name) for name in names)
    # key, maybe quoted; = or :; then a quoted value or a bare one up to a separator.
    return re.compile(
        rf"""(?i)(?P<key>["']?\b(?:{alternatives})\b["']?\s*[:=]\s*)"""
        r"""(?P<value>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,;&)}\]]+)"""
    )


class Redactor(logging.Filter):
    """Masks configured keys and known secret values in the records it sees."""

    def __init__(self, keys: Iterable[str] = DEFAULT_REDACT) -> None:
        super().__init__()
        keys = list(keys)
        self.pattern = key_pattern(keys)
        # For ASCII text and ASCII keys, a key can match only where its lower-case name is
        # in the lower-cased text: a test a few times cheaper than the pattern's search,
        # which most log lines (one per run) fail.
        names = tuple(sorted({key.lower() for key in keys if key}))
        self._names = names if all(name.isascii() for name in names) else None

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self.scrub(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True

    def scrub(self, text: str) -> str:
        if self.pattern is not None and self._may_name_a_key(text) and self.pattern.search(text):
            text = self.pattern.sub(_masked, text)
        for value in secrets.known_values():
            if value in text:
                text = text.replace(value, MASK)
        return text

    def scrub_many(self, texts: list[str]) -> list[str]:
        """``[self.scrub(text) for text in texts]``, quicker where none of them can need
        masking (a worker's lines of one batch): a key's name and every known secret value
        looked for once in all of them together."""
        joined = "\n".join(texts)
        if not (self.pattern is not None and self._may_name_a_key(joined)) and not any(
            value in joined for value in secrets.known_values()
        ):
            return texts
        return [self.scrub(text) for text in texts]

    def _may_name_a_key(self, text: str) -> bool:
        if self._names is None or not text.isascii():
            return True
        lowered = text.lower()
        for name in self._names:  # noqa: SIM110 (a loop: any() over a generator costs more)
            if name in lowered:
                return True
        return False


_active = Redactor()


def install(keys: Iterable[str]) -> Redactor:
    """Mask ``keys`` (and resolved secrets) in runce's loggers and stored errors from now on."""
    global _active
    redactor = Redactor(keys)
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [f for f in logger.filters if isinstance(f, Redactor)]:
            logger.removeFilter(old)
        logger.addFilter(redactor)
    _active = redactor
    return redactor


def scrub(text: str) -> str:
    """``text`` with the installed redactions applied (the worker's errors go through here)."""
    return _active.scrub(text)


def _masked(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in {'"', "'"} else ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def masked_input(value: Any, keys: Iterable[str]) -> Any:
    """A run's input for people to read: the values of ``keys`` (case-insensitively) and
    every secret reference shown as :data:`MASK` (a reference keeps its name, not a value)."""
    hidden = {key.lower() for key in keys}
    return _mask(value, hidden)


def _mask(value: Any, hidden: set[str]) -> Any:
    if secrets.is_reference(value):
        return f"{MASK} (secret {value[secrets.REFERENCE_KEY]})"
    if isinstance(value, dict):
        return {k: MASK if str(k).lower() in hidden else _mask(v, hidden) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(item, hidden) for item in value]
    return value
