"""The web dashboard at ``/ui`` of ``runce serve`` (docs/dashboard.md): server-rendered
pages over the same library calls and token scopes as the HTTP API, with no build step and
nothing fetched from elsewhere.

:func:`mount` adds its routes (kept out of ``/v1`` and of the OpenAPI document) and the
handler that answers its errors as pages.
"""

from __future__ import annotations

from fastapi import FastAPI

from runce.api.ui import actions, pages, render


def mount(app: FastAPI) -> None:
    """Serve the dashboard from ``app`` under ``/ui``."""
    render.install(app)
    app.include_router(pages.router)
    app.include_router(actions.router)
