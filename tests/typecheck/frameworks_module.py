"""A user's module on the framework, async and own-connection APIs: type-checked with
``mypy --strict --disallow-any-expr`` by tests/unit/test_frameworks_types.py, never run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import psycopg
import pymongo
from fastapi import Depends, FastAPI
from psycopg_pool import ConnectionPool
from starlette.requests import Request

import runce
from runce.config import ConfigValues
from runce.contrib import asgi
from runce.contrib.django import enqueue_on_commit
from runce.contrib.django.settings import config_values, project_dir, store_url
from runce.stores import from_mongo, from_postgres_pool, from_sqlite
from runce.stores.base import StoreSpec

app = FastAPI(lifespan=asgi.lifespan(worker=True, concurrency=2, kinds=["email.send"], wait=60))


@asynccontextmanager
async def own_lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with asgi.lifespan(apply_tasks=True, shutdown_timeout=10)(app):
        yield


composed = FastAPI(lifespan=own_lifespan)


@dataclass(frozen=True)
class Services:
    ledger: Path


def ledger(services: Annotated[Services, Depends(asgi.services)]) -> dict[str, str]:
    return {"ledger": str(services.ledger)}


app.add_api_route("/ledger", ledger)  # app.get(...) as a decorator is typed with Any


def services_of(request: Request) -> Services:
    services: Services = asgi.services(request)
    return services


@runce.job("email.send")
def send(params: dict[str, str]) -> None:
    print(params["to"])


async def enqueue_some(aconn: psycopg.AsyncConnection[tuple[object, ...]]) -> list[str]:
    one: runce.Run = await runce.aenqueue("email.send", {"to": "a"}, idempotency_key="k1")
    many: list[runce.Run] = await runce.aenqueue_many("email.send", [{"to": "b"}, {"to": "c"}])
    async with aconn.transaction():
        inside: runce.Run = await runce.aenqueue("email.send", {"to": "d"}, connection=aconn)
    later: runce.Run = await send.alater({"to": "e"}, idempotency_key="k2")
    found: runce.Run = await runce.aget_run(one.id)
    page: runce.RunPage = await runce.alist_runs(kind="email.send", limit=10)
    canceled: runce.Run = await runce.acancel_run(found.id)
    return [inside.id, later.id, canceled.state, *(run.id for run in [*many, *page.runs])]


async def remote() -> str:
    async with runce.AsyncClient(
        "http://127.0.0.1:8080", token="t", retry_attempts=3, retry_time=10.0
    ) as client:
        run: runce.Run = await client.enqueue("email.send", {"to": "a"}, idempotency_key="k")
        waited: runce.Run = await client.wait(run.id, timeout=5.0)
        page: runce.RunPage = await client.list_runs(state="queued")
        return waited.state + str(len(page.runs))


def sync_client() -> runce.Run:
    with runce.Client("http://127.0.0.1:8080", retry_attempts=1) as client:
        return client.get_run("r1")


def stores(pool: ConnectionPool[psycopg.Connection[tuple[object, ...]]]) -> list[StoreSpec]:
    client: pymongo.MongoClient[dict[str, object]] = pymongo.MongoClient("mongodb://db/app")
    return [from_sqlite("app.db"), from_postgres_pool(pool), from_mongo(client, "app")]


config: ConfigValues = runce.define_config(store=from_sqlite(".runce/app.db"))


def after_commit() -> None:
    enqueue_on_commit("email.send", {"to": "f"}, idempotency_key="k3")


def boot() -> int:
    try:
        report: runce.RunReport = runce.run_pending_on_boot(wait=30)
    except runce.TasksFailed as failed:
        return failed.not_attempted + len(failed.failed)
    return len(report.results)


def django_store() -> tuple[str, str, Path]:
    values: dict[str, object] = config_values()
    url: str = store_url({"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}, "default")
    return str(values["store"]), url, project_dir()
