"""The dashboard in a real browser, inside the real Airflow UI, over a real ingest and a seeded ledger.

Log in, open the dashboard from Airflow's navigation, find the failed mapped task, re-run
it through the confirmation step, and check through the REST API that exactly that task
instance (map index 1) was cleared. A viewer sees no button and a forged POST is refused;
an unauthenticated request is refused. A page updates itself when the ledger changes.
The detail page of a dataset from a real ingest shows its QC table and thumbnails that load;
quarantined datasets offer a release, not a re-run; the datasets table fits a 1,400 px window.
Screenshots of each view go to tests/artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from airflow_stack import DAG_ID, FAILED_MAP_INDEX, IRODS_PASSWORD, PASSWORDS
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


def _dependencies(dependant) -> Iterator[object]:
    for dep in dependant.dependencies:
        yield dep.call
        yield from _dependencies(dep)


def test_every_route_depends_on_airflow_authentication() -> None:
    """Each route of the app, present and future, requires an authenticated reader (GetUserDep)."""
    from fastapi.routing import APIRoute

    from airflow.api_fastapi.core_api.security import get_user
    from microfair_dashboard.app import create_app
    from microfair_dashboard.security import require_reader

    routes = [r for r in create_app().routes if isinstance(r, APIRoute)]
    assert {r.path for r in routes} >= {"/", "/datasets", "/datasets/{uid}", "/datasets/{uid}/thumbnails/{n}",
                                        "/compliance", "/rerun/{event_id}", "/events", "/static/{path:path}"}
    for r in routes:
        calls = set(_dependencies(r.dependant))
        assert require_reader in calls and get_user in calls, f"{r.methods} {r.path} is not authenticated"


def test_unauthenticated_requests_are_refused(stack) -> None:
    ev = failed_event_id(stack)
    for path in ("/", "/datasets", "/compliance", "/events", "/static/dashboard.css", "/datasets/RERUN001",
                 "/datasets/RERUN001/thumbnails/0", f"/rerun/{ev}", "/static/vendor/htmx.min.js"):
        r = requests.get(stack.dashboard + path, timeout=30)
        assert r.status_code == 401, (path, r.status_code)
        assert "truncated CZI" not in r.text and "RERUN" not in r.text
    r = requests.post(stack.dashboard + f"/rerun/{failed_event_id(stack)}", data={"confirm": "x"}, timeout=30)
    assert r.status_code == 401
    r = requests.get(stack.dashboard + "/", headers={"Authorization": "Bearer not-a-jwt"}, timeout=30)
    assert r.status_code in (401, 403)


def test_viewer_sees_no_button_and_a_forged_post_is_refused(browser, stack, shoot) -> None:
    ev = failed_event_id(stack)
    before = stack.task_instances()
    ctx, page = login(browser, stack, "viewer")
    try:
        page.goto(stack.dashboard + "/datasets/RERUN001")
        page.wait_for_selector("[data-testid=errors]")
        assert "truncated CZI" in page.inner_text("[data-testid=errors]")
        assert page.locator("[data-testid^=rerun-]").count() == 0
        # iRODS has a connection (configured, nothing registered yet); BioStudies has none.
        assert "Not registered yet" in page.inner_text("[data-testid=irods]")
        assert "not configured" in page.inner_text("[data-testid=bia]")
        page.goto(stack.dashboard + "/")
        page.wait_for_selector("[data-testid=failures]")
        assert page.locator(f"tr[data-event='{ev}']").count() == 1
        assert page.locator("[data-testid^=rerun-]").count() == 0
        shoot(page, "dashboard-viewer-overview.png")
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


def test_admin_reruns_exactly_the_failed_map_index(browser, stack, shoot) -> None:
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
        inner = next(f for f in page.frames if "/microfair" in f.url)
        inner.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")  # painted
        shoot(page, "dashboard-in-airflow.png")

        # The failed item, and its button (the admin may clear task instances).
        row = frame.locator(f"tr[data-event='{ev}']")
        assert "collect[1]" in row.inner_text() and "failed" in row.inner_text()
        row.locator(f"[data-testid=rerun-{ev}]").click()
        frame.locator("[data-testid=confirm-rerun]").wait_for()
        assert frame.locator("[data-testid=map-index]").inner_text() == str(FAILED_MAP_INDEX)
        # Airflow's REST API says whether the DAG is paused; the page warns when it is.
        paused = stack.api("GET", f"/dags/{DAG_ID}").json()["is_paused"]
        assert (frame.locator("[data-testid=run-warning]", has_text="is paused").count() == 1) == paused
        shoot(page, "dashboard-rerun-confirm.png")
        assert stack.task_instances()[FAILED_MAP_INDEX]["state"] == "failed"  # nothing happens before confirming
        frame.locator("[data-testid=confirm-rerun]").click()
        frame.get_by_text("Re-run requested").wait_for()
        shoot(page, "dashboard-rerun-done.png")
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


def test_views_and_live_update(browser, stack, shoot) -> None:
    ctx, page = login(browser, stack, "admin")
    try:
        page.goto(stack.dashboard + "/datasets?stage=qc&stage_state=failed")
        total = page.inner_text("[data-testid=total]")
        assert re.match(r"\d+ dataset", total)
        page.goto(stack.dashboard + "/datasets")
        assert page.locator("table.datasets tbody tr").count() == 50  # server-side pages of 50
        assert page.get_by_text("not configured").count() > 0  # no iRODS / BIA connection in this facility
        page.goto(stack.dashboard + "/datasets?page_size=20")
        assert page.locator("table.datasets tbody tr").count() == 20
        page.goto(stack.dashboard + "/compliance")
        page.wait_for_selector("[data-testid=schedule]")
        assert int(page.inner_text("[data-testid=compliant]")) > 0
        shoot(page, "dashboard-compliance.png")

        page.goto(stack.dashboard + "/")
        before = int(page.inner_text("[data-testid=failures-total]"))
        shoot(page, "dashboard-overview.png")
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


def _published_dataset(stack) -> str:
    """The really ingested good dataset, then registered in iRODS and deposited in the BioImage Archive.

    (The iRODS and BIA records are written here: those stages have their own tests against stand-ins.)
    """
    ledger = stack.ledger()
    uid = stack.ingested.uids["good"]
    if ledger.get_record(uid, "bia") is None:
        collection = f"/tempZone/home/demo/DEMO/{uid}"
        with ledger.stage(uid, "irods", RunContext("microfair_irods", "manual__pub", "register", 0)) as out:
            out.details = {"collection": collection}
        ledger.put_record(uid, "irods", {"uid": uid, "mode": "put", "collection": collection,
                                         "data_object": f"{collection}/{uid}.czi", "checksum": "sha2:q83vEjRW",
                                         "objects": 3, "checksums_verified": 3, "transferred": 3, "unchanged": 0,
                                         "avus_added": 24, "avus_removed": 0, "owner": "rods", "group": "demo",
                                         "registered_at": "2026-11-25T09:00:00+00:00"})
        for step in ("upload", "submit", "record"):
            with ledger.stage(uid, "deposit", RunContext("microfair_deposit", "manual__pub", step, None)) as out:
                out.details = {"step": step}
        ledger.put_record(uid, "bia", {"accession": "S-BIAD900", "version": 1, "status": "POST_PROCESSED",
                                       "doi": "10.6019/S-BIAD900", "release_date": "2026-12-01",
                                       "root_path": "microfair/DEMO", "uploads": {f"{uid}.czi": {"sha256": "ab"}},
                                       "study": {"title": "HeLa cells through mitosis"}, "errors": []})
        ledger.put_record(uid, "datacite", {"accession": "S-BIAD900", "doi": "10.80000/demo-900", "state": "draft"})
    return uid


def test_real_dataset_detail_shows_qc_thumbnails_and_records(browser, stack, shoot) -> None:
    uid = _published_dataset(stack)
    ctx, page = login(browser, stack, "admin")
    try:
        page.goto(stack.dashboard + f"/datasets?q={uid}")
        row = page.locator("table.datasets tbody tr").first
        assert "registered" in row.inner_text() and "S-BIAD900" in row.inner_text()
        page.goto(stack.dashboard + f"/datasets/{uid}")
        table = page.locator("[data-testid=qc-scene-0]")
        table.wait_for()
        assert table.locator("tbody tr").count() == 2 and "DAPI" in table.inner_text() and "GFP" in table.inner_text()
        assert table.locator("svg.histogram").count() == 2
        thumbs = page.locator("[data-testid=qc] img[data-testid=thumbnail]")
        assert thumbs.count() == 3
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=qc] img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)", timeout=TIMEOUT_MS)
        assert page.locator("[data-testid=qc] pre").count() == 0
        assert page.evaluate("document.documentElement.scrollHeight") < 6000  # no raw QC record
        assert "Homo sapiens" in page.inner_text("[data-testid=rembi]")
        assert "missing" in page.inner_text("[data-testid=dublin-core]")
        assert "None" not in page.inner_text("[data-testid=dublin-core]")
        irods = page.inner_text("[data-testid=irods]")
        assert f"/tempZone/home/demo/DEMO/{uid}" in irods and "3 checksums verified" in irods
        bia = page.inner_text("[data-testid=bia]")
        assert "S-BIAD900" in bia and "10.6019/S-BIAD900" in bia and "POST_PROCESSED" in bia
        assert page.get_attribute("[data-testid=bia] a[href*='doi.org']", "href") == "https://doi.org/10.6019/S-BIAD900"
        assert "10.80000/demo-900" in bia  # the DataCite record
        assert page.locator("[data-testid=timeline] li").count() >= 8
        shoot(page, "dashboard-dataset.png")

        page.goto(stack.dashboard + f"/datasets/{stack.ingested.uids['misnamed']}")
        warnings = page.inner_text("[data-testid=warnings]")
        assert "does not follow the convention" in warnings and page.locator("[data-testid=errors]").count() == 0
    finally:
        ctx.close()


def test_quarantined_rows_and_the_table_width(browser, stack, shoot) -> None:
    ing = stack.ingested
    ctx, page = login(browser, stack, "admin")
    try:
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(stack.dashboard + "/datasets?page_size=20")
        assert page.evaluate("document.documentElement.scrollWidth") <= 1400
        row = page.locator(f"tr[data-uid='{ing.uids['empty']}']")
        assert "empty file (0 bytes)" in row.inner_text()
        for stage in ("validate", "convert", "qc"):
            assert row.locator(f"td[data-stage={stage}]").inner_text().strip() == "quarantined"
        shoot(page, "dashboard-datasets.png")
        page.goto(stack.dashboard + "/")
        for key in ("empty", "corrupt"):
            uid = ing.uids[key]
            assert page.locator(f"[data-testid=release-{uid}]").count() == 1
        page.locator(f"[data-testid=release-{ing.uids['corrupt']}]").click()
        page.locator("[data-testid=confirm-release]").wait_for()
        assert "unchanged" in page.inner_text("[data-testid=landing]")
        assert page.locator("[data-testid=confirm-unchanged]").count() == 1
        # The facility's ingest DAG is not deployed in this test stack: the page says nothing will run it.
        assert "microfair_ingest is not in Airflow" in page.inner_text("[data-testid=run-warning]")
        shoot(page, "dashboard-release-confirm.png")
    finally:
        ctx.close()


def test_no_secret_appears_in_any_page(stack) -> None:
    uid = _published_dataset(stack)
    ev = failed_event_id(stack)
    secrets = [IRODS_PASSWORD, *PASSWORDS.values(), stack.env["AIRFLOW__API__SECRET_KEY"],
               stack.env["AIRFLOW__API_AUTH__JWT_SECRET"]]
    headers = {"Authorization": f"Bearer {stack.token('admin')}"}
    quarantined = stack.ingested.uids["corrupt"]
    pages = ["/", "/datasets", f"/datasets?q={uid}", f"/datasets/{uid}", "/datasets/RERUN001", "/compliance",
             f"/rerun/{ev}", f"/datasets/{quarantined}", f"/release/{quarantined}"]
    for path in pages:
        r = requests.get(stack.dashboard + path, headers=headers, timeout=60)
        assert r.status_code in (200, 409), (path, r.status_code)
        for secret in secrets:
            assert secret not in r.text, f"a secret appears in {path}"
