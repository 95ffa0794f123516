"""A user's module, type-checked with ``mypy --strict`` by tests/unit/test_public_types.py.

Every expression here must have a real type: no ``Any`` and no bare ``object`` may reach
the user through runce's public names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Unpack

from pydantic import BaseModel

import runce


class Email(BaseModel):
    to: str
    subject: str


class Sent(BaseModel):
    message_id: str


@runce.job("email.send", max_attempts=5)
def send_email(params: Email, ctx: runce.JobContext) -> Sent:
    ctx.progress(50, "sending")
    return Sent(message_id=f"{ctx.run.id}:{params.to}")


@runce.job("report.build")
async def build_report(params: Email) -> int:
    return len(params.subject)


@runce.task(title="Create the queues")
def run(ctx: runce.TaskContext) -> None:
    ctx.log.info("ready")


def send_welcome(to: str, **options: Unpack[runce.EnqueueOptions]) -> runce.Run:
    """A user's helper passes the enqueue options on, typed."""
    return send_email.later(Email(to=to, subject="welcome"), **options)


def queued_of(**query: Unpack[runce.RunQuery]) -> list[runce.Run]:
    """A user's helper passes a run query on, typed."""
    return runce.list_runs(**query).runs


async def enqueue_from_async() -> str:
    run_one: runce.Run = await build_report.alater(
        Email(to="h@example.com", subject="x"), priority=2, concurrency_key="h"
    )
    again: runce.Run = await runce.aenqueue("email.send", {}, project_id="p")
    report: runce.RunReport = await runce.arun_tasks(dry_run=True, only=["a"], wait=1.0)
    return run_one.id + again.id + str(report.ok)


def enqueue_things() -> list[str]:
    run_one: runce.Run = send_email.later(
        Email(to="a@example.com", subject="hi"), idempotency_key="welcome-a"
    )
    later_run: runce.Run = build_report.later(
        Email(to="b@example.com", subject="hi"), run_at=datetime.now(UTC)
    )
    sent: Sent = send_email.now(Email(to="c@example.com", subject="now"))
    length: int = build_report.now(Email(to="c@example.com", subject="now"))
    results: list[runce.JobResult[Email, Sent]] = send_email.batch(
        [Email(to="d@example.com", subject="x")], concurrency=2
    )
    ids = [r.run_id or "" for r in results if r.ok and r.result is not None]
    plain: runce.Run = runce.enqueue("email.send", {"to": "e@example.com"}, priority=1)
    welcomed = send_welcome("i@example.com", max_attempts=2, correlation_id="signup")
    many: list[runce.Run] = runce.enqueue_many("email.send", [{"to": "f@example.com"}])
    page: runce.RunPage = runce.list_runs(state="queued", limit=10, order="oldest")
    kept: runce.Run = runce.ensure_idempotent(
        "nightly", lambda: runce.enqueue("email.send", {}, idempotency_key="nightly")
    )
    states = [r.state for r in page.runs]
    got: runce.Run = runce.get_run(plain.id)
    done: runce.Run = runce.wait(got.id, timeout=1.0)
    canceled: runce.Run = runce.cancel_run(done.id)
    report: runce.RunReport = runce.run_tasks(dry_run=True)
    oks = [t.id for t in report.results]
    with runce.Client("http://127.0.0.1:8000", token="t") as client:
        remote: runce.Run = client.enqueue("email.send", {"to": "g@example.com"})
        listed = client.list_runs(limit=5, order="newest")
    return [
        run_one.id,
        later_run.id,
        sent.message_id,
        str(length),
        *ids,
        *[m.id for m in many],
        *states,
        canceled.state,
        kept.id,
        *oks,
        remote.id,
        welcomed.id,
        *[r.id for r in queued_of(state="queued", kind="email.send", limit=5)],
        *[r.id for r in listed.runs],
    ]
