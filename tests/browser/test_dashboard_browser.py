"""What a person does in the dashboard, in headless chromium: sign in, filter, watch a run
move while a real worker processes it, cancel, and meet refusals and hostile strings."""

from __future__ import annotations

import re
import signal
from typing import Any

import pytest

from tests.browser.conftest import SHOTS, WAIT, Dashboard, sign_in, watch

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300), pytest.mark.xdist_group("browser")]

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def test_sign_in_and_filter_runs(context: Any, dashboard: Dashboard) -> None:
    for i in range(3):
        dashboard.enqueue("ui.quick", {"input": {"i": i}})
    wanted = [dashboard.enqueue("ui.step", {"input": {"gate": "/nonexistent"}}) for _ in range(2)]
    page = context.new_page()
    problems = watch(page)
    page.goto(dashboard.url + "/ui/runs")
    expect(page).to_have_url(re.compile(r"/ui/login\?next="))
    expect(page.get_by_label("API token")).to_have_attribute("type", "password")
    page.get_by_label("API token").fill(dashboard.tokens["writer"])
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/ui/runs$"))
    expect(page.locator("tr[data-run-id]")).to_have_count(5)

    page.get_by_label("Kind").fill("ui.step")
    page.get_by_label("State").select_option("queued")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"kind=ui.step"))
    rows = page.locator("tr[data-run-id]")
    expect(rows).to_have_count(2)
    assert {rows.nth(i).get_attribute("data-run-id") for i in range(2)} == {
        run["id"] for run in wanted
    }
    page.get_by_label("Find by id, idempotency key or correlation id").fill(wanted[0]["id"])
    page.get_by_role("button", name="Show").click()
    expect(page.locator("tr[data-run-id]")).to_have_count(1)
    assert problems == []


def test_a_run_moves_on_screen_while_a_worker_processes_it(
    context: Any, dashboard: Dashboard
) -> None:
    gate = dashboard.space.root / "gate"
    run = dashboard.enqueue("ui.step", {"input": {"gate": str(gate)}})
    page = context.new_page()
    problems = watch(page)
    sign_in(page, dashboard, "writer", f"/ui/runs/{run['id']}")
    listing = context.new_page()
    listing.goto(dashboard.url + "/ui/runs?kind=ui.step&state=queued")  # followed out of it
    state = page.locator(".run [data-field=state]")
    row_state = listing.locator(f'tr[data-run-id="{run["id"]}"] [data-field=state]')
    expect(state).to_have_text("queued")
    page.evaluate("window.stillThePage = true")  # gone if the page reloads

    worker = dashboard.space.start("worker", "--log-level", "warning")
    try:
        expect(state).to_have_text("running", timeout=WAIT)
        expect(row_state).to_have_text("running", timeout=WAIT)
        expect(page.locator(".run [data-field=progress]")).to_have_text("10%", timeout=WAIT)
        expect(page.locator("[data-field=progress-message]")).to_have_text("waiting for the gate")
        expect(page.locator("[data-field=outcome]")).to_be_hidden()
        gate.write_text("open")
        expect(state).to_have_text("succeeded", timeout=WAIT)
        expect(row_state).to_have_text("succeeded", timeout=WAIT)
        # Its result, worker and times arrive without a reload, as text.
        result = page.locator("[data-field=outcome] [data-field=result]")
        expect(result).to_have_text(f'{{\n  "passed": "{gate}"\n}}', timeout=WAIT)
        expect(page.locator("[data-field=outcome]")).to_be_visible()
        expect(page.locator("[data-field=output-ref]")).to_be_hidden()
        for name in ("worker", "started", "finished"):
            expect(page.locator(f".run [data-field={name}]")).not_to_have_text("—")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.communicate(timeout=60)
    assert page.evaluate("window.stillThePage") is True
    assert dashboard.run(run["id"])["state"] == "succeeded"
    assert problems == []


def test_cancel_from_the_page_changes_the_store(context: Any, dashboard: Dashboard) -> None:
    run = dashboard.enqueue("ui.quick")
    page = context.new_page()
    sign_in(page, dashboard, "writer", f"/ui/runs/{run['id']}")
    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel this run?"
    page.get_by_role("button", name="Cancel").click()
    expect(page.locator(".run [data-field=state]")).to_have_text("canceled", timeout=WAIT)
    assert dashboard.run(run["id"])["state"] == "canceled"
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    expect(page.get_by_role("button", name="Cancel")).to_be_hidden()


