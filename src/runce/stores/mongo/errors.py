"""pymongo's exceptions turned into runce's, each one sentence naming the server, the
database and what runce was doing; the driver's exception stays as ``__cause__``."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from bson.errors import BSONError
from pymongo.errors import (
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from runce.errors import StoreError, StoreUnavailable
from runce.stores.mongo.location import Location

AUTHENTICATION_FAILED = 18
UNAUTHORIZED = 13
_NOISE = re.compile(r" \(configured timeouts:.*|, Timeout: .*|, full error: .*", re.DOTALL)


@contextmanager
def translated(what: str, location: Location, timeout: float) -> Iterator[None]:
    """Turn a driver exception raised in the block into a runce one saying ``what`` failed."""
    try:
        yield
    except (PyMongoError, BSONError) as exc:
        raise translate(exc, what, location, timeout) from exc


def translate(
    exc: PyMongoError | BSONError, what: str, location: Location, timeout: float
) -> StoreError:
    where = f"MongoDB at {location.servers} (database {location.database})"
    if isinstance(exc, ServerSelectionTimeoutError):
        reason = _reason(exc, location)
        return StoreUnavailable(
            f"could not {what}: {where} did not answer within {timeout:g} s ({reason})"
        )
    if isinstance(exc, ConnectionFailure):
        reason = _reason(exc, location)
        return StoreUnavailable(f"could not {what}: the connection to {where} failed ({reason})")
    if isinstance(exc, OperationFailure) and exc.code == AUTHENTICATION_FAILED:
        return StoreUnavailable(
            f"could not {what}: {where} refused the credentials in the URL ({_message(exc)})"
        )
    if isinstance(exc, OperationFailure) and exc.code == UNAUTHORIZED:
        return StoreUnavailable(
            f"could not {what}: {where} did not authorize the user in the URL ({_message(exc)})"
        )
    return StoreError(f"could not {what} ({where}): {_message(exc)}")


def _message(exc: PyMongoError | BSONError) -> str:
    if isinstance(exc, OperationFailure) and isinstance(exc.details, dict):
        text = str(exc.details.get("errmsg") or exc)
    else:
        text = str(exc)
    return _NOISE.sub("", text).strip() or type(exc).__name__


def _reason(exc: PyMongoError, location: Location) -> str:
    """The first server's complaint, without the driver's topology dump or host prefix."""
    text = _message(exc)
    for server in location.servers.split(","):
        text = text.removeprefix(f"{server}: ")
    return text
