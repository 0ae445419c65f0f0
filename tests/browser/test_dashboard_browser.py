"""The dashboard in a real browser, inside the real Airflow UI, over a seeded ledger.

Log in, open the dashboard from Airflow's navigation, find the failed mapped task, re-run
it through the confirmation step, and check through the REST API that exactly that task
instance (map index 1) was cleared. A viewer sees no button and a forged POST is refused;
an unauthenticated request is refused. A page updates itself when the ledger changes.
Screenshots of each view go to tests/artifacts/.
"""

from __future__ import annotations

import re

import pytest
import requests

from airflow_stack import DAG_ID, FAILED_MAP_INDEX, PASSWORDS
from microfair.ledger import RunContext

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TIMEOUT_MS = 30_000


def login(browser, stack, user: str):
    ctx = browser.new_context(viewport={"width": 1440, "height": 1000})
    ctx.set_default_timeout(TIMEOUT_MS)
    page = ctx.new_page()
    page.goto(stack.url + "/")
    page.wait_for_selector("input[name='username']")
    page.fill("input[name='username']", user)
    page.fill("input[name='password']", PASSWORDS[user])
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"^(?!.*/auth/login).*$"))
    page.wait_for_load_state("domcontentloaded")
    return ctx, page


def failed_event_id(stack) -> int:
    (ev,) = [e for e in stack.ledger().events(stage="collect") if e.dag_id == DAG_ID and e.state == "failed"]
    assert (ev.task_id, ev.map_index, ev.run_id) == ("collect", FAILED_MAP_INDEX, stack.run_id)
    return ev.id