def test_a_schedule_is_switched_off_and_on(context: Any, dashboard: Dashboard) -> None:
    drained = dashboard.space.runce("worker", "--drain", "--log-level", "warning")
    assert drained.returncode == 0, drained.stderr  # stores the declared schedules
    page = context.new_page()
    sign_in(page, dashboard, "writer", "/ui/schedules")
    row = page.locator("tr", has=page.get_by_role("rowheader", name="nightly.report"))
    expect(row.locator(".state")).to_have_text("enabled")
    row.get_by_role("button", name="Disable").click()
    expect(row.locator(".state")).to_have_text("disabled", timeout=WAIT)
    listed = dashboard.space.runce("schedules", "list")
    assert re.search(r"^OFF +nightly\.report", listed.stdout, re.M), listed.stdout
    row.get_by_role("button", name="Enable").click()
    expect(row.locator(".state")).to_have_text("enabled", timeout=WAIT)


def test_a_reader_sees_no_actions_and_a_forged_post_is_refused(
    context: Any, dashboard: Dashboard
) -> None:
    run = dashboard.enqueue("ui.quick")
    page = context.new_page()
    sign_in(page, dashboard, "reader", f"/ui/runs/{run['id']}")
    expect(page.locator(".run [data-field=state]")).to_have_text("queued")
    expect(page.get_by_role("button", name="Cancel")).to_have_count(0)
    expect(page.get_by_role("button", name="Retry")).to_have_count(0)
    csrf = page.locator("form.signout input[name=csrf]").get_attribute("value")
    forged = page.request.post(
        f"{dashboard.url}/ui/runs/{run['id']}/cancel", form={"csrf": csrf}, max_redirects=0
    )
    assert forged.status == 403
    assert dashboard.run(run["id"])["state"] == "queued"


def test_an_action_without_the_csrf_token_is_refused(context: Any, dashboard: Dashboard) -> None:
    run = dashboard.enqueue("ui.quick")
    page = context.new_page()
    sign_in(page, dashboard, "writer", f"/ui/runs/{run['id']}")
    url = f"{dashboard.url}/ui/runs/{run['id']}/cancel"
    assert page.request.post(url, form={}, max_redirects=0).status == 403
    assert page.request.post(url, form={"csrf": "0" * 64}, max_redirects=0).status == 403
    assert dashboard.run(run["id"])["state"] == "queued"


def test_hostile_strings_are_shown_as_text_and_run_nothing(
    context: Any, dashboard: Dashboard
) -> None:
    run = dashboard.enqueue("ui.hostile", {"input": {"note": HOSTILE}, "correlation_id": HOSTILE})
    drained = dashboard.space.runce("worker", "--drain", "--log-level", "warning")
    assert drained.returncode == 0, drained.stderr
    assert HOSTILE in (dashboard.run(run["id"])["error"] or "")
    page = context.new_page()
    problems = watch(page)
    sign_in(page, dashboard, "writer", f"/ui/runs/{run['id']}")
    expect(page.locator(".run [data-field=state]")).to_have_text("failed")
    expect(page.locator("pre[data-field=input]")).to_contain_text(HOSTILE.replace('"', '\\"'))
    expect(page.locator("pre[data-field=error]")).to_contain_text(HOSTILE)
    # The attempt's traceback, folded away until asked for, as text: the hostile message
    # in its last line is shown, not parsed.
    traceback = page.locator("details.traceback pre[data-field=traceback]")
    expect(traceback).to_be_hidden()
    page.get_by_text("Traceback of attempt 1").click()
    expect(traceback).to_be_visible()
    expect(traceback).to_contain_text("Traceback (most recent call last):")
    expect(traceback).to_contain_text('ui_jobs.py", line')
    expect(traceback).to_contain_text('in hostile\n    raise ValueError(params["note"])\n')
    expect(traceback).to_contain_text(f"ValueError: {HOSTILE}")
    for path in (f"/ui/runs/{run['id']}", "/ui/runs", "/ui"):
        page.goto(dashboard.url + path)
        page.wait_for_timeout(2500)  # a poll of the live state passes over the strings too
        assert page.locator("img").count() == 0
        assert page.locator("main script").count() == 0
    assert problems == []


