"""Who is calling: the bearer token of a request, its scopes and its projects
(docs/http-api.md#tokens-scopes-and-projects).

``Depends(require("runs:read"))`` on a route answers 401 without a token or with an
unknown, malformed or revoked one, and 403 when the token lacks the scope. Project checks
come after the run is read: :meth:`Caller.check_run` (403 for another project's run).
Worker routes use ``require("runs:work", all_projects=True)``: a worker sees every
project's runs, so a token bound to projects may not work runs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runce.api.appstate import AppState, app_state
from runce.api.problems import ProblemError
from runce.api.schemas import Scope
from runce.domain.runs import Run
from runce.domain.tokens import Token
from runce.runs import tokens

log = logging.getLogger("runce.api")

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A token from `runce tokens create`: `Authorization: Bearer rnc_...`",
)


@dataclass(frozen=True)
class Caller:
    token: Token

    @property
    def bound(self) -> bool:
        """Whether the token reaches only some projects."""
        return bool(self.token.projects)

    def may_reach(self, project_id: str | None) -> bool:
        return not self.bound or project_id in self.token.projects

    def check_run(self, run: Run) -> Run:
        if not self.may_reach(run.project_id):
            raise ProblemError(
                "forbidden", f"run {run.id} belongs to a project this token may not reach"
            )
        return run

    def check_project(self, project_id: str | None) -> str | None:
        """The project to act in: the one asked for when the token reaches it; for a token
        bound to one project and no project asked, that project."""
        if project_id is None and len(self.token.projects) == 1:
            return self.token.projects[0]
        if project_id is None and self.bound:
            raise ProblemError(
                "forbidden",
                "this token is bound to projects "
                f"{', '.join(self.token.projects)}: name one as project_id",
            )
        return None if project_id is None else self._reachable(project_id)

    def projects_to_read(self, project_id: str | None) -> tuple[str, ...] | None:
        """The projects whose runs a read returns: the one asked for when the token reaches
        it; else every project of the token, or all (None) for a token bound to none."""
        if project_id is not None:
            return (self._reachable(project_id),)
        return self.token.projects or None

    def _reachable(self, project_id: str) -> str:
        if not self.may_reach(project_id):
            raise ProblemError("forbidden", f"this token may not reach project {project_id!r}")
        return project_id


_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


def authenticate(ctx: AppState, credentials: HTTPAuthorizationCredentials | None) -> Caller:
    if credentials is None:
        raise ProblemError(
            "unauthorized",
            "this route needs a token: Authorization: Bearer rnc_... (`runce tokens create`)",
            headers=_UNAUTHORIZED,
        )
    parsed = tokens.parse(credentials.credentials)
    found = ctx.tokens.find(parsed[0]) if parsed else None
    if parsed is None or not tokens.matches(found, parsed[1]) or found is None or found.revoked:
        why = "malformed" if parsed is None else "unknown" if found is None else "refused"
        log.info("refused a %s token", why)
        raise ProblemError("unauthorized", "the token is unknown or revoked", headers=_UNAUTHORIZED)
    if ctx.last_used.due(found.id):
        ctx.tokens.touch(found.id)
    return Caller(found)


def require(scope: Scope, *, all_projects: bool = False) -> Callable[..., Caller]:
    """A dependency: the caller, when its token has ``scope`` (and, with ``all_projects``,
    is bound to no project)."""

    def caller(
        ctx: Annotated[AppState, Depends(app_state)],
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Caller:
        found = authenticate(ctx, credentials)
        if scope not in found.token.scopes:
            raise ProblemError("forbidden", f"this token lacks the scope {scope}")
        if all_projects and found.bound:
            raise ProblemError(
                "forbidden", "this route needs a token not bound to projects (it reaches all runs)"
            )
        return found

    return caller