def test_unauthenticated_requests_are_refused(stack) -> None:
    for path in ("/", "/datasets", "/compliance", "/events", "/static/dashboard.css", "/datasets/RERUN001"):
        r = requests.get(stack.dashboard + path, timeout=30)
        assert r.status_code == 401, (path, r.status_code)
    r = requests.post(stack.dashboard + f"/rerun/{failed_event_id(stack)}", data={"confirm": "x"}, timeout=30)
    assert r.status_code == 401
    r = requests.get(stack.dashboard + "/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert r.status_code in (401, 403)


def test_viewer_sees_no_button_and_a_forged_post_is_refused(browser, stack, artifacts) -> None:
    ev = failed_event_id(stack)
    before = stack.task_instances()
    ctx, page = login(browser, stack, "viewer")
    try:
        page.goto(stack.dashboard + "/datasets/RERUN001")
        page.wait_for_selector("[data-testid=errors]")
        assert "truncated CZI" in page.inner_text("[data-testid=errors]")
        assert page.locator("[data-testid^=rerun-]").count() == 0
        page.goto(stack.dashboard + "/")
        page.wait_for_selector("[data-testid=failures]")
        assert page.locator(f"tr[data-event='{ev}']").count() == 1
        assert page.locator("[data-testid^=rerun-]").count() == 0
        page.screenshot(path=str(artifacts / "dashboard-viewer-overview.png"), full_page=True)
        # The confirmation page and a forged POST (with the viewer's own session cookie) are refused.
        assert page.request.get(stack.dashboard + f"/rerun/{ev}").status == 403
        forged = page.request.post(stack.dashboard + f"/rerun/{ev}", form={"confirm": "forged"})
        assert forged.status == 403
        r = requests.post(stack.dashboard + f"/rerun/{ev}", data={"confirm": "forged"}, timeout=30,
                          headers={"Authorization": f"Bearer {stack.token('viewer')}"})
        assert r.status_code == 403
    finally:
        ctx.close()
    assert stack.task_instances()[FAILED_MAP_INDEX]["state"] == "failed" == before[FAILED_MAP_INDEX]["state"]
    refused = stack.ledger().audit_entries("rerun_refused")
    assert len(refused) == 2 and {a.actor for a in refused} == {"viewer"}
    assert stack.ledger().audit_entries("rerun") == []


def test_admin_reruns_exactly_the_failed_map_index(browser, stack, artifacts) -> None:
    ev = failed_event_id(stack)
    before = stack.task_instances()
    assert {i: t["state"] for i, t in before.items()} == {0: "success", 1: "failed", 2: "success"}
    ctx, page = login(browser, stack, "admin")
    try:
        # Open the dashboard from the Airflow navigation: it is shown inside the Airflow UI.
        page.get_by_role("link", name="microfair").first.click()
        page.wait_for_url("**/plugin/microfair")
        frame = page.frame_locator("iframe")
        frame.locator("[data-testid=failures]").wait_for()
        assert frame.locator("[data-testid=failures-total]").inner_text().strip() != "0"
        page.screenshot(path=str(artifacts / "dashboard-in-airflow.png"), full_page=True)

        # The failed item, and its button (the admin may clear task instances).
        row = frame.locator(f"tr[data-event='{ev}']")
        assert "collect[1]" in row.inner_text() and "failed" in row.inner_text()
        row.locator(f"[data-testid=rerun-{ev}]").click()
        frame.locator("[data-testid=confirm-rerun]").wait_for()
        assert frame.locator("[data-testid=map-index]").inner_text() == str(FAILED_MAP_INDEX)
        page.screenshot(path=str(artifacts / "dashboard-rerun-confirm.png"), full_page=True)
        assert stack.task_instances()[FAILED_MAP_INDEX]["state"] == "failed"  # nothing happens before confirming
        frame.locator("[data-testid=confirm-rerun]").click()
        frame.get_by_text("Re-run requested").wait_for()
        page.screenshot(path=str(artifacts / "dashboard-dataset.png"), full_page=True)
    finally:
        ctx.close()

    after = stack.task_instances()
    assert after[FAILED_MAP_INDEX]["state"] != "failed"  # cleared: waiting for the scheduler
    assert after[FAILED_MAP_INDEX]["note"] and "admin" in after[FAILED_MAP_INDEX]["note"]
    for i in (0, 2):  # the other map indices are untouched
        assert (after[i]["state"], after[i]["end_date"]) == (before[i]["state"], before[i]["end_date"])
    run = stack.api("GET", f"/dags/{DAG_ID}/dagRuns/{stack.run_id}").json()
    assert run["state"] == "queued"
    (audit,) = stack.ledger().audit_entries("rerun")
    assert audit.actor == "admin" and audit.details["map_index"] == FAILED_MAP_INDEX
    assert audit.details["cleared"] == [{"task_id": "collect", "map_index": FAILED_MAP_INDEX, "run_id": stack.run_id}]


def test_views_and_live_update(browser, stack, artifacts) -> None:
    ctx, page = login(browser, stack, "admin")
    try:
        page.goto(stack.dashboard + "/datasets?stage=qc&stage_state=failed")
        total = page.inner_text("[data-testid=total]")
        assert re.match(r"\d+ dataset", total)
        page.goto(stack.dashboard + "/datasets")
        assert page.locator("table.datasets tbody tr").count() == 50  # server-side pages of 50
        assert page.get_by_text("not configured").count() > 0  # no iRODS / BIA connection in this facility
        page.screenshot(path=str(artifacts / "dashboard-datasets.png"), full_page=True)
        page.goto(stack.dashboard + "/compliance")
        page.wait_for_selector("[data-testid=schedule]")
        assert int(page.inner_text("[data-testid=compliant]")) > 0
        page.screenshot(path=str(artifacts / "dashboard-compliance.png"), full_page=True)

        page.goto(stack.dashboard + "/")
        before = int(page.inner_text("[data-testid=failures-total]"))
        page.screenshot(path=str(artifacts / "dashboard-overview.png"), full_page=True)
        ledger = stack.ledger()
        ledger.upsert_dataset("LIVE001", microscope="zeiss-lsm980", source_path="/l/LIVE001.czi",
                              name="LIVE001.czi", project="DEMO", state="collected")
        with pytest.raises(OSError):
            with ledger.stage("LIVE001", "convert", RunContext(DAG_ID, stack.run_id, "convert", 9)):
                raise OSError("No space left on device")
        # No reload: the server-sent event makes the page re-render itself.
        page.wait_for_function(
            f"() => Number(document.querySelector('[data-testid=failures-total]').innerText) === {before + 1}",
            timeout=TIMEOUT_MS)
        assert page.get_by_text("LIVE001").count() >= 1
    finally:
        ctx.close()
