"""The path and query parameters of the routes, with the limits the OpenAPI document
declares and the server enforces (422 ``invalid-request`` outside them).

Query values arrive as text and are read strictly: ``limit`` is decimal digits (not
``1.0`` nor ``1_0``) and a time is RFC 3339 text with an offset, never a number. A query
parameter the route does not take is refused, as an unknown field of a body is.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import Path, Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BeforeValidator
from starlette.convertors import StringConvertor, register_url_convertor

from runce.api.problems import ProblemError
from runce.api.schemas import NAME_PATTERN, Moment
from runce.runs.service import MAX_PAGE

# A run id is a name without ":" or "/": the ":" starts an action (`/v1/runs/{id}:cancel`).
RUN_ID_PATTERN = r"^[^\x00-\x1f\x7f:/]+$"
# What runce.runs.service.encode_cursor makes: URL-safe base64 without padding.
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
_DIGITS = re.compile(r"[0-9]{1,9}")


class _RunIdConvertor(StringConvertor):
    """``{run_id:run_id}`` in a route's path: a segment without ":"."""

    regex = "[^/:]+"


register_url_convertor("run_id", _RunIdConvertor())


def _digits(value: Any) -> Any:
    if isinstance(value, str) and not _DIGITS.fullmatch(value):
        raise ValueError("a whole number in decimal digits")
    return value


RunId = Annotated[str, Path(min_length=1, max_length=200, pattern=RUN_ID_PATTERN)]
Name = Annotated[str, Path(min_length=1, max_length=200, pattern=NAME_PATTERN)]
NameFilter = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NAME_PATTERN)]
TimeFilter = Annotated[Moment | None, Query()]
Cursor = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=400,
        pattern=CURSOR_PATTERN,
        description="The `next_cursor` of the page before",
    ),
]

PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE), BeforeValidator(_digits)]


def refuse_unknown_query(request: Request) -> None:
    """A dependency of every route: a query parameter it does not take is a 422 naming
    it (a misspelt filter would otherwise list everything)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not request.query_params:
        return
    known = _query_names(route.dependant)  # a handful of dependants: cheap to walk
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        takes = ", ".join(sorted(known)) or "none"
        raise ProblemError(
            "invalid-request",
            f"{request.url.path} takes no query parameter {unknown[0]!r} (it takes: {takes})",
        )


def _query_names(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for inner in dependant.dependencies:
        names |= _query_names(inner)
    return names