@pytest.mark.parametrize("width", [1280, 390])
def test_every_page_at_both_widths(browser: Any, dashboard: Dashboard, width: int) -> None:
    """Screenshots of every page for people to look at (kept under tests/.artifacts), and
    every page reachable by keyboard: the skip link comes first."""
    failed = dashboard.enqueue("ui.hostile", {"input": {"note": "no such customer"}})
    dashboard.space.runce("worker", "--drain", "--log-level", "warning")
    for i in range(4):
        dashboard.enqueue("ui.quick", {"input": {"i": i}, "correlation_id": f"req-{i}"})
    dashboard.space.task("0001_backfill", "@runce.task()\ndef run(ctx):\n    pass\n")
    context = browser.new_context(viewport={"width": width, "height": 900})
    try:
        page = context.new_page()
        problems = watch(page)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.goto(dashboard.url + "/ui/login")
        page.screenshot(path=str(SHOTS / f"login-{width}.png"), full_page=True)
        sign_in(page, dashboard, "writer")
        pages = {
            "overview": "/ui",
            "runs": "/ui/runs",
            "run": f"/ui/runs/{failed['id']}",
            "tasks": "/ui/tasks",
            "schedules": "/ui/schedules",
            "workers": "/ui/workers",
        }
        for name, path in pages.items():
            page.goto(dashboard.url + path)
            page.screenshot(path=str(SHOTS / f"{name}-{width}.png"), full_page=True)
            page.keyboard.press("Tab")
            assert page.evaluate("document.activeElement.textContent") == "Skip to content"
            wide = page.evaluate("document.documentElement.scrollWidth")
            assert wide <= width + 1, f"{name} scrolls sideways at {width}px ({wide}px)"
        assert problems == []
    finally:
        context.close()


SLOW_BACKFILL = """
import time

def fetch(ctx, cursor, size):
    start = cursor or 0
    batch = list(range(start, min(start + size, 600)))
    return batch, (start + len(batch) if start + len(batch) < 600 else None)

def process(ctx, batch):
    time.sleep(0.1)

task = runce.Backfill(
    title="slow <b>fill</b>", fetch=fetch, process=process, batch_size=5,
    total=lambda ctx: 600,
)
"""


def test_a_running_backfill_moves_on_screen_and_is_paused_resumed_and_canceled(
    context: Any, dashboard: Dashboard
) -> None:
    task_id = "0001_slow_fill"
    dashboard.space.task(task_id, SLOW_BACKFILL)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(str(error)))
    sign_in(page, dashboard, "writer", "/ui/tasks")
    row = page.locator(f'tr[data-task-id="{task_id}"]')
    state = row.locator("[data-field=state]")
    expect(state).to_have_text("PENDING")
    page.evaluate("window.stillThePage = true")

    runner = dashboard.space.start("run")
    try:
        expect(state).to_have_text("RUNNING", timeout=WAIT)
        progress = row.locator("[data-field=progress]")
        expect(progress).to_contain_text(
            re.compile(r"of 600 done .*/s, about .* left"), timeout=WAIT
        )
        first = progress.text_content()
        expect(progress).not_to_have_text(first or "", timeout=WAIT)  # it moves, no reload
        assert page.evaluate("window.stillThePage") is True
        expect(row.locator("progress")).to_be_visible()
        expect(row.get_by_role("button", name="Resume")).to_be_hidden()

        row.get_by_role("button", name="Pause").click()
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 0, out + err
        assert f"PAUSED   {task_id}" in out
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    expect(state).to_have_text("PAUSED", timeout=WAIT)
    done = int(
        re.sub(
            r"[^0-9]",
            "",
            (row.locator("[data-field=progress]").text_content() or "").split(" of ")[0],
        )
    )
    assert 0 < done < 600
    expect(row.get_by_role("button", name="Pause")).to_be_hidden()
    resume = row.get_by_role("button", name="Resume")
    expect(resume).to_be_visible()
    resume.focus()  # by keyboard
    page.keyboard.press("Enter")
    expect(state).not_to_have_text("PAUSED", timeout=WAIT)
    expect(row.get_by_role("button", name="Pause")).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())  # "Cancel 0001_slow_fill? ..."
    row.get_by_role("button", name="Cancel").click()
    expect(state).to_have_text("CANCELED", timeout=WAIT)
    listed = dashboard.space.runce("status")
    assert re.search(rf"CANCELED +{task_id}", listed.stdout), listed.stdout
    assert errors == []
